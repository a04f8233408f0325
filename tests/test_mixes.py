"""Tests of ttcrouter.evaluation.mixes: token-aware against latency-aware mixes at matched budgets.

The table's two costs rank two strategies in opposite orders (parallel voting: many tokens,
short wall clock; an early-stopping vote: few tokens, long wall clock), so a router that
prices tokens and one that prices latency must route the queries that need more than one
sample differently.
"""

import json

import numpy as np
import pandas as pd
import pytest

from test_evaluation import PNG_SIGNATURE, KindEncoder, LookupRouter
from ttcrouter.evaluation import (
    MatchedMixDisplay,
    evaluate,
    matched_budget_mixes,
    mix_sentences,
)

ONE, PARALLEL, SEQUENTIAL = ("majority_vote@n=1", "majority_vote@n=8",
                             "adaptive_vote@n=8,b=2,t=0.75")
# strategy -> (tokens, latency_s); correct per kind: easy all, medium both voters, hard none
COSTS = {ONE: (50, 1.0), PARALLEL: (400, 1.5), SEQUENTIAL: (150, 4.0)}
KINDS = {"easy": {ONE: 1, PARALLEL: 1, SEQUENTIAL: 1},
         "medium": {ONE: 0, PARALLEL: 1, SEQUENTIAL: 1},
         "hard": {ONE: 0, PARALLEL: 0, SEQUENTIAL: 0}}


def tradeoff_runs(n_per_kind=10, repeats=2):
    rows = []
    for kind, correct in KINDS.items():
        for i in range(n_per_kind):
            for s, (t, lat) in COSTS.items():
                for r in range(repeats):
                    rows.append(dict(query_id=f"{kind}-{i}", query=f"{kind} question {i}",
                                     gold="1", strategy=s, repeat=r,
                                     answer=str(correct[s]), correct=correct[s], tokens=t,
                                     latency_s=lat, error=None))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("mixes")
    rep = evaluate(tradeoff_runs(), encoder=KindEncoder(), router=LookupRouter(), cv=3,
                   n_boot=0, report_dir=out, progress=False)
    return rep, out


def test_routers_that_price_different_costs_choose_different_voters(report):
    rep, _ = report
    table = matched_budget_mixes(rep)
    assert list(table["axis"].unique()) == ["tokens", "latency"]
    n_medium = 10 / 30
    # at the largest token budget both routers answer every solvable query: the one that
    # prices tokens runs the early-stopping vote on them, the other parallel voting
    top = table[table["axis"] == "tokens"].iloc[-1]
    assert top["tokens_accuracy"] == pytest.approx(2 / 3)
    assert top["latency_accuracy"] == pytest.approx(2 / 3)
    assert top["tokens_mix"][SEQUENTIAL] == pytest.approx(n_medium)
    assert top["latency_mix"][PARALLEL] == pytest.approx(n_medium)
    assert PARALLEL not in top["tokens_mix"] and SEQUENTIAL not in top["latency_mix"]
    assert top["mix_difference"] == pytest.approx(n_medium)
    # a token budget under parallel voting's cost: only the token-aware router still
    # answers the medium queries
    low = table[(table["axis"] == "tokens") & (table["budget"] < 160)
                & (table["budget"] > 84)].iloc[0]
    assert low["tokens_accuracy"] == pytest.approx(2 / 3)
    assert low["latency_accuracy"] == pytest.approx(1 / 3)
    # under a latency budget the early-stopping vote is too slow for both: each router's
    # best setting within it is cost-blind (lambda = 0) and runs parallel voting
    top = table[table["axis"] == "latency"].iloc[-1]
    assert top["tokens_mix"][PARALLEL] == pytest.approx(n_medium)
    assert top["mix_difference"] == pytest.approx(0.0)
    # a router's point never spends more than the budget on the budget's axis
    for _, row in table.iterrows():
        col = "mean_tokens" if row["axis"] == "tokens" else "mean_latency_s"
        for router in ("tokens", "latency"):
            if np.isfinite(row[f"{router}_accuracy"]):
                assert row[f"{router}_{col}"] <= row["budget"] * (1 + 1e-9)
                assert sum(row[f"{router}_mix"].values()) == pytest.approx(1.0)


def test_best_point_within_budget_is_read_from_the_sweep(report):
    rep, _ = report
    budget = 200.0
    table = matched_budget_mixes(rep, budgets={"tokens": [budget]})
    row = table.iloc[0]
    for router in ("tokens", "latency"):
        points = rep.adaptive[router]
        fits = points[points["mean_tokens"] <= budget]
        assert row[f"{router}_accuracy"] == pytest.approx(fits["accuracy"].max())
        best = fits[fits["accuracy"] == fits["accuracy"].max()]
        assert row[f"{router}_mean_tokens"] == pytest.approx(best["mean_tokens"].min())


def test_a_budget_nothing_fits_gives_nan_and_says_so(report):
    rep, _ = report
    table = matched_budget_mixes(rep, budgets={"latency": [0.5]})
    row = table.iloc[0]
    assert np.isnan(row["mix_difference"]) and row["tokens_mix"] == {}
    assert np.isnan(row["latency_accuracy"]) and np.isnan(row["tokens_accuracy"])
    assert mix_sentences(table) == ["At mean latency <= 0.50 s, neither router has a setting "
                                    "within the budget."]


def test_bad_budget_axis_is_refused(report):
    rep, _ = report
    with pytest.raises(ValueError, match="'tokens' and 'latency'"):
        matched_budget_mixes(rep, budgets={"dollars": [1.0]})


def test_sentences_name_both_mixes_where_they_differ(report):
    rep, _ = report
    table = matched_budget_mixes(rep)
    text = mix_sentences(table)
    differ = table[table["mix_difference"] >= 0.10]
    assert len(differ) >= 2
    assert sum("routed differently" in t for t in text) == len(differ)
    first = next(t for t in text if "routed differently" in t)
    assert "latency-aware router runs" in first and "token-aware router runs" in first
    # a threshold above every difference: no budget differs, one sentence says they agree
    agree = mix_sentences(table.dropna(subset=["mix_difference"]), threshold=1.01)
    assert len(agree) == 1 and "agree" in agree[0]


def test_report_shows_the_comparison_in_every_output(report):
    rep, out = report
    assert "token-aware against latency-aware router at matched budgets" in rep.summary()
    assert "routed differently" in rep.summary()
    md = (out / "report.md").read_text()
    assert "strategy_mix_matched.png" in md and "routed differently" in md
    assert (out / "strategy_mix_matched.png").read_bytes()[:8] == PNG_SIGNATURE
    metrics = json.loads((out / "metrics.json").read_text())
    rows = metrics["matched_budget_mixes"]
    assert len(rows) == len(rep.matched_mixes)
    assert set(rows[-1]["tokens_mix"]) <= set(rep.strategies)


def test_display_draws_two_bars_per_budget(report):
    from matplotlib.figure import Figure

    rep, _ = report
    disp = MatchedMixDisplay.from_report(rep)
    fig = Figure()
    axes = [fig.add_subplot(2, 1, k + 1) for k in range(2)]
    assert disp.plot(ax=axes) is disp and disp.figure_ is fig
    n_budgets = (disp.table["axis"] == "tokens").sum()
    assert len(axes[0].get_xticks()) == 2 * n_budgets
    # each drawn bar stack sums to one
    tops = {}
    for patch in axes[0].patches:
        x = round(patch.get_x() + patch.get_width() / 2, 3)
        tops[x] = max(tops.get(x, 0.0), patch.get_y() + patch.get_height())
    np.testing.assert_allclose(list(tops.values()), 1.0)
    with pytest.raises(ValueError, match="Axes"):
        MatchedMixDisplay.from_report(rep).plot(ax=axes[:1])
