"""Command line: parse ``ttcrouter collect | derive | fit | evaluate | demo | route | serve | train-verifier``, set up logging, dispatch.

stdout carries results only (a report summary, one JSON object per routed question with
``--json``); every message goes through :mod:`logging` to stderr, vLLM's engine logs
included: :func:`configure_logging` points vLLM's handler at stderr through the environment,
before any engine starts, so the engine's own processes inherit it. ``-v`` shows debug
messages, ``-q`` only warnings and errors.

User errors (a missing file, a bad runs table, an unmeetable budget, an incompatible router
file) print one line ``ttcrouter: error: ...`` on stderr and exit with code 2.

Dispatch: this module imports no package module at import time beyond the light
:mod:`ttcrouter.models`. The work of a command lives in :mod:`ttcrouter.commands` (which
imports scikit-learn, pandas and the estimators), imported by :func:`_command` only when a
command runs, so ``ttcrouter --help`` and usage errors cost milliseconds. That is the only
lazy import of a package module here, beside the lazy re-export of
:func:`~ttcrouter.commands.read_questions` (module ``__getattr__``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib import import_module

from ._version import __version__
from .arguments import (check_command, dataset_spec, nonnegative_float, nonnegative_int,
                        port_number, positive_float, positive_int, share, strategy_names)
from .lifetime import exit_cleanly_on_sigterm
from .models import SHIPPED_RUNS, shipped_runs_path

__all__ = ["main", "build_parser", "configure_logging", "SHIPPED_RUNS", "shipped_runs_path"]

DEFAULT_DEMO_REPORT = "ttcrouter-demo-report"
#: Name of the handler :func:`configure_logging` installs (replaced, never stacked).
_HANDLER_NAME = "ttcrouter.cli"
#: Environment of vLLM's logging: its default stream is stdout.
_VLLM_STREAM = ("VLLM_LOGGING_STREAM", "ext://sys.stderr")
#: Exceptions printed as one line (CLIError, RunsTableError and RouterFileError are
#: ValueErrors).
_USER_ERRORS = (ValueError, FileNotFoundError, ImportError)

logger = logging.getLogger(__name__)


def __getattr__(name):
    # read_questions moved to ttcrouter.commands; importing it here stays possible
    if name == "read_questions":
        return import_module(".commands", __package__).read_questions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------
# logging
# ---------------------------------------------------------------------------------------

class _Formatter(logging.Formatter):
    """``[ttcrouter] msg`` for messages, ``ttcrouter: error: msg`` for errors."""

    def format(self, record):
        msg = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"ttcrouter: error: {msg}"
        if record.levelno >= logging.WARNING:
            return f"[ttcrouter] warning: {msg}"
        return f"[ttcrouter] {msg}"


def configure_logging(verbosity: int = 0) -> None:
    """Send ttcrouter's messages and vLLM's logs to stderr; stdout keeps the results.

    Parameters
    ----------
    verbosity : int, default=0
        0: info messages; 1 or more: debug too; -1 or less: warnings and errors only (vLLM's
        level too, unless ``VLLM_LOGGING_LEVEL`` is set).

    Notes
    -----
    vLLM configures its logger when it is first imported, from the environment
    (``VLLM_LOGGING_STREAM``, default ``ext://sys.stdout``); engine processes it spawns inherit
    the environment. So this sets ``VLLM_LOGGING_STREAM=ext://sys.stderr`` unless the user
    chose a stream (or a whole ``VLLM_LOGGING_CONFIG_PATH``), and must run before vLLM is
    imported.
    """
    if "VLLM_LOGGING_CONFIG_PATH" not in os.environ:
        os.environ.setdefault(*_VLLM_STREAM)
    if verbosity < 0:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    level = logging.DEBUG if verbosity > 0 else logging.INFO if verbosity == 0 else logging.WARNING
    root = logging.getLogger("ttcrouter")
    for handler in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(_Formatter())
    root.addHandler(handler)
    root.setLevel(level)
    # messages are shown once, here, even where an application configured the root logger
    root.propagate = False


# ---------------------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------------------

def _command(name: str, module: str = "ttcrouter.commands"):
    """The handler ``name`` of ``module`` (``ttcrouter.commands``), imported when it runs."""
    def run(args):
        return getattr(import_module(module), name)(args)

    run.__name__ = name
    return run


cmd_fit = _command("cmd_fit")
cmd_evaluate = _command("cmd_evaluate")
cmd_demo = _command("cmd_demo")
cmd_route = _command("cmd_route")
cmd_collect = _command("cmd_collect", "ttcrouter.collection.command")
cmd_serve = _command("cmd_serve", "ttcrouter.server.command")
cmd_derive = _command("cmd_derive", "ttcrouter.collection.command")
cmd_train_verifier = _command("cmd_train_verifier", "ttcrouter.verifier_commands")

SCORER_HELP = ("step scorer of best-of-N, weighted voting and beam search: 'logprob' (the "
               "generator's token log-probabilities) or a verifier file from `ttcrouter "
               "train-verifier` (default: logprob)")


# ---------------------------------------------------------------------------------------
# collect
# ---------------------------------------------------------------------------------------

def _add_collect_arguments(p):
    p.add_argument("dataset", type=dataset_spec, help="'arithmetic:N', 'gsm:N' or a JSONL file "
                   "(GSM8K, NuminaMath-CoT or {question, gold} records)")
    p.add_argument("--strategies", type=strategy_names, default="default",
                   help="comma list of strategy names, 'default' (15 strategies: one "
                   "sample once, the three voting methods at N=2..16, two beam searches) or "
                   "'extended' (default in both prompt modes plus 3 early-stopping votes "
                   "each: 34), 'extended-pooled' (extended without beam search: 32)")
    p.add_argument("--prompt", action="append", default=None, metavar="MODE=TEXT",
                   help="system prompt of a prompt mode (cot, direct) for this model; "
                   "repeatable")
    p.add_argument("--repeats", type=positive_int, default=4)
    p.add_argument("--backend", choices=("vllm", "openai", "transformers"), default="vllm")
    p.add_argument("--model", default=None,
                   help="model path or name (default: the embedded SmolLM2-135M)")
    p.add_argument("--base-url", action="append", default=None,
                   help="OpenAI-compatible server URL (repeatable)")
    p.add_argument("--out", required=True, help="output directory (resumable)")
    p.add_argument("--pool-size", type=positive_int, default=None)
    p.add_argument("--chunk-size", type=positive_int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-tokens", type=positive_int, default=128)
    p.add_argument("--temperature", type=nonnegative_float, default=0.7)
    p.add_argument("--max-steps", type=positive_int, default=None,
                   help="beam search step limit of the executor")
    p.add_argument("--step-max-tokens", type=positive_int, default=None,
                   help="tokens per beam search step")
    p.add_argument("--latency", choices=("calibrate", "isolated"), default="calibrate")
    p.add_argument("--calibration-queries", type=positive_int, default=4)
    p.add_argument("--recalibrate-latency", action="store_true",
                   help="time a new latency calibration (e.g. on a quiet machine); it sets "
                   "the latency of every calibrated row, earlier ones included")
    p.add_argument("--eager", action="store_true",
                   help="vLLM: skip graph compilation (faster start, slower run)")
    p.add_argument("--kv-cache-gb", type=positive_int, default=None)
    p.add_argument("--scorer", default="logprob", metavar="logprob|FILE", help=SCORER_HELP)
    p.add_argument("--export", default=None,
                   help="also write the whole table to this .parquet/.jsonl file")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_collect)
    return p


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
    p.add_argument("--strategies", type=strategy_names, default=None, metavar="NAMES",
                   help="comma-separated strategy names to route among (default: all in the "
                        "runs table); queries lacking a run of one of them are left out")


def _add_split(p, default_report, demo=False):
    p.add_argument("--report", default=default_report, metavar="DIR",
                   help=f"report directory (default: {default_report})")
    p.add_argument("--test-size", type=share, default=0.25,
                   help="share of queries held out for testing when --cv is 0 or not given "
                        "(default: 0.25)")
    p.add_argument("--seed", type=int, default=0, help="seed of the query split (default: 0)")
    cv = 4 if demo else None
    p.add_argument("--cv", type=_cv_folds, default=cv, metavar="K",
                   help="cross-fitting over K query folds instead of one split: every query "
                        "is tested once, by a router fitted on the other folds; 0 means one "
                        f"split of --test-size (default: {cv or 0})")
    p.add_argument("--batch-budgets", type=_budget_list, default=None, metavar="auto|B1,B2,...",
                   help="also compare, at these mean-token budgets per query, allocation "
                        "across each test fold, per-query routing at the CV-picked lambda and "
                        "the best static mix; 'auto': 5 token and 5 latency budgets inside "
                        "the static strategies' cost range")
    p.add_argument("--batch-latency-budgets", type=_budget_list, default=None,
                   metavar="auto|S1,S2,...",
                   help="the same at mean latency budgets per query (seconds; sequential "
                        "execution: latencies add up)")
    _add_encoder(p, demo=demo)
    _add_strategies(p)


def _budget_list(text):
    """'auto' or a comma list of positive numbers."""
    if text.strip() == "auto":
        return "auto"
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or numbers like 100,200, got {text!r}")
    if not values or any(not (v > 0 and v < float("inf")) for v in values):
        raise argparse.ArgumentTypeError(f"budgets must be finite numbers > 0, got {text!r}")
    return values


def _cv_folds(text):
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of folds, got {text!r}")
    if k == 1 or k < 0:
        raise argparse.ArgumentTypeError(
            f"--cv takes 0 (one split) or K >= 2 folds, got {k}")
    return k


def _verbosity(top: bool) -> argparse.ArgumentParser:
    """-v/-q, accepted before the command and after it (a command's own default is unset,
    so that ``ttcrouter -v fit`` keeps its -v)."""
    p = argparse.ArgumentParser(add_help=False)
    default = 0 if top else argparse.SUPPRESS
    p.add_argument("-v", "--verbose", action="count", default=default,
                   help="more messages on stderr (debug)")
    p.add_argument("-q", "--quiet", action="count", default=default,
                   help="fewer messages on stderr (warnings and errors only)")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ttcrouter",
        description="Latency- and token-aware routing between test-time-compute strategies. "
                    "Results go to stdout, messages and logs to stderr.",
        parents=[_verbosity(top=True)],
    )
    parser.add_argument("--version", action="version", version=f"ttcrouter {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = [_verbosity(top=False)]

    p = sub.add_parser("fit", help="fit a router on a runs table and save it", parents=common,
                       description="Fit EmbeddingTransformer + UtilityRouter on all queries of "
                                   "a runs table, with fixed lambdas or to a mean-cost budget.")
    p.add_argument("runs", help="runs table (.parquet or .jsonl)")
    p.add_argument("--out", default="router.joblib", help="router file (default: router.joblib)")
    p.add_argument("--lambda-tokens", type=nonnegative_float, default=None,
                   help="price of one generated token, in accuracy units (default: 0)")
    p.add_argument("--lambda-latency", type=nonnegative_float, default=None,
                   help="price of one second of latency, in accuracy units (default: 0)")
    p.add_argument("--max-mean-latency", type=positive_float, default=None, metavar="SECONDS",
                   help="instead of lambdas: most accurate router with mean latency <= SECONDS")
    p.add_argument("--max-mean-tokens", type=positive_float, default=None, metavar="TOKENS",
                   help="instead of lambdas: most accurate router with mean tokens <= TOKENS")
    p.add_argument("--seed", type=int, default=0, help="seed of the tuning folds (default: 0)")
    p.add_argument("--calibrate-on", default=None, metavar="QUERIES",
                   help="after fitting, set the lambda so that the router's predicted mean "
                        "cost on these unlabelled questions (one per line, or JSONL with a "
                        "\"question\" field) meets --target-mean-tokens/--target-mean-latency")
    p.add_argument("--target-mean-tokens", type=positive_float, default=None, metavar="TOKENS",
                   help="with --calibrate-on: target mean predicted tokens per question")
    p.add_argument("--target-mean-latency", type=positive_float, default=None, metavar="SECONDS",
                   help="with --calibrate-on: target mean predicted latency per question")
    _add_encoder(p)
    _add_strategies(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("evaluate", help="static vs adaptive vs oracle on held-out queries",
                       parents=common,
                       description="Split by query, fit on the training queries, and compare "
                                   "static strategies, the router and the oracle on the test "
                                   "queries; writes metrics.json, report.md and plots.")
    p.add_argument("runs", help="runs table (.parquet or .jsonl) or collection directory")
    p.add_argument("--scorer", default=None, metavar="FILE",
                   help="with a collection directory: score its samples with this verifier "
                        "file and re-derive the best-of-N and weighted-vote rows with it "
                        "(charged its reward tokens and time); warns when the verifier was "
                        "trained on evaluated queries")
    _add_split(p, "ttcrouter-report")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("demo", help="fit and evaluate on the runs table shipped with ttcrouter",
                       parents=common,
                       description="Evaluate the router on the shipped runs table "
                                   f"(ttcrouter/data/{SHIPPED_RUNS}) and write a report. "
                                   "Defaults: 4-fold cross-fitting over the 400 queries, "
                                   "queries embedded with the embedded generator's hidden "
                                   "states (mean pooling), per-query cost predictions.")
    _add_split(p, DEFAULT_DEMO_REPORT, demo=True)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("route", help="route questions and run the chosen strategy",
                       parents=common,
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
    p.add_argument("--max-tokens", type=positive_int, default=None,
                   help="most tokens per generated solution (default: the router's runs "
                        "table's, recorded in the router file, else 256)")
    p.add_argument("--scorer", default="logprob", metavar="logprob|FILE", help=SCORER_HELP)
    p.add_argument("--route-only", action="store_true",
                   help="print the chosen strategy without running it")
    b = p.add_argument_group(
        "batch budget", "spend one budget across all the questions: the router allocates "
        "(the best total predicted accuracy whose predicted cost fits), then runs them and "
        "prints a summary record (budget, predicted and realised totals, realised/budget)")
    b.add_argument("--max-total-tokens", type=positive_float, default=None, metavar="N",
                   help="predicted generated tokens of the whole batch <= N")
    b.add_argument("--max-mean-tokens", type=positive_float, default=None, metavar="N",
                   help="predicted generated tokens per question on average <= N")
    b.add_argument("--max-total-latency", type=positive_float, default=None, metavar="SECONDS",
                   help="predicted wall clock of the batch <= SECONDS (sequential, or "
                        "--concurrency K requests at once)")
    b.add_argument("--max-mean-latency", type=positive_float, default=None, metavar="SECONDS",
                   help="sequential execution: predicted latency per question on average")
    b.add_argument("--max-query-latency", type=positive_float, default=None, metavar="SECONDS",
                   help="per-question cap: strategies predicted slower are not considered")
    b.add_argument("--concurrency", type=positive_int, default=None, metavar="K",
                   help="execution model of --max-total-latency: K requests at once")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per line on stdout, nothing else (logs go to stderr)")
    p.set_defaults(func=cmd_route)

    p = sub.add_parser("serve", help="OpenAI-compatible server that routes each request",
                       parents=common,
                       description="Serve POST /v1/chat/completions and /v1/completions: route "
                                   "each request with the router, run the chosen strategy on "
                                   "the embedded model (vLLM async engine) or on --upstream "
                                   "servers, answer in OpenAI's shape with a `ttc` block.")
    p.add_argument("--router", required=True, help="router file from `ttcrouter fit`")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=port_number, default=8000, help="port (default: 8000)")
    p.add_argument("--upstream", action="append", default=None, metavar="URL",
                   help="OpenAI-compatible server to generate on instead of the embedded "
                        "model; repeat for a fleet (requests go to the least busy one)")
    p.add_argument("--upstream-model", default=None,
                   help="model name on the upstreams (default: ask each server)")
    p.add_argument("--model", default=None,
                   help="model of the embedded engine (default: the embedded SmolLM2-135M)")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' (default: $TTCROUTER_API_KEY)")
    p.add_argument("--max-concurrency", type=positive_int, default=32,
                   help="strategies running at once; more requests queue (default: 32)")
    p.add_argument("--timeout", type=positive_float, default=600.0, metavar="SECONDS",
                   help="deadline of a request unless its ttc.timeout_s says (default: 600)")
    p.add_argument("--max-tokens", type=positive_int, default=None,
                   help="token limit of one candidate unless the request says (default: the "
                        "router's runs table's, else 256)")
    p.add_argument("--temperature", type=nonnegative_float, default=None,
                   help="sampling temperature unless the request says (default: the "
                        "router's runs table's, else 0.7)")
    p.add_argument("--batch-window-ms", type=nonnegative_float, default=3.0,
                   help="how long routing waits to batch concurrent requests (default: 3)")
    p.add_argument("--route-threads", type=nonnegative_int, default=1, metavar="N",
                   help="torch threads of the router's encoder; 0 keeps torch's default "
                        "(default: 1, robust next to a busy engine)")
    p.add_argument("--cooldown", type=nonnegative_float, default=10.0, metavar="SECONDS",
                   help="how long a failed upstream is left out (default: 10)")
    p.add_argument("--max-model-len", type=positive_int, default=2048,
                   help="context length of the embedded engine (default: 2048)")
    p.add_argument("--kv-cache-space", type=positive_int, default=None, metavar="GIB",
                   help="KV cache of the embedded engine on CPU (default: "
                        "$VLLM_CPU_KVCACHE_SPACE or 2)")
    p.add_argument("--seed", type=int, default=0, help="engine seed (default: 0)")
    p.add_argument("--scorer", default=None, metavar="FILE",
                   help="verifier file for the router's ...,scorer=verifier strategies "
                        "(default: the verifier shipped for the embedded generator)")
    p.set_defaults(func=cmd_serve)

    _add_collect_arguments(sub.add_parser(
        "collect", help="run strategies on queries into a runs table"))

    p = sub.add_parser("derive", help="derive the runs of pooled strategies from a samples "
                       "table, with no new generation",
                       description="Derive the runs of pooled strategies (voting, best-of-N, "
                                   "early-stopping votes) from kept samples.")
    p.add_argument("samples", help="a samples file (.parquet/.jsonl) or a collection "
                   "directory written by ttcrouter collect")
    p.add_argument("--strategies", type=strategy_names, required=True,
                   help="comma list of pooled strategy names, 'default' or 'extended' "
                   "(beam search left out)")
    p.add_argument("--out", required=True, help="runs file to write (.parquet/.jsonl)")
    p.add_argument("--score", default=None, help="scorer column for weighted votes and "
                   "best-of-N (default: the table's only score_<scorer> column)")
    p.add_argument("--latency", choices=("auto", "measured", "calibrated"), default="auto",
                   help="request latency: the measured request times, or the collection's "
                   "calibrated lines (auto: calibrated for a collection directory)")
    p.set_defaults(func=cmd_derive)

    p = sub.add_parser("train-verifier", parents=common,
                       help="train a verifier on a samples table (a scorer for best-of-N, "
                       "weighted voting and beam search)",
                       description="Fit TrainedVerifier (the generator's hidden state and "
                                   "log-probabilities at each step end, a calibrated logistic "
                                   "head, trained on step prefixes) on every sample, after "
                                   "reporting the held-out AUROC of query-grouped "
                                   "cross-fitting.")
    p.add_argument("samples", help="a samples file (.parquet/.jsonl) or a collection directory")
    p.add_argument("--out", default="verifier.joblib",
                   help="verifier file (default: verifier.joblib)")
    p.add_argument("--folds", type=nonnegative_int, default=5,
                   help="query folds of the held-out AUROC; 0 skips it (default: 5)")
    p.add_argument("--model", default=None,
                   help="the generator that wrote the samples (default: the embedded "
                        "SmolLM2-135M-Instruct)")
    p.add_argument("--layer", type=int, default=-1,
                   help="hidden layer read (default: -1, the last)")
    p.add_argument("--C", type=positive_float, default=0.005,
                   help="inverse L2 strength of the logistic head (default: 0.005)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: torch's)")
    p.add_argument("--batch-size", type=positive_int, default=16,
                   help="texts per forward pass (default: 16)")
    p.add_argument("--max-samples", type=positive_int, default=None, metavar="N",
                   help="train on the samples of random whole queries, at most N samples")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds (default: 0)")
    p.add_argument("--features-cache", default=None, metavar="DIR",
                   help="keep the generator's features here, chunk by chunk as they are "
                        "read: a killed run resumes, and a rerun (other --C, --folds) reads "
                        "nothing again")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train_verifier)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit code."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)  # a bad value: argparse prints the usage, exits 2
    configure_logging(getattr(args, "verbose", 0) - getattr(args, "quiet", 0))
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        check_command(args)  # before any model loads: a usage error costs milliseconds
        with exit_cleanly_on_sigterm():  # SIGTERM: close the engine, exit 143
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130
    except _USER_ERRORS as exc:
        if os.environ.get("TTCROUTER_DEBUG"):
            raise
        logger.error("%s", " ".join(str(exc).split()) or type(exc).__name__)
        return 2


if __name__ == "__main__":
    sys.exit(main())
