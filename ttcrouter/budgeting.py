"""Make a fitted router meet a budget: batch allocation, lambda calibration on unlabelled queries.

:func:`allocate_batch` spends one budget across a batch (the knapsack of
:func:`ttcrouter.allocation.allocate`, reached through a Pipeline or a UtilityRouterCV);
:func:`calibrate_lambda` sets a router's price so that its own per-query choices meet a
target mean cost on unlabelled queries; :class:`BudgetedRun` is what
``RoutedExecutor.run_budgeted`` returns, and :func:`check_budget` checks its keywords before
any model loads. ``docs/allocation.md`` has the details.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils import check_scalar

__all__ = ["allocate_batch", "calibrate_lambda", "predicted_mean_costs", "unwrap_router",
           "BudgetedRun", "check_budget", "BUDGET_KEYWORDS"]

#: Budget keywords of ``UtilityRouter.allocate`` (and ``RoutedExecutor.run_budgeted``).
BUDGET_KEYWORDS = ("max_total_tokens", "max_mean_tokens", "max_total_latency",
                   "max_mean_latency", "max_query_latency", "concurrency")


@dataclass
class BudgetedRun:
    """A batch run within one budget (``RoutedExecutor.run_budgeted``), predicted and realised.

    Attributes
    ----------
    results : list of RoutedResult
        In the order of the questions.
    allocation : AllocationResult
        What the router's ``allocate`` chose and predicted (``choice`` indexes the router's
        ``strategies_``).
    wall_clock_s : float
        Measured seconds of running the whole batch (strategies run one group after
        another, each group batched), without routing, loading or engine start.
    route_s : float
        Seconds of allocating (embedding and knapsack).
    """

    results: list
    allocation: object
    wall_clock_s: float
    route_s: float

    @property
    def budget(self) -> dict:
        """The constraints solved (see ``AllocationResult.budget``)."""
        return dict(self.allocation.budget)

    @property
    def realised_tokens(self) -> int:
        """Generated tokens of the batch, all questions together."""
        return int(sum(r.tokens for r in self.results))

    @property
    def predicted_makespan_s(self):
        """Predicted wall clock: list scheduling with ``concurrency`` workers, else the
        predicted latencies' sum (sequential); None without predicted latency."""
        a = self.allocation
        return a.makespan if a.makespan is not None else a.latency

    @property
    def realised_over_budget(self) -> dict:
        """Realised / budget: ``tokens`` (total tokens) and ``latency`` (wall clock)."""
        b = self.allocation.budget
        out = {}
        if b.get("tokens"):
            out["tokens"] = self.realised_tokens / b["tokens"]
        if b.get("latency"):
            out["latency"] = self.wall_clock_s / b["latency"]
        return out

    def summary(self) -> dict:
        """One JSON-ready record: budget, predicted and realised totals, their ratio."""
        a = self.allocation
        return {
            "n_questions": len(self.results),
            "budget": _plain(self.budget),
            "predicted_tokens": a.tokens,
            "realised_tokens": self.realised_tokens,
            "predicted_latency_s": a.latency,
            "predicted_makespan_s": self.predicted_makespan_s,
            "wall_clock_s": self.wall_clock_s,
            "realised_over_budget": self.realised_over_budget,
            "predicted_accuracy": a.mean_accuracy,
            "route_s": self.route_s,
            "failed": sum(r.error is not None for r in self.results),
        }


def check_budget(budget: dict) -> dict:
    """Check the keywords of a batch budget (names, positive numbers), before any model loads.

    Raises
    ------
    ValueError
        No budget given, an unknown keyword, or a value that is not a number > 0
        (``concurrency``: an int >= 1).
    """
    unknown = sorted(set(budget) - set(BUDGET_KEYWORDS))
    if unknown:
        raise ValueError(f"Unknown budget keyword(s) {unknown}: use {list(BUDGET_KEYWORDS)}.")
    given = {k: v for k, v in budget.items() if v is not None}
    if not set(given) - {"concurrency"}:
        raise ValueError("Give a budget: max_total_tokens, max_mean_tokens, max_total_latency, "
                         "max_mean_latency or max_query_latency.")
    for k, v in given.items():
        if k == "concurrency":
            check_scalar(v, k, Integral, min_val=1)
        else:
            check_scalar(v, k, Real, min_val=0, include_boundaries="neither")
    return given


def _plain(d: dict) -> dict:
    return {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in d.items()}


def unwrap_router(estimator, X):
    """The UtilityRouter inside ``estimator`` and the features it reads.

    Walks a Pipeline (transforming ``X`` through every step but the last) and a
    UtilityRouterCV (to its ``best_estimator_``).

    Returns
    -------
    router : the innermost estimator
    X : its input
    chain : list, the objects walked through, outermost first
    """
    chain = [estimator]
    while True:
        est = chain[-1]
        if isinstance(est, Pipeline):
            if len(est) > 1:
                X = est[:-1].transform(X)
            chain.append(est[-1])
        elif hasattr(est, "best_estimator_"):
            chain.append(est.best_estimator_)
        else:
            return est, X, chain


def allocate_batch(estimator, X, **budget):
    """:meth:`UtilityRouter.allocate` for a router, a UtilityRouterCV or a Pipeline ending in one.

    A Pipeline has no ``allocate``: ``X`` (e.g. query strings) goes through every step but
    the last (``transform``), then the final router allocates with the keywords ``budget``
    (``max_total_tokens=...``, see :meth:`UtilityRouter.allocate`) and returns as it does.
    """
    router, Xt, _ = unwrap_router(estimator, X)
    return router.allocate(Xt, **budget)


def predicted_mean_costs(router, X) -> dict:
    """Mean predicted tokens and latency of the router's own per-query choices on ``X``.

    What :func:`calibrate_lambda` brings to its target: ``{"tokens": t, "latency": l}``.
    ``router`` and ``X`` as in :func:`calibrate_lambda`.
    """
    inner, Xt, _ = unwrap_router(router, X)
    idx = np.asarray(inner.predict_index(Xt))
    rows = np.arange(len(idx))
    T, L = (np.asarray(M, dtype=float)[rows, idx] for M in inner.predict_costs(Xt))
    return {"tokens": float(T.mean()), "latency": float(L.mean())}


def calibrate_lambda(router, X, *, target_mean_tokens=None, target_mean_latency=None,
                     copy=True, max_iter=100):
    """Set a router's lambda so its predicted mean cost on unlabelled ``X`` meets a target.

    The mean predicted cost of the router's per-query choice falls as its price rises;
    bisection (on predictions made once) finds the smallest price with mean cost <= target,
    the closest to it. With both targets both lambdas scale along one direction (the
    router's ratio when both are > 0, else 1 / each cost's spread); each cost need not fall
    monotonically then, so the scale found meets both but may not be the smallest.

    Parameters
    ----------
    router : fitted UtilityRouter, UtilityRouterCV or Pipeline ending in one
    X : unlabelled queries (raw input of the pipeline, or router features)
    target_mean_tokens, target_mean_latency : float, default=None
        Target mean predicted tokens / latency (seconds) per query.
    copy : bool, default=True
        Return a deep copy with the lambdas set; False sets them on ``router`` itself.
        Lambdas only enter prediction, so the fitted state stays valid (a UtilityRouterCV's
        ``best_lambda_*_`` follow).
    max_iter : int, default=100
        Bisection steps.

    Returns
    -------
    router : the (copied) estimator with the lambdas set
    """
    if target_mean_tokens is None and target_mean_latency is None:
        raise ValueError("Give target_mean_tokens and/or target_mean_latency.")
    out = deepcopy(router) if copy else router
    inner, Xt, chain = unwrap_router(out, X)
    means = inner.training_means_
    U0 = np.asarray(inner.predict_utility(Xt), dtype=float)
    T, L = (np.asarray(M, dtype=float) for M in inner.predict_costs(Xt))
    lam0 = np.array([inner.lambda_tokens, inner.lambda_latency], dtype=float)
    targets = np.array([np.inf if target_mean_tokens is None else target_mean_tokens,
                        np.inf if target_mean_latency is None else target_mean_latency])
    for t, what in zip((target_mean_tokens, target_mean_latency), ("tokens", "latency")):
        if t is not None:
            check_scalar(t, f"target_mean_{what}", Real, min_val=0)
            if means[what].isna().all():
                raise ValueError(f"The router was fitted without {what}: it cannot price them.")
    rows = np.arange(len(U0))
    spread = np.array([np.ptp(means[w].to_numpy()) for w in ("tokens", "latency")])
    spread = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)
    both = np.isfinite(targets).all()
    if both:
        d = lam0 / lam0.sum() if (lam0 > 0).all() else 1.0 / spread
    else:
        d = np.array([1.0, 0.0]) if np.isfinite(targets[0]) else np.array([0.0, 1.0])
        d = d / spread
    base = lam0 * (d == 0)  # the lambda not calibrated keeps its value

    def costs(t):
        lt, ll = base + t * d
        U = U0 + (lam0[0] - lt) * T + (lam0[1] - ll) * L
        c = np.argmax(U, axis=1)
        return np.array([T[rows, c].mean(), L[rows, c].mean()])

    def ok(t):
        return bool((costs(t) <= targets).all())

    if not ok(0.0):
        hi = 1e-3
        for _ in range(200):
            if ok(hi):
                break
            hi *= 2
        else:
            routable = np.isfinite(U0[0])
            mins = [np.where(routable, M, np.inf).min(axis=1).mean() for M in (T, L)]
            raise ValueError(
                f"No lambda meets the target (mean tokens {target_mean_tokens}, mean latency "
                f"{target_mean_latency}): the cheapest routable strategy per query predicts "
                f"mean tokens {mins[0]:.6g} and mean latency {mins[1]:.6g}s."
            )
        lo = 0.0
        for _ in range(max_iter):
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if ok(mid) else (mid, hi)
        t = hi
    else:
        t = 0.0
    lt, ll = (float(v) for v in base + t * d)
    inner.set_params(lambda_tokens=lt, lambda_latency=ll)
    for obj in chain:
        if hasattr(obj, "best_lambda_tokens_"):
            obj.best_lambda_tokens_, obj.best_lambda_latency_ = lt, ll
    return out

