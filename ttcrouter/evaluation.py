"""Evaluate a router on held-out queries: static strategies, the adaptive router, the oracle.

:func:`evaluate` splits a runs table by query, fits the encoder and the router once on the
training queries, and on the test queries compares

- every **static** strategy (the same strategy for every query),
- the **adaptive** router swept over penalties (tokens only, latency only, both),
- the per-query **oracle**, which knows the true accuracy and costs of every strategy on
  every test query and maximises ``Y - lambda_tokens * T - lambda_latency * L``.

The router is fitted once: a penalty only moves the argmax of
``a_hat - lambda_tokens * T_hat - lambda_latency * L_hat``, so predictions are computed once
and the sweep reuses them.

Headline numbers: at a matched mean-cost budget ``B``, with each frontier taken as the upper
envelope "best accuracy at mean cost <= B", the share of the gap between the best static
strategy and the oracle that the router closes, ``(router - static) / (oracle - static)``;
and the area under each frontier over the static cost range (log-cost axis scaled to [0, 1],
:func:`ttcrouter.metrics.frontier_auc`).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone

from ._version import __version__
from .metrics import frontier_auc, oracle_choice, static_strategy_table
from .runs import RunsSummary, aggregate_runs, read_runs, split_queries

__all__ = [
    "EvaluationReport",
    "evaluate",
    "frontier_at",
    "MIN_TRAIN_QUERIES",
    "MIN_TEST_QUERIES",
]

#: Fewest training queries :func:`evaluate` accepts (the probe calibrates with 3 folds).
MIN_TRAIN_QUERIES = 6
#: Fewest test queries :func:`evaluate` accepts.
MIN_TEST_QUERIES = 2

_AXES = {"tokens": "mean_tokens", "latency": "mean_latency_s"}
_SWEEPS = ("tokens", "latency", "both")


# ---------------------------------------------------------------------------------------
# small numeric helpers (pure functions of matrices)
# ---------------------------------------------------------------------------------------

def _realized(choice, Y, T, L):
    """Mean accuracy, tokens and latency of per-query choices (n_lambdas, n_queries)."""
    rows = np.arange(Y.shape[0])[None, :]
    return (Y[rows, choice].mean(axis=1), T[rows, choice].mean(axis=1),
            L[rows, choice].mean(axis=1))


def _bootstrap_shortfalls(choice, Y, C, n_boot, seed):
    """Bootstrap over test queries of (router frontier - static frontier) at static costs.

    ``choice`` (n_lambdas, n_queries) are the router's picks, ``Y`` and ``C`` (n_queries,
    n_strategies) accuracies and one cost. Each resample reweights the queries (multinomial
    counts); in it, every static strategy's resampled mean cost is a budget, at which both
    frontiers are read (nothing within the budget counts as accuracy 0). Returns
    (n_boot, n_strategies) differences, router minus static.
    """
    n_q = Y.shape[0]
    rows = np.arange(n_q)[None, :]
    RA, RC = Y[rows, choice], C[rows, choice]
    W = np.random.default_rng(seed).multinomial(n_q, np.full(n_q, 1.0 / n_q), size=n_boot)
    ra, rc = W @ RA.T / n_q, W @ RC.T / n_q
    sa, sc = W @ Y / n_q, W @ C / n_q
    out = np.empty((n_boot, Y.shape[1]))
    for j in range(Y.shape[1]):
        b = sc[:, j:j + 1] * (1 + 1e-12) + 1e-12
        r = np.where(rc <= b, ra, 0.0).max(axis=1)
        st = np.where(sc <= b, sa, 0.0).max(axis=1)
        out[:, j] = r - st
    return out


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
        ok = cost <= b * (1 + 1e-12) + 1e-12
        if ok.any():
            out[i] = accuracy[ok].max()
    return out


def _auto_grid(mean_costs, n=101):
    """0, a log grid, and a last penalty so large that the cheapest strategy always wins.

    The grid is dense (routing a test set at one more penalty costs next to nothing): each
    penalty is one router setting, and a sparse grid leaves budgets at which no setting
    lands close to the budget.

    The log grid runs from ``1e-3 / spread`` (cost differences barely matter) to
    ``30 / spread`` (they dominate predicted accuracy differences), where ``spread`` is the
    range of the strategies' mean training costs. The last value (``1e6 / spread``) makes
    even the oracle, whose per-query accuracy differences reach 1, pick the cheapest
    strategy, so every curve reaches the cheap end of the cost axis.
    """
    mean_costs = np.asarray(mean_costs, dtype=float)
    scale = float(np.nanmax(mean_costs) - np.nanmin(mean_costs))
    if not np.isfinite(scale) or scale <= 0:
        scale = float(np.nanmax(np.abs(mean_costs))) or 1.0
    return np.r_[0.0, np.geomspace(1e-3, 30.0, n - 2), 1e6] / scale


def _grid(values, mean_costs, what):
    if values is None:
        return _auto_grid(mean_costs)
    grid = np.atleast_1d(np.asarray(values, dtype=float)).ravel()
    if grid.size == 0 or not np.all(np.isfinite(grid)) or (grid < 0).any():
        raise ValueError(f"{what} must be a non-empty list of finite penalties >= 0, got {values!r}.")
    return np.unique(grid)


# ---------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------

@dataclass
class EvaluationReport:
    """What :func:`evaluate` measured on the test queries.

    Attributes
    ----------
    strategies : list of str
        Canonical strategy names (column order).
    n_train, n_test : int
        Queries on each side of the split (with ``cv``: training queries of one fold, and
        all queries, each tested by the fold that left it out).
    static : DataFrame
        One row per strategy: ``accuracy``, ``mean_tokens``, ``mean_latency_s``.
    adaptive, oracle : dict of str to DataFrame
        Per sweep (``"tokens"``, ``"latency"``, ``"both"``): one row per penalty pair with
        ``lambda_tokens``, ``lambda_latency``, ``accuracy``, ``mean_tokens``, ``mean_latency_s``.
    mix : dict of str to DataFrame
        Per sweep: share of test queries routed to each strategy (columns) at each penalty
        pair (rows, same order as ``adaptive``).
    gap_closed : DataFrame
        One row per (cost axis, budget): ``static_accuracy``, ``router_accuracy``,
        ``oracle_accuracy``, ``gap_closed``.
    auc : dict
        ``{axis: {"static": a, "router": a, "oracle": a, "lo": c, "hi": c}}``.
    frontier_check : dict
        ``{axis: {"at_or_above_everywhere": bool, "below_at_budgets": [...],
        "largest_shortfall": float, "out_of_reach_budgets": [...], "router_min_cost": c}}``:
        whether the router's frontier is at or above the static frontier at every budget
        between the cheapest and the dearest static strategy (checked at every static cost,
        where the static frontier steps). A budget under the router's cheapest point counts
        as below and is also listed in ``out_of_reach_budgets``; ``largest_shortfall`` is the
        largest accuracy gap at the budgets the router reaches. With ``n_boot``, also ``budgets``,
        ``difference`` (router minus static at each), ``difference_ci90`` (bootstrap over
        test queries) and ``clearly_below_at_budgets`` (whole interval below 0).
    config : dict
        Split, penalties, estimators and versions.
    timings : dict
        Seconds per stage.
    files : dict
        Paths written by :meth:`save` (empty until then).
    fitted_encoder, fitted_router : estimator
        The encoder and router fitted on the training queries (not saved in the report).
    """

    strategies: list
    n_train: int
    n_test: int
    static: pd.DataFrame
    adaptive: dict
    oracle: dict
    mix: dict
    gap_closed: pd.DataFrame
    auc: dict
    frontier_check: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    fitted_encoder: object = field(default=None, repr=False)
    fitted_router: object = field(default=None, repr=False)

    @property
    def best_static(self) -> str:
        """Name of the static strategy with the highest test accuracy."""
        return str(self.static["accuracy"].idxmax())

    def to_dict(self) -> dict:
        """JSON-ready dict (the content of ``metrics.json``)."""
        def records(df):
            return json.loads(df.to_json(orient="records"))

        static = self.static.reset_index().rename(columns={"index": "strategy"})
        return {
            "ttcrouter_version": __version__,
            "strategies": list(self.strategies),
            "n_train": int(self.n_train),
            "n_test": int(self.n_test),
            "best_static": self.best_static,
            "static": records(static),
            "adaptive": {k: records(v) for k, v in self.adaptive.items()},
            "oracle": {k: records(v) for k, v in self.oracle.items()},
            "mix": {k: records(v) for k, v in self.mix.items()},
            "gap_closed": records(self.gap_closed),
            "auc": _jsonable(self.auc),
            "frontier_check": _jsonable(self.frontier_check),
            "config": _jsonable(self.config),
            "timings": _jsonable(self.timings),
        }

    def summary(self) -> str:
        """A short plain-text summary: static table, router and oracle, gap closed."""
        cv = self.config.get("cv")
        how = (f"{cv}-fold cross-fitting over {self.n_test} queries (~{self.n_train} train "
               f"per fold)" if cv else f"{self.n_train} train / {self.n_test} test queries")
        lines = [f"ttcrouter evaluation: {how}, {len(self.strategies)} strategies"]
        st = self.static.sort_values("mean_tokens")
        lines.append(f"{'strategy':<32} {'accuracy':>8} {'tokens':>9} {'latency_s':>10}")
        for name, row in st.iterrows():
            mark = " *" if name == self.best_static else ""
            lines.append(f"{name:<32} {row['accuracy']:>8.3f} {row['mean_tokens']:>9.1f} "
                         f"{row['mean_latency_s']:>10.3f}{mark}")
        for label, table in (("router (lambda=0)", self.adaptive["tokens"]),
                             ("oracle (lambda=0)", self.oracle["tokens"])):
            r = table.iloc[0]
            lines.append(f"{label:<32} {r['accuracy']:>8.3f} {r['mean_tokens']:>9.1f} "
                         f"{r['mean_latency_s']:>10.3f}")
        lines.append("gap closed at matched mean cost "
                     "(router - best static) / (oracle - best static):")
        for _, r in self.gap_closed.iterrows():
            lines.append(f"  {r['axis']:<8} budget {r['budget']:>10.3f}: static "
                         f"{_fmt(r['static_accuracy'])}, router {_fmt(r['router_accuracy'])}, "
                         f"oracle {_fmt(r['oracle_accuracy'])}, gap closed "
                         f"{_fmt(r['gap_closed'], pct=True)}")
        for axis, a in self.auc.items():
            lines.append(f"  area under frontier ({axis}): static {a['static']:.3f}, "
                         f"router {a['router']:.3f}, oracle {a['oracle']:.3f}")
        for axis, c in self.frontier_check.items():
            verdict = "yes" if c["at_or_above_everywhere"] else f"no ({_shortfall_text(c)})"
            lines.append(f"  router at or above the static frontier at every {axis} budget: "
                         f"{verdict}")
        return "\n".join(lines)

    def save(self, report_dir) -> dict:
        """Write ``metrics.json``, the plots and ``report.md`` into ``report_dir``.

        Returns
        -------
        dict
            Name -> path of each file written (also stored in :attr:`files`).
        """
        out = Path(report_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = {}
        files.update(_plot_frontiers(self, out))
        files["strategy_mix"] = _plot_mix(self, out / "strategy_mix.png")
        self.files = {k: str(v) for k, v in files.items()}
        metrics = out / "metrics.json"
        metrics.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False,
                                      default=str) + "\n")
        self.files["metrics"] = str(metrics)
        report = out / "report.md"
        report.write_text(_markdown(self))
        self.files["report"] = str(report)
        return dict(self.files)


def _shortfall_text(c: dict) -> str:
    """Where and by how much the router is below the static frontier (one axis)."""
    out = set(c.get("out_of_reach_budgets", []))
    reach = [b for b in c["below_at_budgets"] if b not in out]
    parts = []
    if reach:
        parts.append(f"below at {len(reach)} budget(s), by up to {c['largest_shortfall']:.3f}")
        if "clearly_below_at_budgets" in c:
            n_clear = len(set(c["clearly_below_at_budgets"]) - out)
            parts.append(f"clearly below (90% bootstrap interval under 0) at {n_clear}"
                         if n_clear else "within the test set's noise there")
    if out:
        parts.append(f"{len(out)} budget(s) under the router's cheapest point "
                     f"({c['router_min_cost']:.4g}), out of its reach")
    return "; ".join(parts)


def _fmt(v, pct=False):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{100 * v:.0f}%" if pct else f"{v:.3f}"


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)


# ---------------------------------------------------------------------------------------
# plots and markdown
# ---------------------------------------------------------------------------------------

def _new_figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _envelope_xy(cost, acc):
    """Step coordinates of the upper envelope through the points, sorted by cost."""
    order = np.argsort(cost, kind="stable")
    c, a = np.asarray(cost)[order], np.maximum.accumulate(np.asarray(acc)[order])
    return c, a


def _plot_frontiers(rep: EvaluationReport, out: Path) -> dict:
    files = {}
    for axis, col in _AXES.items():
        fig = _new_figure((7.0, 4.8))
        ax = fig.add_subplot()
        st = rep.static
        ax.scatter(st[col], st["accuracy"], color="0.35", zorder=3, label="static strategies")
        for name, row in st.iterrows():
            ax.annotate(name, (row[col], row["accuracy"]), fontsize=6.5, xytext=(3, 3),
                        textcoords="offset points", color="0.25")
        c, a = _envelope_xy(st[col].to_numpy(), st["accuracy"].to_numpy())
        ax.step(c, a, where="post", color="0.55", ls=":", lw=1, label="static frontier")
        ad = rep.adaptive[axis].sort_values(col)
        ax.plot(ad[col], ad["accuracy"], "o-", color="tab:blue", ms=3, lw=1.5,
                label=f"adaptive router (lambda_{axis} sweep)")
        orc = rep.oracle[axis].sort_values(col)
        ax.plot(orc[col], orc["accuracy"], "s--", color="tab:green", ms=2.5, lw=1.2,
                label="per-query oracle")
        positive = np.r_[st[col].to_numpy(), ad[col].to_numpy(), orc[col].to_numpy()]
        if (positive > 0).all() and positive.max() / positive.min() > 8:
            ax.set_xscale("log")
        ax.set_xlabel("mean generated tokens per query" if axis == "tokens"
                      else "mean latency per query (s)")
        ax.set_ylabel("accuracy on test queries")
        ax.set_title(f"Accuracy vs {axis} ({rep.n_test} test queries)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5, loc="best")
        fig.tight_layout()
        path = out / f"accuracy_vs_{axis}.png"
        fig.savefig(path)
        files[f"accuracy_vs_{axis}"] = path
    return files


def _plot_mix(rep: EvaluationReport, path: Path) -> Path:
    sweeps = [s for s in ("tokens", "latency") if s in rep.mix]
    fig = _new_figure((7.0, 3.2 * len(sweeps) + 0.8))
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    colors = {s: cmap(i % 20) for i, s in enumerate(rep.strategies)}
    for k, sweep in enumerate(sweeps):
        ax = fig.add_subplot(len(sweeps), 1, k + 1)
        mix = rep.mix[sweep]
        lam = rep.adaptive[sweep][f"lambda_{sweep}"].to_numpy()
        x = np.arange(len(lam))
        bottom = np.zeros(len(lam))
        for s in rep.strategies:
            share = mix[s].to_numpy()
            if share.max() > 0:
                ax.bar(x, share, bottom=bottom, width=1.0, color=colors[s], label=s,
                       edgecolor="none")
                bottom += share
        step = max(1, len(lam) // 8)
        ax.set_xticks(x[::step])
        ax.set_xticklabels([f"{v:.2g}" for v in lam[::step]], fontsize=7)
        ax.set_xlim(-0.5, len(lam) - 0.5)
        ax.set_ylim(0, 1)
        ax.set_xlabel(f"lambda_{sweep} (grid index; labels are penalty values)")
        ax.set_ylabel("share of test queries")
        ax.set_title(f"Strategy mix as lambda_{sweep} grows")
        ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path)
    return path


def _md_table(df: pd.DataFrame, floatfmt=".3f") -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(str(c) for c in cols) + " |",
             "| " + " | ".join("---" for _ in cols) + " |"]
    for _, row in df.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if isinstance(v, (float, np.floating)):
                cells.append("n/a" if math.isnan(v) else format(v, floatfmt))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _markdown(rep: EvaluationReport) -> str:
    cfg = rep.config
    st = (rep.static.sort_values("mean_tokens").reset_index()
          .rename(columns={"index": "strategy"}))
    st["strategy"] = [f"**{s}**" if s == rep.best_static else s for s in st["strategy"]]
    r0, o0 = rep.adaptive["tokens"].iloc[0], rep.oracle["tokens"].iloc[0]
    top = pd.DataFrame([
        {"policy": f"best static ({rep.best_static})",
         "accuracy": rep.static.loc[rep.best_static, "accuracy"],
         "mean_tokens": rep.static.loc[rep.best_static, "mean_tokens"],
         "mean_latency_s": rep.static.loc[rep.best_static, "mean_latency_s"]},
        {"policy": "adaptive router, lambda = 0", "accuracy": r0["accuracy"],
         "mean_tokens": r0["mean_tokens"], "mean_latency_s": r0["mean_latency_s"]},
        {"policy": "per-query oracle, lambda = 0", "accuracy": o0["accuracy"],
         "mean_tokens": o0["mean_tokens"], "mean_latency_s": o0["mean_latency_s"]},
    ])
    gap = rep.gap_closed.copy()
    gap["gap_closed"] = [_fmt(v, pct=True) for v in gap["gap_closed"]]
    auc = pd.DataFrame([{"axis": k, "static": v["static"], "router": v["router"],
                         "oracle": v["oracle"]} for k, v in rep.auc.items()])
    check = pd.DataFrame([{
        "axis": k, "at or above everywhere": "yes" if v["at_or_above_everywhere"] else "no",
        "budgets where below": ", ".join(f"{b:.4g}" for b in v["below_at_budgets"]) or "-",
        "largest shortfall": v["largest_shortfall"],
        "out of the router's reach": ", ".join(
            f"{b:.4g}" for b in v.get("out_of_reach_budgets", [])) or "-",
        **({"clearly below (90% interval < 0)":
            ", ".join(f"{b:.4g}" for b in v["clearly_below_at_budgets"]) or "none"}
           if "clearly_below_at_budgets" in v else {}),
    } for k, v in rep.frontier_check.items()])
    per_budget = pd.DataFrame([
        {"axis": k, "budget": b, "router - static": d, "90% interval": f"[{lo:+.3f}, {hi:+.3f}]"}
        for k, v in rep.frontier_check.items() if "difference_ci90" in v
        for b, d, (lo, hi) in zip(v["budgets"], v["difference"], v["difference_ci90"])])
    parts = [
        "# ttcrouter evaluation report",
        "",
        f"Runs: `{cfg.get('source', 'in-memory table')}`. "
        + (f"{rep.n_train} training queries, {rep.n_test} test queries "
           f"(split by query, test_size={cfg.get('test_size')}, seed={cfg.get('random_state')}), "
           if not cfg.get("cv") else
           f"{cfg['cv']}-fold cross-fitting over {rep.n_test} queries (split by query, seed "
           f"{cfg.get('random_state')}): each query is routed by a router fitted on the other "
           f"folds (~{rep.n_train} queries), "
           ) +
        f"{len(rep.strategies)} strategies. Encoder: `{cfg.get('encoder')}`. "
        f"Router: `{cfg.get('router')}`. ttcrouter {__version__}.",
        "",
        "All numbers below are measured on the test queries only; the router never saw "
        "their outcomes (a frozen encoder embeds them but learns nothing). The oracle knows each test query's true accuracy and "
        "costs for every strategy: it is an upper bound, not an achievable policy.",
        "",
        "## Headline",
        "",
        _md_table(top),
        "",
        "Gap closed at matched mean cost: at each budget B, each policy's best accuracy "
        "with mean cost <= B (upper envelope of its points); gap closed = "
        "(router - best static) / (oracle - best static).",
        "",
        _md_table(gap),
        "",
        "Area under each accuracy-cost frontier, cost on a log axis scaled to [0, 1] over "
        "the static cost range (accuracy 0 where nothing fits the budget):",
        "",
        _md_table(auc),
        "",
        "Is the router's frontier at or above the static frontier at every budget between "
        "the cheapest and the dearest static strategy?",
        "",
        _md_table(check),
        "",
    ]
    if len(per_budget):
        n_boot = next(v["n_boot"] for v in rep.frontier_check.values() if "n_boot" in v)
        parts += [
            f"Router minus static accuracy at each static cost, with a 90% interval from "
            f"{n_boot} bootstrap resamples of the test queries (each resample re-reads both "
            f"frontiers at its own static costs). An interval that straddles 0 means the test "
            f"set cannot tell the two frontiers apart at that budget.",
            "",
            _md_table(per_budget, floatfmt=".4g"),
            "",
        ]
    parts += [
        "## Static strategies",
        "",
        _md_table(st),
        "",
        "## Plots",
        "",
        "![accuracy vs tokens](accuracy_vs_tokens.png)",
        "",
        "![accuracy vs latency](accuracy_vs_latency.png)",
        "",
        "Share of test queries routed to each strategy as the penalty grows:",
        "",
        "![strategy mix](strategy_mix.png)",
        "",
        "## Adaptive router sweeps",
        "",
    ]
    parts += ["Penalties that route every test query the same way give the same point; "
              "each point is listed once, at the smallest penalty that gives it "
              "(`metrics.json` has every penalty).", ""]
    for sweep in _SWEEPS:
        points = rep.adaptive[sweep].drop_duplicates(
            subset=["accuracy", "mean_tokens", "mean_latency_s"])
        parts += [f"### lambda sweep: {sweep}", "",
                  _md_table(points, floatfmt=".4g"), ""]
    parts += ["## Timings (s)", "",
              _md_table(pd.DataFrame([rep.timings]), floatfmt=".1f"), ""]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------

class _Stages:
    def __init__(self, progress: bool):
        self.progress = progress
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.timings = {}

    def start(self, name: str, msg: str):
        self._name = name
        self.last = time.perf_counter()
        if self.progress:
            print(f"[ttcrouter] {msg} ...", file=sys.stderr, flush=True)

    def done(self):
        now = time.perf_counter()
        self.timings[self._name] = round(now - self.last, 3)
        if self.progress:
            print(f"[ttcrouter]   done in {now - self.last:.1f}s", file=sys.stderr, flush=True)


def _summary(runs) -> tuple[RunsSummary, str]:
    if isinstance(runs, RunsSummary):
        return runs, "RunsSummary"
    if isinstance(runs, (str, Path)):
        return aggregate_runs(read_runs(runs)), str(runs)
    if isinstance(runs, pd.DataFrame):
        return aggregate_runs(runs), "in-memory table"
    raise TypeError(
        f"runs must be a runs table (DataFrame), a path to one, or a RunsSummary; "
        f"got {type(runs).__name__}."
    )


def _sweep(A, T, L, lambda_tokens, lambda_latency):
    """Per-query argmax of ``A - lt * T - ll * L`` for each penalty pair: (n_lambdas, n_q)."""
    return np.stack([oracle_choice(A, T, L, lt, ll)
                     for lt, ll in zip(lambda_tokens, lambda_latency)])


def _learns_from_queries(encoder) -> bool:
    """False for an encoder whose ``fit`` learns nothing from the texts (a frozen model)."""
    from .embedding import EmbeddingTransformer

    return not isinstance(encoder, EmbeddingTransformer)


def _fit_predict(encoder, router, texts, Y, T, L, tr, te, strategies, E=None):
    """Fit clones of the encoder and router on ``tr``; predicted A, T, L on ``te``.

    ``E``, when given, holds the features of every query from an encoder fitted once
    (``encoder`` is then that fitted encoder and is not refitted).
    """
    if E is None:
        encoder = clone(encoder)
        E_train = np.asarray(encoder.fit_transform(list(texts[tr])))
        E_test = np.asarray(encoder.transform(list(texts[te])))
    else:
        E_train, E_test = E[tr], E[te]
    router = clone(router)
    frame = lambda M, rows: pd.DataFrame(M[rows], columns=strategies)  # noqa: E731
    router.fit(E_train, frame(Y, tr), tokens=frame(T, tr), latency=frame(L, tr))
    router_strategies = [str(s) for s in getattr(router, "strategies_", strategies)]
    order = pd.Index(router_strategies).get_indexer(strategies)
    if (order < 0).any():
        raise RuntimeError(
            f"The fitted router knows strategies {router_strategies}, the runs have {strategies}."
        )
    A_hat = np.asarray(router.predict_accuracy(E_test), dtype=float)[:, order]
    if hasattr(router, "_routable"):
        # the sweep below re-does the router's argmax: keep its pruned strategies out
        A_hat[:, ~router._routable(order)] = -np.inf
    T_hat, L_hat = (np.asarray(m, dtype=float)[:, order] for m in router.predict_costs(E_test))
    return A_hat, T_hat, L_hat, encoder, router


def _query_folds(qids, cv, random_state):
    """``cv`` (train, test) index pairs over queries; every query is tested exactly once."""
    from sklearn.model_selection import KFold

    if isinstance(cv, bool) or not isinstance(cv, (int, np.integer)) or cv < 2:
        raise ValueError(f"cv must be an integer >= 2 (folds over queries) or None, got {cv!r}.")
    n_q = len(qids)
    if n_q // cv * (cv - 1) < MIN_TRAIN_QUERIES or n_q // cv < MIN_TEST_QUERIES:
        raise ValueError(
            f"cv={cv} folds over {n_q} queries leave too few per fold (evaluate needs at least "
            f"{MIN_TRAIN_QUERIES} train and {MIN_TEST_QUERIES} test queries): use fewer folds "
            f"or collect more queries."
        )
    folds = KFold(n_splits=int(cv), shuffle=True, random_state=random_state)
    return list(folds.split(np.arange(n_q)))


def evaluate(runs, *, test_size=0.25, random_state=0, encoder=None, router=None,
             lambda_tokens_grid=None, lambda_latency_grid=None, report_dir=None,
             progress=True, cv=None, n_boot=1000) -> EvaluationReport:
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
        always wins (for the router and the oracle alike). The
        ``"both"`` sweep pairs the two grids element-wise when they have equal lengths,
        else takes their product.
    report_dir : str or Path, default=None
        When given, write ``metrics.json``, ``report.md`` and the PNG plots there.
    progress : bool, default=True
        Print stage messages to stderr.
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

    Returns
    -------
    EvaluationReport

    Raises
    ------
    ValueError
        When the split leaves fewer than :data:`MIN_TRAIN_QUERIES` training or
        :data:`MIN_TEST_QUERIES` test queries, or a penalty grid is invalid.
    """
    stages = _Stages(progress)
    stages.start("aggregate", "reading and aggregating runs")
    summary, source = _summary(runs)
    qids = summary.queries.index.astype(str).to_numpy()
    n_q = len(qids)
    if n_q < MIN_TRAIN_QUERIES + MIN_TEST_QUERIES:
        raise ValueError(
            f"evaluate needs at least {MIN_TRAIN_QUERIES + MIN_TEST_QUERIES} queries with a "
            f"successful run of every strategy, got {n_q}: collect runs on more queries."
        )
    texts = summary.queries["query"].astype(str).to_numpy()
    strategies = list(summary.strategies)
    Y, T, L = (m.to_numpy(dtype=float) for m in (summary.Y, summary.T, summary.L))
    if cv is None:
        train_ids, test_ids = split_queries(qids, test_size=test_size,
                                            random_state=random_state)
        if len(train_ids) < MIN_TRAIN_QUERIES or len(test_ids) < MIN_TEST_QUERIES:
            raise ValueError(
                f"test_size={test_size!r} splits {n_q} queries into {len(train_ids)} train "
                f"and {len(test_ids)} test; evaluate needs at least {MIN_TRAIN_QUERIES} train "
                f"and {MIN_TEST_QUERIES} test queries. Change test_size or collect more "
                f"queries."
            )
        idx = pd.Index(summary.queries.index.astype(str))
        folds = [(idx.get_indexer(train_ids), idx.get_indexer(test_ids))]
    else:
        folds = _query_folds(qids, cv, random_state)
    stages.done()

    if encoder is None:
        from .embedding import EmbeddingTransformer

        encoder = EmbeddingTransformer()
    if router is None:
        from .probe import ProbeClassifier
        from .router import UtilityRouter

        # seeded by random_state too, so that the same command gives the same numbers
        router = UtilityRouter(probe=ProbeClassifier(random_state=random_state))
    what = (f"{len(folds[0][0])} training queries" if cv is None
            else f"{cv} folds of ~{len(folds[0][0])} training queries (cross-fitting)")
    stages.start("fit", f"embedding and fitting the router on {what}")
    te = np.concatenate([f[1] for f in folds])
    E = None
    if not _learns_from_queries(encoder):
        # a frozen model embeds a query the same in every fold: embed each query once
        encoder = clone(encoder)
        E = np.asarray(encoder.fit_transform(list(texts)))
    A_hat, T_hat, L_hat = (np.empty((len(te), len(strategies))) for _ in range(3))
    at = 0
    for f_tr, f_te in folds:
        a, t, l_, fitted_encoder, fitted_router = _fit_predict(
            encoder, router, texts, Y, T, L, f_tr, f_te, strategies, E=E)
        A_hat[at:at + len(f_te)], T_hat[at:at + len(f_te)], L_hat[at:at + len(f_te)] = a, t, l_
        at += len(f_te)
    tr = folds[0][0] if cv is None else np.arange(n_q)
    encoder, router = fitted_encoder, fitted_router
    stages.done()

    stages.start("sweep", f"routing {len(te)} test queries over the lambda sweeps")
    Yt, Tt, Lt = Y[te], T[te], L[te]

    grid_t = _grid(lambda_tokens_grid, T[tr].mean(axis=0), "lambda_tokens_grid")
    grid_l = _grid(lambda_latency_grid, L[tr].mean(axis=0), "lambda_latency_grid")
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
        for name, (A, Tm, Lm), store in (("router", (A_hat, T_hat, L_hat), adaptive),
                                         ("oracle", (Yt, Tt, Lt), oracle)):
            choice = _sweep(A, Tm, Lm, lt, ll)
            if name == "router":
                router_choice[sweep] = choice
            acc, tok, lat = _realized(choice, Yt, Tt, Lt)
            store[sweep] = pd.DataFrame({
                "lambda_tokens": lt, "lambda_latency": ll, "accuracy": acc,
                "mean_tokens": tok, "mean_latency_s": lat,
            })
            if name == "router":
                share = np.stack([(choice == j).mean(axis=1) for j in range(len(strategies))],
                                 axis=1)
                mix[sweep] = pd.DataFrame(share, columns=strategies)

    static = (static_strategy_table(Yt, Tt, Lt, strategies=strategies)
              .rename(columns={"mean_latency": "mean_latency_s"}))
    static.index.name = None

    gap_rows, auc, check = [], {}, {}
    for axis, col in _AXES.items():
        sc, sa = static[col].to_numpy(), static["accuracy"].to_numpy()
        rc, ra = adaptive[axis][col].to_numpy(), adaptive[axis]["accuracy"].to_numpy()
        oc, oa = oracle[axis][col].to_numpy(), oracle[axis]["accuracy"].to_numpy()
        lo, hi = float(sc.min()), float(sc.max())
        if lo > 0 and hi > lo:
            budgets = np.geomspace(lo, hi, 5)
        else:
            budgets = np.linspace(lo, hi, 5) if hi > lo else np.array([hi])
        s_at, r_at, o_at = (frontier_at(c, a, budgets) for c, a in ((sc, sa), (rc, ra),
                                                                      (oc, oa)))
        for b, s, r, o in zip(budgets, s_at, r_at, o_at):
            denom = o - s
            gap = (r - s) / denom if np.isfinite(denom) and denom > 1e-12 and np.isfinite(r) \
                else np.nan
            gap_rows.append({"axis": axis, "budget": float(b), "static_accuracy": s,
                             "router_accuracy": r, "oracle_accuracy": o, "gap_closed": gap})
        use_log = bool(min(sc.min(), rc.min(), oc.min()) > 0)
        auc[axis] = {name: frontier_auc(c, a, cost_range=(lo, hi), log_cost=use_log)
                     for name, c, a in (("static", sc, sa), ("router", rc, ra),
                                        ("oracle", oc, oa))}
        auc[axis].update(lo=lo, hi=hi, log_axis=use_log)
        # The static envelope only steps up at static costs and the router's envelope never
        # decreases, so comparing at every static cost decides "at every budget".
        knots = np.unique(sc)
        s_k, r_k = frontier_at(sc, sa, knots), frontier_at(rc, ra, knots)
        below = ~(np.nan_to_num(r_k, nan=-np.inf) >= s_k - 1e-12)
        reach = below & np.isfinite(r_k)
        check[axis] = {
            "at_or_above_everywhere": bool(not below.any()),
            "below_at_budgets": knots[below].tolist(),
            "largest_shortfall": float(np.max(s_k[reach] - r_k[reach])) if reach.any() else 0.0,
            # budgets under the router's cheapest point: nothing to compare, not "less accurate"
            "out_of_reach_budgets": knots[below & ~np.isfinite(r_k)].tolist(),
            "router_min_cost": float(rc.min()),
        }
        if n_boot:
            diffs = _bootstrap_shortfalls(router_choice[axis], Yt, Tt if axis == "tokens"
                                          else Lt, int(n_boot), random_state)
            first = [int(np.flatnonzero(sc == k)[0]) for k in knots]
            lo, hi = np.percentile(diffs[:, first], [5, 95], axis=0)
            check[axis].update(
                budgets=knots.tolist(),
                difference=(np.nan_to_num(r_k, nan=0.0) - s_k).tolist(),
                difference_ci90=[[float(a), float(b)] for a, b in zip(lo, hi)],
                clearly_below_at_budgets=knots[hi < 0].tolist(),
                n_boot=int(n_boot),
            )
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
        "versions": _versions(),
    }
    report = EvaluationReport(
        strategies=strategies, n_train=len(folds[0][0]), n_test=len(te), static=static,
        adaptive=adaptive, oracle=oracle, mix=mix,
        gap_closed=pd.DataFrame(gap_rows), auc=auc, frontier_check=check, config=config,
        timings=stages.timings,
        fitted_encoder=encoder, fitted_router=router,
    )
    report.timings["total"] = round(time.perf_counter() - stages.t0, 3)
    if report_dir is not None:
        if progress:
            print(f"[ttcrouter] writing the report to {report_dir}", file=sys.stderr, flush=True)
        report.save(report_dir)
    return report


def _short_repr(est, limit=200) -> str:
    text = " ".join(repr(est).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _versions() -> dict:
    import sklearn

    return {"ttcrouter": __version__, "scikit-learn": sklearn.__version__,
            "numpy": np.__version__, "pandas": pd.__version__,
            "python": sys.version.split()[0]}
