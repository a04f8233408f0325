import numpy as np
import pandas as pd
import pytest
import sklearn

from ttcrouter.metrics import (
    frontier_auc,
    make_accuracy_scorer,
    make_latency_scorer,
    make_tokens_scorer,
    make_utility_scorer,
    oracle_choice,
    pareto_frontier,
    realized_utility,
    routed_accuracy,
    routed_mean_latency,
    routed_mean_tokens,
    static_strategy_table,
)

NAMES = ["majority_vote@n=1", "majority_vote@n=8", "beam_search@n=8,w=4"]
Y = pd.DataFrame([[1.0, 1.0, 1.0], [0.0, 0.5, 1.0]], columns=NAMES)
T = pd.DataFrame([[10.0, 80.0, 300.0], [20.0, 160.0, 600.0]], columns=NAMES)
L = pd.DataFrame([[1.0, 1.2, 5.0], [2.0, 2.4, 9.0]], columns=NAMES)


def test_realized_utility_by_hand():
    choice = np.array([0, 2])
    expect = np.mean([1 - 0.01 * 10 - 0.1 * 1, 1 - 0.01 * 600 - 0.1 * 9])
    assert realized_utility(Y, T, L, choice, 0.01, 0.1) == pytest.approx(expect)
    # names work as choices too, and so do arrays with strategies=
    names = np.array(["majority_vote@n=1", "beam_search@n=8,w=4"])
    assert realized_utility(Y, T, L, names, 0.01, 0.1) == pytest.approx(expect)
    assert realized_utility(Y.to_numpy(), T.to_numpy(), L.to_numpy(), names, 0.01, 0.1,
                            strategies=NAMES) == pytest.approx(expect)
    assert routed_accuracy(Y, choice) == 1.0
    assert routed_mean_tokens(T, choice) == pytest.approx(305.0)
    assert routed_mean_latency(L, choice) == pytest.approx(5.0)
    # lambda 0 needs no cost matrices
    assert realized_utility(Y, None, None, choice) == 1.0


def test_realized_utility_errors():
    with pytest.raises(ValueError, match=">= 0"):
        realized_utility(Y, T, L, [0, 0], -1.0, 0.0)
    with pytest.raises(ValueError, match="one strategy per query"):
        realized_utility(Y, T, L, [0], 0.0, 0.0)
    with pytest.raises(ValueError, match="not a column"):
        realized_utility(Y, T, L, ["best_of_n@n=2", "best_of_n@n=2"])
    with pytest.raises(ValueError, match="strategies"):
        realized_utility(Y.to_numpy(), None, None, ["majority_vote@n=1"] * 2)
    with pytest.raises(ValueError, match="needed"):
        realized_utility(Y, None, L, [0, 0], 0.1, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        realized_utility(Y.replace(1.0, np.nan), T, L, [0, 0])


def test_oracle_choice_and_ties():
    assert oracle_choice(Y).tolist() == [0, 2]  # tie in row 0 -> first strategy
    assert oracle_choice(Y, T, L, 0.002, 0.0).tolist() == [0, 1]
    assert oracle_choice(Y, T, L, 1.0, 0.0).tolist() == [0, 0]


def test_static_strategy_table():
    tab = static_strategy_table(Y, T, L)
    assert list(tab.index) == NAMES
    assert tab.loc["majority_vote@n=8", "accuracy"] == pytest.approx(0.75)
    assert tab.loc["beam_search@n=8,w=4", "mean_tokens"] == pytest.approx(450.0)
    assert tab.loc["majority_vote@n=1", "mean_latency"] == pytest.approx(1.5)
    assert static_strategy_table(Y)["mean_tokens"].isna().all()


def test_pareto_frontier_and_auc():
    costs = [1, 2, 3, 4, 2.5]
    accs = [0.2, 0.5, 0.4, 0.9, 0.5]
    assert pareto_frontier(costs, accs).tolist() == [0, 1, 3]
    # step function: 0.2 on [1, 2), 0.5 on [2, 4), 0.9 at 4 -> (0.2 * 1 + 0.5 * 2) / 3
    assert frontier_auc(costs, accs) == pytest.approx((0.2 + 1.0) / 3)
    assert frontier_auc(costs, accs, cost_range=(1, 5)) == pytest.approx((0.2 + 1.0 + 0.9) / 4)
    assert 0 <= frontier_auc(costs, accs, log_cost=True) <= 1
    with pytest.raises(ValueError, match="differ in length"):
        pareto_frontier([1, 2], [0.1])


class _Fixed(sklearn.base.BaseEstimator):
    """Returns fixed strategy names, as a fitted router would."""

    def __init__(self, names=None):
        self.names = names

    def fit(self, X, y=None):
        return self

    def predict(self, X):
        return np.asarray(self.names, dtype=object)[: len(X)]


def test_scorers_without_routing_need_no_metadata_for_accuracy():
    est = _Fixed(["majority_vote@n=1", "beam_search@n=8,w=4"])
    X = np.zeros((2, 1))
    assert make_accuracy_scorer()(est, X, Y) == 1.0
    assert make_utility_scorer()(est, X, Y) == 1.0
    with pytest.raises(ValueError, match="tokens"):
        make_tokens_scorer()(est, X, Y)


def test_scorers_with_metadata_routing():
    est = _Fixed(["majority_vote@n=1", "beam_search@n=8,w=4"])
    X = np.zeros((2, 1))
    with sklearn.config_context(enable_metadata_routing=True):
        u = make_utility_scorer(0.01, 0.1)
        assert u(est, X, Y, tokens=T, latency=L) == pytest.approx(
            realized_utility(Y, T, L, [0, 2], 0.01, 0.1))
        assert make_tokens_scorer()(est, X, Y, tokens=T) == pytest.approx(-305.0)
        assert make_latency_scorer()(est, X, Y, latency=L) == pytest.approx(-5.0)
    with pytest.raises(ValueError, match=">= 0"):
        make_utility_scorer(-0.1)


@pytest.mark.slow
def test_grid_search_over_lambdas_with_metadata_routing():
    """GridSearchCV(n_jobs=2) on the real-encoder pipeline; T and L reach the router's fit
    and the fixed-lambda scorers as metadata."""
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.pipeline import Pipeline

    from router_helpers import SMALL_SPACE, fast_probe, split_synthetic
    from ttcrouter.costs import CostTable
    from ttcrouter.embedding import EmbeddingTransformer
    from ttcrouter.metrics import routing_scorers
    from ttcrouter.router import UtilityRouter

    train, test, _ = split_synthetic(90, random_state=1)
    lt, ll = 1e-4, 0.02
    with sklearn.config_context(enable_metadata_routing=True):
        router = UtilityRouter(probe=fast_probe(), costs=CostTable())
        router.set_fit_request(tokens=True, latency=True)
        pipe = Pipeline([("embed", EmbeddingTransformer()), ("router", router)])
        gs = GridSearchCV(pipe, {"router__lambda_tokens": [0.0, lt],
                                 "router__lambda_latency": [0.0, ll]},
                          scoring=routing_scorers(lt, ll), refit="utility",
                          cv=KFold(2, shuffle=True, random_state=0), n_jobs=2)
        gs.fit(train.texts, train.Y, tokens=train.T, latency=train.L)
        res = pd.DataFrame(gs.cv_results_)
        assert res["mean_test_utility"].notna().all()
        # the fixed-lambda scorer does not reward lambda=0: costs are priced in the score
        u00 = res.loc[(res.param_router__lambda_tokens == 0)
                      & (res.param_router__lambda_latency == 0), "mean_test_utility"].item()
        assert gs.best_score_ >= u00
        assert (res["mean_test_latency"] < 0).all()  # negated mean latency
        assert (res["mean_test_accuracy"].between(0, 1)).all()
        pred = gs.predict(test.texts)
        assert set(pred) <= set(SMALL_SPACE)
        # scoring the refitted pipeline directly with the same scorer works too
        u = routing_scorers(lt, ll)["utility"](gs.best_estimator_, test.texts, test.Y,
                                               tokens=test.T, latency=test.L)
        assert u == pytest.approx(realized_utility(test.Y, test.T, test.L, pred, lt, ll))


# -- split_half_reliability --------------------------------------------------------------

def _rel_runs(correct, strategies=("majority_vote@n=1", "majority_vote@n=4")):
    """Runs table from ``correct[strategy] -> (n_queries, n_repeats)`` 0/1 arrays."""
    rows = []
    for s in strategies:
        c = np.asarray(correct[s])
        for q in range(c.shape[0]):
            for r in range(c.shape[1]):
                rows.append({"query_id": f"q{q}", "strategy": s, "repeat": r,
                             "correct": float(c[q, r]), "error": None})
    return pd.DataFrame(rows)


def test_split_half_reliability_deterministic_and_noise():
    from ttcrouter.metrics import split_half_reliability

    rng = np.random.default_rng(0)
    n_q, n_r = 300, 4
    solvable = (np.arange(n_q) % 2 == 0)[:, None]
    # n=1 is right on the even queries every time; n=4 also on every third query:
    # accuracies and gains are fully reproducible
    det = {"majority_vote@n=1": np.repeat(solvable, n_r, axis=1),
           "majority_vote@n=4": np.repeat(solvable | (np.arange(n_q) % 3 == 0)[:, None],
                                          n_r, axis=1)}
    out = split_half_reliability(_rel_runs(det), n_splits=5)
    assert list(out.index) == ["majority_vote@n=1", "majority_vote@n=4",
                               "majority_vote@n=1 -> majority_vote@n=4"]
    assert list(out["what"]) == ["accuracy", "accuracy", "gain"]
    assert np.allclose(out["split_half_r"], 1.0) and np.allclose(out["reliability"], 1.0)
    assert (out["n_queries"] == n_q).all()
    # coin flips that do not depend on the query: nothing to learn per query
    noise = {s: rng.random((1000, n_r)) < 0.5 for s in det}
    out = split_half_reliability(_rel_runs(noise), n_splits=10)
    assert (out["split_half_r"].abs() < 0.1).all(), out  # sd about 0.03 at 1000 queries
    # Spearman-Brown step-up
    r = out["split_half_r"].to_numpy()
    assert np.allclose(out["reliability"], 2 * r / (1 + r))


def test_split_half_reliability_gain_pairs_and_errors():
    from ttcrouter.metrics import split_half_reliability

    same = np.ones((20, 4))
    runs = _rel_runs({"majority_vote@n=1": same, "majority_vote@n=4": same})
    out = split_half_reliability(runs, strategies=["majority_vote@n=4"],
                                 gains=[("majority_vote@n=1", "majority_vote@n=4")])
    assert list(out.index) == ["majority_vote@n=4", "majority_vote@n=1 -> majority_vote@n=4"]
    assert out["split_half_r"].isna().all()  # no variance across queries: undefined
    failed = runs.assign(error=np.where(runs["repeat"] > 0, "boom", None))
    with pytest.raises(ValueError, match="two successful repeats"):
        split_half_reliability(failed)
    with pytest.raises(ValueError, match=r"No runs of \['best_of_n@n=2'\]"):
        split_half_reliability(runs, strategies=["best_of_n@n=2"])
    with pytest.raises(ValueError, match="lacks the column"):
        split_half_reliability(runs.drop(columns="repeat"))
    with pytest.raises(ValueError, match="n_splits"):
        split_half_reliability(runs, n_splits=0)
