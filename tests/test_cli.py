"""Tests of the ttcrouter command line (real encoder, real router, real files)."""

import json
import os
import subprocess
import sys

import joblib
import pytest

import ttcrouter
from ttcrouter.cli import main
from ttcrouter.commands import read_questions, widely_run_strategies
from ttcrouter.persistence import load_router, router_lambda
from ttcrouter.runs import write_runs
from ttcrouter.synthetic import make_synthetic_runs

STRATEGIES = ["majority_vote@n=1", "majority_vote@n=4", "beam_search@n=4,w=2"]


@pytest.fixture(scope="module")
def runs_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "runs.parquet"
    runs = make_synthetic_runs(48, strategies=STRATEGIES, repeats=2, random_state=0)
    write_runs(runs, path, provenance={"synthetic": True})
    return path


@pytest.fixture(scope="module")
def router_file(runs_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("router") / "router.joblib"
    assert main(["fit", str(runs_file), "--out", str(out), "--lambda-tokens", "0.001"]) == 0
    return out


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    report = tmp_path / "demo"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "ttcrouter.cli", "demo", "--report",
                           str(report)], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "gap closed" in proc.stdout
    assert "[ttcrouter]" in proc.stderr  # stage messages
    for name in ("metrics.json", "report.md", "accuracy_vs_tokens.png",
                 "accuracy_vs_latency.png", "strategy_mix.png", "router.joblib"):
        assert (report / name).is_file(), name
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["n_test"] > 0 and len(metrics["strategies"]) > 1
    # the demo's defaults: 4-fold cross-fitting, the generator's states, per-query costs
    assert metrics["config"]["cv"] == 4 and "4-fold cross-fitting" in proc.stdout
    assert "SmolLM2-135M-Instruct" in metrics["config"]["encoder"]
    assert "CostTable(per_query=True)" in metrics["config"]["router"]
    assert "cross-fitting folds" in proc.stdout
    # the saved demo router routes
    assert main(["route", "--router", str(report / "router.joblib"), "--route-only",
                 "--json", "What is 2 + 2?"]) == 0


@pytest.mark.slow
def test_fit_writes_a_router(router_file, capsys):
    bundle = joblib.load(router_file)
    assert bundle["ttcrouter_version"] == ttcrouter.__version__
    assert bundle["metadata"]["strategies"] == STRATEGIES
    assert bundle["metadata"]["lambda_tokens"] == pytest.approx(0.001)


@pytest.mark.slow
def test_evaluate_cli(runs_file, tmp_path, capsys):
    rc = main(["evaluate", str(runs_file), "--report", str(tmp_path / "rep"),
               "--test-size", "0.25", "--seed", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "gap closed" in out and "oracle" in out
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert metrics["config"]["random_state"] == 1
    assert metrics["n_test"] == 12
    # cross-fitting: every query is a test query once
    rc = main(["evaluate", str(runs_file), "--report", str(tmp_path / "cv"), "--cv", "3"])
    assert rc == 0
    assert "3-fold cross-fitting" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "cv" / "metrics.json").read_text())
    assert metrics["config"]["cv"] == 3 and metrics["n_test"] == 48


def test_budget_no_strategy_meets(runs_file, tmp_path, capsys):
    rc = main(["fit", str(runs_file), "--out", str(tmp_path / "r.joblib"),
               "--max-mean-latency", "0.001"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("ttcrouter: error: No strategy meets a mean latency of 0.001 s")
    assert "the cheapest, majority_vote@n=1, averages" in err
    assert "Traceback" not in err
    assert not (tmp_path / "r.joblib").exists()


def _exit_code(argv) -> int:
    """main's exit code; a bad value exits from argparse (usage and error on stderr)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def test_missing_runs_file(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope.parquet")]) == 2
    assert "No runs table" in capsys.readouterr().err


def test_bad_router_version(tmp_path, capsys):
    from sklearn.linear_model import LogisticRegression

    from ttcrouter.persistence import save_router

    good = save_router(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), tmp_path / "r.joblib")
    payload = joblib.load(good)
    payload["ttcrouter_version"] = "0.0.1"
    bad = tmp_path / "old.joblib"
    joblib.dump(payload, bad)
    assert main(["route", "--router", str(bad), "--route-only", "What is 1 + 1?"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "made by ttcrouter 0.0.1" in err and f"this is ttcrouter {ttcrouter.__version__}" in err


@pytest.mark.slow
def test_route_only_with_question_file(router_file, tmp_path, capsys):
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("\n".join([
        json.dumps({"question": "Easy: what is 2 + 3?"}),
        "{not json",
        json.dumps({"prompt": "no question field"}),
        "",
        "Olympiad problem: find all primes p with p^2 + 2 prime.",
    ]) + "\n")
    rc = main(["route", "--router", str(router_file), "--file", str(qfile), "--route-only",
               "--json", "Quick sum: what is 1 plus 1?"])
    captured = capsys.readouterr()
    assert rc == 1  # some lines were bad, the rest were routed
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["question"] for r in records] == [
        "Quick sum: what is 1 plus 1?", "Easy: what is 2 + 3?",
        "Olympiad problem: find all primes p with p^2 + 2 prime."]
    assert all(r["strategy"] in STRATEGIES for r in records)
    assert f"{qfile}:2: not valid JSON" in captured.err
    assert f"{qfile}:3: no non-empty \"question\"" in captured.err


def test_read_questions_plain_text(tmp_path):
    f = tmp_path / "q.txt"
    f.write_text("What is 1 + 1?\n\n  What is 2 + 2?  \n")
    qs, problems = read_questions(f)
    assert qs == [(1, "What is 1 + 1?"), (3, "What is 2 + 2?")] and problems == []


def test_collect_is_wired(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["collect", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--repeats" in out and "--out" in out


def test_usage_errors(capsys):
    assert main([]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["route", "q"])  # --router is required
    assert exc.value.code == 2


@pytest.mark.slow
def test_route_on_real_model_transformers(router_file, capsys):
    rc = main(["route", "--router", str(router_file), "--backend", "transformers",
               "--max-tokens", "32", "--json", "What is 2 + 3?"])
    out = capsys.readouterr().out
    assert rc == 0, out
    rec = json.loads(out.splitlines()[-1])
    assert rec["strategy"] in STRATEGIES
    assert rec["tokens"] > 0 and rec["latency_s"] > 0 and rec["error"] is None


@pytest.mark.slow
def test_fit_to_a_latency_budget(runs_file, tmp_path, capsys):
    from ttcrouter.runs import aggregate_runs, read_runs

    s = aggregate_runs(read_runs(runs_file))
    means = s.L.mean()
    budget = float((means.min() + means.max()) / 2)
    out = tmp_path / "budget.joblib"
    assert main(["fit", str(runs_file), "--out", str(out),
                 "--max-mean-latency", f"{budget:.4f}"]) == 0
    bundle = load_router(out)
    meta = bundle["metadata"]
    assert meta["max_mean_latency"] == pytest.approx(budget, rel=1e-3)
    # the most accurate strategy (beam search) is the slowest and over the budget, so the
    # budget binds: the router pays for latency, and routes with the lambda it recorded
    assert meta["lambda_latency"] > 0 and "lambda_tokens" in meta
    assert meta["lambda_latency"] == router_lambda(bundle["router"], "lambda_latency")
    assert "router saved to" in capsys.readouterr().out
    # fixed lambdas and a budget together are refused
    assert main(["fit", str(runs_file), "--out", str(out), "--lambda-tokens", "0.1",
                 "--max-mean-latency", f"{budget:.4f}"]) == 2


@pytest.mark.slow
def test_fit_on_a_subset_of_strategies(runs_file, tmp_path, capsys):
    out = tmp_path / "sub.joblib"
    assert main(["fit", str(runs_file), "--out", str(out),
                 "--strategies", "majority_vote@n=1,beam_search@n=4,w=2"]) == 0
    assert joblib.load(out)["metadata"]["strategies"] == ["majority_vote@n=1",
                                                          "beam_search@n=4,w=2"]
    assert main(["evaluate", str(runs_file), "--report", str(tmp_path / "r"),
                 "--strategies", "majority_vote@n=3"]) == 2
    assert "majority_vote@n=3" in capsys.readouterr().err


def test_demo_drops_strategies_run_on_few_queries(capsys):
    from ttcrouter.cli import configure_logging

    configure_logging()  # messages reach stderr as under `ttcrouter demo`
    runs = make_synthetic_runs(20, strategies=STRATEGIES, repeats=1, random_state=0)
    assert widely_run_strategies(runs) is None
    late = (runs["strategy"] == "beam_search@n=4,w=2") & (runs["query_id"] > "syn-00005")
    assert widely_run_strategies(runs[~late]) == "majority_vote@n=1,majority_vote@n=4"
    assert "beam_search@n=4,w=2 (6 queries)" in capsys.readouterr().err


@pytest.mark.slow
def test_fit_with_encoder_pooling(runs_file, tmp_path, capsys):
    out = tmp_path / "cls.joblib"
    assert main(["fit", str(runs_file), "--out", str(out), "--pooling", "cls"]) == 0
    pipe = load_router(out)["router"]
    assert pipe.named_steps["embed"].pooling == "cls"
    # CLS pooling embeds differently from the default mean pooling
    mean = load_router(_fit_default(runs_file, tmp_path))["router"].named_steps["embed"]
    text = ["What is 12 + 7?"]
    assert mean.pooling == "mean"
    assert not (pipe.named_steps["embed"].transform(text) == mean.transform(text)).all()


def _fit_default(runs_file, tmp_path):
    out = tmp_path / "mean.joblib"
    assert main(["fit", str(runs_file), "--out", str(out)]) == 0
    return out


def test_bad_pooling_is_a_usage_error(runs_file, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", str(runs_file), "--pooling", "max"])
    assert exc.value.code == 2
    assert "invalid choice: 'max'" in capsys.readouterr().err


@pytest.mark.slow
def test_per_query_costs_and_single_split_flags(runs_file, tmp_path, capsys):
    out = tmp_path / "pq.joblib"
    assert main(["fit", str(runs_file), "--out", str(out), "--per-query-costs"]) == 0
    router = load_router(out)["router"].named_steps["router"]
    assert router.costs.per_query is True
    assert router.costs_.tokens_regressor_ is not None
    # --cv 0 is one split; --no-per-query-costs keeps per-strategy means
    assert main(["evaluate", str(runs_file), "--report", str(tmp_path / "r"), "--cv", "0",
                 "--no-per-query-costs", "--encoder", "minilm"]) == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["config"]["cv"] is None and metrics["n_test"] == 12
    assert "per_query=True" not in metrics["config"]["router"]
    assert metrics["config"]["encoder"] == "EmbeddingTransformer()"  # MiniLM, the default


@pytest.mark.parametrize("bad", ["1", "-2", "four"])
def test_bad_cv_is_a_usage_error(runs_file, bad, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(runs_file), "--cv", bad])
    assert exc.value.code == 2
    assert "--cv" in capsys.readouterr().err


def test_help_and_usage_errors_do_not_import_the_estimators():
    """The command line parses before it imports: --help never loads sklearn or pandas."""
    code = ("import sys; from ttcrouter.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('ttcrouter.commands', 'ttcrouter.serving', 'pandas') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ttcrouter.commands" not in out.stdout and "ttcrouter.serving" not in out.stdout


def test_messages_go_to_stderr_and_verbosity(runs_file, tmp_path, capsys):
    out = tmp_path / "r.joblib"
    assert main(["-q", "fit", str(runs_file), "--out", str(out), "--lambda-tokens", "0.1",
                 "--max-mean-latency", "1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # errors are not results
    assert captured.err.strip() == (
        "ttcrouter: error: Give either fixed lambdas (--lambda-tokens/--lambda-latency) or a "
        "budget (--max-mean-latency/--max-mean-tokens), not both.")
    import logging

    assert logging.getLogger("ttcrouter").level == logging.WARNING
    main(["fit", "-v", str(tmp_path / "none.parquet")])
    assert logging.getLogger("ttcrouter").level == logging.DEBUG
    assert os.environ["VLLM_LOGGING_STREAM"] == "ext://sys.stderr"


@pytest.mark.slow
@pytest.mark.vllm
def test_route_json_on_vllm_writes_one_json_line(router_file):
    """`ttcrouter route --json q > out.json`: stdout holds the one JSON line and nothing else
    (vLLM's engine logs go to stderr), and the router's load is reported apart."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_LOGGING")}
    env.update(HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE=env.get("VLLM_CPU_KVCACHE_SPACE", "2"))
    proc = subprocess.run([sys.executable, "-m", "ttcrouter.cli", "route", "--router",
                           str(router_file), "--max-tokens", "16", "--json", "What is 7 + 8?"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout[:3000]
    rec = json.loads(lines[0])
    assert rec["question"] == "What is 7 + 8?" and rec["strategy"] in STRATEGIES
    assert rec["error"] is None and rec["tokens"] > 0
    # loading the encoder (seconds) is reported once, apart from routing this question (ms)
    assert rec["load_s"] > rec["route_latency_s"] > 0
    assert rec["route_latency_s"] < 1.0
    assert rec["engine_start_s"] > 0
    assert "[ttcrouter] routing 1 question(s)" in proc.stderr
    assert "vllm" in proc.stderr.lower()  # the engine's log went to stderr


# -- batch budgets ----------------------------------------------------------------------------

BATCH_QUESTIONS = ["What is 3 + 4?", "Compute 12 * 13 - 7.", "What is 1 + 1?"]


@pytest.fixture(scope="module")
def text_router_file(tmp_path_factory):
    """A fast router file: Pipeline(TextFeatures, UtilityRouter), no encoder to load."""
    from router_helpers import text_pipeline

    from ttcrouter.persistence import save_router

    pipe, _ = text_pipeline()
    return save_router(pipe, tmp_path_factory.mktemp("text") / "router.joblib")


class _FakeGenerator:
    def generate(self, requests, n=1, max_tokens=1):
        return [[]]

    def close(self):
        pass


class _FakeExecutor:
    generator = _FakeGenerator()

    def execute_batch(self, strategy, questions):
        from types import SimpleNamespace

        return [SimpleNamespace(answer="7", text="7", tokens=5, latency_s=0.01, error=None)
                for _ in questions]

    def close(self):
        pass


def test_route_with_a_total_token_budget(text_router_file, monkeypatch, capsys):
    monkeypatch.setattr("ttcrouter.serving.make_executor", lambda *a, **k: _FakeExecutor())
    rc = main(["route", "--router", str(text_router_file), "--backend", "transformers",
               "--max-total-tokens", "1200", "--json", *BATCH_QUESTIONS])
    assert rc == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["question"] for r in lines[:-1]] == BATCH_QUESTIONS
    summary = lines[-1]["summary"]
    assert summary["budget"]["tokens"] == 1200 and summary["predicted_tokens"] <= 1200
    assert summary["realised_tokens"] == 15
    assert summary["realised_over_budget"]["tokens"] == pytest.approx(15 / 1200)
    assert summary["wall_clock_s"] >= 0 and "predicted_makespan_s" in summary
    # plain text: the records, then the summary
    rc = main(["route", "--router", str(text_router_file), "--backend", "transformers",
               "--max-mean-tokens", "400", *BATCH_QUESTIONS])
    out = capsys.readouterr().out
    assert rc == 0 and "realised / budget (tokens): " in out and "measured wall clock" in out


def test_route_only_with_a_latency_budget(text_router_file, tmp_path, capsys):
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("".join(json.dumps({"question": q}) + "\n" for q in BATCH_QUESTIONS))
    rc = main(["route", "--router", str(text_router_file), "--file", str(qfile), "--route-only",
               "--max-total-latency", "30", "--concurrency", "2", "--json"])
    assert rc == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 4 and all("strategy" in r for r in lines[:3])
    s = lines[-1]["summary"]
    assert s["budget"]["latency"] == 30 and s["budget"]["concurrency"] == 2
    assert s["predicted_makespan_s"] <= 30


@pytest.mark.parametrize("flags, message", [
    (["--max-total-tokens", "-5"], "--max-total-tokens"),
    (["--max-mean-tokens", "0"], "--max-mean-tokens"),
    (["--concurrency", "0", "--max-total-latency", "5"], "--concurrency"),
    (["--concurrency", "4"], "--concurrency is the execution model"),
])
def test_route_budget_flags_are_checked_before_loading(flags, message, tmp_path, capsys):
    # the router file does not exist: the flags fail first
    rc = _exit_code(["route", "--router", str(tmp_path / "missing.joblib"), *flags, "q"])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


def test_route_infeasible_budget_is_a_usage_error(text_router_file, capsys):
    rc = main(["route", "--router", str(text_router_file), "--max-mean-tokens", "1",
               "--route-only", *BATCH_QUESTIONS])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "minimum possible cost" in err and "Raise the budget to at least" in err


@pytest.mark.parametrize("flags, message", [
    (["--target-mean-tokens", "100"], "need --calibrate-on"),
    (["--calibrate-on", "Q"], "needs --target-mean-tokens"),
    (["--calibrate-on", "Q", "--target-mean-tokens", "100", "--lambda-tokens", "0"],
     "without --lambda-tokens"),
    (["--calibrate-on", "Q", "--target-mean-tokens", "100", "--max-mean-tokens", "300"],
     "not both"),
    (["--calibrate-on", "Q", "--target-mean-latency", "-1"], "--target-mean-latency"),
    (["--calibrate-on", "missing.jsonl", "--target-mean-tokens", "100"],
     "No questions file (--calibrate-on) at"),
])
def test_fit_calibrate_on_usage_errors(flags, message, tmp_path, capsys):
    qfile = tmp_path / "q.txt"
    qfile.write_text("What is 2 + 2?\n")
    flags = [str(qfile) if f == "Q" else str(tmp_path / f) if f == "missing.jsonl" else f
             for f in flags]
    # the runs file does not exist: the calibration flags fail before it is read
    rc = _exit_code(["fit", str(tmp_path / "no-runs.parquet"), "--out",
                     str(tmp_path / "r.joblib"), *flags])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err


def test_fit_calibrates_on_unlabelled_questions(runs_file, tmp_path, capsys):
    qfile = tmp_path / "traffic.jsonl"
    qfile.write_text("".join(json.dumps({"question": f"What is {i} + {2 * i}?"}) + "\n"
                             for i in range(20)))
    out = tmp_path / "cal.joblib"
    rc = main(["fit", str(runs_file), "--out", str(out), "--calibrate-on", str(qfile),
               "--target-mean-tokens", "300"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "calibrated on 20 questions: predicted mean tokens" in captured.out
    loaded = load_router(out)
    cal = loaded["metadata"]["calibration"]
    assert cal["target_mean_tokens"] == 300 and cal["n_queries"] == 20
    assert cal["predicted_mean_tokens"] <= 300
    assert router_lambda(loaded["router"][-1], "lambda_tokens") > 0
    # the recorded mean is the saved router's own on those questions
    names = loaded["router"].predict([json.loads(x)["question"]
                                      for x in qfile.read_text().splitlines()])
    means = loaded["router"][-1].training_means_["tokens"]
    assert cal["predicted_mean_tokens"] == pytest.approx(means[list(names)].mean())


@pytest.mark.parametrize("value", ["none", "100,-3", "1e999"])
def test_bad_batch_budgets_are_usage_errors(value, runs_file, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(runs_file), "--batch-budgets", value])
    assert exc.value.code == 2
    assert "--batch-budgets" in capsys.readouterr().err


def test_fit_records_how_the_runs_were_executed(tmp_path):
    """route and serve run with the runs table's token cap and prompts (router metadata)."""
    path = tmp_path / "runs.parquet"
    runs = make_synthetic_runs(24, strategies=STRATEGIES, repeats=1, random_state=0)
    write_runs(runs, path, provenance={"sampling": {"max_tokens": 80, "temperature": 0.7}})
    out = tmp_path / "r.joblib"
    assert main(["fit", str(path), "--out", str(out), "--encoder", "minilm"]) == 0
    assert joblib.load(out)["metadata"]["execution"] == {"max_tokens": 80, "temperature": 0.7}

# -- train-verifier and --scorer ---------------------------------------------------------------

def test_train_verifier_reports_held_out_auroc_and_saves(tmp_path, capsys):
    from ttcrouter.samples import write_samples
    from ttcrouter.verifier import load_verifier
    from verifier_helpers import toy_samples

    samples = write_samples(toy_samples(24), tmp_path / "samples.parquet")
    out = tmp_path / "verifier.joblib"
    assert main(["train-verifier", str(samples), "--out", str(out), "--folds", "3",
                 "--threads", "1", "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "held-out AUROC (3 query folds): verifier" in stdout and "logprob 0.500" in stdout
    assert "verifier saved to" in stdout and "96 samples, 288 step prefixes, 24 queries" in stdout
    verifier = load_verifier(out)
    assert len(verifier.train_groups_) == 24 and out.stat().st_size < 500_000
    # with a features cache, a second fit (another C) reads the kept chunks, not the texts
    cache = tmp_path / "features"
    argv = ["train-verifier", str(samples), "--out", str(out), "--folds", "3", "--threads",
            "1", "--no-progress", "--features-cache", str(cache)]
    assert main(argv) == 0
    first = capsys.readouterr().out
    chunks = {p: p.stat().st_mtime_ns for p in cache.glob("chunk-*.npz")}
    assert chunks and "held-out AUROC" in first
    assert main(argv + ["--C", "0.01"]) == 0
    assert "verifier saved to" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in cache.glob("chunk-*.npz")} == chunks


@pytest.mark.parametrize("argv, message", [
    (["collect", "arithmetic:2", "--out", "{tmp}/c", "--scorer", "{tmp}/missing.joblib"],
     "no such file"),
    (["route", "--router", "{router}", "--scorer", "{tmp}/dict.joblib", "q"],
     "not a TrainedVerifier"),
    (["serve", "--router", "{router}", "--scorer", "{tmp}/dict.joblib"],
     "not a TrainedVerifier"),
    (["evaluate", "{runs}", "--scorer", "{tmp}/dict.joblib", "--report", "{tmp}/r"],
     "collection directory with samples"),
    (["train-verifier", "{runs}", "--out", "{tmp}/v.txt"], "give a .joblib file"),
    (["train-verifier", "{runs}", "--out", "{tmp}/v.joblib", "--folds", "1"], "--folds"),
    (["train-verifier", "{tmp}/none.parquet"], "No samples table"),
])
def test_scorer_and_train_verifier_usage_errors(argv, message, runs_file, router_file, tmp_path,
                                                capsys):
    joblib.dump({"not": "a verifier"}, tmp_path / "dict.joblib")
    argv = [a.format(tmp=tmp_path, router=router_file, runs=runs_file) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_collect_and_evaluate_with_a_verifier(tmp_path, capsys):
    """A collection drawn by a stand-in generator (the collection's own tests use it) with a
    verifier trained on other queries as its named scorer: the pools are scored by both
    scorers and the rows say which they read; evaluate --scorer derives the verifier rows
    again with a verifier file."""
    import numpy as np
    import pandas as pd
    from test_collection import RandomAnswers

    from ttcrouter.collection import collect, load_samples
    from ttcrouter.executors import StrategyExecutor, VerifierScorer
    from ttcrouter.samples import write_samples
    from verifier_helpers import toy_samples

    samples = write_samples(toy_samples(16), tmp_path / "train.parquet")
    verifier = tmp_path / "v.joblib"
    assert main(["train-verifier", str(samples), "--out", str(verifier), "--folds", "0",
                 "--threads", "1", "--no-progress"]) == 0
    queries = pd.DataFrame({"query_id": [f"x{i}" for i in range(16)],
                            "query": [f"What is {i} + 3?" for i in range(16)],
                            "gold": ["7"] * 16})  # RandomAnswers answers 6, 7 or 8
    out = tmp_path / "coll"
    runs = collect(queries, ["majority_vote@n=4", "best_of_n@n=4",
                             "best_of_n@n=4,scorer=verifier"], repeats=1, out=out,
                   executor=StrategyExecutor(RandomAnswers(), max_tokens=8, scorers={
                       "verifier": VerifierScorer(str(verifier))}),
                   chunk_size=8, calibration_queries=1, progress=False)
    drawn = load_samples(out)
    assert (drawn["reward_tokens_verifier"] > 0).all()
    assert (drawn["score_latency_s_verifier"] > 0).all()
    assert drawn["score_verifier"].between(0, 1).all()
    marked = runs[runs["strategy"] == "best_of_n@n=4,scorer=verifier"].set_index("query_id")
    plain = runs[runs["strategy"] == "best_of_n@n=4"].set_index("query_id")
    assert len(marked) == len(plain) == 16
    pools = drawn.groupby("query_id")
    np.testing.assert_allclose(marked["reward_tokens"],
                               pools["reward_tokens_verifier"].sum()[marked.index], atol=1)
    assert (plain["reward_tokens"] == 0).all()
    # verification time is on top of the same generation
    assert (marked["latency_s"] > plain.loc[marked.index, "latency_s"]).all()
    capsys.readouterr()
    assert main(["evaluate", str(out), "--scorer", str(verifier), "--report",
                 str(tmp_path / "r"), "--test-size", "0.5"]) == 0
    captured = capsys.readouterr()
    assert "added 16 rows of 1 verifier-scored strategies" in captured.err
    assert "TRAINED ON" not in captured.err  # other queries: no overlap warning
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert np.isfinite(metrics["n_test"])
