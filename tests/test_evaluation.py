"""Tests of ttcrouter.evaluation on small tables whose oracle and best static strategy are known."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin

from ttcrouter.evaluation import (
    MIN_TEST_QUERIES,
    MIN_TRAIN_QUERIES,
    EvaluationReport,
    evaluate,
    frontier_at,
)

STRATS = ["majority_vote@n=1", "majority_vote@n=4", "beam_search@n=4,w=2"]
# correct (always / never) per kind and strategy
KINDS = {"easy": [1, 1, 1], "medium": [0, 1, 1], "hard": [0, 0, 1]}
COST_T = [100, 400, 800]
COST_L = [1.0, 2.0, 8.0]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def toy_runs(n_per_kind=8, repeats=2):
    rows = []
    for kind, ys in KINDS.items():
        for i in range(n_per_kind):
            for s, y, t, lat in zip(STRATS, ys, COST_T, COST_L):
                for r in range(repeats):
                    rows.append(dict(query_id=f"{kind}-{i}", query=f"{kind} question {i}",
                                     gold="1", strategy=s, repeat=r, answer=str(y), correct=y,
                                     tokens=t, latency_s=lat, error=None))
    return pd.DataFrame(rows)


class KindEncoder(TransformerMixin, BaseEstimator):
    """One-hot of the difficulty word in the query (a stand-in encoder for exact checks)."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.array([[k in q for k in KINDS] for q in X], dtype=np.float32)


class LookupRouter(BaseEstimator):
    """Remembers the mean accuracy of each distinct feature row; per-strategy mean costs.

    On the toy table it predicts perfectly, so the router must match the oracle.
    """

    def __init__(self, lambda_tokens=0.0, lambda_latency=0.0):
        self.lambda_tokens = lambda_tokens
        self.lambda_latency = lambda_latency

    def fit(self, X, Y, tokens=None, latency=None):
        self.strategies_ = list(Y.columns)
        X, Yv = np.asarray(X), np.asarray(Y, dtype=float)
        self.table_ = {row.tobytes(): Yv[(X == row).all(axis=1)].mean(axis=0)
                       for row in np.unique(X, axis=0)}
        self.T_ = np.asarray(tokens, dtype=float).mean(axis=0)
        self.L_ = np.asarray(latency, dtype=float).mean(axis=0)
        return self

    def predict_accuracy(self, X):
        return np.stack([self.table_[np.asarray(r).tobytes()] for r in np.asarray(X)])

    def predict_costs(self, X):
        return np.tile(self.T_, (len(X), 1)), np.tile(self.L_, (len(X), 1))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    rep = evaluate(toy_runs(), encoder=KindEncoder(), router=LookupRouter(), report_dir=out,
                   progress=False)
    return rep, out


def test_static_and_best_static_are_known(report):
    rep, _ = report
    assert isinstance(rep, EvaluationReport)
    assert rep.strategies == STRATS
    test_kinds = [q.split("-")[0] for q in rep.config["test_query_ids"]]
    expected_acc = [np.mean([KINDS[k][j] for k in test_kinds]) for j in range(3)]
    np.testing.assert_allclose(rep.static["accuracy"].to_numpy(), expected_acc)
    np.testing.assert_allclose(rep.static["mean_tokens"].to_numpy(), COST_T)
    np.testing.assert_allclose(rep.static["mean_latency_s"].to_numpy(), COST_L)
    assert rep.best_static == "beam_search@n=4,w=2"
    assert rep.n_train + rep.n_test == 24
    assert not set(rep.config["test_query_ids"]) & set(rep.config["train_query_ids"])


def test_oracle_picks_cheapest_correct_strategy(report):
    rep, _ = report
    test_kinds = [q.split("-")[0] for q in rep.config["test_query_ids"]]
    # cheapest correct strategy per kind: easy -> n=1, medium -> n=4, hard -> beam
    cheapest = {"easy": 0, "medium": 1, "hard": 2}
    want_tokens = np.mean([COST_T[cheapest[k]] for k in test_kinds])
    orc = rep.oracle["tokens"]
    small = orc[orc["lambda_tokens"] > 0].iloc[0]  # a tiny positive price breaks ties by cost
    assert small["accuracy"] == pytest.approx(1.0)
    assert small["mean_tokens"] == pytest.approx(want_tokens)
    # huge price: everyone gets the cheapest strategy
    big = orc.iloc[-1]
    assert big["mean_tokens"] == pytest.approx(COST_T[0])
    # the oracle is never below any static strategy at matched cost
    for _, row in rep.static.iterrows():
        at = frontier_at(orc["mean_tokens"], orc["accuracy"], [row["mean_tokens"]])[0]
        assert at >= row["accuracy"] - 1e-12


def test_perfect_router_matches_oracle_and_closes_gap(report):
    rep, _ = report
    for sweep in ("tokens", "latency", "both"):
        np.testing.assert_allclose(rep.adaptive[sweep]["accuracy"].iloc[1:],
                                   rep.oracle[sweep]["accuracy"].iloc[1:])
    gaps = rep.gap_closed["gap_closed"].dropna()
    assert len(gaps) > 0
    np.testing.assert_allclose(gaps, 1.0)
    for axis in ("tokens", "latency"):
        assert rep.frontier_check[axis]["at_or_above_everywhere"]
        assert rep.frontier_check[axis]["below_at_budgets"] == []
        assert rep.auc[axis]["router"] == pytest.approx(rep.auc[axis]["oracle"])
        assert rep.auc[axis]["router"] > rep.auc[axis]["static"]
    # the mix: shares sum to one, the heavy strategy fades as lambda grows
    mix = rep.mix["tokens"]
    np.testing.assert_allclose(mix.sum(axis=1), 1.0)
    assert mix["beam_search@n=4,w=2"].iloc[0] > 0
    assert mix["beam_search@n=4,w=2"].iloc[-1] == 0
    assert mix["majority_vote@n=1"].iloc[-1] == 1


def test_files_written(report):
    rep, out = report
    from PIL import Image
    import matplotlib.image as mpimg

    for name in ("accuracy_vs_tokens", "accuracy_vs_latency", "strategy_mix"):
        path = out / f"{name}.png"
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(path) as im:
            im.verify()
        arr = mpimg.imread(path)
        assert arr.ndim == 3 and arr.shape[0] > 100 and arr.shape[1] > 100
        assert arr.std() > 0  # not a blank image
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("ttcrouter_version", "strategies", "n_train", "n_test", "best_static",
                "static", "adaptive", "oracle", "mix", "gap_closed", "auc",
                "frontier_check", "config",
                "timings"):
        assert key in metrics, key
    assert set(metrics["adaptive"]) == {"tokens", "latency", "both"}
    assert {"budget", "static_accuracy", "router_accuracy", "oracle_accuracy",
            "gap_closed"} <= set(metrics["gap_closed"][0])
    md = (out / "report.md").read_text()
    for png in ("accuracy_vs_tokens.png", "accuracy_vs_latency.png", "strategy_mix.png"):
        assert f"]({png})" in md
    assert "Gap closed" in md and "beam_search@n=4,w=2" in md
    assert "gap closed" in rep.summary()


def test_too_few_queries_is_a_clear_error():
    runs = toy_runs(n_per_kind=2)  # 6 queries
    with pytest.raises(ValueError, match="at least .* queries"):
        evaluate(runs, encoder=KindEncoder(), router=LookupRouter(), progress=False)
    runs = toy_runs(n_per_kind=4)  # 12 queries; test_size leaves 1 train query
    with pytest.raises(ValueError, match=f"at least {MIN_TRAIN_QUERIES} train and "
                                         f"{MIN_TEST_QUERIES} test"):
        evaluate(runs, test_size=11, encoder=KindEncoder(), router=LookupRouter(),
                 progress=False)


def test_bad_grid_and_bad_runs():
    with pytest.raises(ValueError, match="lambda_tokens_grid"):
        evaluate(toy_runs(), encoder=KindEncoder(), router=LookupRouter(),
                 lambda_tokens_grid=[-1.0], progress=False)
    with pytest.raises(TypeError, match="runs table"):
        evaluate([1, 2, 3], encoder=KindEncoder(), router=LookupRouter(), progress=False)


def test_explicit_grids_and_split_seed():
    a = evaluate(toy_runs(), encoder=KindEncoder(), router=LookupRouter(), random_state=1,
                 lambda_tokens_grid=[0, 1e-3, 1], lambda_latency_grid=[0, 0.1], progress=False)
    assert len(a.adaptive["tokens"]) == 3 and len(a.adaptive["latency"]) == 2
    assert len(a.adaptive["both"]) == 6  # unequal lengths -> product
    b = evaluate(toy_runs(), encoder=KindEncoder(), router=LookupRouter(), random_state=1,
                 lambda_tokens_grid=[0, 1], lambda_latency_grid=[0, 0.1], progress=False)
    assert a.config["test_query_ids"] == b.config["test_query_ids"]
    assert len(b.adaptive["both"]) == 2  # equal lengths -> paired


class ConstantRouter(LookupRouter):
    """Always predicts the same accuracies: routes everyone to one strategy per lambda."""

    def predict_accuracy(self, X):
        return np.tile([0.5, 0.4, 0.3], (len(X), 1))


def test_frontier_check_reports_a_router_below_static():
    rep = evaluate(toy_runs(), encoder=KindEncoder(), router=ConstantRouter(), progress=False)
    for axis in ("tokens", "latency"):
        c = rep.frontier_check[axis]
        assert not c["at_or_above_everywhere"]
        # always the cheapest strategy: below static at the two dearer static costs
        assert len(c["below_at_budgets"]) == 2
        assert c["largest_shortfall"] == pytest.approx(1 - rep.static["accuracy"].iloc[0])
    assert "no (below at 2 budget(s)" in rep.summary()


class NoCheapRouter(LookupRouter):
    """Believes the cheapest strategy is the dearest: never routes to it."""

    def predict_costs(self, X):
        T, L = super().predict_costs(X)
        T[:, 0], L[:, 0] = 10 * T.max(), 10 * L.max()
        return T, L


def test_frontier_check_separates_budgets_out_of_reach():
    rep = evaluate(toy_runs(), encoder=KindEncoder(), router=NoCheapRouter(), progress=False)
    cheapest = float(rep.static["mean_tokens"].min())
    c = rep.frontier_check["tokens"]
    assert not c["at_or_above_everywhere"]
    assert c["out_of_reach_budgets"] == [cheapest]
    assert cheapest in c["below_at_budgets"]
    assert c["router_min_cost"] > cheapest
    # no gap where the router has points: the shortfall is not the whole static accuracy
    assert c["largest_shortfall"] == 0.0
    line = [x for x in rep.summary().splitlines() if "every tokens budget" in x][0]
    assert line.endswith("no (1 budget(s) under the router's cheapest point (400), out of its "
                         "reach)")
    # a router that reaches every budget has none out of reach
    ok = evaluate(toy_runs(), encoder=KindEncoder(), router=LookupRouter(), progress=False)
    assert ok.frontier_check["tokens"]["out_of_reach_budgets"] == []


def test_frontier_at():
    out = frontier_at([1, 2, 4], [0.2, 0.1, 0.9], [0.5, 1, 3, 10])
    assert np.isnan(out[0])
    np.testing.assert_allclose(out[1:], [0.2, 0.2, 0.9])


class FoldRecordingRouter(LookupRouter):
    """LookupRouter that records the query texts' features it was fitted on."""

    seen: list = []

    def fit(self, X, Y, tokens=None, latency=None):
        FoldRecordingRouter.seen.append(len(X))
        return super().fit(X, Y, tokens=tokens, latency=latency)


def test_cross_fitting_tests_every_query_once(tmp_path):
    FoldRecordingRouter.seen = []
    rep = evaluate(toy_runs(), encoder=KindEncoder(), router=FoldRecordingRouter(), cv=3,
                   random_state=1, report_dir=tmp_path, progress=False)
    # 3 fits on 16 of the 24 queries each; every query tested exactly once
    assert FoldRecordingRouter.seen == [16, 16, 16]
    assert rep.n_test == 24 and rep.n_train == 16
    tested = rep.config["test_query_ids"]
    assert sorted(tested) == sorted(set(tested)) and len(tested) == 24
    folds = rep.config["folds"]
    assert len(folds) == 3 and sum(len(f) for f in folds) == 24
    assert rep.config["cv"] == 3 and rep.config["train_query_ids"] is None
    # static accuracy is now over all queries: 1/3, 2/3 and 1 for the three strategies
    np.testing.assert_allclose(rep.static["accuracy"].to_numpy(), [1 / 3, 2 / 3, 1.0])
    # the perfect router still matches the oracle on every query
    np.testing.assert_allclose(rep.adaptive["tokens"]["accuracy"].iloc[1:],
                               rep.oracle["tokens"]["accuracy"].iloc[1:])
    assert "3-fold cross-fitting" in rep.summary()
    assert "3-fold cross-fitting" in (tmp_path / "report.md").read_text()
    # the same seed gives the same folds
    again = evaluate(toy_runs(), encoder=KindEncoder(), router=LookupRouter(), cv=3,
                     random_state=1, progress=False)
    assert again.config["folds"] == folds


class FoldRecordingEncoder(KindEncoder):
    fitted_on = []

    def fit(self, X, y=None):
        FoldRecordingEncoder.fitted_on.append(sorted(X))
        return self


def test_cross_fitting_fits_a_learning_encoder_on_training_queries_only():
    FoldRecordingEncoder.fitted_on = []
    rep = evaluate(toy_runs(), encoder=FoldRecordingEncoder(), router=LookupRouter(), cv=3,
                   progress=False, n_boot=0)
    assert [len(f) for f in FoldRecordingEncoder.fitted_on] == [16, 16, 16]
    texts = dict(zip(toy_runs()["query_id"], toy_runs()["query"]))
    for fitted, tested in zip(FoldRecordingEncoder.fitted_on, rep.config["folds"]):
        assert not set(fitted) & {texts[q] for q in tested}


def _counting_embedder():
    from ttcrouter import EmbeddingTransformer

    class CountingEmbedder(EmbeddingTransformer):
        embedded = []

        def transform(self, X):
            CountingEmbedder.embedded.append(len(X))
            return super().transform(X)

    return CountingEmbedder


def test_a_frozen_encoder_embeds_each_query_once():
    """An EmbeddingTransformer learns nothing in fit: cross-fitting embeds every query once
    and routes exactly as with per-fold embedding."""
    counting = _counting_embedder()

    class MeanRouter(LookupRouter):  # per-strategy means: needs no exact feature rows
        def fit(self, X, Y, tokens=None, latency=None):
            super().fit(X, Y, tokens=tokens, latency=latency)
            self.A_ = np.asarray(Y, dtype=float).mean(axis=0) + [0, 0.01, 0.02]
            return self

        def predict_accuracy(self, X):
            return np.tile(self.A_, (len(X), 1))

    rep = evaluate(toy_runs(), encoder=counting(), router=MeanRouter(), cv=3,
                   progress=False, n_boot=0)
    assert counting.embedded == [24]
    assert rep.n_test == 24
    assert rep.fitted_encoder.n_features_out_ == 384
    rep1 = evaluate(toy_runs(), encoder=counting(), router=MeanRouter(), progress=False,
                    n_boot=0)
    assert counting.embedded == [24, 24]
    assert rep1.n_test == 6


@pytest.mark.parametrize("cv", [1, 0, 2.5, True, 13])
def test_cross_fitting_bad_cv(cv):
    with pytest.raises(ValueError, match="cv"):
        evaluate(toy_runs(), encoder=KindEncoder(), router=LookupRouter(), cv=cv,
                 progress=False)


def test_bootstrap_interval_of_the_frontier_check(report):
    rep, out = report
    for axis in ("tokens", "latency"):
        c = rep.frontier_check[axis]
        # the perfect router is above static at every budget but the cheapest, in every
        # resample: a positive interval, nothing clearly below
        assert len(c["budgets"]) == len(c["difference"]) == len(c["difference_ci90"]) == 3
        assert c["clearly_below_at_budgets"] == [] and c["n_boot"] == 1000
        for d, (lo, hi) in zip(c["difference"], c["difference_ci90"]):
            assert lo <= d <= hi and lo >= -1e-12
    assert "bootstrap resamples" in (out / "report.md").read_text()


def test_bootstrap_flags_a_router_clearly_below_static():
    from ttcrouter.frontier import bootstrap_frontier_difference

    rng = np.random.default_rng(0)
    Y = np.column_stack([rng.random(200) < 0.3, rng.random(200) < 0.9]).astype(float)
    C = np.tile([1.0, 2.0], (200, 1))
    always_cheap = np.zeros((1, 200), dtype=int)      # never picks the good strategy
    diffs = bootstrap_frontier_difference(always_cheap, Y, C, n_boot=300, random_state=0)
    lo, hi = np.percentile(diffs, [5, 95], axis=0)
    assert hi[1] < 0                                   # clearly below at the dear budget
    assert lo[0] == hi[0] == 0                         # equal at the cheap one
    same = bootstrap_frontier_difference(np.stack([np.zeros(200, int), np.ones(200, int)]), Y,
                                         C, n_boot=300, random_state=0)
    np.testing.assert_allclose(same, 0.0)              # the router can be the static policy


def test_pruned_router_never_routes_to_a_dominated_strategy():
    from sklearn.linear_model import LogisticRegression

    from ttcrouter.router import UtilityRouter

    # best_of_n@n=16 is right exactly where beam search is, at more tokens and latency
    runs = toy_runs()
    extra = runs[runs["strategy"] == "beam_search@n=4,w=2"].assign(
        strategy="best_of_n@n=16", tokens=1600, latency_s=10.0)
    runs = pd.concat([runs, extra], ignore_index=True)
    router = UtilityRouter(probe=LogisticRegression(C=100.0), prune_dominated=True)
    rep = evaluate(runs, encoder=KindEncoder(), router=router, progress=False, n_boot=0)
    fitted = rep.fitted_router
    assert dict(zip(fitted.strategies_, fitted.dominated_))["best_of_n@n=16"]
    for sweep, mix in rep.mix.items():
        assert (mix["best_of_n@n=16"] == 0).all(), sweep
    # the sweep re-does the router's own decision
    test_q = rep.config["test_query_ids"]
    texts = runs.drop_duplicates("query_id").set_index("query_id").loc[test_q, "query"]
    X = rep.fitted_encoder.transform(list(texts))
    for i, lam in enumerate(rep.adaptive["tokens"]["lambda_tokens"]):
        pred = fitted.set_params(lambda_tokens=lam).predict(X)
        share = pd.Series(pred).value_counts(normalize=True)
        row = rep.mix["tokens"].iloc[i]
        np.testing.assert_allclose(row[share.index].to_numpy(), share.to_numpy())


def test_displays_plot_on_given_axes_and_return_themselves(report):
    from matplotlib.figure import Figure

    from ttcrouter.evaluation import FrontierDisplay, StrategyMixDisplay

    rep, _ = report
    fig = Figure()
    ax = fig.add_subplot()
    disp = FrontierDisplay.from_report(rep, axis="latency")
    assert disp.plot(ax=ax) is disp
    assert disp.ax_ is ax and disp.figure_ is fig
    np.testing.assert_allclose(disp.static_cost, COST_L)
    assert ax.get_xlabel() == "mean latency per query (s)"
    # one line for the static frontier, one for the router, one for the oracle
    assert len(ax.get_lines()) == 3
    with pytest.raises(ValueError, match="axis"):
        FrontierDisplay.from_report(rep, axis="dollars")
    mix = StrategyMixDisplay.from_report(rep).plot()
    assert len(mix.axes_) == 2 and mix.figure_ is mix.axes_[0].figure
    # stacked shares: the bars of each penalty sum to one
    tops = {}
    for patch in mix.axes_[0].patches:
        x = round(patch.get_x() + patch.get_width() / 2)
        tops[x] = max(tops.get(x, 0.0), patch.get_y() + patch.get_height())
    np.testing.assert_allclose(list(tops.values()), 1.0)


def test_stage_messages_go_to_the_evaluation_logger(caplog):
    with caplog.at_level("INFO", logger="ttcrouter.evaluation"):
        evaluate(toy_runs(), encoder=KindEncoder(), router=LookupRouter(), n_boot=0)
    messages = [r.getMessage() for r in caplog.records if r.name == "ttcrouter.evaluation"]
    assert any("aggregating runs" in m for m in messages)
    assert any("done in" in m for m in messages)
    caplog.clear()
    with caplog.at_level("INFO", logger="ttcrouter.evaluation"):
        evaluate(toy_runs(), encoder=KindEncoder(), router=LookupRouter(), n_boot=0,
                 progress=False)
    assert not [r for r in caplog.records if r.name == "ttcrouter.evaluation"]


# -- batch budgets ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def batch_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("batch")
    FoldRecordingRouter.seen = []
    rep = evaluate(toy_runs(n_per_kind=12), encoder=KindEncoder(), router=FoldRecordingRouter(),
                   cv=3, batch_budgets="auto", batch_inner_cv=2, n_boot=200, report_dir=out,
                   progress=False)
    return rep, out, list(FoldRecordingRouter.seen)


def test_batch_budgets_compare_three_methods_per_budget(batch_report):
    rep, _, seen = batch_report
    t = rep.batch
    assert list(dict.fromkeys(t["axis"])) == ["tokens", "latency"]
    assert len(t) == 2 * 5 * 3
    assert set(t["method"]) == {"allocation", "lambda", "static_mix"}
    # auto budgets lie strictly inside the static strategies' cost range
    tok = t.loc[t["axis"] == "tokens", "budget"].unique()
    assert len(tok) == 5 and tok.min() > min(COST_T) and tok.max() < max(COST_T)
    # 3 outer fits on 24 queries, then 2 inner fits on 12 of each fold's 24 training queries
    assert seen == [24, 24, 24] + [12] * 6
    alloc = t[t["method"] == "allocation"]
    # the lookup router predicts costs exactly: predicted = realised, within the budget
    np.testing.assert_allclose(alloc["realised_over_budget"], alloc["predicted_over_budget"])
    assert (alloc["realised_over_budget"] <= 1 + 1e-9).all()
    # the static mix is exact to the budget (constant costs: in expectation = realised)
    mix = t[t["method"] == "static_mix"]
    np.testing.assert_allclose(mix["realised_over_budget"], 1.0)
    # perfect predictions: allocation is never worse than the static mix
    assert (alloc["accuracy"].to_numpy() >= mix["accuracy"].to_numpy() - 1e-9).all()
    assert (t["accuracy_lo"] <= t["accuracy"] + 1e-12).all()
    assert (t["accuracy"] <= t["accuracy_hi"] + 1e-12).all()
    assert (alloc["delta_accuracy"] == 0).all()
    assert rep.config["batch_budgets"]["tokens"] == list(tok)
    for axis in ("tokens", "latency"):
        folds = next(iter(rep.batch_details[axis].values()))
        assert [f["fold"] for f in folds] == [0, 1, 2]


def test_batch_budgets_in_the_report_files(batch_report):
    rep, out, _ = batch_report
    md = (out / "report.md").read_text()
    assert "## Batch budgets" in md and "### mean latency budget" in md
    assert "static mix exact to B" in md and "![batch budgets](batch_budgets.png)" in md
    assert (out / "batch_budgets.png").read_bytes()[:8] == PNG_SIGNATURE
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["batch_budgets"]) == 30 and "batch_details" in metrics
    assert "batch budgets" in rep.summary()


def test_batch_budget_display_on_given_axes(batch_report):
    from matplotlib.figure import Figure

    from ttcrouter.evaluation import BatchBudgetDisplay

    rep, _, _ = batch_report
    fig = Figure()
    axes = [fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)]
    disp = BatchBudgetDisplay.from_report(rep)
    assert disp.plot(ax=axes) is disp and disp.figure_ is fig
    with pytest.raises(ValueError, match="Axes"):
        disp.plot(ax=axes[:1])
    plain = evaluate(toy_runs(), encoder=KindEncoder(), router=LookupRouter(), n_boot=0,
                     progress=False)
    assert plain.batch is None and "batch_budgets" not in plain.to_dict()
    assert "batch_budgets" not in plain.config  # metrics.json unchanged without batch budgets
    with pytest.raises(ValueError, match="no batch budgets"):
        BatchBudgetDisplay.from_report(plain)


def test_explicit_batch_budgets_and_an_infeasible_one():
    # 50 tokens per query is under the cheapest strategy (100): every method says so
    rep = evaluate(toy_runs(n_per_kind=12), encoder=KindEncoder(), router=LookupRouter(),
                   cv=3, batch_budgets=[50, 300], batch_inner_cv=2, n_boot=0, progress=False)
    t = rep.batch
    assert set(t["axis"]) == {"tokens"} and sorted(t["budget"].unique()) == [50.0, 300.0]
    low = t[t["budget"] == 50].set_index("method")
    assert low["accuracy"].isna().all()
    assert "infeasible" in low.loc["allocation", "note"]
    assert "no price fits" in low.loc["lambda", "note"]
    assert "over budget" in low.loc["static_mix", "note"]
    assert t.loc[t["budget"] == 300, "accuracy"].notna().all()
    assert t["accuracy_lo"].isna().all()  # n_boot=0: no intervals


@pytest.mark.parametrize("value, match", [
    ("all", "'auto'"), ([0, 100], "> 0"), ({"dollars": [1]}, "keys"), ([], "> 0"),
])
def test_bad_batch_budgets(value, match):
    with pytest.raises(ValueError, match=match):
        evaluate(toy_runs(), encoder=KindEncoder(), router=LookupRouter(), n_boot=0,
                 batch_budgets=value, progress=False)


def test_static_mix_and_auto_budgets():
    from ttcrouter.evaluation.batch import auto_batch_budgets, static_mix

    cost, acc = [100, 400, 800, 500], [0.2, 0.6, 0.7, 0.5]  # 500 is under the hull
    assert static_mix(cost, acc, 50) is None
    i, j, share = static_mix(cost, acc, 250)
    assert (i, j) == (0, 1) and share == pytest.approx(0.5)
    i, j, share = static_mix(cost, acc, 600)
    assert (i, j) == (1, 2) and share == pytest.approx(0.5)
    assert static_mix(cost, acc, 1000) == (2, 2, 0.0)
    b = auto_batch_budgets([100, 800])
    assert len(b) == 5 and b.min() > 100 and b.max() < 800
    with pytest.raises(ValueError, match="same mean cost"):
        auto_batch_budgets([5, 5])
