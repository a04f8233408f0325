"""Run the example scripts as written (slow: real encoder, real model)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name, *args, timeout=1200):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=EXAMPLES.parent)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_examples_have_main_guard():
    scripts = sorted(EXAMPLES.glob("*.py"))
    assert {p.name for p in scripts} >= {"pipeline_gridsearch.py", "latency_budget.py",
                                         "route_batch.py"}
    for p in scripts:
        assert 'if __name__ == "__main__":' in p.read_text(), p.name


@pytest.mark.slow
def test_pipeline_gridsearch():
    out = run_example("pipeline_gridsearch.py")
    assert "best: {'router__lambda_latency': 0.0, 'router__lambda_tokens':" in out
    assert "lambda_tokens" in out and "-> " in out


@pytest.mark.slow
def test_latency_budget():
    out = run_example("latency_budget.py")
    assert "chosen lambda_tokens=" in out
    assert "router on the test queries: accuracy" in out


@pytest.mark.slow
@pytest.mark.vllm
def test_route_batch():
    out = run_example("route_batch.py", "--max-tokens", "48")
    assert out.count("  -> ") == 4
    assert "error:" not in out
