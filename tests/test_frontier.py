"""Tests of ttcrouter.frontier on point sets whose frontier is known by hand."""

import numpy as np
import pytest

from ttcrouter.frontier import (
    bootstrap_frontier_difference,
    budget_grid,
    compare_frontiers,
    dominated,
    frontier_at,
    frontier_auc,
    lambda_grid,
    pareto_frontier,
    upper_envelope,
)

# cost, accuracy: point 2 (cost 3, acc 0.3) is beaten by point 1 (cheaper, more accurate)
COST = [1.0, 2.0, 3.0, 4.0]
ACC = [0.2, 0.5, 0.3, 0.9]


def test_upper_envelope_and_frontier_at_agree():
    c, a = upper_envelope([3.0, 1.0, 4.0, 2.0], [0.3, 0.2, 0.9, 0.5])
    np.testing.assert_array_equal(c, COST)
    np.testing.assert_array_equal(a, [0.2, 0.5, 0.5, 0.9])
    # reading the envelope at each point's cost gives the step values
    np.testing.assert_array_equal(frontier_at(COST, ACC, c), a)
    at = frontier_at(COST, ACC, [0.5, 2.5, 100.0])
    assert np.isnan(at[0])  # nothing fits under the cheapest point
    np.testing.assert_array_equal(at[1:], [0.5, 0.9])


def test_frontier_at_tolerates_rounding_of_equal_costs():
    # a mean cost equal on paper may differ in its last bits
    assert frontier_at([0.1 + 0.2], [0.7], [0.3])[0] == 0.7
    assert np.isnan(frontier_at([0.31], [0.7], [0.3])[0])


def test_pareto_frontier_skips_dominated_and_tied_points():
    assert pareto_frontier(COST, ACC).tolist() == [0, 1, 3]
    # equal accuracy at a higher cost is not on the frontier; the cheaper one is
    assert pareto_frontier([1.0, 2.0], [0.5, 0.5]).tolist() == [0]
    with pytest.raises(ValueError, match="differ in length"):
        pareto_frontier([1.0, 2.0], [0.5])
    with pytest.raises(ValueError, match="NaN"):
        pareto_frontier([1.0, np.nan], [0.5, 0.6])


def test_frontier_auc_is_the_mean_of_the_step_function():
    # steps: 0.2 on [1, 2), 0.5 on [2, 4), 0.9 at 4
    assert frontier_auc(COST, ACC) == pytest.approx((0.2 + 2 * 0.5) / 3)
    # beyond the dearest point the last accuracy holds; below the cheapest it is 0
    assert frontier_auc(COST, ACC, cost_range=(0.0, 5.0)) == pytest.approx(
        (0 + 0.2 + 2 * 0.5 + 0.9) / 5)
    log = frontier_auc(COST, ACC, log_cost=True)
    assert log == pytest.approx((0.2 * np.log10(2) + 0.5 * np.log10(2)) / np.log10(4))
    with pytest.raises(ValueError, match="positive"):
        frontier_auc([0.0, 1.0], [0.1, 0.2], log_cost=True)


def test_dominated_with_ties_and_unknown_costs():
    means = np.array([
        [0.5, 10.0, 1.0],   # tied with the next row: neither dominates the other
        [0.5, 10.0, 1.0],
        [0.4, 10.0, 1.0],   # less accurate at the same costs: dominated
        [0.6, 20.0, 0.5],   # dearer in tokens, cheaper in latency: not dominated
        [0.5, 10.0, 2.0],   # same accuracy and tokens, more latency: dominated
    ])
    np.testing.assert_array_equal(dominated(means), [False, False, True, False, True])
    # a cost column with a NaN is not known and is ignored
    with_nan = means.copy()
    with_nan[0, 2] = np.nan
    np.testing.assert_array_equal(dominated(with_nan), [False, False, True, False, False])
    # without any known cost nothing is dominated
    assert not dominated([[0.5, np.nan], [0.9, np.nan]]).any()


def test_budget_grid():
    np.testing.assert_allclose(budget_grid([1.0, 16.0, 4.0]), [1, 2, 4, 8, 16])
    np.testing.assert_allclose(budget_grid([0.0, 4.0], n_budgets=3), [0, 2, 4])
    np.testing.assert_array_equal(budget_grid([3.0, 3.0]), [3.0])


def test_lambda_grid_both_shapes():
    T = np.array([[100.0, 300.0], [100.0, 500.0]])  # mean costs 100 and 400: spread 300
    g = lambda_grid(T, 5)
    assert g[0] == 0 and len(g) == 5
    np.testing.assert_allclose(g[1:], np.geomspace(1e-3 / 300, 10 / 300, 4))
    assert lambda_grid(None, 5).tolist() == [0.0]
    assert lambda_grid(np.ones((3, 2)), 5).tolist() == [0.0]
    # evaluate's grid: 0, a log grid, and a penalty at which the cheapest strategy wins
    e = lambda_grid(T, 7, high=30.0, cheapest_wins=True)
    assert len(e) == 7 and e[0] == 0 and e[-1] == pytest.approx(1e6 / 300)
    np.testing.assert_allclose(e[1:-1], np.geomspace(1e-3, 30.0, 5) / 300)
    # even one oracle accuracy difference of 1 cannot beat the last penalty
    assert e[-1] * 300 > 1
    # a constant cost still gives a grid, scaled by the cost itself
    flat = lambda_grid(np.full((2, 3), 50.0), 5, cheapest_wins=True)
    assert flat[-1] == pytest.approx(1e6 / 50)


def test_compare_frontiers():
    sc, sa = [1.0, 2.0, 4.0], [0.2, 0.5, 0.9]
    above = compare_frontiers(sc, sa, [1.0, 2.0, 4.0], [0.3, 0.6, 0.9])
    assert above["at_or_above_everywhere"] and above["below_at_budgets"] == []
    below = compare_frontiers(sc, sa, [2.0, 4.0], [0.6, 0.8])
    assert not below["at_or_above_everywhere"]
    assert below["below_at_budgets"] == [1.0, 4.0]
    assert below["out_of_reach_budgets"] == [1.0]  # under the router's cheapest point
    assert below["largest_shortfall"] == pytest.approx(0.1)
    assert below["min_cost"] == 2.0


def test_bootstrap_of_a_router_clearly_better():
    # data from another seed than the resamples': the same seed would draw both from one
    # random stream
    rng = np.random.default_rng(42)
    n = 300
    # strategy 1 is right where strategy 0 is wrong and vice versa; same cost each
    right0 = rng.random(n) < 0.5
    Y = np.column_stack([right0, ~right0]).astype(float)
    C = np.tile([1.0, 1.0], (n, 1))
    best = np.argmax(Y, axis=1)[None, :]  # a router that always picks the right one
    diffs = bootstrap_frontier_difference(best, Y, C, n_boot=200, random_state=0)
    assert diffs.shape == (200, 2)
    # router accuracy 1 against the better static strategy, which is right about half of
    # the time (at least half: the two are complementary), in every resample
    assert (diffs > 0.3).all() and (diffs <= 0.5 + 1e-12).all()
    lo, hi = np.percentile(diffs, [5, 95], axis=0)
    assert (lo > 0).all()
    # the same seed gives the same resamples
    again = bootstrap_frontier_difference(best, Y, C, n_boot=200, random_state=0)
    np.testing.assert_array_equal(diffs, again)
    # a router whose settings are the static strategies differs by exactly 0
    static = np.stack([np.zeros(n, dtype=int), np.ones(n, dtype=int)])
    same = bootstrap_frontier_difference(static, Y, C, n_boot=50, random_state=1)
    assert (same == 0).all()
