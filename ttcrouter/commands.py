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

from .collection import collect, export_collection, load_runs, load_samples
from .collection.collect import resolve_strategies
from .collection.latency import request_latency_model
from .costs import CostTable
from .embedding import EmbeddingTransformer
from .evaluation import evaluate
from .models import SHIPPED_RUNS, embedded_generator_path, shipped_runs_path
from .persistence import router_lambda, save_router
from .probe import ProbeClassifier
from .router import UtilityRouter
from .runs import aggregate_runs, read_runs, strategy_sort_key, validate_runs, write_runs
from .samples import derive_runs, read_samples
from .serving import RoutedExecutor
from .synthetic import make_synthetic_runs
from .tuning import UtilityRouterCV

__all__ = [
    "CLIError",
    "cmd_fit",
    "cmd_evaluate",
    "cmd_demo",
    "cmd_route",
    "cmd_collect",
    "cmd_derive",
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


def _split_names(text: str) -> list:
    """Split 'a@n=1,beam_search@n=4,w=2' at the commas that start a new strategy name."""
    return re.split(r",(?=\s*[a-z_]+@)", text)


def _aggregate(runs, args):
    """Soft labels and costs, over the strategies named by --strategies (default: all)."""
    names = None
    if getattr(args, "strategies", None):
        names = [n.strip() for n in _split_names(args.strategies) if n.strip()]
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
        check_scalar(value, f"--max-mean-{what}", numbers.Real, min_val=0,
                     include_boundaries="neither")
        name, cost = _cheapest(summary, what)
        if cost > value:
            unit = " s" if what == "latency" else " tokens"
            raise CLIError(
                f"No strategy meets a mean {what} of {value:g}{unit}: the cheapest, {name}, "
                f"averages {cost:.4g}{unit} on these runs. Raise the budget or collect "
                f"cheaper strategies."
            )
        budget[f"max_mean_{what}"] = float(value)
    if budget and (args.lambda_tokens or args.lambda_latency):
        raise CLIError("Give either fixed lambdas (--lambda-tokens/--lambda-latency) or a "
                       "budget (--max-mean-latency/--max-mean-tokens), not both.")
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
        router = base.set_params(lambda_tokens=args.lambda_tokens,
                                 lambda_latency=args.lambda_latency)
    pipe = Pipeline([("embed", encoder), ("router", router)])
    logger.info("fitting the router")
    pipe.fit(summary.texts, summary.Y, router__tokens=summary.T, router__latency=summary.L)
    meta = {"runs": str(args.runs), "n_queries": n_q, "fit_seconds":
            round(time.perf_counter() - t0, 2), **budget}
    return pipe, meta


def cmd_fit(args) -> int:
    """``ttcrouter fit``: fit a router on a runs table and save it."""
    runs = _load_runs(args.runs)
    pipe, meta = _fit_router(runs, args)
    final = pipe.steps[-1][1]
    out = save_router(pipe, args.out, metadata=meta)
    lt, ll = router_lambda(final, "lambda_tokens"), router_lambda(final, "lambda_latency")
    print(f"router saved to {out} ({len(getattr(final, 'strategies_', []))} strategies, "
          f"lambda_tokens={lt:g}, lambda_latency={ll:g})")
    return 0


# ---------------------------------------------------------------------------------------
# evaluate / demo
# ---------------------------------------------------------------------------------------

def _run_evaluation(runs, args, report_dir):
    cv = getattr(args, "cv", None) or None  # --cv 0: one split
    report = evaluate(_aggregate(runs, args), test_size=args.test_size, random_state=args.seed,
                      encoder=_make_encoder(args),
                      router=_make_router(args, random_state=args.seed),
                      report_dir=report_dir, progress=True, cv=cv)
    print(report.summary())
    print(f"\nreport written to {Path(report_dir) / 'report.md'}")
    return report


def cmd_evaluate(args) -> int:
    """``ttcrouter evaluate``: static vs adaptive vs oracle on held-out queries."""
    runs = _load_runs(args.runs)
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
                                        "fitted_on": fitted_on})
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
    questions = [(None, q) for q in args.questions]
    problems = []
    if args.file:
        from_file, problems = read_questions(args.file)
        questions += from_file
        for p in problems:
            logger.warning("skipped %s", p)
    if not questions:
        raise CLIError("No questions to route: give them as arguments or with --file.")
    if args.backend == "openai" and not args.base_url:
        raise CLIError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1).")
    exec_kw = {}
    if args.max_tokens is not None:
        exec_kw["max_tokens"] = check_scalar(args.max_tokens, "--max-tokens", numbers.Integral,
                                             min_val=1)
    base_url = None
    if args.base_url:
        base_url = args.base_url if len(args.base_url) > 1 else args.base_url[0]
    routed = RoutedExecutor(args.router, backend=args.backend, model=args.model,
                            base_url=base_url, executor_kwargs=exec_kw)
    texts = [q for _, q in questions]
    failed = 0
    try:
        if args.route_only:
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


def cmd_collect(args) -> int:
    base_url = args.base_url
    if base_url and len(base_url) == 1:
        base_url = base_url[0]
    df = collect(args.dataset, strategies=args.strategies, repeats=args.repeats, out=args.out,
                 backend=args.backend, model=args.model, base_url=base_url,
                 pool_size=args.pool_size, chunk_size=args.chunk_size, seed=args.seed,
                 progress=not args.no_progress, latency=args.latency,
                 calibration_queries=args.calibration_queries, max_tokens=args.max_tokens,
                 temperature=args.temperature, max_steps=args.max_steps,
                 step_max_tokens=args.step_max_tokens, enforce_eager=args.eager,
                 kv_cache_space_gb=args.kv_cache_gb, dataset_name=args.dataset,
                 recalibrate_latency=args.recalibrate_latency,
                 prompts=_prompts(getattr(args, "prompt", None)))
    n_err = int(df["error"].notna().sum()) if len(df) else 0
    print(f"{len(df)} rows in {args.out} ({n_err} with errors)")
    if args.export:
        print(f"exported to {export_collection(args.out, args.export)}")
    return 0


def _prompts(items):
    if not items:
        return None
    out = {}
    for item in items:
        mode, sep, text = item.partition("=")
        if not sep or not mode.strip():
            raise CLIError(f"--prompt takes MODE=TEXT, got {item!r}.")
        out[mode.strip()] = text
    return out


def cmd_derive(args) -> int:
    path = Path(args.samples)
    samples = load_samples(path) if path.is_dir() else read_samples(path)
    prov = dict(samples.attrs.get("provenance", {}))
    specs = [s for s in resolve_strategies(args.strategies) if s.derivable]
    latency = args.latency
    if latency == "auto":
        latency = "calibrated" if path.is_dir() else "measured"
    request_latency = None
    if latency == "calibrated":
        models = prov.get("latency_calibration", {}).get("models")
        if not models:
            raise CLIError(f"{args.samples} has no latency calibration; use --latency measured.")
        request_latency = request_latency_model(models)
    runs = derive_runs(samples, specs, score=args.score, request_latency=request_latency)
    prov["derived"] = {"from": str(path), "strategies": [s.name for s in specs],
                       "latency": latency, "score": args.score}
    out = write_runs(runs, args.out, provenance=prov)
    print(f"{len(runs)} rows of {len(specs)} strategies from {len(samples)} samples -> {out}")
    return 0
