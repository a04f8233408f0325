"""Regenerate docs/api.md from the docstrings of the public names.

Run: python docs/make_api.py   (writes docs/api.md next to this file)

Lists every name of ``ttcrouter._EXPORTS`` and ``ttcrouter.executors._EXPORTS`` plus the
extra public names below, each with its signature and the first line of its docstring.
A name whose module is missing is listed as not available rather than failing.
"""

from __future__ import annotations

import inspect
import os
import sys
from importlib import import_module
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# module -> extra public names (beyond the lazy export maps)
EXTRA = {
    "ttcrouter.runs": ["RUN_COLUMNS", "read_provenance"],
    "ttcrouter.metrics": ["realized_utility", "routed_accuracy", "routed_mean_tokens",
                          "routed_mean_latency", "make_utility_scorer", "make_accuracy_scorer",
                          "make_tokens_scorer", "make_latency_scorer", "routing_scorers",
                          "oracle_choice", "static_strategy_table", "pareto_frontier",
                          "frontier_auc", "split_half_reliability"],
    "ttcrouter.evaluation": ["EvaluationReport", "frontier_at", "BatchBudgetDisplay",
                             "batch_budget_comparison"],
    "ttcrouter.budgeting": ["BudgetedRun", "check_budget", "unwrap_router"],
    "ttcrouter.serving": ["RoutedResult"],
    "ttcrouter.persistence": ["RouterFileError", "save_router", "load_router", "router_lambda"],
    "ttcrouter.frontier": ["pareto_frontier", "upper_envelope", "frontier_at", "frontier_auc",
                           "dominated", "budget_grid", "lambda_grid",
                           "bootstrap_frontier_difference"],
    "ttcrouter.crossfit": ["fit_predict_fold"],
    "ttcrouter.lifetime": ["reap_children_on_exit", "exit_cleanly_on_sigterm",
                           "record_engine_pids", "live_engine_pids"],
    "ttcrouter.atomic": ["atomic_path", "write_atomic"],
    "ttcrouter.provenance": ["hardware_info", "package_versions", "now"],
    "ttcrouter.arguments": ["check_command"],
    "ttcrouter.executors.search": ["register", "search_for", "select_candidate"],
    "ttcrouter.executors.factory": ["make_executor"],
    "ttcrouter.models": ["embedded_generator_path", "embedded_encoder_path", "resolve_model"],
    "ttcrouter.datasets": ["arithmetic", "gsm_symbolic", "load_jsonl", "load_queries"],
    "ttcrouter.collection": ["load_collection", "export_collection"],
    "ttcrouter.cli": ["main"],
    "ttcrouter.verifier_samples": ["verifier_columns"],
    "ttcrouter.step_features": ["GeneratorStepFeatures", "StepFeatures", "STAT_NAMES",
                                "default_prompt_modes"],
    "ttcrouter.embedding": ["load_pretrained", "resolve_model_folder"],
    "ttcrouter.verifier_commands": ["rescore_runs"],
}

SECTIONS = [
    ("Strategies", ["ttcrouter.strategies"]),
    ("Runs and samples tables", ["ttcrouter.runs", "ttcrouter.samples"]),
    ("Estimators", ["ttcrouter.embedding", "ttcrouter.probe", "ttcrouter.costs",
                    "ttcrouter.router", "ttcrouter.tuning", "ttcrouter.crossfit",
                    "ttcrouter.validation", "ttcrouter.allocation", "ttcrouter.budgeting",
                    "ttcrouter.verifier", "ttcrouter.step_features"]),
    ("Frontier, metrics and evaluation", ["ttcrouter.frontier", "ttcrouter.metrics",
                                          "ttcrouter.evaluation"]),
    ("Data", ["ttcrouter.synthetic", "ttcrouter.datasets", "ttcrouter.collection",
              "ttcrouter.grading", "ttcrouter.models"]),
    ("Executors", ["ttcrouter.executors.base", "ttcrouter.executors.vllm_backend",
                   "ttcrouter.executors.openai_backend", "ttcrouter.executors.hf_backend",
                   "ttcrouter.executors.scoring", "ttcrouter.executors.prm",
                   "ttcrouter.executors.verifier_scorer",
                   "ttcrouter.executors.results", "ttcrouter.executors.search",
                   "ttcrouter.executors.runner", "ttcrouter.executors.factory"]),
    ("Serving, server and command line", ["ttcrouter.persistence", "ttcrouter.serving",
                                          "ttcrouter.server", "ttcrouter.cli",
                                          "ttcrouter.arguments", "ttcrouter.verifier_commands"]),
    ("Files, provenance, processes", ["ttcrouter.atomic", "ttcrouter.provenance",
                                      "ttcrouter.lifetime"]),
]


def public_names() -> dict:
    """module -> ordered list of public names."""
    import ttcrouter
    import ttcrouter.executors as ex

    out: dict = {}
    for exports, pkg in ((ttcrouter._EXPORTS, "ttcrouter"), (ex._EXPORTS, "ttcrouter.executors")):
        for name, mod in exports.items():
            out.setdefault(f"{pkg}.{mod}", []).append(name)
    for mod, names in EXTRA.items():
        lst = out.setdefault(mod, [])
        lst.extend(n for n in names if n not in lst)
    return out


def describe(obj) -> tuple[str, str]:
    doc = inspect.getdoc(obj) or ""
    first = doc.strip().split("\n\n")[0].replace("\n", " ") if doc else "(no docstring)"
    if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj):
        try:
            sig = str(inspect.signature(obj))
        except (TypeError, ValueError):
            sig = "(...)"
        return sig, first
    return "", f"constant: `{obj!r}`"[:200]


def render() -> str:
    names = public_names()
    lines = ["# API reference", "",
             "Generated by `python docs/make_api.py` from the docstrings: every public name, "
             "its signature and the first paragraph of its docstring. Names re-exported at "
             "the top level (`from ttcrouter import X`) are those of `ttcrouter._EXPORTS`; "
             "executors come from `ttcrouter.executors`.", ""]
    seen = set()
    for title, modules in SECTIONS:
        lines += [f"## {title}", ""]
        for mod in modules:
            if mod not in names:
                continue
            seen.add(mod)
            try:
                module = import_module(mod)
            except Exception as exc:  # noqa: BLE001
                lines += [f"### `{mod}`", "", f"(not importable here: {exc})", ""]
                continue
            lines += [f"### `{mod}`", ""]
            for name in names[mod]:
                obj = getattr(module, name, None)
                if obj is None:
                    lines.append(f"- `{name}`: (not defined in this version)")
                    continue
                sig, first = describe(obj)
                lines.append(f"- `{name}{sig}`: {first}")
                if inspect.isclass(obj):
                    for meth, member in vars(obj).items():
                        if meth.startswith("_"):
                            continue
                        if isinstance(member, property):
                            doc = inspect.getdoc(member) or "(property)"
                            lines.append(f"  - `.{meth}` (property): "
                                         f"{doc.split(chr(10) * 2)[0].replace(chr(10), ' ')}")
                        elif inspect.isfunction(member):
                            msig, mfirst = describe(member)
                            lines.append(f"  - `.{meth}{msig}`: {mfirst}")
            lines.append("")
    rest = sorted(set(names) - seen)
    if rest:
        lines += ["## Other", ""]
        for mod in rest:
            lines.append(f"- `{mod}`: {', '.join(names[mod])}")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    out = Path(__file__).with_name("api.md")
    out.write_text(render())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
