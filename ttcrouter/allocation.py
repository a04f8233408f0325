"""Spend one budget across a batch: pick one strategy per query under a total cost budget.

:func:`allocate` maximizes the total predicted accuracy of a batch subject to its predicted
total (or mean) tokens and/or latency staying within a budget, a multiple-choice knapsack over
matrices of predicted accuracy and cost. Making a fitted router (or a pipeline ending in one)
meet a budget is :mod:`ttcrouter.budgeting`'s job. ``docs/allocation.md`` has the details.

One budget: every query starts at its cheapest strategy; the upper concave hull of each
query in (cost, accuracy) is found for all queries at once (vectorized gift wrapping); the
hull segments of all queries are sorted by slope (accuracy per unit cost) and taken while
the budget holds, which is the exact LP optimum except for the one fractional query,
rounded down; later upgrades that still fit are then taken in the same order. Predicted cost
never exceeds the budget, and accuracy >= LP bound - one query's largest gain. Time
O(n k h + n k log(n k)), h <= k the largest hull size.

Two budgets: latency is priced by a multiplier found by bisection, each step solving the
token problem above on ``accuracy - mu * latency``; both budgets are always met (checked)
and ``upper_bound`` is the Lagrangian dual bound (certified). Not exact: the problem is
NP-hard even to satisfy, so the search may miss a feasible allocation and then raises.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_scalar

__all__ = ["AllocationResult", "allocate", "list_schedule_makespan"]

#: geometric grid of per-query latency caps tried for 1 < concurrency < n (see allocate)
N_CAPS = 8


@dataclass(frozen=True)
class AllocationResult:
    """What :func:`allocate` chose and what it predicts.

    Attributes
    ----------
    choice : ndarray of int of shape (n_queries,)
        Column (strategy index) chosen for each query.
    accuracy, tokens, latency : float
        Predicted totals of the chosen cells (tokens/latency None when not given).
    makespan : float or None
        Predicted wall clock of the batch run by ``concurrency`` workers with list
        scheduling in query order (None without ``concurrency``).
    budget : dict
        The constraints solved: total ``tokens`` and ``latency`` budgets (None when
        absent), ``query_latency`` (per-query cap) and ``concurrency``.
    lambda_tokens, lambda_latency : float
        Lagrange multipliers found (accuracy per token / per second); 0 when the budget
        does not bind. For a single budget, per-query routing at this price makes the
        same choice on every query but the rounded one.
    upper_bound : float
        LP (or Lagrangian dual) bound on the total predicted accuracy of any allocation
        meeting the budgets as solved; ``upper_bound - accuracy`` bounds the gap.
    """

    choice: np.ndarray
    accuracy: float
    tokens: float | None
    latency: float | None
    makespan: float | None
    budget: dict = field(default_factory=dict)
    lambda_tokens: float = 0.0
    lambda_latency: float = 0.0
    upper_bound: float = np.nan

    def _mean(self, total):
        return None if total is None else total / max(len(self.choice), 1)

    n_queries = property(lambda self: len(self.choice))
    mean_accuracy = property(lambda self: self._mean(self.accuracy))
    mean_tokens = property(lambda self: self._mean(self.tokens))
    mean_latency = property(lambda self: self._mean(self.latency))


# -- single constraint ---------------------------------------------------------------------

def _hulls(A, C, ok):
    """Upper concave hull of each row: ``(V, h)``, V[i, :h[i]+1] its vertex columns."""
    n, k = A.shape
    rows = np.arange(n)[:, None]
    # columns by cost (then accuracy, descending): argmax then breaks exact slope ties
    # toward the cheaper point, so collinear points stay separate, finer upgrades
    order = np.lexsort((-A, np.where(ok, C, np.inf)), axis=1) if k > 1 else np.zeros(
        (n, 1), dtype=np.intp)
    A, C, ok = A[rows, order], C[rows, order], ok[rows, order]
    V = np.zeros((n, k), dtype=np.intp)  # column 0 is the cheapest: the start
    h = np.zeros(n, dtype=np.intp)
    cur = np.zeros(n, dtype=np.intp)
    act = np.arange(n)
    for step in range(1, k):
        if act.size == 0:
            break
        full = act.size == n
        Ca, Aa, oka = (C, A, ok) if full else (C[act], A[act], ok[act])
        r = np.arange(act.size)
        dc = Ca - Ca[r, cur[act]][:, None]
        da = Aa - Aa[r, cur[act]][:, None]
        m = oka & (dc > 0) & (da > 0)
        slope = np.full(dc.shape, -np.inf)
        np.divide(da, dc, out=slope, where=m)
        j = slope.argmax(axis=1)
        has = m[r, j]
        act, j = act[has], j[has]
        V[act, step] = j
        cur[act] = j
        h[act] += 1
    return order[rows, V], h


def _solve_one(A, C, ok, budget):
    """Greedy LP rounding of one knapsack. Returns (choice, multiplier, lp_bound) or None."""
    n, k = A.shape
    rows = np.arange(n)
    V, h = _hulls(A, C, ok)
    base = C[rows, V[:, 0]]
    R = budget - base.sum()
    if R < 0:
        return None
    steps = np.arange(1, k)
    valid = steps[None, :] <= h[:, None]
    to, fr = V[:, 1:], V[:, :-1]
    dc = np.where(valid, C[rows[:, None], to] - C[rows[:, None], fr], 0.0)
    da = np.where(valid, A[rows[:, None], to] - A[rows[:, None], fr], 0.0)
    slope = np.full(dc.shape, -np.inf)
    np.divide(da, dc, out=slope, where=valid)
    # hull slopes fall along a row; enforce it against rounding so a row's upgrades sort
    # in order
    key = np.minimum.accumulate(slope, axis=1)[valid]
    q = np.broadcast_to(rows[:, None], valid.shape)[valid]
    dc, da, slope = dc[valid], da[valid], slope[valid]
    order = np.argsort(-key, kind="stable")
    q, dc, da, slope = q[order], dc[order], da[order], slope[order]

    value = A[rows, V[:, 0]].sum()
    cs = np.cumsum(dc)
    p = int(np.searchsorted(cs, R, side="right"))
    taken = [np.arange(p)]
    if p == len(dc):
        lam, bound = 0.0, value + da.sum()
    else:
        used = cs[p - 1] if p else 0.0
        lam = float(slope[p])
        bound = value + da[:p].sum() + (R - used) / dc[p] * da[p]
        taken.append(_fill(q, dc, p, R - used, n))
    taken = np.concatenate(taken)
    count = np.bincount(q[taken], minlength=n)
    choice = V[rows, count]
    # undo the last upgrades if float sums put the total a hair over the budget
    while C[rows, choice].sum() > budget and taken.size:
        count[q[taken[-1]]] -= 1
        taken = taken[:-1]
        choice = V[rows, count]
    return choice, lam, float(bound)


def _fill(q, dc, p, rest, n, max_passes=256):
    """Segments after the blocking one ``p`` taken by the sequential greedy (skip what
    does not fit; a query whose upgrade is skipped stops there), vectorized by passes."""
    cut = np.full(n, len(dc))  # a query's segments from this position on are out
    cut[q[p]] = p
    pos = np.arange(p + 1, len(dc))
    out = []
    for _ in range(max_passes):
        # an upgrade bigger than what is left never fits later either
        big = pos[dc[pos] > rest]
        np.minimum.at(cut, q[big], big)
        pos = pos[pos < cut[q[pos]]]
        if pos.size == 0:
            break
        cs = np.cumsum(dc[pos])
        m = int(np.searchsorted(cs, rest, side="right"))
        out.append(pos[:m])
        if m == pos.size:
            break
        rest -= cs[m - 1] if m else 0.0
        cut[q[pos[m]]] = pos[m]
        pos = pos[m + 1:]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.intp)


# -- validation ----------------------------------------------------------------------------

def _matrix(M, what, shape=None):
    M = np.asarray(M, dtype=float)
    if M.ndim != 2 or (shape is not None and M.shape != shape):
        want = "(n_queries, n_strategies)" if shape is None else str(shape)
        raise ValueError(f"{what} must have shape {want}, got {M.shape}.")
    if not np.isfinite(M).all():
        raise ValueError(f"{what} holds NaN or infinite values.")
    if what != "accuracy" and (M < 0).any():
        raise ValueError(f"{what} must not be negative.")
    return M


def _budget(total, mean, n, what):
    for v, name in ((total, f"max_total_{what}"), (mean, f"max_mean_{what}")):
        if v is not None:
            check_scalar(v, name, Real, min_val=0)
    budgets = [b for b in (total, None if mean is None else mean * n) if b is not None]
    return float(min(budgets)) if budgets else None


def _infeasible(what, unit, budget, minimum, n):
    return ValueError(
        f"No allocation meets the {what} budget of {budget:.6g}{unit} in total "
        f"({budget / max(n, 1):.6g}{unit} per query): even the cheapest allowed strategy on "
        f"every query predicts {minimum:.6g}{unit} in total ({minimum / max(n, 1):.6g}{unit} "
        f"per query), the minimum possible cost. Raise the budget to at least {minimum:.6g}."
    )


def list_schedule_makespan(latency, concurrency):
    """Wall clock of ``latency`` jobs run in order on ``concurrency`` workers, each job on
    the first worker to become free (list scheduling)."""
    lat = np.asarray(latency, dtype=float).ravel()
    if concurrency >= lat.size:
        return float(lat.max(initial=0.0))
    free = [0.0] * int(concurrency)
    for x in lat:
        heapq.heappush(free, heapq.heappop(free) + x)
    return float(max(free))


# -- the public solver ---------------------------------------------------------------------

def allocate(accuracy, tokens=None, latency=None, *, max_total_tokens=None,
             max_mean_tokens=None, max_total_latency=None, max_mean_latency=None,
             max_query_latency=None, concurrency=None, allowed=None, max_iter=30):
    """Choose one strategy per query to maximize total predicted accuracy within a budget.

    Parameters
    ----------
    accuracy : array-like of shape (n_queries, n_strategies)
        Predicted accuracy of every (query, strategy).
    tokens, latency : array-like of shape (n_queries, n_strategies), default=None
        Predicted tokens and latency (seconds); needed by the matching budget.
    max_total_tokens, max_mean_tokens : float, default=None
        Budget on the batch's total (or mean per query) predicted tokens. With both, the
        tighter applies.
    max_total_latency, max_mean_latency : float, default=None
        Job-level latency budget (seconds) under the execution model ``concurrency``:
        None or 1, sequential: the latencies' sum must fit. ``K >= n_queries``: all at
        once, so the budget caps each query (exact). ``1 < K < n_queries``: K workers,
        list scheduling in any order; Graham's bound ``sum/K + (1 - 1/K) * max`` is made
        to fit (for a per-query cap ``c``, the best of 8, ``sum <= K*B - (K-1)*c``), so
        the predicted makespan is guaranteed within the budget (conservatively).
    max_query_latency : float, default=None
        Per-query latency cap: strategies predicted slower are excluded (a filter).
    concurrency : int, default=None
        Number of concurrent requests of the execution model above.
    allowed : array-like of bool, shape (n_strategies,) or like accuracy, default=None
        Strategies a query may use (e.g. the router's unpruned ones); None: all.
    max_iter : int, default=30
        Bisection steps on the latency price when tokens and latency are both budgeted.

    Returns
    -------
    AllocationResult
        ``choice`` holds the column per query.

    Raises
    ------
    ValueError
        When no allocation fits: the message gives the minimum possible cost.

    Examples
    --------
    >>> import numpy as np
    >>> from ttcrouter import allocate
    >>> A = np.array([[0.5, 0.9], [0.8, 0.85]])
    >>> T = np.array([[10.0, 100.0], [10.0, 100.0]])
    >>> allocate(A, T, max_total_tokens=120).choice
    array([1, 0])
    """
    A = _matrix(accuracy, "accuracy")
    n, k = A.shape
    T = None if tokens is None else _matrix(tokens, "tokens", A.shape)
    L = None if latency is None else _matrix(latency, "latency", A.shape)
    ok = np.ones(A.shape, dtype=bool) if allowed is None else np.broadcast_to(
        np.asarray(allowed, dtype=bool), A.shape).copy()
    B_T = _budget(max_total_tokens, max_mean_tokens, n, "tokens")
    B_L = _budget(max_total_latency, max_mean_latency, n, "latency")
    for B, M, what in ((B_T, T, "tokens"), (B_L, L, "latency")):
        if B is not None and M is None:
            raise ValueError(f"A {what} budget needs the predicted {what} matrix.")
    if max_query_latency is not None:
        check_scalar(max_query_latency, "max_query_latency", Real, min_val=0)
        if L is None:
            raise ValueError("max_query_latency needs the predicted latency matrix.")
    if concurrency is not None:
        check_scalar(concurrency, "concurrency", Integral, min_val=1)
    K = 1 if concurrency is None else int(concurrency)
    bad = np.flatnonzero(~ok.any(axis=1))
    if bad.size:
        raise ValueError(f"Query {bad[0]} has no allowed strategy.")

    B_job = B_L
    cap, caps = max_query_latency, [None]
    if B_L is not None and K >= n and K > 1:
        cap, B_L = B_L if cap is None else min(cap, B_L), None
    elif B_L is not None and K > 1:
        # Graham: caps from the smallest that leaves every query a strategy, up to B
        lo = np.where(ok, L, np.inf).min(axis=1).max()
        hi = B_L if cap is None else min(cap, B_L)
        caps = [hi] if not lo < hi else list(np.geomspace(max(lo, 1e-12), hi, N_CAPS))
    if cap is not None:
        fits = L <= cap
        lost = np.flatnonzero(~(ok & fits).any(axis=1))
        if lost.size:
            i = lost[0]
            raise ValueError(
                f"No strategy of query {i} fits the per-query latency cap of {cap:.6g}s: its "
                f"fastest allowed strategy predicts {np.where(ok, L, np.inf)[i].min():.6g}s."
            )
        ok &= fits
    if B_T is not None:
        minimum = np.where(ok, T, np.inf).min(axis=1).sum()
        if minimum > B_T:
            raise _infeasible("tokens", " tokens", B_T, minimum, n)

    best = None
    for c in caps:
        okc, B_Lc = ok, B_L
        if c is not None:
            okc = ok & (L <= c)
            B_Lc = K * B_L - (K - 1) * c
            if not okc.any(axis=1).all():
                continue
        res = _solve(A, T, L, okc, B_T, B_Lc, max_iter, raise_=c is None)
        if res is not None and (best is None or res[1] > best[1]):
            best = res
    if best is None:
        fastest = np.where(ok, L, np.inf).min(axis=1)
        raise ValueError(
            f"No allocation meets the latency budget of {B_job:.6g}s with concurrency={K} "
            f"under Graham's bound sum/K + (1 - 1/K) * max: the fastest strategy per query "
            f"gives {fastest.sum() / K + (1 - 1 / K) * fastest.max():.6g}s"
            + ("" if B_T is None else " (or the tokens budget cannot be met alongside)")
            + ". Raise the budget or the concurrency.")
    choice, _, lam_t, lam_l, bound = best
    rows = np.arange(n)
    return AllocationResult(
        choice=choice,
        accuracy=float(A[rows, choice].sum()),
        tokens=None if T is None else float(T[rows, choice].sum()),
        latency=None if L is None else float(L[rows, choice].sum()),
        makespan=(None if concurrency is None or L is None
                  else list_schedule_makespan(L[rows, choice], K)),
        budget={"tokens": B_T, "latency": B_job, "query_latency": cap,
                "concurrency": concurrency},
        lambda_tokens=lam_t, lambda_latency=lam_l, upper_bound=bound)


def _solve(A, T, L, ok, B_T, B_L, max_iter, raise_=True):
    """(choice, accuracy, lambda_tokens, lambda_latency, bound), or None / raise."""
    n = A.shape[0]
    rows = np.arange(n)
    total = lambda M, ch: float(M[rows, ch].sum())  # noqa: E731
    for B, M, what, unit in ((B_T, T, "tokens", " tokens"), (B_L, L, "latency", "s")):
        if B is not None:
            minimum = np.where(ok, M, np.inf).min(axis=1).sum()
            if minimum > B:
                if raise_:
                    raise _infeasible(what, unit, B, minimum, n)
                return None
    if B_T is None and B_L is None:
        choice = np.argmax(np.where(ok, A, -np.inf), axis=1)
        return choice, total(A, choice), 0.0, 0.0, total(A, choice)
    if B_L is None or B_T is None:
        C, B = (T, B_T) if B_L is None else (L, B_L)
        choice, lam, bound = _solve_one(A, C, ok, B)
        lams = (lam, 0.0) if B_L is None else (0.0, lam)
        return choice, total(A, choice), *lams, bound

    # two budgets: price latency at mu, solve tokens exactly, bisect mu
    best, bound = None, np.inf

    def at(mu):
        nonlocal best, bound
        choice, lam, lp = _solve_one(A - mu * L, T, ok, B_T)
        # weak duality: any allocation within both budgets has accuracy <= LP(mu) + mu*B_L
        bound = min(bound, lp + mu * B_L)
        feasible = total(L, choice) <= B_L
        if feasible and (best is None or total(A, choice) > best[1]):
            best = (choice, total(A, choice), lam, mu)
        return feasible

    if not at(0.0):
        spread = (np.where(ok, L, -np.inf).max(axis=1) - np.where(ok, L, np.inf).min(axis=1))
        hi = 1.0 / max(float(spread.mean()), 1e-12)
        lo = 0.0
        for _ in range(60):
            if at(hi):
                break
            lo, hi = hi, hi * 4
        else:
            if raise_:
                raise ValueError(
                    f"Found no allocation within both the tokens budget ({B_T:.6g}) and the "
                    f"latency budget ({B_L:.6g}s), though each alone can be met (the search "
                    f"is not exhaustive: the problem is NP-hard). Raise one of the budgets.")
            return None
        for _ in range(max_iter):
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if at(mid) else (mid, hi)
            if hi - lo <= 1e-5 * hi:
                break
    choice, acc, lam, mu = best
    return choice, acc, lam, mu, float(bound)
