"""The evaluation report: what :func:`~ttcrouter.evaluation.evaluate` measured, as JSON and markdown.

:class:`EvaluationReport` holds the tables; :meth:`EvaluationReport.save` writes
``metrics.json``, ``report.md`` and the plots (:mod:`ttcrouter.evaluation.plots`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .._version import __version__
from .batch import batch_markdown, batch_summary_lines
from .mixes import MIX_DIFFERENCE, matched_budget_mixes, mix_sentences
from .plots import (
    BatchBudgetDisplay,
    COST_AXES,
    FrontierDisplay,
    MatchedMixDisplay,
    StrategyMixDisplay,
)

__all__ = ["EvaluationReport", "SWEEPS"]

#: The penalty sweeps: tokens only, latency only, both.
SWEEPS = ("tokens", "latency", "both")


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
    batch : DataFrame or None
        With ``batch_budgets``: allocation, per-query lambdas and the static mix at each
        batch budget (:func:`ttcrouter.evaluation.batch.batch_budget_comparison`).
    batch_details : dict
        The per-fold prices and static mixes behind ``batch``.
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
    batch: pd.DataFrame | None = None
    batch_details: dict = field(default_factory=dict)
    fitted_encoder: object = field(default=None, repr=False)
    fitted_router: object = field(default=None, repr=False)

    @property
    def matched_mixes(self) -> pd.DataFrame:
        """The token-aware and latency-aware routers' mixes at the gap-closed budgets.

        :func:`ttcrouter.evaluation.mixes.matched_budget_mixes` of this report.
        """
        return matched_budget_mixes(self)

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
            "matched_budget_mixes": records(self.matched_mixes),
            "auc": _jsonable(self.auc),
            "frontier_check": _jsonable(self.frontier_check),
            "config": _jsonable(self.config),
            "timings": _jsonable(self.timings),
            **({} if self.batch is None else {
                "batch_budgets": records(self.batch),
                "batch_details": _jsonable(self.batch_details)}),
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
        lines.append("token-aware against latency-aware router at matched budgets:")
        lines += [f"  {text}" for text in mix_sentences(self.matched_mixes)]
        if self.batch is not None:
            lines += batch_summary_lines(self.batch)
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """The content of ``report.md``: headline tables, frontier check, plots, sweeps."""
        return _markdown(self)

    def save(self, report_dir) -> dict:
        """Write ``metrics.json``, the plots and ``report.md`` into ``report_dir``.

        Returns
        -------
        dict
            Name -> path of each file written (also stored in :attr:`files`).
        """
        out = Path(report_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.files = {}
        for axis in COST_AXES:
            path = out / f"accuracy_vs_{axis}.png"
            FrontierDisplay.from_report(self, axis=axis).plot().figure_.savefig(path)
            self.files[f"accuracy_vs_{axis}"] = str(path)
        path = out / "strategy_mix.png"
        StrategyMixDisplay.from_report(self).plot().figure_.savefig(path)
        self.files["strategy_mix"] = str(path)
        path = out / "strategy_mix_matched.png"
        MatchedMixDisplay.from_report(self).plot().figure_.savefig(path)
        self.files["strategy_mix_matched"] = str(path)
        if self.batch is not None:
            path = out / "batch_budgets.png"
            BatchBudgetDisplay.from_report(self).plot().figure_.savefig(path)
            self.files["batch_budgets"] = str(path)
        metrics = out / "metrics.json"
        metrics.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False,
                                      default=str) + "\n")
        self.files["metrics"] = str(metrics)
        report = out / "report.md"
        report.write_text(self.to_markdown())
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


def _md_table(df: pd.DataFrame, floatfmt=".3f") -> str:
    # None, not NaN, is what tabulate prints as missingval
    return (df.astype(object).where(df.notna(), None)
            .to_markdown(index=False, floatfmt=floatfmt, missingval="n/a"))


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
        "their outcomes (a frozen encoder embeds them but learns nothing). The oracle knows "
        "each test query's true accuracy and costs for every strategy: it is an upper bound, "
        "not an achievable policy.",
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
    if rep.batch is not None:
        parts += batch_markdown(rep.batch, rep.config)
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
        "## Token-aware against latency-aware routing at matched budgets",
        "",
        "At each budget, the setting of each sweep with the best test accuracy whose mean "
        "cost on that axis is within the budget (the point its frontier takes there). "
        f"Mixes that route fewer than {MIX_DIFFERENCE:.0%} of the queries differently "
        "count as the same.",
        "",
        *[f"- {text}" for text in mix_sentences(rep.matched_mixes)],
        "",
        "![strategy mix at matched budgets](strategy_mix_matched.png)",
        "",
        "## Adaptive router sweeps",
        "",
        "Penalties that route every test query the same way give the same point; "
        "each point is listed once, at the smallest penalty that gives it "
        "(`metrics.json` has every penalty).",
        "",
    ]
    for sweep in SWEEPS:
        points = rep.adaptive[sweep].drop_duplicates(
            subset=["accuracy", "mean_tokens", "mean_latency_s"])
        parts += [f"### lambda sweep: {sweep}", "",
                  _md_table(points, floatfmt=".4g"), ""]
    parts += ["## Timings (s)", "",
              _md_table(pd.DataFrame([rep.timings]), floatfmt=".1f"), ""]
    return "\n".join(parts)
