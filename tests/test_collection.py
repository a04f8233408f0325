import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ttcrouter.collection import (COLUMNS, CollectionConfigError, CollectionStore, collect,
                                  derive_pooled, export_collection, load_collection)
from ttcrouter.strategies import split_strategy_names
from ttcrouter.collection.latency import fit_latency_model, latency_models, predict_latency
from ttcrouter.collection.store import config_diff
from ttcrouter.datasets import arithmetic
from ttcrouter.executors.runner import Candidate, CandidatePool
from ttcrouter.grading import normalize_answer
from ttcrouter.runs import read_runs

ROOT = Path(__file__).resolve().parents[1]


def _pool(answers, rewards, tokens):
    cands = [Candidate(text=f"Answer: {a}", steps=[f"Answer: {a}"], answer=a,
                       normalized=normalize_answer(a), tokens=t, reward=r)
             for a, r, t in zip(answers, rewards, tokens)]
    return CandidatePool(query="q", candidates=cands, prompt_tokens=30, reward_tokens=80)


def _direct(method, answers, rewards):
    """The strategy computed by hand on a list of samples."""
    if method == "best_of_n":
        return answers[int(np.argmax(rewards))]
    totals, first = {}, {}
    for i, (a, r) in enumerate(zip(answers, rewards)):
        if a is None:
            continue
        key = normalize_answer(a)
        totals[key] = totals.get(key, 0.0) + (1.0 if method == "majority_vote" else r)
        first.setdefault(key, i)
    if not totals:
        return None
    best = max(totals, key=lambda k: (totals[k], -first[k]))
    return answers[first[best]]


def test_derive_pooled_equals_direct_computation():
    answers = ["3", "5", "5.0", None, "7", "3", "3", "9"]
    rewards = [0.9, 0.2, 0.3, 0.99, 0.1, 0.5, 0.6, 0.999]
    tokens = [10, 20, 30, 40, 50, 60, 70, 80]
    pool = _pool(answers, rewards, tokens)
    names = [f"{m}@n={n}" for m in ("majority_vote", "weighted_majority_vote", "best_of_n")
             for n in (1, 2, 4, 8)]
    derived = derive_pooled(pool, names)
    for name in names:
        method, n = name.split("@n=")
        n = int(n)
        got = derived[name]
        want = _direct(method, answers[:n], rewards[:n])
        assert normalize_answer(got.answer) == normalize_answer(want), name
        assert got.tokens == sum(tokens[:n])
        assert got.n_samples == n
        assert got.max_candidate_tokens == max(tokens[:n])
        # the pool's reward tokens pro rata for the scored methods, none for plain voting
        assert got.reward_tokens == (0 if method == "majority_vote" else 80 * n // 8)
    # spot checks of the hand computation itself
    assert derived["majority_vote@n=4"].answer == "5"          # "5" and "5.0" agree
    assert derived["best_of_n@n=4"].answer is None             # best reward, no answer
    assert derived["weighted_majority_vote@n=4"].answer == "3"  # 0.9 > 0.2 + 0.3
    assert derived["majority_vote@n=8"].answer == "3"
    assert derived["best_of_n@n=8"].answer == "9"


def test_derive_pooled_errors():
    pool = _pool(["1", "2"], [0.5, 0.5], [3, 4])
    with pytest.raises(ValueError, match="pool holds 2"):
        derive_pooled(pool, ["majority_vote@n=4"])
    with pytest.raises(ValueError, match="not a parallel strategy"):
        derive_pooled(pool, ["beam_search@n=2,w=2"])


def test_latency_model_fit():
    m = fit_latency_model([10, 20, 30], [1.0, 2.0, 3.0])
    assert m["kind"] == "linear" and m["b"] == pytest.approx(0.1) and m["a"] == \
        pytest.approx(0.0, abs=1e-9)
    m = fit_latency_model([10, 20, 30], [3.0, 2.0, 1.0])   # negative slope: the mean
    assert m["kind"] == "mean" and m["a"] == pytest.approx(2.0)
    m = fit_latency_model([10, 10], [1.0, 2.0])            # no spread in x: the mean
    assert m["kind"] == "mean" and m["a"] == pytest.approx(1.5)


def test_latency_models_monotone_in_n():
    # timing noise put the n=2 line below the n=1 line: more samples must not look faster
    cal = pd.DataFrame({
        "strategy": ["majority_vote@n=1"] * 2 + ["best_of_n@n=2"] * 2
        + ["majority_vote@n=4"] * 2 + ["beam_search@n=2,w=2"] * 2,
        "x": [10.0, 30.0, 10.0, 30.0, 10.0, 30.0, 50.0, 100.0],
        "latency_s": [2.0, 4.0, 1.8, 3.6, 3.0, 6.0, 1.0, 2.0],
        "error": [None] * 8,
    })
    models = latency_models(cal)
    assert models["majority_vote@n=1"]["group"] == "parallel@n=1"
    for x in (0.0, 10.0, 25.0, 80.0):
        one = predict_latency(models["majority_vote@n=1"], x)
        two = predict_latency(models["best_of_n@n=2"], x)
        four = predict_latency(models["majority_vote@n=4"], x)
        assert one <= two <= four
        assert two == pytest.approx(max(one, 1.8 + 0.09 * (x - 10)))
    # beam search keeps its own line
    assert predict_latency(models["beam_search@n=2,w=2"], 75.0) == pytest.approx(1.5)


def test_split_strategy_names_andconfig_diff():
    assert split_strategy_names("majority_vote@n=1, beam_search@n=8,w=4,best_of_n@n=2") == [
        "majority_vote@n=1", "beam_search@n=8,w=4", "best_of_n@n=2"]
    diffs = config_diff({"model": "a", "sampling": {"max_tokens": 8}, "strategies": ["x"]},
                         {"model": "b", "sampling": {"max_tokens": 8}, "strategies": ["x", "y"]})
    assert diffs == ["model: stored 'a', now 'b'", "strategies: now adds ['y']"]


def test_collect_bad_inputs(tmp_path):
    queries = arithmetic(3)
    with pytest.raises(ValueError, match="Unknown strategy 'magic@n=2'"):
        collect(queries, strategies=["magic@n=2"], out=tmp_path / "a")
    with pytest.raises(ValueError, match="pool_size=2 is smaller"):
        collect(queries, strategies=["majority_vote@n=4"], pool_size=2, out=tmp_path / "a")
    with pytest.raises(ValueError, match="repeats == 0, must be >= 1"):
        collect(queries, repeats=0, out=tmp_path / "a")
    with pytest.raises(ValueError, match="latency must be"):
        collect(queries, latency="guess", out=tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="No collection"):
        load_collection(tmp_path / "nothing")
    from ttcrouter.collection import make_executor

    with pytest.raises(ValueError, match="needs --base-url"):
        make_executor("openai")
    with pytest.raises(ValueError, match="Unknown backend 'tgi'"):
        make_executor("tgi")
    with pytest.raises(ValueError, match="Unknown scorer"):
        make_executor("vllm", scorer="prm-9000")
    assert not (tmp_path / "a").exists()


def test_store_lock_and_leftover_temporaries(tmp_path):
    out = CollectionStore(tmp_path / "c")
    out.lock()
    other = CollectionStore(tmp_path / "c")
    with pytest.raises(RuntimeError, match="Another collection is writing"):
        other.lock()
    out.unlock()
    with other:                                   # released at the end of the block
        pass
    out.lock()
    out.unlock()
    # a leftover temporary file (a write killed mid-way) is ignored and cleaned up
    (tmp_path / "c" / ".tmp-part-x.parquet.123").write_bytes(b"half a file")
    assert out.parts() == [] and out.done_keys() == set()
    out.cleanup_tmp()
    assert not list((tmp_path / "c").glob(".tmp-*"))


def test_store_lock_held_by_another_process(tmp_path):
    out = tmp_path / "c"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from ttcrouter.collection import "
         "CollectionStore; s = CollectionStore(sys.argv[1]); s.lock(); print('held', "
         "flush=True); time.sleep(120)", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RuntimeError, match=r"Another collection is writing .*wait for it"):
            CollectionStore(out).lock()
        with pytest.raises(RuntimeError, match="Another collection is writing"):
            collect(arithmetic(2), ["majority_vote@n=1"], out=out, executor=object(),
                    progress=False, close=False)
    finally:
        holder.kill()
        holder.wait()
    with CollectionStore(out):                    # the lock died with its holder
        pass


def test_store_names_a_stale_engine_of_an_earlier_run(tmp_path):
    """A resumed collection refuses to start beside a live engine of the killed run."""
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "c"
    code = ("import subprocess, sys, time; from ttcrouter.collection import CollectionStore; "
            "from ttcrouter.lifetime import reap_children_on_exit\n"
            "s = CollectionStore(sys.argv[1]); s.lock()\n"
            "with reap_children_on_exit():\n"
            "    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
            "    time.sleep(1.5)\n"
            "print(child.pid, flush=True); time.sleep(120)")
    run = subprocess.Popen([sys.executable, "-c", code, str(out)], cwd=ROOT,
                           stdout=subprocess.PIPE, text=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
    engine = None
    try:
        engine = int(run.stdout.readline())
        # an "engine" outlives its run when the run and its watchdog die together
        for proc in psutil.Process(run.pid).children():
            if "lifetime" in " ".join(proc.cmdline()):
                proc.kill()
        run.kill()
        run.wait()
        with pytest.raises(RuntimeError, match=rf"still alive \(pids .*{engine}.*kill"):
            CollectionStore(out).lock()
    finally:
        run.kill()
        if engine is not None and psutil.pid_exists(engine):
            psutil.Process(engine).kill()
    time.sleep(0.2)
    with CollectionStore(out):                    # nothing of the earlier run is alive now
        pass


def _rows(qids, repeat=0):
    return [dict(query_id=q, query=f"q {q}", gold="1", strategy="majority_vote@n=1",
                 repeat=repeat, answer="1", correct=1, tokens=3, latency_s=0.5, error=None,
                 prompt_tokens=2, reward_tokens=0, n_samples=1, steps=1,
                 latency_source="calibrated", latency_x=3.0, pool_correct=1, level=None)
            for q in qids]


def test_store_parts_are_whole_and_read_back(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    store = CollectionStore(tmp_path / "c")
    with store:
        store.check_or_write_config({"format": "ttcrouter-collection/1", "model": "m"})
        first = store.write_part(_rows(["a", "b"]))
        assert store.write_part([]) is None

        def killed(table, where):                 # half a file, then the writer dies
            Path(where).write_bytes(b"PAR1 half a part")
            raise KeyboardInterrupt

        monkeypatch.setattr(pq, "write_table", killed)
        with pytest.raises(KeyboardInterrupt):
            store.write_part(_rows(["c"]))
        monkeypatch.undo()
        assert store.parts() == [first] and not list(store.path.glob(".tmp-*"))
        assert store.done_keys() == {("a", "majority_vote@n=1", 0),
                                     ("b", "majority_vote@n=1", 0)}
        store.write_part(_rows(["c"], repeat=1))
    df = load_collection(store.path)
    assert list(df["query_id"]) == ["a", "b", "c"] and list(df["repeat"]) == [0, 0, 1]
    assert df.attrs["provenance"]["config"]["model"] == "m"
    assert pq.read_schema(first).names == list(COLUMNS)   # fixed columns, whatever the rows


def test_store_config_is_written_once_and_checked(tmp_path):
    store = CollectionStore(tmp_path / "c")
    store.path.mkdir()
    config = {"format": "ttcrouter-collection/1", "seed": 0, "sampling": {"max_tokens": 8},
              "strategies": ["majority_vote@n=1", "best_of_n@n=2"]}
    store.check_or_write_config(config)
    store.check_or_write_config(dict(config))         # same configuration: a resume
    changed = {**config, "seed": 1, "sampling": {"max_tokens": 9},
               "strategies": ["majority_vote@n=1"]}
    with pytest.raises(CollectionConfigError) as err:
        store.check_or_write_config(changed)
    msg = str(err.value)
    assert "sampling.max_tokens: stored 8, now 9" in msg and "seed: stored 0, now 1" in msg
    assert "strategies: now lacks ['best_of_n@n=2']" in msg
    assert json.loads((store.path / "_config.json").read_text()) == config
    # part files without a configuration were not made by collect
    orphan = CollectionStore(tmp_path / "o")
    orphan.path.mkdir()
    (orphan.path / "part-1.parquet").write_bytes(b"")
    with pytest.raises(CollectionConfigError, match="no _config.json"):
        orphan.check_or_write_config(config)
    assert config_diff({"s": ["a", "b"]}, {"s": ["b", "a"]}) == ["s: order differs"]


def test_python_m_collection_is_the_cli_collect_command():
    res = subprocess.run([sys.executable, "-m", "ttcrouter.collection", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert res.returncode == 0, res.stderr
    assert "--recalibrate-latency" in res.stdout and "--out" in res.stdout


# --------------------------------------------------------------------------------------
# with the real embedded model
# --------------------------------------------------------------------------------------

STRATS = ["majority_vote@n=1", "majority_vote@n=2", "best_of_n@n=2",
          "weighted_majority_vote@n=2", "beam_search@n=2,w=2"]


def _executor(gen, max_tokens=24):
    from ttcrouter.executors import StrategyExecutor

    return StrategyExecutor(gen, max_tokens=max_tokens, step_max_tokens=12, max_steps=2)


@pytest.mark.slow
@pytest.mark.vllm
def test_collect_real_model_resume_and_config(vllm_generator, tmp_path):
    queries = arithmetic(3, seed=5)
    out = tmp_path / "runs"
    ex = _executor(vllm_generator)
    df = collect(queries, STRATS, repeats=2, out=out, executor=ex, calibration_queries=1,
                 chunk_size=2, progress=False)
    assert len(df) == 3 * len(STRATS) * 2
    assert df["error"].isna().all()
    assert set(df["latency_source"]) == {"calibrated"}
    assert (df["latency_s"] > 0).all() and (df["tokens"] > 0).all()
    key = ["query_id", "repeat"]
    by = df.set_index(key + ["strategy"])["tokens"].unstack("strategy")
    # the three methods at N=2 used the same two samples; N=1 is a prefix of them
    assert (by["majority_vote@n=2"] == by["best_of_n@n=2"]).all()
    assert (by["majority_vote@n=2"] == by["weighted_majority_vote@n=2"]).all()
    assert (by["majority_vote@n=1"] < by["majority_vote@n=2"]).all()
    prov = df.attrs["provenance"]
    assert prov["model"] and prov["hardware"]["cpu_count"] >= 1 and prov["sessions"]
    assert prov["sessions"][-1]["engine_dtype"] == vllm_generator.engine_dtype_
    assert set(prov["latency_calibration"]["models"]) == set(STRATS)

    # same command again: nothing to do, no new part
    parts = sorted(p.name for p in out.glob("part-*"))
    again = collect(queries, STRATS, repeats=2, out=out, executor=ex, progress=False)
    assert sorted(p.name for p in out.glob("part-*")) == parts
    pd.testing.assert_frame_equal(again.reset_index(drop=True), df.reset_index(drop=True))
    # more repeats extend the collection
    more = collect(queries, STRATS, repeats=3, out=out, executor=ex, chunk_size=3,
                   progress=False)
    assert len(more) == 3 * len(STRATS) * 3 and sorted(more["repeat"].unique()) == [0, 1, 2]

    # a new latency calibration on a finished collection: no new rows, every calibrated row
    # re-derived from the newest timings, the earlier run kept
    old_cal = pd.read_parquet(out / "_calibration.parquet")
    parts = sorted(p.name for p in out.glob("part-*"))
    recal = collect(queries, STRATS, repeats=3, out=out, executor=ex, calibration_queries=2,
                    progress=False, recalibrate_latency=True)
    assert sorted(p.name for p in out.glob("part-*")) == parts
    assert len(recal) == len(more)
    cal = pd.read_parquet(out / "_calibration.parquet")
    assert sorted(cal["calibration"].unique()) == [0, 1]
    assert len(cal) == len(old_cal) + 2 * len(STRATS)
    lc = recal.attrs["provenance"]["latency_calibration"]
    assert lc["calibration"] == 1 and len(lc["queries"]) == 2 and len(lc["earlier"]) == 1
    for name, model in lc["models"].items():
        rows = recal[recal["strategy"] == name]
        expected = [predict_latency(model, x) for x in rows["latency_x"]]
        np.testing.assert_allclose(rows["latency_s"], expected)

    # another configuration is refused, naming what differs
    with pytest.raises(CollectionConfigError, match=r"strategies: now lacks \['best_of_n@n=2'"):
        collect(queries, [s for s in STRATS if s != "best_of_n@n=2"], repeats=2, out=out,
                executor=ex, progress=False)
    with pytest.raises(CollectionConfigError, match=r"sampling.max_tokens: stored 24, now 16"):
        collect(queries, STRATS, repeats=2, out=out, executor=_executor(vllm_generator, 16),
                progress=False)
    with pytest.raises(CollectionConfigError, match="dataset.sha256"):
        collect(arithmetic(3, seed=6), STRATS, repeats=2, out=out, executor=ex,
                progress=False)

    # export as one runs file that read_runs reads back, provenance included
    path = export_collection(out, tmp_path / "runs.parquet")
    table = read_runs(path)
    assert len(table) == len(more) and table.attrs["provenance"]["config"]["strategies"] == STRATS
    # read_runs reads runs files only; the directory itself is the collection's to read
    with pytest.raises(IsADirectoryError, match="load_collection"):
        read_runs(out)
    direct = load_collection(out)
    assert len(direct) == len(more) and direct.attrs["provenance"]["config"]["strategies"] == STRATS


@pytest.mark.slow
@pytest.mark.vllm
def test_collect_isolated_latency(vllm_generator, tmp_path):
    df = collect(arithmetic(2, seed=7), ["majority_vote@n=2", "best_of_n@n=2"], repeats=1,
                 out=tmp_path / "iso", executor=_executor(vllm_generator), latency="isolated",
                 progress=False)
    assert len(df) == 4 and set(df["latency_source"]) == {"isolated"}
    assert (df["latency_s"] > 0).all()
    # each row ran on its own: no calibration file
    assert not (tmp_path / "iso" / "_calibration.parquet").exists()


@pytest.mark.slow
def test_kill_and_resume_subprocess(tmp_path, embedded_model_path):
    """A collection killed with SIGKILL mid-run, then resumed, ends with exactly the keys of
    an uninterrupted run and no duplicate."""
    out = tmp_path / "killed"
    strategies = "majority_vote@n=1,majority_vote@n=2,best_of_n@n=2,beam_search@n=2,w=2"
    cmd = [sys.executable, "-m", "ttcrouter.collection", "arithmetic:3", "--strategies",
           strategies, "--repeats", "2", "--out", str(out), "--backend", "transformers",
           "--max-tokens", "8", "--step-max-tokens", "4", "--max-steps", "2",
           "--calibration-queries", "1", "--chunk-size", "1", "--no-progress"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 1200
        while len(list(out.glob("part-*.parquet"))) < 2:
            if proc.poll() is not None:
                pytest.fail(f"collection ended before it was killed: "
                            f"{proc.stderr.read().decode()[-2000:]}")
            assert time.time() < deadline, "no part file after 20 minutes"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    partial = load_collection(out)
    n_expected = 3 * 4 * 2
    assert 0 < len(partial) < n_expected
    res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    full = load_collection(out)     # validate_runs raises on a duplicate key
    keys = Counter(zip(full["query_id"], full["strategy"], full["repeat"]))
    expected = {(q, s, r) for q in arithmetic(3)["query_id"]
                for s in ["majority_vote@n=1", "majority_vote@n=2", "best_of_n@n=2",
                          "beam_search@n=2,w=2"] for r in range(2)}
    assert set(keys) == expected and max(keys.values()) == 1
    # the rows written before the kill were kept, not redone
    before = set(zip(partial["query_id"], partial["strategy"], partial["repeat"]))
    merged = full.merge(partial, on=["query_id", "strategy", "repeat"], suffixes=("", "_p"))
    assert len(merged) == len(before)
    assert (merged["tokens"] == merged["tokens_p"]).all()
    prov = json.loads((out / "_provenance.json").read_text())
    assert len(prov["sessions"]) == 2 and prov["backend"] == "transformers"


def test_shipped_embedded_table():
    path = ROOT / "ttcrouter" / "data" / "arithmetic_smollm2_runs.parquet"
    if not path.exists():
        pytest.skip("the embedded runs table is not shipped in this checkout")
    from ttcrouter.runs import aggregate_runs

    df = read_runs(path)                      # validates: no duplicate key, 0/1 correct, ...
    prov = df.attrs["provenance"]
    assert prov["model"] == "SmolLM2-135M-Instruct" and prov["backend"] == "vllm"
    assert prov["hardware"]["cpu_count"] >= 1 and prov["sessions"]
    # parallel rows from the calibrated lines, early-stopping votes from their rounds
    assert set(df["latency_source"]) == {"calibrated", "rounds"}
    summary = aggregate_runs(df)
    # the collection contract: every query has every strategy, 4 repeats per cell, no error
    verifier = [s for s in summary.strategies if s.endswith(",scorer=verifier")]
    assert sorted(verifier) == sorted(prov["verifier"]["strategies"]) and verifier
    assert len(summary) >= 400 and len(summary.strategies) == 34 + len(verifier)
    # a verifier row pays for the verifier: tokens read and time; the others pay no time
    marked = df["strategy"].isin(verifier)
    assert (df.loc[marked, "reward_tokens"] > 0).all()
    assert (df.loc[marked, "score_latency_s"] > 0).all()
    assert (df.loc[~marked, "score_latency_s"] == 0).all()
    assert set(df.groupby(["query_id", "strategy"]).size()) == {4}
    assert df["error"].isna().all()
    modes = {"direct" if "mode=direct" in s else "cot" for s in summary.strategies}
    assert modes == {"cot", "direct"}
    assert sum(s.startswith("adaptive_vote") for s in summary.strategies) == 6
    # beam search carried over from the earlier collection, and the provenance says so
    carried = prov["carried_over"]
    assert carried["strategies"] == ["beam_search@n=4,w=2", "beam_search@n=8,w=4"]
    assert carried["rows"] == (df["strategy"].str.startswith("beam_search")).sum()
    # per-query accuracy varies: some queries always solved by some strategy, some never
    oracle = summary.Y.max(axis=1)
    assert (oracle == 0).any() and (oracle > 0.5).any()


def test_make_executor_builds_without_starting_an_engine():
    from ttcrouter.executors import LogprobScorer, StrategyExecutor, VLLMGenerator
    from ttcrouter.executors.factory import make_executor

    ex = make_executor("vllm", seed=3, max_tokens=80, step_max_tokens=32,
                       generator_kwargs={"max_model_len": 512}, top_p=0.9)
    assert isinstance(ex, StrategyExecutor) and isinstance(ex.generator, VLLMGenerator)
    assert isinstance(ex.scorer, LogprobScorer)
    assert (ex.max_tokens, ex.step_max_tokens, ex.top_p) == (80, 32, 0.9)
    assert (ex.generator.seed, ex.generator.max_model_len) == (3, 512)
    assert ex.generator.enforce_eager is False
    assert make_executor("vllm", scorer=None).scorer is None


class RandomAnswers:
    """A seeded stand-in generator: sample answers drawn from a few numbers, 3-9 tokens."""

    backend = "random"
    model_name = "random-answers"

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.system_prompt = "cot"
        self.prompts_seen = []

    def generate(self, requests, *, n, temperature, top_p, max_tokens, stop, logprobs):
        from ttcrouter.executors.base import Completion

        self.prompts_seen.append(self.system_prompt)
        return [[Completion(f"Answer: {self.rng.integers(6, 9)}", int(self.rng.integers(3, 10)),
                            prompt_tokens=12, logprobs=[-0.1] * 3 if logprobs else None)
                 for _ in range(n)] for _ in requests]


def test_collect_keeps_every_sample_and_derives_the_rows_from_them(tmp_path):
    """Both prompt modes and an early-stopping vote on a stand-in generator: the samples
    sit beside the rows, derive_runs on them gives the rows back, a resume adds nothing, and
    a samples file whose part never landed is removed and never read."""
    from ttcrouter.collection import load_samples
    from ttcrouter.executors import StrategyExecutor
    from ttcrouter.samples import derive_runs

    queries = pd.DataFrame({"query_id": ["a", "b", "c"], "query": ["1+6?", "3+4?", "2+5?"],
                            "gold": ["7", "7", "7"]})
    strats = ["majority_vote@n=1", "majority_vote@n=4", "best_of_n@n=4",
              "adaptive_vote@n=4,b=2,t=1", "majority_vote@n=4,mode=direct",
              "adaptive_vote@n=4,b=2,t=1,mode=direct"]
    gen = RandomAnswers()
    ex = StrategyExecutor(gen, max_tokens=8)
    out = tmp_path / "c"
    df = collect(queries, strats, repeats=2, out=out, executor=ex, chunk_size=2,
                 calibration_queries=1, progress=False)
    assert len(df) == 3 * len(strats) * 2 and df["error"].isna().all()
    assert set(gen.prompts_seen) == {"cot", ex.prompt_for("direct")}
    samples = load_samples(out)
    assert len(samples) == 3 * 2 * 2 * 4  # queries x repeats x modes x pool of 4
    assert set(samples["mode"]) == {"cot", "direct"} and "score_logprob" in samples
    assert (samples["correct"] == (samples["answer"] == "7")).all()
    config = df.attrs["provenance"]["config"]
    assert config["prompts"]["direct"]["system"] == ex.prompt_for("direct")
    assert config["prompts"]["direct"]["prefix"] == "Answer:"

    models = df.attrs["provenance"]["latency_calibration"]["models"]
    from ttcrouter.collection.latency import request_latency_model

    again = derive_runs(samples, strats, request_latency=request_latency_model(models))
    key = ["query_id", "strategy", "repeat"]
    got = df.set_index(key).sort_index()
    want = again.set_index(key).sort_index()
    for col in ("answer", "correct", "tokens", "n_samples", "prompt_tokens"):
        assert got[col].tolist() == want[col].tolist(), col
    np.testing.assert_allclose(got["latency_s"], want["latency_s"])
    ada = df[df["strategy"] == "adaptive_vote@n=4,b=2,t=1"]
    assert set(ada["n_samples"]) <= {2, 4} and set(ada["latency_source"]) == {"rounds"}

    # a samples file without its part (killed between the two writes) is never read and is
    # removed by the next run, which writes nothing new
    orphan = out / "samples-99999999999999999999-1-abcdef.parquet"
    orphan.write_bytes((out / next(p.name for p in out.glob("samples-*"))).read_bytes())
    assert len(load_samples(out)) == len(samples)
    parts = sorted(p.name for p in out.glob("*.parquet") if p != orphan)
    collect(queries, strats, repeats=2, out=out, executor=ex, progress=False)
    assert not orphan.exists() and sorted(p.name for p in out.glob("*.parquet")) == parts


def test_a_new_calibration_re_derives_early_stopping_rows_from_their_samples(tmp_path):
    from ttcrouter.collection import load_samples
    from ttcrouter.collection.latency import request_latency_model
    from ttcrouter.executors import StrategyExecutor
    from ttcrouter.samples import derive_runs

    queries = pd.DataFrame({"query_id": ["a", "b"], "query": ["1+6?", "3+4?"],
                            "gold": ["7", "7"]})
    strats = ["majority_vote@n=2", "adaptive_vote@n=4,b=2,t=1"]
    ex = StrategyExecutor(RandomAnswers(1), max_tokens=8)
    out = tmp_path / "c"
    collect(queries, strats, repeats=1, out=out, executor=ex, calibration_queries=1,
            progress=False)
    # a later calibration that says every request takes 10 s longer
    cal = pd.read_parquet(out / "_calibration.parquet")
    later = cal.assign(calibration=1, latency_s=cal["latency_s"] + 10.0)
    pd.concat([cal, later]).to_parquet(out / "_calibration.parquet")
    df = load_collection(out)
    models = latency_models(later)
    want = derive_runs(load_samples(out), ["adaptive_vote@n=4,b=2,t=1"],
                       request_latency=request_latency_model(models))
    got = df[df["strategy"] == "adaptive_vote@n=4,b=2,t=1"].sort_values("query_id")
    np.testing.assert_allclose(got["latency_s"], want.sort_values("query_id")["latency_s"])
    assert (got["latency_s"] > 10).all()


@pytest.mark.slow
def test_shipped_samples_derive_the_shipped_runs():
    """Every pooled row of the shipped runs table is derive_runs of the shipped samples."""
    runs_path = ROOT / "ttcrouter" / "data" / "arithmetic_smollm2_runs.parquet"
    samples_path = ROOT / "ttcrouter" / "data" / "arithmetic_smollm2_samples.parquet"
    if not samples_path.exists():
        pytest.skip("the embedded samples table is not shipped in this checkout")
    from ttcrouter.samples import derive_runs, read_samples

    samples = read_samples(samples_path)      # validates the samples contract
    assert len(samples) == 400 * 4 * 2 * 16
    runs = read_runs(runs_path)
    pooled = sorted(s for s in runs["strategy"].unique() if not s.startswith("beam_search"))
    assert not samples["answer"].eq("nan").any()  # a missing answer is null, not "nan"
    # the verifier rows read score_verifier, the others score_logprob
    derived = derive_runs(samples, pooled, score="logprob")
    key = ["query_id", "strategy", "repeat"]
    both = derived.merge(runs, on=key, suffixes=("", "_runs"))
    assert len(both) == len(derived) == 400 * len(pooled) * 4
    for col in ("correct", "tokens", "n_samples", "steps", "prompt_tokens", "reward_tokens"):
        assert (both[col] == both[f"{col}_runs"]).all(), col
    assert (both["answer"].fillna("") == both["answer_runs"].fillna("")).all()
    np.testing.assert_allclose(both["score_latency_s"], both["score_latency_s_runs"])
    # cross-fitted: every query's samples were scored by one fold's verifier, fitted on the
    # other folds' queries
    assert samples.groupby("query_id")["fold_verifier"].nunique().eq(1).all()
    assert samples["fold_verifier"].nunique() == 5


def test_a_missing_answer_is_stored_as_null(tmp_path):
    """pandas 3 reads None among strings as NaN; the samples file must still hold null."""
    from ttcrouter.collection.store import CollectionStore
    from ttcrouter.samples import read_samples

    store = CollectionStore(tmp_path / "c")
    store.path.mkdir()
    base = dict(query_id="q", query="What is 1 + 1?", gold="2", repeat=0, mode="cot",
                correct=0, tokens=3, finish_reason="stop", request_latency_s=0.1, round=0,
                prompt_tokens=9, score_logprob=0.5)
    samples = [dict(base, sample=0, text="no idea", answer=None),
               dict(base, sample=1, text="It is 2", answer="2", correct=1)]
    rows = [{"query_id": "q", "strategy": "majority_vote@n=2", "repeat": 0}]
    store.write_part(rows, samples)
    (path,) = store.path.glob("samples-*.parquet")
    back = read_samples(path)
    assert back["answer"].tolist() == [None, "2"]
