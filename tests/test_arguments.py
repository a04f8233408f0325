"""Command-line arguments are checked before any model, encoder or engine loads."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ttcrouter.arguments import (UsageError, check_command, dataset_spec, nonnegative_float,
                                 positive_float, positive_int, share, strategy_names)
from ttcrouter.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "ttcrouter" / "data" / "arithmetic_smollm2_runs.parquet"
HEAVY = ("torch", "transformers", "sentence_transformers", "vllm", "skorch")


@pytest.mark.parametrize("kind, good, bad", [
    (nonnegative_float, ["0", "0.5", "1e-3"], ["-1", "nan", "inf", "x"]),
    (positive_float, ["0.1", "300"], ["0", "-2", "nan", "1e999"]),
    (positive_int, ["1", "16"], ["0", "-3", "2.5", "x"]),
    (share, ["0.25", "0.9"], ["0", "1", "1.5"]),
    (dataset_spec, ["arithmetic:4", "gsm:10", "arithmetic"], ["arithmetic:0", "nope.jsonl"]),
    (strategy_names, ["default", "majority_vote@n=1, beam_search@n=8,w=4"],
     ["majority_vote@n=0", "nope@n=1", "beam_search@n=8,w=3"]),
])
def test_value_types(kind, good, bad):
    for text in good:
        kind(text)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            kind(text)


def _args(*argv):
    return build_parser().parse_args(list(argv))


@pytest.mark.parametrize("argv, message", [
    (["fit", str(SHIPPED), "--lambda-tokens", "0.1", "--max-mean-tokens", "100"], "not both"),
    (["fit", "nope.parquet"], "No runs table at 'nope.parquet'"),
    (["fit", str(SHIPPED), "--out", "."], "is a directory"),
    (["fit", str(SHIPPED), "--encoder", "./no/such/folder"], "--encoder"),
    (["evaluate", "nope.parquet"], "No runs table"),
    (["route", "--router", "r.joblib"], "No questions to route"),
    (["route", "--router", "r.joblib", "--backend", "openai", "q"], "needs --base-url"),
    (["route", "--router", "nope.joblib", "q"], "No router file at 'nope.joblib'"),
    (["collect", "arithmetic:4", "--out", "o", "--backend", "openai"], "needs --base-url"),
    (["collect", "arithmetic:4", "--out", "o", "--strategies", "majority_vote@n=8",
      "--pool-size", "4"], "--pool-size 4 is smaller"),
    (["collect", "arithmetic:4", "--out", "o", "--export", "x.csv"], ".parquet or .jsonl"),
])
def test_command_rules(argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_command(_args(*argv))


def test_output_under_a_file_cannot_be_written(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="is a file, not a directory"):
        check_command(_args("demo", "--report", str(tmp_path / "file" / "report")))
    check_command(_args("demo", "--report", str(tmp_path / "new" / "report")))  # creatable


@pytest.mark.parametrize("argv", [
    ["fit", str(SHIPPED), "--lambda-tokens", "-1"],
    ["fit", str(SHIPPED), "--lambda-tokens", "0.1", "--max-mean-latency", "3"],
    ["fit", str(SHIPPED), "--encoder", "./no/such/folder"],
    ["evaluate", str(SHIPPED), "--cv", "1"],
    ["evaluate", str(SHIPPED), "--test-size", "1.5"],
    ["demo", "--strategies", "majority_vote@n=3x"],
    ["demo", "--report", "/dev/null/report"],
    ["route", "--router", "missing.joblib", "What is 2 + 2?"],
    ["route", "--router", "missing.joblib", "--max-total-tokens", "-5", "q"],
    ["collect", "arithmetic:4", "--out", "o", "--repeats", "0"],
    ["collect", "arithmetic:4", "--out", "o", "--strategies", "majority_vote@n=8",
     "--pool-size", "4"],
])
def test_a_usage_error_returns_before_any_model_loads(argv, tmp_path):
    """In a fresh process: exit 2, and none of torch, transformers or vLLM was imported."""
    code = ("import json, sys\nfrom ttcrouter.cli import main\n"
            "try:\n    rc = main(json.loads(sys.argv[1]))\n"
            "except SystemExit as exc:\n    rc = exc.code\n"
            f"print(json.dumps([rc, [m for m in {HEAVY!r} if m in sys.modules]]))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(argv)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
                               "PATH": "/usr/bin:/bin"})
    rc, heavy = json.loads(proc.stdout.strip().splitlines()[-1])
    assert rc == 2, proc.stderr
    assert heavy == [], f"{argv} imported {heavy} before failing"
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr
