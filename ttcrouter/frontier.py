"""The accuracy-cost frontier: envelope, dominance, area, budget and lambda grids, bootstrap.

Every frontier computation of ttcrouter lives here, and :mod:`ttcrouter.metrics`,
:mod:`ttcrouter.router`, :mod:`ttcrouter.tuning` and :mod:`ttcrouter.evaluation` call it.
A frontier is read as the upper envelope of (mean cost, accuracy) points: at a budget ``B``,
the best accuracy among the points with cost ``<= B`` (:func:`frontier_at`); below the
cheapest point nothing fits.

The paired bootstrap (:func:`bootstrap_frontier_difference`) stays a numpy computation
rather than :func:`scipy.stats.bootstrap`, for two reasons:

- the numbers. It reweights the test queries with multinomial counts drawn from
  ``numpy.random.default_rng(random_state)``; scipy draws resample indices
  (``rng.integers``), a different random stream, so every interval of a saved evaluation
  (``frontier_check[axis]["difference_ci90"]`` in ``metrics.json``) would change;
- the statistic. Each resample moves the budgets themselves (every static strategy's
  resampled mean cost) and reads both frontiers, router and static, at them. scipy
  treats extra dimensions of a sample as independent batches, so the joint statistic over
  the (lambda, strategy) columns is only expressible by resampling query indices and
  indexing inside the statistic, and scipy's intervals would then be computed on top of a
  distribution we already have.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "pareto_frontier",
    "upper_envelope",
    "frontier_at",
    "frontier_auc",
    "dominated",
    "budget_grid",
    "lambda_grid",
    "compare_frontiers",
    "bootstrap_frontier_difference",
]

# A cost "fits" a budget up to rounding: mean costs that are equal on paper may differ in
# their last bits after averaging in another order.
_REL_TOL = 1e-12
_ABS_TOL = 1e-12


def _fits(cost, budget):
    return cost <= budget * (1 + _REL_TOL) + _ABS_TOL


def pareto_frontier(costs, accs):
    """Indices of the points on the cost/accuracy Pareto frontier, by increasing cost.

    A point is on the frontier when no other point has lower-or-equal cost and strictly
    higher accuracy (or equal accuracy at strictly lower cost).

    Parameters
    ----------
    costs, accs : array-like of shape (n_points,)

    Returns
    -------
    ndarray of int
    """
    c = np.asarray(costs, dtype=float).ravel()
    a = np.asarray(accs, dtype=float).ravel()
    if c.shape != a.shape:
        raise ValueError(f"costs and accs differ in length: {c.shape[0]} vs {a.shape[0]}.")
    if np.isnan(c).any() or np.isnan(a).any():
        raise ValueError("costs and accs must not contain NaN.")
    order = np.lexsort((-a, c))  # by cost, then best accuracy first
    keep, best = [], -np.inf
    for i in order:
        if a[i] > best:
            keep.append(i)
            best = a[i]
    return np.asarray(keep, dtype=np.intp)


def upper_envelope(cost, accuracy):
    """Step coordinates of the upper envelope through the points, sorted by cost.

    Parameters
    ----------
    cost, accuracy : array-like of shape (n_points,)

    Returns
    -------
    cost, accuracy : ndarray of shape (n_points,)
        Costs in increasing order (stable for ties) and the best accuracy at or below each;
        draw with ``ax.step(cost, accuracy, where="post")``.
    """
    order = np.argsort(cost, kind="stable")
    return np.asarray(cost)[order], np.maximum.accumulate(np.asarray(accuracy)[order])


def frontier_at(cost, accuracy, budgets):
    """Upper envelope of (cost, accuracy) points: best accuracy with cost <= budget.

    Parameters
    ----------
    cost, accuracy : array-like of shape (n_points,)
    budgets : array-like of shape (n_budgets,)

    Returns
    -------
    ndarray of shape (n_budgets,)
        NaN where no point fits within the budget.
    """
    cost = np.asarray(cost, dtype=float)
    accuracy = np.asarray(accuracy, dtype=float)
    budgets = np.atleast_1d(np.asarray(budgets, dtype=float))
    out = np.full(budgets.shape, np.nan)
    for i, b in enumerate(budgets):
        ok = _fits(cost, b)
        if ok.any():
            out[i] = accuracy[ok].max()
    return out


def frontier_auc(costs, accs, *, cost_range=None, log_cost=False):
    """Area under the Pareto frontier (a step function), normalized by the cost range.

    The frontier's accuracy is held constant from each frontier point to the next; below
    the cheapest point it counts as 0. With ``log_cost=True`` the cost axis is log10.

    Parameters
    ----------
    costs, accs : array-like of shape (n_points,)
    cost_range : (float, float), optional
        Integration range; defaults to (min cost, max cost).
    log_cost : bool, default=False

    Returns
    -------
    float
        Mean frontier accuracy over the range, in [0, 1] for accuracies in [0, 1].
    """
    c = np.asarray(costs, dtype=float).ravel()
    a = np.asarray(accs, dtype=float).ravel()
    idx = pareto_frontier(c, a)
    fc, fa = c[idx], a[idx]
    if log_cost:
        if (c <= 0).any():
            raise ValueError("log_cost=True needs positive costs.")
        fc = np.log10(fc)
    lo, hi = (fc[0], fc[-1]) if cost_range is None else (
        np.log10(cost_range[0]) if log_cost else cost_range[0],
        np.log10(cost_range[1]) if log_cost else cost_range[1])
    if hi <= lo:
        return float(fa[-1]) if len(fa) else 0.0
    edges = np.clip(np.append(fc, hi), lo, hi)
    area = float(np.sum(np.diff(edges) * fa))
    return area / (hi - lo)


def dominated(means):
    """Which rows of ``(accuracy, cost, ...)`` means another row dominates.

    Row ``j`` is dominated when some row has accuracy >= and every cost <= (cost columns
    holding a NaN, a cost not known, are ignored), and is strictly better on one of them.
    Exact ties dominate nothing, so strategies with identical runs both stay. Without any
    cost column nothing is dominated: a less accurate strategy may still be the cheaper one.

    Parameters
    ----------
    means : array-like of shape (n_strategies, 1 + n_costs)
        Accuracy first, then the costs.

    Returns
    -------
    ndarray of bool of shape (n_strategies,)
    """
    means = np.asarray(means, dtype=float)
    acc, costs = means[:, 0], means[:, 1:]
    costs = costs[:, ~np.isnan(costs).any(axis=0)]
    n = len(acc)
    out = np.zeros(n, dtype=bool)
    if costs.shape[1] == 0:
        return out
    for j in range(n):
        no_worse = (acc >= acc[j]) & (costs <= costs[j]).all(axis=1)
        better = (acc > acc[j]) | (costs < costs[j]).any(axis=1)
        out[j] = bool((no_worse & better).any())
    return out


def budget_grid(costs, n_budgets=5):
    """Budgets spread over the range of the points' costs, log-spaced when it can be.

    Parameters
    ----------
    costs : array-like of shape (n_points,)
        Mean costs, e.g. of the static strategies.
    n_budgets : int, default=5

    Returns
    -------
    ndarray of shape (n_budgets,), or ``[max cost]`` when every cost is the same
    """
    costs = np.asarray(costs, dtype=float)
    lo, hi = float(costs.min()), float(costs.max())
    if lo > 0 and hi > lo:
        return np.geomspace(lo, hi, n_budgets)
    return np.linspace(lo, hi, n_budgets) if hi > lo else np.array([hi])


def lambda_grid(costs, n_values=10, *, low=1e-3, high=10.0, cheapest_wins=False):
    """A grid of lambdas for one cost: 0 and a log grid scaled by the cost spread.

    The spread is the range of the strategies' mean costs; the nonzero lambdas go from
    ``low / spread`` (cost differences are worth a thousandth of accuracy) to
    ``high / spread`` (they dominate predicted accuracy differences).

    Parameters
    ----------
    costs : array-like of shape (n_queries, n_strategies) or None
    n_values : int, default=10
        Number of values, 0 included (and the last value, with ``cheapest_wins``).
    low, high : float, default=1e-3, 10.0
        Ends of the log grid, in accuracy units per spread of cost.
    cheapest_wins : bool, default=False
        Add a last lambda, ``1e6 / spread``, at which even a per-query oracle (whose
        accuracy differences reach 1) picks the cheapest strategy, so that every curve
        reaches the cheap end of the cost axis; :func:`ttcrouter.evaluate` sweeps this grid
        (``low=1e-3, high=30, n_values=101``). A constant cost then still gives a grid
        (scaled by the largest mean cost, or 1), instead of ``[0.0]``.

    Returns
    -------
    ndarray of shape (n_values,)
        Just ``[0.0]`` when ``costs`` is None, ``n_values <= 1``, or (without
        ``cheapest_wins``) every strategy has the same mean cost.
    """
    if costs is None or n_values <= 1:
        return np.zeros(1)
    means = np.asarray(costs, dtype=float).mean(axis=0)
    if cheapest_wins:
        spread = float(np.nanmax(means) - np.nanmin(means))
        if not np.isfinite(spread) or spread <= 0:
            spread = float(np.nanmax(np.abs(means))) or 1.0
        # divided after spacing, as evaluate always did: the same floats as before
        return np.r_[0.0, np.geomspace(low, high, n_values - 2), 1e6] / spread
    spread = float(means.max() - means.min())
    if not spread > 0:  # NaN too
        return np.zeros(1)
    return np.concatenate([[0.0], np.logspace(np.log10(low / spread), np.log10(high / spread),
                                              n_values - 1)])


def compare_frontiers(static_cost, static_accuracy, cost, accuracy):
    """Is a frontier at or above the static frontier at every budget in the static range?

    The static envelope only steps up at static costs and any envelope never decreases, so
    comparing at every static cost decides "at every budget" between the cheapest and the
    dearest static strategy.

    Parameters
    ----------
    static_cost, static_accuracy : array-like of shape (n_strategies,)
        The static strategies' points.
    cost, accuracy : array-like of shape (n_points,)
        The points of the frontier to check (e.g. a router's lambda sweep).

    Returns
    -------
    dict
        ``at_or_above_everywhere``; ``below_at_budgets`` (static costs where it is below,
        including those under its cheapest point); ``largest_shortfall`` (largest accuracy
        gap where it has a point within the budget, else 0); ``out_of_reach_budgets``
        (static costs under its cheapest point); ``min_cost``; and ``budgets``,
        ``static_at``, ``at`` (both envelopes at every static cost, NaN out of reach).
    """
    sc, sa = np.asarray(static_cost, dtype=float), np.asarray(static_accuracy, dtype=float)
    rc, ra = np.asarray(cost, dtype=float), np.asarray(accuracy, dtype=float)
    knots = np.unique(sc)
    s_k, r_k = frontier_at(sc, sa, knots), frontier_at(rc, ra, knots)
    below = ~(np.nan_to_num(r_k, nan=-np.inf) >= s_k - 1e-12)
    reach = below & np.isfinite(r_k)
    return {
        "at_or_above_everywhere": bool(not below.any()),
        "below_at_budgets": knots[below].tolist(),
        "largest_shortfall": float(np.max(s_k[reach] - r_k[reach])) if reach.any() else 0.0,
        # under the cheapest point there is nothing to compare: not "less accurate"
        "out_of_reach_budgets": knots[below & ~np.isfinite(r_k)].tolist(),
        "min_cost": float(rc.min()),
        "budgets": knots,
        "static_at": s_k,
        "at": r_k,
    }


def bootstrap_frontier_difference(choice, Y, C, *, n_boot=1000, random_state=0):
    """Paired bootstrap over queries of (routed frontier - static frontier) at static costs.

    Each resample reweights the queries with multinomial counts. In it, every static
    strategy's resampled mean cost is a budget, at which both frontiers are read from the
    resampled means of the same queries (nothing within the budget counts as accuracy 0).

    Parameters
    ----------
    choice : array-like of int of shape (n_settings, n_queries)
        The strategy (column of ``Y``) picked for each query at each router setting
        (e.g. each lambda of a sweep).
    Y, C : array-like of shape (n_queries, n_strategies)
        Realized accuracy and one realized cost of every strategy on every query.
    n_boot : int, default=1000
        Resamples.
    random_state : int or None, default=0
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    ndarray of shape (n_boot, n_strategies)
        Router minus static accuracy at the budget of each static strategy.
    """
    Y, C = np.asarray(Y, dtype=float), np.asarray(C, dtype=float)
    choice = np.asarray(choice)
    n_q = Y.shape[0]
    rows = np.arange(n_q)[None, :]
    RA, RC = Y[rows, choice], C[rows, choice]
    W = np.random.default_rng(random_state).multinomial(n_q, np.full(n_q, 1.0 / n_q),
                                                        size=n_boot)
    ra, rc = W @ RA.T / n_q, W @ RC.T / n_q
    sa, sc = W @ Y / n_q, W @ C / n_q
    out = np.empty((n_boot, Y.shape[1]))
    for j in range(Y.shape[1]):
        b = sc[:, j:j + 1]
        r = np.where(_fits(rc, b), ra, 0.0).max(axis=1)
        st = np.where(_fits(sc, b), sa, 0.0).max(axis=1)
        out[:, j] = r - st
    return out
