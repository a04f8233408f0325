"""Token-aware against latency-aware routing at matched budgets: which strategies each runs.

The paper's point is that a router that prices latency chooses differently from one that
prices tokens. :func:`matched_budget_mixes` reads an evaluation's two single-cost sweeps
(``lambda_tokens`` only and ``lambda_latency`` only) at the same budgets: at each budget ``B``
on a cost axis, each sweep's setting with the best test accuracy among those whose mean cost
on that axis is ``<= B`` (the point its frontier takes at ``B``), and the share of test queries
each sends to every strategy. :func:`mix_sentences` says in one sentence per budget where the
two mixes differ.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..frontier import budget_grid

__all__ = ["matched_budget_mixes", "mix_sentences", "ROUTERS", "MIX_DIFFERENCE"]

#: The two routers compared: the sweep of each, keyed by the cost it prices.
ROUTERS = ("tokens", "latency")

#: Smallest share of the queries routed differently (total variation distance between the
#: two mixes) for :func:`mix_sentences` to call the mixes different.
MIX_DIFFERENCE = 0.10

_COST = {"tokens": "mean_tokens", "latency": "mean_latency_s"}


def matched_budget_mixes(report, *, budgets=None) -> pd.DataFrame:
    """The token-aware and the latency-aware router's strategy mix at the same budgets.

    Parameters
    ----------
    report : EvaluationReport
        With the ``"tokens"`` and ``"latency"`` sweeps (``adaptive`` and ``mix``).
    budgets : dict of str to array-like, default=None
        ``{"tokens": [...], "latency": [...]}``: mean-cost budgets per axis. ``None``: the
        report's gap-closed budgets (5 per axis, log-spaced over the static cost range).

    Returns
    -------
    DataFrame
        One row per (axis, budget): ``axis``, ``budget``, then for each router ``r`` in
        ``("tokens", "latency")`` (the cost it prices): ``{r}_lambda``, ``{r}_accuracy``,
        ``{r}_mean_tokens``, ``{r}_mean_latency_s`` and ``{r}_mix`` (strategy -> share of
        the test queries, shares > 0 only, largest first); NaN and an empty mix when none of
        that router's settings fits the budget. ``mix_difference`` is the share of queries
        that would have to change strategy to turn one mix into the other (total variation
        distance, 0 to 1; NaN when a router has no setting within the budget).
    """
    missing = [r for r in ROUTERS if r not in report.adaptive or r not in report.mix]
    if missing:
        raise ValueError(f"the report has no {missing} sweep: evaluate() makes both.")
    if budgets is None:
        budgets = {axis: report.gap_closed.loc[report.gap_closed["axis"] == axis, "budget"]
                   for axis in _COST}
        budgets = {axis: (b.to_numpy() if len(b) else
                          budget_grid(report.static[_COST[axis]].to_numpy()))
                   for axis, b in budgets.items()}
    rows = []
    for axis, axis_budgets in budgets.items():
        if axis not in _COST:
            raise ValueError(f"budgets keys are 'tokens' and 'latency', got {axis!r}.")
        for budget in np.atleast_1d(np.asarray(axis_budgets, dtype=float)):
            row = {"axis": axis, "budget": float(budget)}
            shares = {}
            for router in ROUTERS:
                i = _best_within(report.adaptive[router], _COST[axis], budget)
                points = report.adaptive[router]
                shares[router] = (None if i is None else
                                  report.mix[router].iloc[i].reindex(report.strategies,
                                                                     fill_value=0.0))
                row[f"{router}_lambda"] = (np.nan if i is None else
                                           float(points[f"lambda_{router}"].iloc[i]))
                for col in ("accuracy", "mean_tokens", "mean_latency_s"):
                    row[f"{router}_{col}"] = np.nan if i is None else float(points[col].iloc[i])
                row[f"{router}_mix"] = ({} if i is None else
                                        {s: float(v) for s, v in
                                         shares[router].sort_values(ascending=False).items()
                                         if v > 0})
            both = [shares[r] for r in ROUTERS]
            row["mix_difference"] = (np.nan if any(s is None for s in both) else
                                     float(0.5 * np.abs(both[0] - both[1]).sum()))
            rows.append(row)
    return pd.DataFrame(rows)


def _best_within(points, cost_col, budget):
    """Row of the most accurate point with mean cost <= budget (the cheaper on a tie)."""
    fits = np.flatnonzero(points[cost_col].to_numpy() <= budget * (1 + 1e-9))
    if fits.size == 0:
        return None
    sub = points.iloc[fits]
    order = np.lexsort((sub[cost_col].to_numpy(), -sub["accuracy"].to_numpy()))
    return int(fits[order[0]])


def mix_sentences(table, *, threshold=MIX_DIFFERENCE, top=3) -> list:
    """One sentence per budget where the two routers' mixes differ.

    Parameters
    ----------
    table : DataFrame
        :func:`matched_budget_mixes`'s output.
    threshold : float, default=0.10
        Smallest ``mix_difference`` that counts as different.
    top : int, default=3
        Strategies named per mix (the largest shares).

    Returns
    -------
    list of str
        A sentence per differing budget, then one sentence on how many budgets agree.
    """
    out, same = [], []
    for _, r in table.iterrows():
        where = _budget_text(r["axis"], r["budget"])
        if not np.isfinite(r["mix_difference"]):
            fits = [name for name, router in (("token-aware", "tokens"),
                                              ("latency-aware", "latency"))
                    if np.isfinite(r[f"{router}_accuracy"])]
            out.append(f"At {where}, only the {fits[0]} router has a setting within the "
                       "budget." if fits else f"At {where}, neither router has a setting "
                       "within the budget.")
            continue
        if r["mix_difference"] < threshold:
            same.append(where)
            continue
        t, lat = (_router_text(r, router, top) for router in ROUTERS)
        out.append(
            f"At {where}, {r['mix_difference']:.0%} of the queries are routed differently: "
            f"the latency-aware router runs {lat}; the token-aware router runs {t}.")
    if same:
        out.append(f"The mixes agree within {threshold:.0%} of the queries at "
                   f"{len(same)} of {len(table)} budgets ({'; '.join(same)}).")
    return out


def _budget_text(axis, budget):
    return (f"mean tokens <= {budget:.0f}" if axis == "tokens"
            else f"mean latency <= {budget:.2f} s")


def _router_text(row, router, top):
    mix = row[f"{router}_mix"]
    names = list(mix.items())[:top]
    rest = 1.0 - sum(v for _, v in names)
    shown = ", ".join(f"{s} on {v:.0%}" for s, v in names)
    if rest > 0.005:
        shown += f", others on {rest:.0%}"
    return (f"{shown} (accuracy {row[f'{router}_accuracy']:.3f}, "
            f"{row[f'{router}_mean_tokens']:.0f} tokens, "
            f"{row[f'{router}_mean_latency_s']:.2f} s)")
