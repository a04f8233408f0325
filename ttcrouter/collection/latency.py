"""The latency model: wall clock of a row, from timed isolated executions of its strategy.

Wall clock is measured, never invented. A pooled row did not run on its own, so its
latency is derived from *isolated* executions timed on a calibration subset: before
collecting, every strategy is executed alone (:meth:`StrategyExecutor.execute`, one query
at a time, after one warm-up call) on the first ``calibration_queries`` queries, timed with
``time.perf_counter`` around the call. A least-squares line ``latency = a + b * x`` is
fitted to those timings (:func:`fit_latency_model`), where x (:func:`latency_feature`) is
the largest number of tokens any candidate generated (the decode steps the batch ran) for
the parallel methods, with one line per N over the three methods (they generate alike: N
samples in one request; the model at N is the upper envelope of the lines at every
N' <= N, as more samples never finish sooner; :func:`latency_models`), and the total
generated tokens for beam search, one line per configuration; if b comes out negative the
model falls back to the mean timing. Each row keeps its x in ``latency_x``, and
:func:`~ttcrouter.collection.load_collection` evaluates the newest calibration at it
(:func:`apply_calibration`), so a later calibration (``recalibrate_latency=True``, for
example on a quieter machine) sets the latency of every row collected before. A row's
``latency_s`` is that model evaluated at the row's own x (:func:`predict_latency`), and
``latency_source`` is ``"calibrated"``. Beam search rows run for real (``execute_batch``
across queries, each query its own beams) but batched, so their latency is derived in the
same way. With ``latency="isolated"`` nothing is pooled: every row is one isolated
:meth:`~StrategyExecutor.execute` and its own timing (``latency_source`` =
``"isolated"``), at the full token cost. The calibration timings are kept in the output
(``_calibration.parquet``) and summarised in the provenance.

A latency model is a plain dict (it is stored in ``_provenance.json``): ``a``, ``b``,
``kind`` (``"linear"``, ``"mean"`` or ``"none"``), ``n`` (timings behind it), and for a
parallel strategy ``envelope`` (the ``(a, b)`` lines whose maximum it is) and ``group``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..strategies import as_strategy

__all__ = ["fit_latency_model", "predict_latency", "latency_feature", "latency_models",
           "latest_calibration", "apply_calibration", "request_latency_model"]


def fit_latency_model(x, y) -> dict:
    """Least-squares ``y = a + b x`` with ``b >= 0``, else the mean of ``y``.

    Parameters
    ----------
    x, y : array-like of float
        Latency features and measured wall clock; non-finite pairs are dropped.

    Returns
    -------
    dict
        ``{"a", "b", "kind", "n"}``. ``kind`` is ``"linear"`` when the line has a
        non-negative slope and a positive value at the smallest x, ``"mean"`` otherwise (or
        with fewer than two distinct x), ``"none"`` without data (``a`` is NaN).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(y) == 0:
        return {"a": float("nan"), "b": 0.0, "kind": "none", "n": 0}
    if len(y) >= 2 and np.ptp(x) > 0:
        b, a = np.polyfit(x, y, 1)
        if b >= 0 and a + b * x.min() > 0:
            return {"a": float(a), "b": float(b), "kind": "linear", "n": int(len(y))}
    return {"a": float(y.mean()), "b": 0.0, "kind": "mean", "n": int(len(y))}


def predict_latency(model: dict, x) -> float:
    """Seconds the model predicts at feature ``x`` (the envelope's maximum, never below 0)."""
    lines = model.get("envelope") or [(model["a"], model["b"])]
    return float(max(max(a + b * float(x) for a, b in lines), 0.0))


def latency_feature(spec, result) -> float:
    """x of the latency model for one execution of ``spec``.

    Parameters
    ----------
    spec : Strategy
    result : ExecutionResult, PooledResult or None
        For a parallel strategy the longest candidate in tokens (``max_candidate_tokens``,
        else the longest of ``candidates``, else ``tokens``); for beam search the total
        generated tokens. None counts as 0 tokens.
    """
    if spec.parallel:
        m = getattr(result, "max_candidate_tokens", None)
        if m is None:
            toks = [int(getattr(c, "tokens", 0) or 0)
                    for c in getattr(result, "candidates", None) or []]
            m = max(toks) if toks else getattr(result, "tokens", 0)
        return float(m)
    return float(getattr(result, "tokens", 0) or 0)


def latest_calibration(cal):
    """The rows of the newest calibration run (a table without ``calibration`` is one run)."""
    if cal is None or "calibration" not in cal.columns:
        return cal
    return cal[cal["calibration"] == cal["calibration"].max()]


def latency_models(cal: pd.DataFrame) -> dict:
    """Strategy name -> latency model fitted on the calibration timings.

    The parallel methods at the same N generate the same way (N samples in one request;
    the log-probability scorer reads what generation returns), so their timings are pooled
    into one line per N; each beam search configuration gets its own line. A request for N
    samples never returns before one for fewer samples whose longest candidate is as long,
    so the parallel model at N is the upper envelope (``envelope``) of the lines at every
    N' <= N: timing noise between nearly equal N (1 and 2 cost about the same here) cannot
    make more samples look faster.

    Parameters
    ----------
    cal : DataFrame
        Calibration timings: ``strategy``, ``x``, ``latency_s``, ``error``.
    """
    ok = cal[cal["error"].isna()]
    groups = {}
    for name in pd.unique(cal["strategy"]):
        spec = as_strategy(name)
        groups[name] = f"parallel@n={spec.n}" if spec.parallel else spec.name
    key = ok["strategy"].map(groups)
    fitted = {g: fit_latency_model(ok.loc[key == g, "x"], ok.loc[key == g, "latency_s"])
              for g in set(groups.values())}
    par_n = {g: int(g.split("=")[1]) for g in fitted if g.startswith("parallel@n=")}
    for g, n in par_n.items():
        fitted[g]["envelope"] = [(fitted[h]["a"], fitted[h]["b"])
                                 for h, m in sorted(par_n.items(), key=lambda kv: kv[1])
                                 if m <= n and np.isfinite(fitted[h]["a"])]
    return {name: {**fitted[g], "group": g} for name, g in groups.items()}


def request_latency_model(models: dict):
    """``request_latency(n, x)``: seconds of one request of ``n`` samples whose longest is
    ``x`` tokens, from the calibrated parallel lines (:func:`latency_models`).

    The line at ``n`` is the one of the parallel strategies with ``n`` samples; without one,
    the line of the smallest larger ``n`` (an upper bound), else of the largest. This is
    what :func:`ttcrouter.samples.derive_runs` charges a round of an early-stopping vote.
    """
    by_n = {}
    for name, model in models.items():
        group = model.get("group", "")
        if group.startswith("parallel@n=") and np.isfinite(model["a"]):
            by_n[int(group.split("=")[1])] = model
    if not by_n:
        raise ValueError("The calibration has no parallel strategy to model a request with.")

    def request_latency(n, x):
        larger = [m for m in by_n if m >= n]
        return predict_latency(by_n[min(larger) if larger else max(by_n)], x)

    return request_latency


def apply_calibration(df: pd.DataFrame, models: dict) -> pd.DataFrame:
    """Re-derive ``latency_s`` of calibrated rows from ``latency_x`` with ``models``.

    Rows store the feature ``latency_x``, so a later calibration (``recalibrate_latency``)
    applies to every row collected before it. A pooled strategy that names its scorer
    (``best_of_n@n=4,scorer=verifier``) takes the line of the parallel requests of its N,
    plus its own ``score_latency_s`` (the scorer's measured time). ``df`` is changed in place
    and returned.
    """
    by_group = {m.get("group"): m for m in models.values()}
    model_of = {}
    for name in pd.unique(df["strategy"]):
        if name in models:
            model_of[name] = models[name]
            continue
        spec = as_strategy(name)
        if spec.parallel and spec.scorer is not None \
                and f"parallel@n={spec.n}" in by_group:
            model_of[name] = by_group[f"parallel@n={spec.n}"]
    rows = (df["latency_source"] == "calibrated") & df["latency_x"].notna() \
        & df["strategy"].isin(list(model_of))
    if rows.any():
        sub = df.loc[rows, ["strategy", "latency_x"]]
        extra = (pd.to_numeric(df.loc[rows, "score_latency_s"], errors="coerce").fillna(0.0)
                 .to_numpy() if "score_latency_s" in df.columns else 0.0)
        df.loc[rows, "latency_s"] = np.asarray(
            [predict_latency(model_of[name], x)
             for name, x in zip(sub["strategy"], sub["latency_x"])]) + extra
    return df
