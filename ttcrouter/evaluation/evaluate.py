"""Evaluate a router on held-out queries against static strategies and the per-query oracle.

:func:`evaluate` splits a runs table by query (or cross-fits over query folds), fits the
encoder and the router on the training queries, and on the test queries compares

- every **static** strategy (the same strategy for every query),
- the **adaptive** router swept over penalties (tokens only, latency only, both),
- the per-query **oracle**, which knows the true accuracy and costs of every strategy on
  every test query and maximises ``Y - lambda_tokens * T - lambda_latency * L``.

The router is fitted once per fold (:func:`ttcrouter.crossfit.fit_predict_fold`): a penalty
only moves the argmax of ``a_hat - lambda_tokens * T_hat - lambda_latency * L_hat``, so
predictions are computed once and the sweep reuses them.

Headline numbers: at a matched mean-cost budget ``B``, with each frontier taken as the upper
envelope "best accuracy at mean cost <= B" (:func:`ttcrouter.frontier.frontier_at`), the
share of the gap between the best static strategy and the oracle that the router closes,
``(router - static) / (oracle - static)``; and the area under each frontier over the static
cost range (log-cost axis scaled to [0, 1], :func:`ttcrouter.frontier.frontier_auc`).

With ``batch_budgets``, the same fold predictions also feed
:func:`ttcrouter.evaluation.batch.batch_budget_comparison`: one budget spent across each
test fold by allocation, against per-query lambdas and the best static mix.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import KFold

from ..collection.store import load_runs
from ..crossfit import fit_predict_fold
from ..embedding import EmbeddingTransformer
from ..frontier import (
    bootstrap_frontier_difference,
    budget_grid,
    compare_frontiers,
    frontier_at,
    frontier_auc,
    lambda_grid,
)
from ..metrics import oracle_choice, static_strategy_table
from ..probe import ProbeClassifier
from ..provenance import package_versions
from ..router import UtilityRouter
from ..runs import RunsSummary, aggregate_runs, split_queries
from ..validation import check_int
from .batch import auto_batch_budgets, batch_budget_comparison
from .plots import COST_AXES
from .report import EvaluationReport

__all__ = ["evaluate", "MIN_TRAIN_QUERIES", "MIN_TEST_QUERIES"]

logger = logging.getLogger("ttcrouter.evaluation")

#: Fewest training queries :func:`evaluate` accepts (the probe calibrates with 3 folds).
MIN_TRAIN_QUERIES = 6
#: Fewest test queries :func:`evaluate` accepts.
MIN_TEST_QUERIES = 2

# evaluate's default penalty grid (lambda_grid(cheapest_wins=True)): from cost differences
# barely mattering to dominating predicted accuracy differences, densely, since each
# penalty is one router setting and a sparse grid leaves budgets no setting lands close to
_GRID = {"n_values": 101, "low": 1e-3, "high": 30.0, "cheapest_wins": True}


def evaluate(runs, *, test_size=0.25, random_state=0, encoder=None, router=None,
             lambda_tokens_grid=None, lambda_latency_grid=None, report_dir=None,
             progress=True, cv=None, n_boot=1000, batch_budgets=None,
             batch_inner_cv=3) -> EvaluationReport:
    """Compare static strategies, the adaptive router and the per-query oracle on test queries.

    Parameters
    ----------
    runs : DataFrame, str, Path or RunsSummary
        A runs table (or its path, or its aggregate).
    test_size : float or int, default=0.25
        Share (float) or number (int) of queries held out for testing.
    random_state : int or None, default=0
        Seed of the query split (and of the default router's probe).
    encoder : transformer, default=None
        Maps the list of query strings to features; ``None`` means
        ``EmbeddingTransformer()`` (the embedded MiniLM encoder). Cloned, fitted on the
        training queries only. An :class:`~ttcrouter.EmbeddingTransformer` learns nothing
        from the texts (its model is frozen), so it embeds every query once, whatever
        ``cv``; any other encoder is fitted on each fold's training queries.
    router : UtilityRouter, default=None
        ``None`` means ``UtilityRouter(probe=ProbeClassifier(random_state=random_state))``.
        Cloned and fitted once on the training queries; its own lambdas are ignored (the
        sweeps set them).
    lambda_tokens_grid, lambda_latency_grid : array-like, default=None
        Penalties to sweep. ``None`` picks 0, a log grid scaled by the spread of the
        strategies' mean training costs, and a last penalty at which the cheapest strategy
        always wins (for the router and the oracle alike; :func:`ttcrouter.frontier.lambda_grid`
        with ``cheapest_wins=True``). The ``"both"`` sweep pairs the two grids element-wise
        when they have equal lengths, else takes their product.
    report_dir : str or Path, default=None
        When given, write ``metrics.json``, ``report.md`` and the PNG plots there.
    progress : bool, default=True
        Log stage messages at INFO on the ``ttcrouter.evaluation`` logger (at DEBUG when
        False).
    cv : int or None, default=None
        ``None``: one split (``test_size``). An int K: cross-fitting over K query folds
        (seeded by ``random_state``); each fold's queries are routed by an encoder and router
        fitted on the other folds, so every query is a test query once and the comparison
        runs over all of them (``test_size`` is ignored). Less noise than one split of the
        same table, at K fits. ``fitted_encoder`` and ``fitted_router`` are then those of
        the last fold.
    n_boot : int, default=1000
        Bootstrap resamples of the test queries for the uncertainty of the frontier check
        (router minus static accuracy at every static cost, with a 90% percentile
        interval); 0 skips it.
    batch_budgets : "auto", list of float or dict, default=None
        Also compare, at each mean budget per query, allocation across each test fold
        (budget x fold size), per-query routing at the price UtilityRouterCV would pick for
        that budget on the training queries, and the best static mix exact to the budget
        (:mod:`ttcrouter.evaluation.batch`); the report's ``batch`` table. ``"auto"``: 5
        token and 5 latency budgets inside the static strategies' cost ranges; a list:
        mean-token budgets; a dict ``{"tokens": [...] or "auto", "latency": [...] or
        "auto"}``. Latency budgets are for the sequential execution model (latencies add).
    batch_inner_cv : int, default=3
        Folds of the training queries' cross-fitting that picks the per-query price
        (``batch_inner_cv`` more router fits per fold).

    Returns
    -------
    EvaluationReport

    Raises
    ------
    ValueError
        When the split leaves fewer than :data:`MIN_TRAIN_QUERIES` training or
        :data:`MIN_TEST_QUERIES` test queries, or a penalty grid is invalid.
    """
    stages = _Stages(logging.INFO if progress else logging.DEBUG)
    stages.start("aggregate", "reading and aggregating runs")
    summary, source = _summary(runs)
    qids = summary.queries.index.astype(str).to_numpy()
    texts = summary.queries["query"].astype(str).to_numpy()
    strategies = list(summary.strategies)
    Y, T, L = (m.to_numpy(dtype=float) for m in (summary.Y, summary.T, summary.L))
    folds = _folds(summary, test_size, cv, random_state)
    batch_budgets = _batch_budgets(batch_budgets, T, L)
    if batch_budgets:
        batch_inner_cv = check_int(batch_inner_cv, "batch_inner_cv", min_val=2)
    stages.done()

    if encoder is None:
        encoder = EmbeddingTransformer()
    if router is None:
        # seeded by random_state too, so that the same command gives the same numbers
        router = UtilityRouter(probe=ProbeClassifier(random_state=random_state))
    what = (f"{len(folds[0][0])} training queries" if cv is None
            else f"{cv} folds of ~{len(folds[0][0])} training queries (cross-fitting)")
    stages.start("fit", f"embedding and fitting the router on {what}")
    te = np.concatenate([f[1] for f in folds])
    if isinstance(encoder, EmbeddingTransformer):
        # a frozen model learns nothing in fit and embeds a query the same in every fold:
        # embed each query once
        encoder = clone(encoder)
        X, fold_encoder = np.asarray(encoder.fit_transform(list(texts))), None
    else:
        X, fold_encoder = texts, encoder
    preds = [fit_predict_fold(router, X, Y, T, L, strategies, f_tr, f_te,
                              encoder=fold_encoder) for f_tr, f_te in folds]
    A_hat, T_hat, L_hat = (np.concatenate([p[k] for p in preds]) for k in range(3))
    router = preds[-1].router
    encoder = encoder if fold_encoder is None else preds[-1].encoder
    tr = folds[0][0] if cv is None else np.arange(len(qids))
    stages.done()

    stages.start("sweep", f"routing {len(te)} test queries over the lambda sweeps")
    Yt, Tt, Lt = Y[te], T[te], L[te]
    grid_t = _grid(lambda_tokens_grid, T[tr], "lambda_tokens_grid")
    grid_l = _grid(lambda_latency_grid, L[tr], "lambda_latency_grid")
    adaptive, oracle, mix, router_choice = _sweeps(grid_t, grid_l, (A_hat, T_hat, L_hat),
                                                   (Yt, Tt, Lt), strategies)
    static = (static_strategy_table(Yt, Tt, Lt, strategies=strategies)
              .rename(columns={"mean_latency": "mean_latency_s"}))
    static.index.name = None
    gap_rows, auc, check = [], {}, {}
    for axis, col in COST_AXES.items():
        gap, auc[axis], check[axis] = _frontiers(
            static, adaptive[axis], oracle[axis], col, router_choice[axis], Yt,
            Tt if axis == "tokens" else Lt, n_boot, random_state)
        gap_rows += [{"axis": axis, **row} for row in gap]
    stages.done()

    batch, batch_details = None, {}
    if batch_budgets:
        stages.start("batch", "batch budgets: allocation, per-query lambdas, static mix")
        batch, batch_details = batch_budget_comparison(
            preds, folds, X, Y, T, L, strategies, router,
            budgets=batch_budgets, grids={"tokens": grid_t, "latency": grid_l},
            encoder=fold_encoder, inner_cv=batch_inner_cv, n_boot=n_boot,
            random_state=random_state)
        stages.done()

    config = {
        "source": source,
        "test_size": test_size,
        "random_state": random_state,
        "encoder": _short_repr(encoder),
        "router": _short_repr(router),
        "lambda_tokens_grid": grid_t.tolist(),
        "lambda_latency_grid": grid_l.tolist(),
        "cv": cv,
        "train_query_ids": [str(q) for q in qids[folds[0][0]]] if cv is None else None,
        "test_query_ids": [str(q) for q in qids[te]],
        "folds": None if cv is None else [[str(q) for q in qids[f[1]]] for f in folds],
        **({"batch_budgets": batch_budgets, "batch_inner_cv": batch_inner_cv}
           if batch_budgets else {}),
        "versions": package_versions(["scikit-learn", "numpy", "pandas"]),
    }
    report = EvaluationReport(
        strategies=strategies, n_train=len(folds[0][0]), n_test=len(te), static=static,
        adaptive=adaptive, oracle=oracle, mix=mix,
        gap_closed=pd.DataFrame(gap_rows), auc=auc, frontier_check=check, config=config,
        timings=stages.timings, batch=batch, batch_details=batch_details,
        fitted_encoder=encoder, fitted_router=router,
    )
    report.timings["total"] = round(time.perf_counter() - stages.t0, 3)
    if report_dir is not None:
        logger.log(stages.level, "writing the report to %s", report_dir)
        report.save(report_dir)
    return report


class _Stages:
    """Stage messages on the ``ttcrouter.evaluation`` logger, and seconds per stage."""

    def __init__(self, level):
        self.level = level
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.timings = {}

    def start(self, name: str, msg: str):
        self._name = name
        self.last = time.perf_counter()
        logger.log(self.level, "%s ...", msg)

    def done(self):
        now = time.perf_counter()
        self.timings[self._name] = round(now - self.last, 3)
        logger.log(self.level, "  done in %.1fs", now - self.last)


def _summary(runs) -> tuple[RunsSummary, str]:
    if isinstance(runs, RunsSummary):
        return runs, "RunsSummary"
    if isinstance(runs, (str, Path)):
        return aggregate_runs(load_runs(runs)), str(runs)
    if isinstance(runs, pd.DataFrame):
        return aggregate_runs(runs), "in-memory table"
    raise TypeError(
        f"runs must be a runs table (DataFrame), a path to one, or a RunsSummary; "
        f"got {type(runs).__name__}."
    )


def _folds(summary, test_size, cv, random_state):
    """(train, test) query index pairs: one split, or ``cv`` folds testing each query once."""
    n_q = len(summary.queries)
    if n_q < MIN_TRAIN_QUERIES + MIN_TEST_QUERIES:
        raise ValueError(
            f"evaluate needs at least {MIN_TRAIN_QUERIES + MIN_TEST_QUERIES} queries with a "
            f"successful run of every strategy, got {n_q}: collect runs on more queries."
        )
    if cv is not None:
        cv = check_int(cv, "cv", min_val=2,
                       hint="cv is the number of folds over queries, or None for one split.")
        if n_q // cv * (cv - 1) < MIN_TRAIN_QUERIES or n_q // cv < MIN_TEST_QUERIES:
            raise ValueError(
                f"cv={cv} folds over {n_q} queries leave too few per fold (evaluate needs at "
                f"least {MIN_TRAIN_QUERIES} train and {MIN_TEST_QUERIES} test queries): use "
                f"fewer folds or collect more queries."
            )
        folds = KFold(n_splits=cv, shuffle=True, random_state=random_state)
        return list(folds.split(np.arange(n_q)))
    idx = pd.Index(summary.queries.index.astype(str))
    train_ids, test_ids = split_queries(idx.to_numpy(), test_size=test_size,
                                        random_state=random_state)
    if len(train_ids) < MIN_TRAIN_QUERIES or len(test_ids) < MIN_TEST_QUERIES:
        raise ValueError(
            f"test_size={test_size!r} splits {n_q} queries into {len(train_ids)} train "
            f"and {len(test_ids)} test; evaluate needs at least {MIN_TRAIN_QUERIES} train "
            f"and {MIN_TEST_QUERIES} test queries. Change test_size or collect more "
            f"queries."
        )
    return [(idx.get_indexer(train_ids), idx.get_indexer(test_ids))]


def _batch_budgets(value, T, L):
    """``{"tokens": [...], "latency": [...]}`` from evaluate's ``batch_budgets``."""
    if value is None:
        return {}
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"batch_budgets must be 'auto', a list of mean-token budgets or a "
                             f"dict, got {value!r}.")
        value = {"tokens": "auto", "latency": "auto"}
    elif not isinstance(value, dict):
        value = {"tokens": value}
    out = {}
    for axis, v in value.items():
        if axis not in COST_AXES:
            raise ValueError(f"batch_budgets keys are 'tokens' and 'latency', got {axis!r}.")
        C = T if axis == "tokens" else L
        if isinstance(v, str) and v == "auto":
            out[axis] = auto_batch_budgets(C.mean(axis=0)).tolist()
            continue
        b = np.atleast_1d(np.asarray(v, dtype=float)).ravel()
        if b.size == 0 or not np.all(np.isfinite(b)) or (b <= 0).any():
            raise ValueError(f"batch budgets ({axis}) must be finite and > 0, got {v!r}.")
        out[axis] = sorted(b.tolist())
    return out


def _grid(values, costs, what):
    """The penalties to sweep: ``values``, or evaluate's default grid over ``costs``."""
    if values is None:
        return lambda_grid(costs, **_GRID)
    grid = np.atleast_1d(np.asarray(values, dtype=float)).ravel()
    if grid.size == 0 or not np.all(np.isfinite(grid)) or (grid < 0).any():
        raise ValueError(f"{what} must be a non-empty list of finite penalties >= 0, got {values!r}.")
    return np.unique(grid)


def _sweeps(grid_t, grid_l, predicted, realized, strategies):
    """Router and oracle over the three sweeps: points, strategy mix, router choices."""
    if len(grid_t) == len(grid_l):
        both = (grid_t, grid_l)
    else:
        gt, gl = np.meshgrid(grid_t, grid_l, indexing="ij")
        both = (gt.ravel(), gl.ravel())
    pairs = {
        "tokens": (grid_t, np.zeros_like(grid_t)),
        "latency": (np.zeros_like(grid_l), grid_l),
        "both": both,
    }
    adaptive, oracle, mix, router_choice = {}, {}, {}, {}
    for sweep, (lt, ll) in pairs.items():
        for store, matrices in ((adaptive, predicted), (oracle, realized)):
            # per-query argmax of A - lt * T - ll * L for each penalty pair
            choice = np.stack([oracle_choice(*matrices, a, b) for a, b in zip(lt, ll)])
            acc, tok, lat = _realized(choice, *realized)
            store[sweep] = pd.DataFrame({
                "lambda_tokens": lt, "lambda_latency": ll, "accuracy": acc,
                "mean_tokens": tok, "mean_latency_s": lat,
            })
            if store is adaptive:
                router_choice[sweep] = choice
                share = np.stack([(choice == j).mean(axis=1) for j in range(len(strategies))],
                                 axis=1)
                mix[sweep] = pd.DataFrame(share, columns=strategies)
    return adaptive, oracle, mix, router_choice


def _realized(choice, Y, T, L):
    """Mean accuracy, tokens and latency of per-query choices (n_lambdas, n_queries)."""
    rows = np.arange(Y.shape[0])[None, :]
    return (Y[rows, choice].mean(axis=1), T[rows, choice].mean(axis=1),
            L[rows, choice].mean(axis=1))


def _frontiers(static, adaptive, oracle, col, choice, Y, C, n_boot, random_state):
    """Gap closed at budgets, area under each frontier, and the frontier check, on one axis."""
    sc, sa = static[col].to_numpy(), static["accuracy"].to_numpy()
    rc, ra = adaptive[col].to_numpy(), adaptive["accuracy"].to_numpy()
    oc, oa = oracle[col].to_numpy(), oracle["accuracy"].to_numpy()
    budgets = budget_grid(sc)
    gap = []
    s_at, r_at, o_at = (frontier_at(c, a, budgets) for c, a in ((sc, sa), (rc, ra), (oc, oa)))
    for b, s, r, o in zip(budgets, s_at, r_at, o_at):
        denom = o - s
        closed = (r - s) / denom if np.isfinite(denom) and denom > 1e-12 and np.isfinite(r) \
            else np.nan
        gap.append({"budget": float(b), "static_accuracy": s, "router_accuracy": r,
                    "oracle_accuracy": o, "gap_closed": closed})
    lo, hi = float(sc.min()), float(sc.max())
    use_log = bool(min(sc.min(), rc.min(), oc.min()) > 0)
    auc = {name: frontier_auc(c, a, cost_range=(lo, hi), log_cost=use_log)
           for name, c, a in (("static", sc, sa), ("router", rc, ra), ("oracle", oc, oa))}
    auc.update(lo=lo, hi=hi, log_axis=use_log)
    cmp = compare_frontiers(sc, sa, rc, ra)
    knots = cmp["budgets"]
    check = {key: cmp[key] for key in ("at_or_above_everywhere", "below_at_budgets",
                                       "largest_shortfall", "out_of_reach_budgets")}
    check["router_min_cost"] = cmp["min_cost"]
    if n_boot:
        diffs = bootstrap_frontier_difference(choice, Y, C, n_boot=int(n_boot),
                                              random_state=random_state)
        first = [int(np.flatnonzero(sc == k)[0]) for k in knots]
        lo_ci, hi_ci = np.percentile(diffs[:, first], [5, 95], axis=0)
        check.update(
            budgets=knots.tolist(),
            difference=(np.nan_to_num(cmp["at"], nan=0.0) - cmp["static_at"]).tolist(),
            difference_ci90=[[float(a), float(b)] for a, b in zip(lo_ci, hi_ci)],
            clearly_below_at_budgets=knots[hi_ci < 0].tolist(),
            n_boot=int(n_boot),
        )
    return gap, auc, check


def _short_repr(est, limit=200) -> str:
    text = " ".join(repr(est).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."

