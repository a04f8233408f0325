"""Command line: ``ttcrouter collect | fit | evaluate | demo | route | serve``.

User errors (a missing file, a bad runs table, an unmeetable budget, an incompatible router
file) print one line ``ttcrouter: error: ...`` on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib import resources
from pathlib import Path

from ._version import __version__

__all__ = ["main", "build_parser", "SHIPPED_RUNS", "shipped_runs_path", "read_questions"]

#: File name of the runs table shipped in ``ttcrouter/data``.
SHIPPED_RUNS = "arithmetic_smollm2_runs.parquet"
DEFAULT_DEMO_REPORT = "ttcrouter-demo-report"


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


def _user_errors():
    from .runs import RunsTableError
    from .serving import RouterFileError

    return (CLIError, RunsTableError, RouterFileError, ValueError, FileNotFoundError,
            ImportError)


def _info(msg: str) -> None:
    print(f"[ttcrouter] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------

def shipped_runs_path() -> Path | None:
    """Path of the runs table shipped with the package, or None when it is not there."""
    path = Path(str(resources.files("ttcrouter").joinpath("data", SHIPPED_RUNS)))
    return path if path.is_file() else None


def _load_runs(path):
    from .runs import read_runs

    p = Path(path)
    if not p.exists():
        raise CLIError(f"No runs table at {str(p)!r}.")
    return read_runs(p)


def _aggregate(runs, args):
    """Soft labels and costs, over the strategies named by --strategies (default: all)."""
    from .runs import aggregate_runs

    names = None
    if getattr(args, "strategies", None):
        names = [n.strip() for n in _split_names(args.strategies) if n.strip()]
    summary = aggregate_runs(runs, strategies=names)
    n_all = runs["query_id"].nunique()
    if len(summary) < n_all:
        _info(f"{n_all - len(summary)} of {n_all} queries lack a successful run of some "
              f"strategy and are left out (choose strategies with --strategies)")
    return summary


def _split_names(text: str) -> list:
    """Split 'a@n=1,beam_search@n=4,w=2' at the commas that start a new strategy name."""
    import re

    return re.split(r",(?=\s*[a-z_]+@)", text)


ENCODER_ALIASES = ("generator", "minilm")


def _make_encoder(args):
    from .embedding import EmbeddingTransformer

    kw = {}
    name = getattr(args, "encoder", None)
    if name == "generator":
        # the generator's own hidden states, as the paper embeds with its generator's family
        from .models import embedded_generator_path

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
    from .costs import CostTable
    from .probe import ProbeClassifier
    from .router import UtilityRouter

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

def _fit_router(runs, args):
    """Fit Pipeline(embed, router) on the whole runs table; returns (pipeline, metadata)."""
    from sklearn.pipeline import Pipeline

    from .router import UtilityRouter

    summary = _aggregate(runs, args)
    budget = {}
    for what, value in (("latency", args.max_mean_latency), ("tokens", args.max_mean_tokens)):
        if value is None:
            continue
        if value <= 0:
            raise CLIError(f"--max-mean-{what} must be positive, got {value}.")
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
    encoder = _make_encoder(args)
    n_q = len(summary)
    _info(f"{n_q} queries x {len(summary.strategies)} strategies; embedding the queries")
    t0 = time.perf_counter()
    base = _make_router(args, random_state=args.seed) or UtilityRouter()
    if budget:
        router = _tuned_router(summary, base, budget, args)
    else:
        router = base.set_params(lambda_tokens=args.lambda_tokens,
                                 lambda_latency=args.lambda_latency)
    pipe = Pipeline([("embed", encoder), ("router", router)])
    _info("fitting the router")
    pipe.fit(summary.texts, summary.Y, router__tokens=summary.T, router__latency=summary.L)
    meta = {"runs": str(args.runs), "n_queries": n_q, "fit_seconds":
            round(time.perf_counter() - t0, 2), **budget}
    return pipe, meta


def _tuned_router(summary, router, budget, args):
    """UtilityRouterCV resolving the budget (the lambdas are chosen inside its fit)."""
    try:
        from .tuning import UtilityRouterCV
    except ImportError as exc:
        raise CLIError(f"Budgets need ttcrouter.tuning.UtilityRouterCV ({exc}).") from exc
    return UtilityRouterCV(router=router, **budget, random_state=args.seed)


def cmd_fit(args) -> int:
    from .serving import _router_lambda, save_router

    runs = _load_runs(args.runs)
    pipe, meta = _fit_router(runs, args)
    final = pipe.steps[-1][1]
    out = save_router(pipe, args.out, metadata=meta)
    lt, ll = _router_lambda(final, "lambda_tokens"), _router_lambda(final, "lambda_latency")
    print(f"router saved to {out} ({len(getattr(final, 'strategies_', []))} strategies, "
          f"lambda_tokens={lt:g}, lambda_latency={ll:g})")
    return 0


# ---------------------------------------------------------------------------------------
# evaluate / demo
# ---------------------------------------------------------------------------------------

def _run_evaluation(runs, args, report_dir):
    from .evaluation import evaluate

    cv = getattr(args, "cv", None) or None  # --cv 0: one split
    report = evaluate(_aggregate(runs, args), test_size=args.test_size, random_state=args.seed,
                      encoder=_make_encoder(args),
                      router=_make_router(args, random_state=args.seed),
                      report_dir=report_dir, progress=True, cv=cv)
    print(report.summary())
    print(f"\nreport written to {Path(report_dir) / 'report.md'}")
    return report


def cmd_evaluate(args) -> int:
    runs = _load_runs(args.runs)
    _run_evaluation(runs, args, args.report)
    return 0


def _widely_run_strategies(runs, share=0.9):
    """When some strategies ran on far fewer queries (a collection still going on), the
    comma-joined names of those that ran on at least ``share`` of the queries; else None."""
    from .runs import _strategy_sort_key, validate_runs

    ok = validate_runs(runs)
    ok = ok[ok["error"].isna()]
    counts = ok.groupby("strategy")["query_id"].nunique()
    keep = counts[counts >= share * counts.max()]
    if len(keep) == len(counts):
        return None
    left = ", ".join(f"{n} ({counts[n]} queries)" for n in counts.index if n not in keep.index)
    _info(f"demo: some strategies ran on fewer queries: {left}; evaluating the {len(keep)} "
          f"strategies run on at least {keep.min()} of {ok['query_id'].nunique()} queries (pass "
          f"--strategies to choose)")
    return ",".join(sorted(keep.index, key=_strategy_sort_key))


def cmd_demo(args) -> int:
    t0 = time.perf_counter()
    path = shipped_runs_path()
    if path is not None:
        from .runs import read_runs

        _info(f"runs table: {path} (shipped with ttcrouter)")
        runs = read_runs(path)
    else:
        from .synthetic import make_synthetic_runs

        banner = "!" * 78
        print(f"{banner}\n! NOTICE: the shipped runs table ttcrouter/data/{SHIPPED_RUNS} is not\n"
              f"! installed. This demo falls back to SYNTHETIC runs "
              f"(make_synthetic_runs):\n! no model was run, the numbers below illustrate "
              f"the pipeline only.\n{banner}", file=sys.stderr, flush=True)
        runs = make_synthetic_runs(n_queries=160, random_state=args.seed)
    if not args.strategies:
        args.strategies = _widely_run_strategies(runs)
    report = _run_evaluation(runs, args, args.report)
    fitted_on = ("training split of the demo" if not args.cv else
                 f"the last of the demo's {args.cv} cross-fitting folds "
                 f"(~{report.n_train} queries)")
    try:  # keep the router fitted on the training queries, for `ttcrouter route`
        from sklearn.pipeline import Pipeline

        from .serving import save_router

        if report.fitted_router is not None and report.fitted_encoder is not None:
            pipe = Pipeline([("embed", report.fitted_encoder),
                             ("router", report.fitted_router)])
            out = save_router(pipe, Path(args.report) / "router.joblib",
                              metadata={"runs": str(path) if path else "synthetic",
                                        "fitted_on": fitted_on})
            print(f"router (fitted on {fitted_on}) saved to {out}")
    except Exception as exc:  # noqa: BLE001 - the report is what the demo is for
        _info(f"could not save the demo router: {exc}")
    print(f"demo finished in {time.perf_counter() - t0:.1f}s")
    return 0


# ---------------------------------------------------------------------------------------
# route
# ---------------------------------------------------------------------------------------

def cmd_route(args) -> int:
    from .serving import RoutedExecutor, load_router

    questions = [(None, q) for q in args.questions]
    problems = []
    if args.file:
        from_file, problems = read_questions(args.file)
        questions += from_file
        for p in problems:
            print(f"ttcrouter: skipped {p}", file=sys.stderr)
    if not questions:
        raise CLIError("No questions to route: give them as arguments or with --file.")
    bundle = load_router(args.router)
    gen_kw = {}
    if args.backend == "openai" and not args.base_url:
        raise CLIError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1).")
    exec_kw = {}
    if args.max_tokens is not None:
        exec_kw["max_tokens"] = args.max_tokens
    base_url = None
    if args.base_url:
        base_url = args.base_url if len(args.base_url) > 1 else args.base_url[0]
    routed = RoutedExecutor(bundle, backend=args.backend, model=args.model, base_url=base_url,
                            generator_kwargs=gen_kw, executor_kwargs=exec_kw)
    texts = [q for _, q in questions]
    failed = 0
    try:
        if args.route_only:
            choice, acc, seconds = routed.route(texts)
            for i, (q, s) in enumerate(zip(texts, choice)):
                rec = {"question": q, "strategy": s,
                       "predicted_accuracy": None if acc is None else float(acc[i]),
                       "route_latency_s": seconds / len(texts)}
                _print_result(rec, args.json)
        else:
            if not args.json:
                _info(f"routing {len(texts)} question(s); starting the {args.backend} backend")
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
    if "answer" in rec:
        if rec.get("error"):
            lines.append(f"  error: {rec['error']}")
        lines.append(f"  answer: {rec.get('answer')}")
        lines.append(f"  tokens: {rec.get('tokens')}   latency: {rec.get('latency_s', 0):.2f}s"
                     f"   routing: {1000 * rec.get('route_latency_s', 0):.1f}ms")
    print("\n".join(lines), flush=True)


# ---------------------------------------------------------------------------------------
# serve
# ---------------------------------------------------------------------------------------

def cmd_serve(args) -> int:
    import logging

    from . import load_router
    from .server.app import ServerConfig
    from .server.launcher import run_server
    from .server.routing import RouterService

    for name, low in (("max_concurrency", 1), ("max_tokens", 1), ("max_model_len", 2),
                      ("timeout", 0), ("temperature", 0), ("batch_window_ms", 0),
                      ("cooldown", 0), ("route_threads", 0)):
        value, strict = getattr(args, name), name == "timeout"
        if value < low or (strict and value == low):
            raise CLIError(f"--{name.replace('_', '-')} must be {'>' if strict else '>='} "
                           f"{low}, got {value}.")
    bundle = load_router(args.router)  # a bad file is a one-line error, before any startup
    try:
        RouterService(bundle["router"], bundle.get("metadata"))
    except TypeError as exc:
        raise CLIError(str(exc)) from exc
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="[ttcrouter] %(levelname)s %(name)s: %(message)s")
    config = ServerConfig(
        router=args.router, upstreams=list(args.upstream or []), model=args.model,
        upstream_model=args.upstream_model, api_key=args.api_key or os.environ.get(
            "TTCROUTER_API_KEY") or None, max_concurrency=args.max_concurrency,
        request_timeout_s=args.timeout, max_tokens=args.max_tokens,
        temperature=args.temperature, batch_window_ms=args.batch_window_ms,
        cooldown_s=args.cooldown, max_model_len=args.max_model_len, seed=args.seed,
        kv_cache_space_gb=args.kv_cache_space, route_threads=args.route_threads or None)
    where = ("upstreams " + ", ".join(config.upstreams) if config.upstreams
             else "the embedded model on vLLM")
    _info(f"serving {args.router} on http://{args.host}:{args.port}/v1 ({where})")
    return run_server(config, host=args.host, port=args.port, router=bundle,
                      ready_message=lambda url: _info(f"ready: {url}"))


# ---------------------------------------------------------------------------------------
# collect
# ---------------------------------------------------------------------------------------

def cmd_collect(args) -> int:
    from .collection import run

    return int(run(args) or 0)


# ---------------------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------------------

def _add_encoder(p, demo=False):
    default = "generator" if demo else "minilm"
    p.add_argument("--encoder", default=default, metavar="MODEL",
                   help="encoder for EmbeddingTransformer: a model folder or cached name, "
                        "'minilm' (the embedded all-MiniLM-L6-v2) or 'generator' (the "
                        "hidden states of the embedded generator SmolLM2-135M-Instruct, as "
                        f"the paper embeds with its generator's family) (default: {default})")
    p.add_argument("--pooling", choices=("mean", "cls", "last"), default=None,
                   help="how the encoder's token states become one vector: mean (sentence "
                        "encoders, the default), cls (BERT) or last (decoder models such as "
                        "Qwen2.5, as in the paper)")
    p.add_argument("--per-query-costs", action=argparse.BooleanOptionalAction, default=demo,
                   help="predict each query's tokens and latency with CostTable(per_query="
                        "True) (a ridge regression on the embedding) instead of each "
                        f"strategy's mean cost (default: {'on' if demo else 'off'})")


def _add_strategies(p):
    p.add_argument("--strategies", default=None, metavar="NAMES",
                   help="comma-separated strategy names to route among (default: all in the "
                        "runs table); queries lacking a run of one of them are left out")


def _add_split(p, default_report, demo=False):
    p.add_argument("--report", default=default_report, metavar="DIR",
                   help=f"report directory (default: {default_report})")
    p.add_argument("--test-size", type=float, default=0.25,
                   help="share of queries held out for testing when --cv is 0 or not given "
                        "(default: 0.25)")
    p.add_argument("--seed", type=int, default=0, help="seed of the query split (default: 0)")
    cv = 4 if demo else None
    p.add_argument("--cv", type=_cv_folds, default=cv, metavar="K",
                   help="cross-fitting over K query folds instead of one split: every query "
                        "is tested once, by a router fitted on the other folds; 0 means one "
                        f"split of --test-size (default: {cv or 0})")
    _add_encoder(p, demo=demo)
    _add_strategies(p)


def _cv_folds(text):
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of folds, got {text!r}")
    if k == 1 or k < 0:
        raise argparse.ArgumentTypeError(
            f"--cv takes 0 (one split) or K >= 2 folds, got {k}")
    return k


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ttcrouter",
        description="Latency- and token-aware routing between test-time-compute strategies.",
    )
    parser.add_argument("--version", action="version", version=f"ttcrouter {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("fit", help="fit a router on a runs table and save it",
                       description="Fit EmbeddingTransformer + UtilityRouter on all queries of "
                                   "a runs table, with fixed lambdas or to a mean-cost budget.")
    p.add_argument("runs", help="runs table (.parquet or .jsonl)")
    p.add_argument("--out", default="router.joblib", help="router file (default: router.joblib)")
    p.add_argument("--lambda-tokens", type=float, default=0.0,
                   help="price of one generated token, in accuracy units (default: 0)")
    p.add_argument("--lambda-latency", type=float, default=0.0,
                   help="price of one second of latency, in accuracy units (default: 0)")
    p.add_argument("--max-mean-latency", type=float, default=None, metavar="SECONDS",
                   help="instead of lambdas: most accurate router with mean latency <= SECONDS")
    p.add_argument("--max-mean-tokens", type=float, default=None, metavar="TOKENS",
                   help="instead of lambdas: most accurate router with mean tokens <= TOKENS")
    p.add_argument("--seed", type=int, default=0, help="seed of the tuning folds (default: 0)")
    _add_encoder(p)
    _add_strategies(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("evaluate", help="static vs adaptive vs oracle on held-out queries",
                       description="Split by query, fit on the training queries, and compare "
                                   "static strategies, the router and the oracle on the test "
                                   "queries; writes metrics.json, report.md and plots.")
    p.add_argument("runs", help="runs table (.parquet or .jsonl)")
    _add_split(p, "ttcrouter-report")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("demo", help="fit and evaluate on the runs table shipped with ttcrouter",
                       description="Evaluate the router on the shipped runs table "
                                   f"(ttcrouter/data/{SHIPPED_RUNS}) and write a report. "
                                   "Defaults: 4-fold cross-fitting over the 400 queries, "
                                   "queries embedded with the embedded generator's hidden "
                                   "states (mean pooling), per-query cost predictions.")
    _add_split(p, DEFAULT_DEMO_REPORT, demo=True)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("route", help="route questions and run the chosen strategy",
                       description="Route each question with a saved router and run the "
                                   "chosen strategy on a real model.")
    p.add_argument("questions", nargs="*", help="questions to route")
    p.add_argument("--router", required=True, help="router file from `ttcrouter fit`")
    p.add_argument("--file", default=None,
                   help="questions file: one per line, or JSONL with a \"question\" field")
    p.add_argument("--backend", choices=("vllm", "transformers", "openai"), default="vllm",
                   help="generator backend (default: vllm)")
    p.add_argument("--model", default=None,
                   help="generator model (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--base-url", action="append", default=None, metavar="URL",
                   help="OpenAI-compatible server URL for --backend openai (repeat for a "
                        "fleet of servers)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="most tokens per generated solution")
    p.add_argument("--route-only", action="store_true",
                   help="print the chosen strategy without running it")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_route)

    p = sub.add_parser("serve", help="OpenAI-compatible server that routes each request",
                       description="Serve POST /v1/chat/completions and /v1/completions: route "
                                   "each request with the router, run the chosen strategy on "
                                   "the embedded model (vLLM async engine) or on --upstream "
                                   "servers, answer in OpenAI's shape with a `ttc` block.")
    p.add_argument("--router", required=True, help="router file from `ttcrouter fit`")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--upstream", action="append", default=None, metavar="URL",
                   help="OpenAI-compatible server to generate on instead of the embedded "
                        "model; repeat for a fleet (requests go to the least busy one)")
    p.add_argument("--upstream-model", default=None,
                   help="model name on the upstreams (default: ask each server)")
    p.add_argument("--model", default=None,
                   help="model of the embedded engine (default: the embedded SmolLM2-135M)")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' (default: $TTCROUTER_API_KEY)")
    p.add_argument("--max-concurrency", type=int, default=32,
                   help="strategies running at once; more requests queue (default: 32)")
    p.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                   help="deadline of a request unless its ttc.timeout_s says (default: 600)")
    p.add_argument("--max-tokens", type=int, default=256,
                   help="token limit of one candidate unless the request says (default: 256)")
    p.add_argument("--temperature", type=float, default=0.7,
                   help="sampling temperature unless the request says (default: 0.7)")
    p.add_argument("--batch-window-ms", type=float, default=3.0,
                   help="how long routing waits to batch concurrent requests (default: 3)")
    p.add_argument("--route-threads", type=int, default=1, metavar="N",
                   help="torch threads of the router's encoder; 0 keeps torch's default "
                        "(default: 1, robust next to a busy engine)")
    p.add_argument("--cooldown", type=float, default=10.0, metavar="SECONDS",
                   help="how long a failed upstream is left out (default: 10)")
    p.add_argument("--max-model-len", type=int, default=2048,
                   help="context length of the embedded engine (default: 2048)")
    p.add_argument("--kv-cache-space", type=int, default=None, metavar="GIB",
                   help="KV cache of the embedded engine on CPU (default: "
                        "$VLLM_CPU_KVCACHE_SPACE or 2)")
    p.add_argument("--seed", type=int, default=0, help="engine seed (default: 0)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("collect", help="run strategies on queries into a runs table")
    from .collection import add_arguments

    add_arguments(p)
    p.set_defaults(func=cmd_collect)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit code."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("ttcrouter: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as exc:
        if os.environ.get("TTCROUTER_DEBUG"):
            raise
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"ttcrouter: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
