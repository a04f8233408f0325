"""Batch budgets under cross-fitting: allocation against per-query lambdas and the best static mix.

For each mean-cost budget ``B`` (tokens, or latency under the sequential execution model,
where a batch's latencies add up) and each test fold of an evaluation, three ways of
spending ``B x fold size`` on the fold's queries are compared on their realised accuracy and
cost:

- **allocation**: :func:`ttcrouter.allocation.allocate` on the fold router's predictions for
  the fold, total predicted cost within ``B x fold size``;
- **lambda**: per-query routing at the price ``UtilityRouterCV(max_mean_tokens=B)`` would
  pick, found the same way: the fold's training queries are cross-fitted again
  (``inner_cv`` folds, routers that never saw the query) and the price with the best
  realised accuracy among those whose realised mean cost is ``<= B`` wins; no price fits:
  NaN, where UtilityRouterCV raises;
- **static mix**: the two neighbouring static strategies on the upper concave hull of the
  training queries' (mean cost, accuracy) points, mixed at the share that meets ``B``
  exactly in expectation on the training queries; its test value is the expectation of
  the random assignment (no draw), so it carries no assignment noise.

Every query of the table is a test query once. Intervals are 90% percentile intervals of a
paired bootstrap over the test queries (multinomial reweighting seeded as
:func:`ttcrouter.frontier.bootstrap_frontier_difference`), the same resamples for every
method and budget, so differences between methods are paired.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from ..allocation import allocate
from ..crossfit import fit_predict_fold
from ..metrics import oracle_choice

__all__ = ["batch_budget_comparison", "auto_batch_budgets", "static_mix", "batch_markdown",
           "batch_summary_lines", "METHODS"]

#: Methods compared, in report order.
METHODS = ("allocation", "lambda", "static_mix")


def auto_batch_budgets(costs, n_budgets=5):
    """``n_budgets`` mean-cost budgets strictly inside the static strategies' cost range.

    Log-spaced between the cheapest and the dearest mean cost, both ends left out: at the
    cheapest strategy's mean cost a fold whose predicted costs run a little higher has no
    allocation at all.

    Parameters
    ----------
    costs : array-like of shape (n_strategies,)
        Mean cost of each static strategy.
    n_budgets : int, default=5

    Returns
    -------
    ndarray of shape (n_budgets,)
    """
    costs = np.asarray(costs, dtype=float)
    lo, hi = float(costs.min()), float(costs.max())
    if not hi > lo:
        raise ValueError("Every strategy has the same mean cost: no budget to compare at.")
    grid = np.geomspace(lo, hi, n_budgets + 2) if lo > 0 else np.linspace(lo, hi,
                                                                            n_budgets + 2)
    return grid[1:-1]


def static_mix(cost, accuracy, budget):
    """The best random mix of two static strategies whose expected mean cost is ``budget``.

    The two neighbours on the upper concave hull of the (cost, accuracy) points around
    ``budget``; past the most accurate hull point, that strategy alone.

    Returns
    -------
    (i, j, share) or None
        Columns of the two strategies and the share of ``j`` (``1 - share`` of ``i``);
        None when even the cheapest strategy costs more than ``budget``.
    """
    cost, accuracy = np.asarray(cost, dtype=float), np.asarray(accuracy, dtype=float)
    order = np.lexsort((-accuracy, cost))
    hull = [int(order[0])]
    while True:
        c0, a0 = cost[hull[-1]], accuracy[hull[-1]]
        up = (cost > c0) & (accuracy > a0)
        if not up.any():
            break
        slope = np.where(up, (accuracy - a0) / np.where(up, cost - c0, 1.0), -np.inf)
        hull.append(int(np.argmax(slope)))
    if budget < cost[hull[0]]:
        return None
    for i, j in zip(hull, hull[1:]):
        if budget < cost[j]:
            return i, j, float((budget - cost[i]) / (cost[j] - cost[i]))
    return hull[-1], hull[-1], 0.0


def _inner_predictions(router, X, Y, T, L, strategies, train, inner_cv, random_state,
                       encoder):
    """Out-of-fold predictions on ``train`` by routers fitted on the rest of ``train``."""
    A, Th, Lh = (np.empty((len(train), len(strategies))) for _ in range(3))
    split = KFold(n_splits=inner_cv, shuffle=True, random_state=random_state)
    for itr, ite in split.split(train):
        p = fit_predict_fold(router, X, Y, T, L, strategies, train[itr], train[ite],
                             encoder=encoder)
        A[ite], Th[ite], Lh[ite] = p.accuracy, p.tokens, p.latency
    return A, Th, Lh


def _pick_lambda(A, Th, Lh, Y, C, grid, axis, budget):
    """UtilityRouterCV's rule: the best realised accuracy among prices within the budget."""
    best = None
    for lam in grid:
        choice = oracle_choice(A, Th, Lh, *((lam, 0.0) if axis == "tokens" else (0.0, lam)))
        rows = np.arange(len(choice))
        acc, cost = Y[rows, choice].mean(), C[rows, choice].mean()
        # ties go to the cheaper routing
        if cost <= budget and (best is None or (acc, -cost) > (best[1], -best[2])):
            best = (float(lam), acc, cost)
    return None if best is None else best[0]


def batch_budget_comparison(preds, folds, X, Y, T, L, strategies, router, *, budgets,
                            grids, encoder=None, inner_cv=3, n_boot=1000, random_state=0):
    """Allocation, per-query lambdas and the static mix at each batch budget, per test fold.

    Parameters
    ----------
    preds : list of FoldPrediction
        Each fold's router predictions on its test queries
        (:func:`ttcrouter.crossfit.fit_predict_fold`), in the order of ``folds``.
    folds : list of (train, test) index arrays
    X : features of all queries (or their strings, with ``encoder``)
    Y, T, L : ndarray of shape (n_queries, n_strategies)
        Realised accuracy, tokens and latency.
    strategies : list of str
    router : estimator
        The router to refit on the inner folds (cloned).
    budgets : dict
        ``{"tokens": [...], "latency": [...]}``: mean budgets per query (an axis may be
        missing or empty).
    grids : dict
        ``{"tokens": [...], "latency": [...]}``: prices the lambda method chooses from.
    encoder : transformer, default=None
        Fitted per inner fold, as in :func:`ttcrouter.crossfit.fit_predict_fold`.
    inner_cv : int, default=3
        Folds of the training queries' cross-fitting for the lambda method.
    n_boot : int, default=1000
        Bootstrap resamples of the test queries; 0: no intervals.
    random_state : int, default=0

    Returns
    -------
    table : DataFrame
        One row per (axis, budget, method): ``accuracy``, ``mean_cost``,
        ``realised_over_budget``, ``predicted_over_budget`` (allocation only),
        ``delta_accuracy`` (method minus allocation), their ``*_lo``/``*_hi`` intervals,
        and ``note``.
    details : dict
        Per fold: the lambda picked and the static mix, per axis and budget.
    """
    te = np.concatenate([f[1] for f in folds])
    n = len(te)
    pos = np.cumsum([0] + [len(f[1]) for f in folds])
    W = (np.random.default_rng(random_state).multinomial(n, np.full(n, 1.0 / n), size=n_boot)
         if n_boot else None)
    inner = [None] * len(folds)
    rows_out, details = [], {}
    for axis in ("tokens", "latency"):
        C = T if axis == "tokens" else L
        for budget in budgets.get(axis) or []:
            budget = float(budget)
            acc = {m: np.full(n, np.nan) for m in METHODS}
            cost = {m: np.full(n, np.nan) for m in METHODS}
            predicted, notes = 0.0, {m: [] for m in METHODS}
            info = details.setdefault(axis, {}).setdefault(f"{budget:.6g}", [])
            for f, ((tr, tst), p) in enumerate(zip(folds, preds)):
                sl = slice(pos[f], pos[f + 1])
                rows = np.arange(len(tst))
                Yf, Cf = Y[tst], C[tst]
                # allocation on the fold's predictions
                ok = np.isfinite(p.accuracy)
                Ch = p.tokens if axis == "tokens" else p.latency
                try:
                    res = allocate(np.where(ok, p.accuracy, 0.0),
                                   Ch if axis == "tokens" else None,
                                   Ch if axis == "latency" else None,
                                   allowed=ok, **{f"max_mean_{axis}": budget})
                    acc["allocation"][sl] = Yf[rows, res.choice]
                    cost["allocation"][sl] = Cf[rows, res.choice]
                    predicted += res.tokens if axis == "tokens" else res.latency
                except ValueError:
                    notes["allocation"].append(f"fold {f}: infeasible on predicted costs")
                # per-query routing at the price picked on the training queries
                if inner[f] is None:
                    inner[f] = _inner_predictions(router, X, Y, T, L, strategies, tr,
                                                  inner_cv, random_state, encoder)
                lam = _pick_lambda(*inner[f], Y[tr], C[tr], grids[axis], axis, budget)
                if lam is None:
                    notes["lambda"].append(f"fold {f}: no price fits on the training queries")
                else:
                    ch = oracle_choice(p.accuracy, p.tokens, p.latency,
                                       *((lam, 0.0) if axis == "tokens" else (0.0, lam)))
                    acc["lambda"][sl], cost["lambda"][sl] = Yf[rows, ch], Cf[rows, ch]
                # the static mix exact to the budget on the training queries
                mix = static_mix(C[tr].mean(axis=0), Y[tr].mean(axis=0), budget)
                if mix is None:
                    notes["static_mix"].append(f"fold {f}: cheapest strategy over budget")
                else:
                    i, j, s = mix
                    acc["static_mix"][sl] = (1 - s) * Yf[:, i] + s * Yf[:, j]
                    cost["static_mix"][sl] = (1 - s) * Cf[:, i] + s * Cf[:, j]
                info.append({"fold": f, "lambda": lam, "mix": None if mix is None else
                             {"from": strategies[mix[0]], "to": strategies[mix[1]],
                              "share": mix[2]}})
            for m in METHODS:
                row = _row(acc[m], cost[m], acc["allocation"], budget, W)
                row.update(axis=axis, budget=budget, method=m, note="; ".join(notes[m]))
                if m == "allocation":
                    row["predicted_over_budget"] = (predicted / (budget * n)
                                                    if not notes[m] else np.nan)
                rows_out.append(row)
    cols = ["axis", "budget", "method", "accuracy", "accuracy_lo", "accuracy_hi",
            "mean_cost", "realised_over_budget", "realised_over_budget_lo",
            "realised_over_budget_hi", "predicted_over_budget", "delta_accuracy",
            "delta_accuracy_lo", "delta_accuracy_hi", "note"]
    return pd.DataFrame(rows_out).reindex(columns=cols), details


def _row(a, c, a_alloc, budget, W):
    """Means and paired-bootstrap 90% intervals of one method at one budget."""
    row = {"accuracy": np.nan, "mean_cost": np.nan, "realised_over_budget": np.nan,
           "delta_accuracy": np.nan}
    if np.isnan(a).any():
        return row
    n = len(a)
    row.update(accuracy=a.mean(), mean_cost=c.mean(), realised_over_budget=c.mean() / budget)
    have_alloc = not np.isnan(a_alloc).any()
    if have_alloc:
        row["delta_accuracy"] = (a - a_alloc).mean()
    if W is not None:
        stats = {"accuracy": W @ a / n, "realised_over_budget": W @ c / n / budget}
        if have_alloc:
            stats["delta_accuracy"] = W @ (a - a_alloc) / n
        for k, v in stats.items():
            row[f"{k}_lo"], row[f"{k}_hi"] = np.percentile(v, [5, 95])
    return row


_LABELS = {"allocation": "allocation per fold", "lambda": "per-query lambda (CV-picked)",
           "static_mix": "static mix exact to B"}
_UNITS = {"tokens": "tokens", "latency": "s"}


def batch_summary_lines(table):
    """Plain-text lines of the batch comparison (one per axis and budget)."""
    lines = ["batch budgets (mean per query; accuracy, realised/budget):"]
    for (axis, budget), g in table.groupby(["axis", "budget"], sort=False):
        cells = [f"{m} {_num(r['accuracy'])} ({_num(r['realised_over_budget'], '.2f')})"
                 for m, (_, r) in zip(g["method"], g.iterrows())]
        lines.append(f"  {axis:<8} B={budget:<9.4g}: " + ", ".join(cells))
    return lines


def batch_markdown(table, config):
    """The report's "Batch budgets" section, as a list of markdown lines."""
    cv = config.get("cv")
    parts = [
        "## Batch budgets",
        "",
        f"One budget B per query on average, spent on each test fold (B x fold size; "
        f"{'every query is a test query once, ' if cv else ''}routed by a router that never "
        f"saw it). **allocation**: the knapsack on the fold router's predicted accuracy and "
        f"cost, predicted total within the budget. **per-query lambda**: each query routed "
        f"on its own at the price UtilityRouterCV picks for mean cost <= B, from a "
        f"{config.get('batch_inner_cv')}-fold cross-fitting of the training queries. "
        f"**static mix**: two neighbouring static strategies on the training queries' "
        f"concave frontier, mixed at the share whose expected mean cost is B (its test "
        f"value is the expectation). Latency budgets are sequential (latencies add up). "
        f"Brackets: 90% paired bootstrap intervals over test queries; delta = method minus "
        f"allocation, on the same resamples.",
        "",
    ]
    for axis, g in table.groupby("axis", sort=False):
        rows = []
        for _, r in g.iterrows():
            rows.append({
                "budget": f"{r['budget']:.4g} {_UNITS[axis]}",
                "method": _LABELS[r["method"]],
                "accuracy": _ci(r, "accuracy", ".3f"),
                f"mean {axis}": _num(r["mean_cost"], ".4g"),
                "realised / budget": _ci(r, "realised_over_budget", ".3f"),
                "predicted / budget": _num(r["predicted_over_budget"], ".3f"),
                "accuracy - allocation": ("-" if r["method"] == "allocation"
                                          else _ci(r, "delta_accuracy", "+.3f")),
                "note": r["note"] or "",
            })
        parts += [f"### mean {axis} budget", "",
                  pd.DataFrame(rows).to_markdown(index=False), ""]
    parts += ["![batch budgets](batch_budgets.png)", ""]
    return parts


def _num(v, fmt=".3f"):
    return "n/a" if v is None or not np.isfinite(v) else format(v, fmt)


def _ci(r, key, fmt):
    lo, hi = r.get(f"{key}_lo"), r.get(f"{key}_hi")
    text = _num(r[key], fmt)
    if lo is not None and np.isfinite(lo) and np.isfinite(hi):
        text += f" [{format(lo, fmt)}, {format(hi, fmt)}]"
    return text
