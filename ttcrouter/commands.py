"""The work behind ``ttcrouter collect | derive | fit | evaluate | demo | route``, once :mod:`ttcrouter.cli` has parsed.

Each ``cmd_*`` function takes the parsed arguments and returns an exit code. Results go to
stdout with ``print``; everything else (stage messages, warnings) goes through the
``ttcrouter.commands`` logger, which :func:`ttcrouter.cli.main` sends to stderr. A user error
raises :class:`CLIError` (a ``ValueError``), which the command line prints as one line.

This module imports the estimators, hence scikit-learn and pandas; :mod:`ttcrouter.cli`
imports it only when a command runs, so that ``ttcrouter --help`` stays fast.
"""

from __future__ import annotations

import json
import logging
import numbers
import re
import time
from pathlib import Path

from sklearn.pipeline import Pipeline
from sklearn.utils import check_scalar

from .budgeting import BUDGET_KEYWORDS, calibrate_lambda, predicted_mean_costs
from .collection import load_runs
from .costs import CostTable
from .embedding import EmbeddingTransformer
from .evaluation import evaluate
from .models import SHIPPED_RUNS, embedded_generator_path, shipped_runs_path
from .persistence import router_lambda, save_router
from .probe import ProbeClassifier
from .provenance import execution_settings
from .router import UtilityRouter
from .runs import (
    aggregate_runs,
    read_runs,
    strategy_sort_key,
    validate_runs,
)
from .serving import RoutedExecutor
from .strategies import split_strategy_names
from .synthetic import make_synthetic_runs
from .tuning import UtilityRouterCV
from .verifier_commands import collection_request_latency, read_samples_arg, rescore_runs

__all__ = [
    "CLIError",
    "cmd_fit",
    "cmd_evaluate",
    "cmd_demo",
    "cmd_route",
    "read_questions",
    "widely_run_strategies",
]

logger = logging.getLogger(__name__)


class CLIError(ValueError):
    """A user error: printed as one line, exit code 2."""


# ---------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------

def _load_runs(path):
    p = Path(path)
    if not p.exists():
        raise CLIError(f"No runs table at {str(p)!r}.")
    return load_runs(p)


def _aggregate(runs, args):
    """Soft labels and costs, over the strategies named by --strategies (default: all)."""
    names = None
    if getattr(args, "strategies", None):
        names = split_strategy_names(args.strategies)
    summary = aggregate_runs(runs, strategies=names)
    n_all = runs["query_id"].nunique()
    if len(summary) < n_all:
        logger.info("%d of %d queries lack a successful run of some strategy and are left "
                    "out (choose strategies with --strategies)", n_all - len(summary), n_all)
    return summary


def _make_encoder(args):
    kw = {}
    name = getattr(args, "encoder", None)
    if name == "generator":
        # the generator's own hidden states, as the paper embeds with its generator's family
        kw["model"] = str(embedded_generator_path())
    elif name and name != "minilm":
        kw["model"] = name
    if getattr(args, "pooling", None):
        kw["pooling"] = args.pooling
    return EmbeddingTransformer(**kw)


def _make_router(args, random_state=None):
    """The UtilityRouter the flags ask for (``--per-query-costs``), or None for the default."""
    if not getattr(args, "per_query_costs", False):
        return None
    return UtilityRouter(probe=ProbeClassifier(random_state=random_state),
                         costs=CostTable(per_query=True))


def _cheapest(summary, what: str):
    means = (summary.T if what == "tokens" else summary.L).mean(axis=0)
    name = str(means.idxmin())
    return name, float(means.min())


def read_questions(path) -> tuple[list, list]:
    """Read questions from a text file (one per line) or JSONL (a ``"question"`` field).

    A line starting with ``{`` is read as JSON; any other non-blank line is a question.
    Blank lines are skipped.

    Returns
    -------
    questions : list of (line_number, question)
    problems : list of str
        One message per bad line (invalid JSON, no ``"question"`` string).
    """
    path = Path(path)
    if not path.is_file():
        raise CLIError(f"No questions file at {str(path)!r}.")
    questions, problems = [], []
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    problems.append(f"{path}:{lineno}: not valid JSON ({exc.msg})")
                    continue
                q = record.get("question") if isinstance(record, dict) else None
                if not isinstance(q, str) or not q.strip():
                    problems.append(f"{path}:{lineno}: no non-empty \"question\" string field")
                    continue
                questions.append((lineno, q.strip()))
            else:
                questions.append((lineno, line))
    return questions, problems


# ---------------------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------------------

def _budget(summary, args) -> dict:
    """``{"max_mean_latency": ..., "max_mean_tokens": ...}`` from the flags, checked."""
    budget = {}
    for what, value in (("latency", args.max_mean_latency), ("tokens", args.max_mean_tokens)):
        if value is None:
            continue
        name, cost = _cheapest(summary, what)
        if cost > value:
            unit = " s" if what == "latency" else " tokens"
            raise CLIError(
                f"No strategy meets a mean {what} of {value:g}{unit}: the cheapest, {name}, "
                f"averages {cost:.4g}{unit} on these runs. Raise the budget or collect "
                f"cheaper strategies."
            )
        budget[f"max_mean_{what}"] = float(value)
    return budget


def _fit_router(runs, args):
    """Fit Pipeline(embed, router) on the whole runs table; returns (pipeline, metadata)."""
    summary = _aggregate(runs, args)
    budget = _budget(summary, args)
    encoder = _make_encoder(args)
    n_q = len(summary)
    logger.info("%d queries x %d strategies; embedding the queries", n_q,
                len(summary.strategies))
    t0 = time.perf_counter()
    base = _make_router(args, random_state=args.seed) or UtilityRouter()
    if budget:
        # the lambdas meeting the budget are chosen inside UtilityRouterCV's fit
        router = UtilityRouterCV(router=base, **budget, random_state=args.seed)
    else:
        router = base.set_params(lambda_tokens=args.lambda_tokens or 0.0,
                                 lambda_latency=args.lambda_latency or 0.0)
    pipe = Pipeline([("embed", encoder), ("router", router)])
    logger.info("fitting the router")
    pipe.fit(summary.texts, summary.Y, router__tokens=summary.T, router__latency=summary.L)
    meta = {"runs": str(args.runs), "n_queries": n_q, "fit_seconds":
            round(time.perf_counter() - t0, 2), **budget,
            "execution": execution_settings(runs.attrs.get("provenance"))}
    return pipe, meta


def _calibration(args):
    """(questions, targets) of --calibrate-on, read before anything loads; or None.

    The flags were checked by :func:`ttcrouter.arguments.check_command`.
    """
    if args.calibrate_on is None:
        return None
    targets = {f"target_mean_{w}": v for w, v in (("tokens", args.target_mean_tokens),
                                                   ("latency", args.target_mean_latency))
               if v is not None}
    questions, problems = read_questions(args.calibrate_on)
    for p in problems:
        logger.warning("skipped %s", p)
    if not questions:
        raise CLIError(f"No questions in {args.calibrate_on!r} to calibrate on.")
    return [q for _, q in questions], targets


def _calibrate(pipe, texts, targets, path) -> dict:
    """Set the lambdas on ``texts`` (in place); the metadata recorded in the router file."""
    logger.info("calibrating the lambdas on %d unlabelled questions", len(texts))
    calibrate_lambda(pipe, texts, copy=False, **targets)
    means = predicted_mean_costs(pipe, texts)
    return {"queries": str(path), "n_queries": len(texts), **targets,
            "predicted_mean_tokens": means["tokens"], "predicted_mean_latency": means["latency"]}


def cmd_fit(args) -> int:
    """``ttcrouter fit``: fit a router on a runs table and save it."""
    calibration = _calibration(args)
    runs = _load_runs(args.runs)
    pipe, meta = _fit_router(runs, args)
    if calibration is not None:
        meta["calibration"] = _calibrate(pipe, *calibration, args.calibrate_on)
    final = pipe.steps[-1][1]
    out = save_router(pipe, args.out, metadata=meta)
    lt, ll = router_lambda(final, "lambda_tokens"), router_lambda(final, "lambda_latency")
    print(f"router saved to {out} ({len(getattr(final, 'strategies_', []))} strategies, "
          f"lambda_tokens={lt:g}, lambda_latency={ll:g})")
    if calibration is not None:
        cal = meta["calibration"]
        print(f"calibrated on {cal['n_queries']} questions: predicted mean tokens "
              f"{cal['predicted_mean_tokens']:.4g}, mean latency "
              f"{cal['predicted_mean_latency']:.4g}s")
    return 0


# ---------------------------------------------------------------------------------------
# evaluate / demo
# ---------------------------------------------------------------------------------------

def _run_evaluation(runs, args, report_dir):
    cv = getattr(args, "cv", None) or None  # --cv 0: one split
    report = evaluate(_aggregate(runs, args), test_size=args.test_size, random_state=args.seed,
                      encoder=_make_encoder(args),
                      router=_make_router(args, random_state=args.seed),
                      report_dir=report_dir, progress=True, cv=cv,
                      batch_budgets=_batch_budgets(args))
    print(report.summary())
    print(f"\nreport written to {Path(report_dir) / 'report.md'}")
    return report


def _batch_budgets(args):
    """evaluate's ``batch_budgets`` from --batch-budgets / --batch-latency-budgets."""
    tokens = getattr(args, "batch_budgets", None)
    latency = getattr(args, "batch_latency_budgets", None)
    if latency is None and tokens == "auto":
        latency = "auto"
    return {k: v for k, v in (("tokens", tokens), ("latency", latency)) if v is not None} or None


def cmd_evaluate(args) -> int:
    """``ttcrouter evaluate``: static vs adaptive vs oracle on held-out queries."""
    runs = _load_runs(args.runs)
    if getattr(args, "scorer", None):
        samples = read_samples_arg(args.runs)
        runs = rescore_runs(runs, samples, args.scorer,
                            request_latency=collection_request_latency(samples))
    _run_evaluation(runs, args, args.report)
    return 0


def widely_run_strategies(runs, share=0.9):
    """Strategies run on at least ``share`` of the most-run strategy's queries.

    Parameters
    ----------
    runs : DataFrame
        A runs table, possibly from a collection still going on.
    share : float, default=0.9

    Returns
    -------
    str or None
        Their comma-joined names (in the runs table's strategy order) when some strategies
        ran on fewer queries; None when every strategy qualifies.
    """
    ok = validate_runs(runs)
    ok = ok[ok["error"].isna()]
    counts = ok.groupby("strategy")["query_id"].nunique()
    keep = counts[counts >= share * counts.max()]
    if len(keep) == len(counts):
        return None
    left = ", ".join(f"{n} ({counts[n]} queries)" for n in counts.index if n not in keep.index)
    logger.info("demo: some strategies ran on fewer queries: %s; evaluating the %d "
                "strategies run on at least %d of %d queries (pass --strategies to choose)",
                left, len(keep), keep.min(), ok["query_id"].nunique())
    return ",".join(sorted(keep.index, key=strategy_sort_key))


def cmd_demo(args) -> int:
    """``ttcrouter demo``: evaluate on the shipped runs table and save the demo router."""
    t0 = time.perf_counter()
    path = shipped_runs_path()
    if path is not None:
        logger.info("runs table: %s (shipped with ttcrouter)", path)
        runs = read_runs(path)
    else:
        banner = "!" * 78
        logger.warning(
            "\n%s\n! NOTICE: the shipped runs table ttcrouter/data/%s is not\n! installed. "
            "This demo falls back to SYNTHETIC runs (make_synthetic_runs):\n! no model was "
            "run, the numbers below illustrate the pipeline only.\n%s",
            banner, SHIPPED_RUNS, banner)
        runs = make_synthetic_runs(n_queries=160, random_state=args.seed)
    if not args.strategies:
        args.strategies = widely_run_strategies(runs)
    report = _run_evaluation(runs, args, args.report)
    fitted_on = ("training split of the demo" if not args.cv else
                 f"the last of the demo's {args.cv} cross-fitting folds "
                 f"(~{report.n_train} queries)")
    try:  # keep the router fitted on the training queries, for `ttcrouter route`
        if report.fitted_router is not None and report.fitted_encoder is not None:
            pipe = Pipeline([("embed", report.fitted_encoder),
                             ("router", report.fitted_router)])
            out = save_router(pipe, Path(args.report) / "router.joblib",
                              metadata={"runs": str(path) if path else "synthetic",
                                        "fitted_on": fitted_on,
                                        "execution": execution_settings(
                                            runs.attrs.get("provenance"))})
            print(f"router (fitted on {fitted_on}) saved to {out}")
    except Exception as exc:  # noqa: BLE001 - the report is what the demo is for
        logger.warning("could not save the demo router: %s", exc)
    print(f"demo finished in {time.perf_counter() - t0:.1f}s")
    return 0


# ---------------------------------------------------------------------------------------
# route
# ---------------------------------------------------------------------------------------

def cmd_route(args) -> int:
    """``ttcrouter route``: route questions and run (or only name) the chosen strategy.

    Each result is one record on stdout. ``load_s`` (loading the router file and its
    models, once) and ``engine_start_s`` (starting the generator, once) are reported apart
    from each question's ``route_latency_s`` and ``latency_s``.
    """
    budget = _route_budget(args)
    questions = [(None, q) for q in args.questions]
    problems = []
    if args.file:
        from_file, problems = read_questions(args.file)
        questions += from_file
        for p in problems:
            logger.warning("skipped %s", p)
    if not questions:
        raise CLIError("No questions to route: give them as arguments or with --file.")
    exec_kw = {}
    if args.max_tokens is not None:
        exec_kw["max_tokens"] = check_scalar(args.max_tokens, "--max-tokens", numbers.Integral,
                                             min_val=1)
    base_url = None
    if args.base_url:
        base_url = args.base_url if len(args.base_url) > 1 else args.base_url[0]
    routed = RoutedExecutor(args.router, backend=args.backend, model=args.model,
                            base_url=base_url, scorer=getattr(args, "scorer", "logprob"),
                            executor_kwargs=exec_kw)
    texts = [q for _, q in questions]
    failed = 0
    try:
        if budget:
            failed = _route_budgeted(routed, texts, budget, args)
        elif args.route_only:
            choice, acc, seconds = routed.route(texts)
            for i, (q, s) in enumerate(zip(texts, choice)):
                rec = {"question": q, "strategy": s,
                       "predicted_accuracy": None if acc is None else float(acc[i]),
                       "route_latency_s": seconds / len(texts), "load_s": routed.load_s}
                _print_result(rec, args.json)
        else:
            logger.info("routing %d question(s); starting the %s backend", len(texts),
                        args.backend)
            try:
                results = routed.route_batch(texts)
            except (RuntimeError, OSError, ConnectionError) as exc:
                raise CLIError(f"running the chosen strategies on the {args.backend} backend "
                               f"failed: {type(exc).__name__}: {exc}") from exc
            for result in results:
                failed += result.error is not None
                _print_result(result.to_dict(), args.json)
    finally:
        routed.close()
    return 1 if (problems or failed) else 0


def _route_budget(args) -> dict:
    """The batch budget of ``route``'s flags, checked before the router or an engine loads."""
    budget = {k: v for k in BUDGET_KEYWORDS if (v := getattr(args, k, None)) is not None}
    for k, v in budget.items():
        count = k == "concurrency"
        check_scalar(v, "--" + k.replace("_", "-"), numbers.Integral if count else numbers.Real,
                     min_val=1 if count else 0, include_boundaries="left" if count else "neither")
    if set(budget) == {"concurrency"}:
        raise CLIError("--concurrency is the execution model of a batch budget: give "
                       "--max-total-latency (or another --max-* budget) with it.")
    return budget


def _route_budgeted(routed, texts, budget, args) -> int:
    """Allocate the budget over ``texts``, run (unless --route-only), print records and a
    summary; returns the number of failed questions."""
    if args.route_only:
        names, acc, alloc, seconds = routed.allocate(texts, **budget)
        for i, (q, s) in enumerate(zip(texts, names)):
            _print_result({"question": q, "strategy": s, "predicted_accuracy":
                           None if acc is None else float(acc[i]),
                           "route_latency_s": seconds / len(texts), "load_s": routed.load_s},
                          args.json)
        _print_summary({"n_questions": len(texts), "budget": alloc.budget,
                        "predicted_tokens": alloc.tokens, "predicted_latency_s": alloc.latency,
                        "predicted_makespan_s": alloc.makespan,
                        "predicted_accuracy": alloc.mean_accuracy}, args.json)
        return 0
    logger.info("allocating the budget over %d question(s); starting the %s backend",
                len(texts), args.backend)
    try:
        run = routed.run_budgeted(texts, **budget)
    except (RuntimeError, OSError, ConnectionError) as exc:
        raise CLIError(f"running the chosen strategies on the {args.backend} backend "
                       f"failed: {type(exc).__name__}: {exc}") from exc
    for result in run.results:
        _print_result(result.to_dict(), args.json)
    summary = run.summary()
    _print_summary(summary, args.json)
    return summary["failed"]


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"summary": summary}, ensure_ascii=False, default=float), flush=True)
        return
    budget = ", ".join(f"{k}={v:g}" for k, v in summary["budget"].items() if v is not None)
    lines = [f"batch of {summary['n_questions']} question(s), budget {budget}"]
    lines += [f"  {re.sub(r'_s$', ' (s)', k.replace('wall', 'measured_wall')).replace('_', ' ')}"
              f": {v:.6g}" for k, v in summary.items()
              if k.startswith(("predicted_", "realised_tokens", "wall_clock"))
              and isinstance(v, (int, float))]
    lines += [f"  realised / budget ({k}): {v:.3f}"
              for k, v in summary.get("realised_over_budget", {}).items()]
    print("\n".join(lines), flush=True)


def _print_result(rec: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(rec, ensure_ascii=False), flush=True)
        return
    lines = [f"question: {rec['question']}", f"  strategy: {rec['strategy']}"]
    if rec.get("predicted_accuracy") is not None:
        lines.append(f"  predicted accuracy: {rec['predicted_accuracy']:.3f}")
    routing = f"routing: {1000 * rec.get('route_latency_s', 0):.1f}ms"
    if rec.get("load_s") is not None:
        routing += f" (router load, once: {rec['load_s']:.2f}s)"
    if "answer" in rec:
        if rec.get("error"):
            lines.append(f"  error: {rec['error']}")
        lines.append(f"  answer: {rec.get('answer')}")
        lines.append(f"  tokens: {rec.get('tokens')}   latency: {rec.get('latency_s', 0):.2f}s"
                     f"   {routing}")
    print("\n".join(lines), flush=True)
