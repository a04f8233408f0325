"""Check command-line arguments before anything loads: argparse value types and command rules.

Every check here needs no data and no model, and imports nothing heavier than the standard
library and :mod:`ttcrouter.strategies` (numpy), so a usage error of ``ttcrouter fit``,
``evaluate``, ``demo``, ``route`` or ``collect`` costs milliseconds instead of an encoder
load or an engine start. The value types run while argparse parses (argparse prints the
usage and exits 2); :func:`check_command` runs the rules that join several arguments, and the
checks of paths, right after parsing. Checks that need the data (a budget below the cheapest
strategy of a runs table) stay with the command and run before its encoder loads.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path

from .models import resolve_model
from .strategies import parse_strategy, split_strategy_names

__all__ = [
    "UsageError",
    "nonnegative_float",
    "positive_float",
    "positive_int",
    "nonnegative_int",
    "port_number",
    "share",
    "strategy_names",
    "dataset_spec",
    "check_command",
]

ENCODER_ALIASES = ("generator", "minilm")
_DATASET_RE = re.compile(r"^(arithmetic|gsm)(?::(\d+))?$")


class UsageError(ValueError):
    """Arguments that cannot work: printed as one line, exit code 2."""


def _number(text, kind=float):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def nonnegative_float(text) -> float:
    """A finite number >= 0 (a price: lambdas, a temperature)."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_float(text) -> float:
    """A finite number > 0 (a budget or a target)."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _whole(text, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
    return value


def positive_int(text) -> int:
    """A whole number >= 1 (a count)."""
    return _whole(text, 1)


def nonnegative_int(text) -> int:
    """A whole number >= 0."""
    return _whole(text, 0)


def port_number(text) -> int:
    """A TCP port, 1 to 65535 (0 lets the system choose)."""
    value = nonnegative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number <= 65535, got {text}")
    return value


def share(text) -> float:
    """A share strictly between 0 and 1."""
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def strategy_names(text) -> str:
    """A comma list of canonical strategy names (or ``default``, ``extended``,
    ``extended-pooled``), each checked to parse."""
    if text.strip() in ("default", "extended", "extended-pooled"):
        return text
    names = split_strategy_names(text)
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated strategy names")
    for name in names:
        try:
            parse_strategy(name)
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def dataset_spec(text) -> str:
    """``arithmetic:N``, ``gsm:N`` or an existing JSONL file."""
    match = _DATASET_RE.match(text.strip())
    if match:
        if match.group(2) is not None and int(match.group(2)) < 1:
            raise argparse.ArgumentTypeError(f"needs at least one query, got {text!r}")
        return text
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither 'arithmetic:N', 'gsm:N' nor an existing JSONL file")
    return text


# ---------------------------------------------------------------------------------------
# rules of each command
# ---------------------------------------------------------------------------------------

def _existing(path, what: str) -> None:
    if path is not None and not Path(path).exists():
        raise UsageError(f"No {what} at {str(path)!r}.")


def _writable_file(path, what: str) -> None:
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{what} {str(p)!r} is a directory; give a file name.")
    _writable_dir(p.parent if str(p.parent) else Path("."), what, of=p)


def _writable_dir(path, what: str, of=None) -> None:
    """``path`` exists and is writable, or can be created (its nearest existing ancestor is
    a writable directory)."""
    p = Path(path).absolute()
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{what} {str(of or path)!r} cannot be written: {str(probe)!r} is a "
                         "file, not a directory.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {str(of or path)!r} cannot be written: no write permission "
                         f"in {str(probe)!r}.")


def _model(name, flag: str) -> None:
    """A model folder or cached name that resolves without loading (None: the default)."""
    if name is None:
        return
    try:
        resolve_model(name)
    except FileNotFoundError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def _encoder(args) -> None:
    name = getattr(args, "encoder", None)
    if name not in ENCODER_ALIASES:
        _model(name, "--encoder")


def _verifier_file(path, flag: str) -> None:
    """``path`` is a file holding a fitted TrainedVerifier (unpickled: no weights inside)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{flag} {str(path)!r}: no such file; give 'logprob' or a verifier "
                         "file from `ttcrouter train-verifier --out FILE`.")
    import joblib

    try:
        obj = joblib.load(p)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a usage error
        raise UsageError(f"{flag} {str(path)!r} is not a readable verifier file "
                         f"({type(exc).__name__}: {exc}).") from None
    cls = type(obj)
    if (cls.__module__, cls.__name__) != ("ttcrouter.verifier", "TrainedVerifier"):
        raise UsageError(f"{flag} {str(path)!r} holds a {cls.__name__}, not a TrainedVerifier; "
                         "train one with `ttcrouter train-verifier SAMPLES --out FILE`.")
    if not hasattr(obj, "calibrated_"):
        raise UsageError(f"{flag} {str(path)!r} holds an unfitted TrainedVerifier.")


def _scorer(args) -> None:
    scorer = getattr(args, "scorer", None)
    if scorer is not None and scorer != "logprob":
        _verifier_file(scorer, "--scorer")


def _fit(args) -> None:
    lambdas = args.lambda_tokens is not None or args.lambda_latency is not None
    budgets = args.max_mean_tokens is not None or args.max_mean_latency is not None
    targets = args.target_mean_tokens is not None or args.target_mean_latency is not None
    if lambdas and budgets:
        raise UsageError("Give either fixed lambdas (--lambda-tokens/--lambda-latency) or a "
                         "budget (--max-mean-latency/--max-mean-tokens), not both.")
    if args.calibrate_on is None:
        if targets:
            raise UsageError("--target-mean-tokens/--target-mean-latency need --calibrate-on "
                             "QUERIES (the unlabelled questions the target is met on).")
    else:
        if not targets:
            raise UsageError("--calibrate-on needs --target-mean-tokens and/or "
                             "--target-mean-latency.")
        if lambdas:
            raise UsageError("--calibrate-on sets the lambdas: give it without "
                             "--lambda-tokens/--lambda-latency.")
        if budgets:
            raise UsageError("Give either --calibrate-on with --target-mean-* (a target on "
                             "unlabelled questions) or --max-mean-tokens/--max-mean-latency "
                             "(a budget on the training runs), not both.")
        _existing(args.calibrate_on, "questions file (--calibrate-on)")
    _existing(args.runs, "runs table")
    _writable_file(args.out, "--out")
    _encoder(args)


def _evaluate(args) -> None:
    if getattr(args, "runs", None) is not None:
        _existing(args.runs, "runs table")
    if getattr(args, "scorer", None) is not None:
        if not Path(args.runs).is_dir() or not any(Path(args.runs).glob("samples-*.parquet")):
            raise UsageError(f"--scorer re-scores a collection's samples: {args.runs!r} is not "
                             "a collection directory with samples (ttcrouter collect --out).")
        _scorer(args)
    _writable_dir(args.report, "--report")
    _encoder(args)


def _route(args) -> None:
    if not args.questions and args.file is None:
        raise UsageError("No questions to route: give them as arguments or with --file.")
    if args.backend == "openai" and not args.base_url:
        raise UsageError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1).")
    budgets = ("max_total_tokens", "max_mean_tokens", "max_total_latency", "max_mean_latency",
               "max_query_latency")
    if getattr(args, "concurrency", None) is not None and all(
            getattr(args, b, None) is None for b in budgets):
        raise UsageError("--concurrency is the execution model of a batch budget: give "
                         "--max-total-latency (or another --max-* budget) with it.")
    _existing(args.router, "router file")
    _existing(args.file, "questions file")
    if not args.route_only:
        _model(args.model, "--model")
        _scorer(args)


def _collect(args) -> None:
    if args.backend == "openai" and not args.base_url:
        raise UsageError("The openai backend needs --base-url (e.g. http://127.0.0.1:8000/v1).")
    if args.strategies not in ("default", "extended", "extended-pooled") and (
            args.pool_size is not None):
        specs = [parse_strategy(n) for n in split_strategy_names(args.strategies)]
        largest = max((s.n for s in specs if s.parallel), default=0)
        if args.pool_size < largest:
            raise UsageError(f"--pool-size {args.pool_size} is smaller than the largest n of "
                             f"the parallel strategies ({largest}).")
    _writable_dir(args.out, "--out")
    if args.export is not None:
        if Path(args.export).suffix not in (".parquet", ".jsonl"):
            raise UsageError(f"--export {args.export!r}: give a .parquet or .jsonl file.")
        _writable_file(args.export, "--export")
    _model(args.model, "--model")
    _scorer(args)


def _serve(args) -> None:
    if args.max_model_len < 2:
        raise UsageError(f"--max-model-len must be >= 2, got {args.max_model_len}.")
    _existing(args.router, "router file")
    if not args.upstream:
        _model(args.model, "--model")
    _scorer(args)


def _derive(args) -> None:
    _existing(args.samples, "samples table or collection")
    if Path(args.out).suffix not in (".parquet", ".jsonl"):
        raise UsageError(f"--out {args.out!r}: give a .parquet or .jsonl file.")
    _writable_file(args.out, "--out")


def _train_verifier(args) -> None:
    _existing(args.samples, "samples table or collection")
    if Path(args.out).suffix != ".joblib":
        raise UsageError(f"--out {args.out!r}: give a .joblib file.")
    _writable_file(args.out, "--out")
    if args.folds == 1:
        raise UsageError("--folds takes 0 (no held-out AUROC) or K >= 2 query folds.")
    _model(args.model, "--model")


_RULES = {"train-verifier": _train_verifier, "fit": _fit, "derive": _derive, "evaluate": _evaluate, "demo": _evaluate, "route": _route,
          "collect": _collect, "serve": _serve}


def check_command(args) -> None:
    """Check the arguments of ``args.command`` that need no data and no model.

    Raises
    ------
    UsageError
        What is wrong and how to fix it.
    """
    rule = _RULES.get(getattr(args, "command", None))
    if rule is not None:
        rule(args)
