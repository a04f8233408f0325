"""Tests of ttcrouter.samples: the samples-table contract, derive_runs, early stopping."""

import math

import numpy as np
import pandas as pd
import pytest

from ttcrouter.executors import StrategyExecutor
from ttcrouter.executors.base import DEFAULT_PROMPTS, Completion, Generator, PromptMode
from ttcrouter.executors.search.adaptive_vote import adaptive_prefix, should_stop
from ttcrouter.runs import validate_runs
from ttcrouter.samples import (SAMPLE_COLUMNS, SamplesTableError, derive_runs, read_samples,
                               samples_from_pool, validate_samples, write_samples)
from ttcrouter.strategies import (AdaptiveVote, BestOfN, MajorityVote, WeightedMajorityVote,
                                  parse_strategy)

#: pool "q1" (gold 7): answers in drawing order, scores, tokens, request times
ANSWERS = ["7", "5", "7", None, "5", "5", "7", "7"]
SCORES = [0.2, 0.9, 0.3, 0.1, 0.5, 0.4, 0.6, 0.1]
TOKENS = [10, 12, 8, 30, 9, 11, 7, 6]


def hand_table(mode="cot", latencies=None, rounds=None):
    n = len(ANSWERS)
    lat = latencies or [2.0] * n
    return pd.DataFrame({
        "query_id": "q1", "query": "What is 3 + 4?", "gold": "7", "repeat": 0, "mode": mode,
        "sample": range(n), "text": [f"... Answer: {a}" if a else "..." for a in ANSWERS],
        "answer": ANSWERS, "correct": [int(a == "7") for a in ANSWERS], "tokens": TOKENS,
        "finish_reason": "stop", "request_latency_s": lat, "round": rounds or [0] * n,
        "prompt_tokens": 20, "score_logprob": SCORES,
    })


def test_contract_accepts_a_good_table_and_sorts_it():
    df = hand_table().iloc[::-1]
    out = validate_samples(df)
    assert out["sample"].tolist() == list(range(8)) and out["correct"].dtype == np.int8
    assert set(SAMPLE_COLUMNS) <= set(out.columns)


@pytest.mark.parametrize("change, match", [
    (lambda d: d.drop(columns="round"), "lacks column"),
    (lambda d: d.assign(mode="loud"), "unknown prompt mode"),
    (lambda d: d.assign(sample=[0, 1, 2, 3, 4, 5, 6, 6]), "duplicates"),
    (lambda d: d.assign(sample=[0, 1, 2, 3, 4, 5, 6, 9]), "numbered 0..M-1"),
    (lambda d: d.assign(tokens=-1), "non-negative integer"),
    (lambda d: d.assign(correct=2), "0 or 1"),
    (lambda d: d.assign(request_latency_s=-1.0), "negative"),
    (lambda d: d.assign(text=None), "is null"),
    (lambda d: d.iloc[:0], "empty"),
])
def test_contract_errors_name_the_problem(change, match):
    with pytest.raises(SamplesTableError, match=match):
        validate_samples(change(hand_table()))


def test_write_read_round_trip(tmp_path):
    for name in ("s.parquet", "s.jsonl"):
        path = write_samples(hand_table(), tmp_path / name, provenance={"model": "m"})
        back = read_samples(path)
        assert back.attrs["provenance"] == {"model": "m"}
        pd.testing.assert_frame_equal(back.drop(columns="gold"),
                                      validate_samples(hand_table()).drop(columns="gold"),
                                      check_dtype=False)


def _majority(answers):
    counts = {}
    for a in answers:
        if a is not None:
            counts[a] = counts.get(a, 0) + 1
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)


def test_derive_runs_matches_direct_computation():
    specs = [MajorityVote(n) for n in (1, 2, 4, 8)] + [WeightedMajorityVote(4), BestOfN(8)]
    runs = validate_runs(derive_runs(hand_table(), specs))
    got = runs.set_index("strategy")
    for n in (1, 2, 4, 8):
        row = got.loc[f"majority_vote@n={n}"]
        assert row["answer"] == _majority(ANSWERS[:n])
        assert row["tokens"] == sum(TOKENS[:n]) and row["n_samples"] == n
        assert row["latency_x"] == max(TOKENS[:n]) and row["prompt_tokens"] == 20
    # weighted at 4: 7 -> 0.2 + 0.3 = 0.5, 5 -> 0.9; 5 wins
    assert got.loc["weighted_majority_vote@n=4", "answer"] == "5"
    assert got.loc["best_of_n@n=8", "answer"] == "5"  # score 0.9 at index 1
    assert got.loc["majority_vote@n=8", "correct"] == 1  # 7 x4 against 5 x3
    assert (runs["pool_correct"] == 4).all() and (runs["latency_s"] == 2.0).all()


def test_adaptive_stopping_rule():
    spec = AdaptiveVote(8, batch=2, threshold=0.75)
    assert not should_stop(spec, ["7"])            # one vote is never enough
    assert should_stop(spec, ["7", "7"])            # 2 of 2
    assert not should_stop(spec, ["7", "5"])
    assert should_stop(spec, ["7", "5", "7", "7"])  # 3 of 4 = 0.75
    assert not should_stop(spec, ["7", None, "7", "5"])  # None counts as drawn: 2 of 4
    assert should_stop(spec, ["1", "2", "3", "4", "5", "6", "7", "8"])  # n drawn


def test_derive_adaptive_vote_walks_rounds_and_sums_their_latency():
    spec = AdaptiveVote(8, batch=2, threshold=0.6)
    # rounds of 2: [7,5] no; [7,5,7,None] 7 has 2/4 = 0.5 no; +[5,5]: 5 has 3/6 = 0.5 no;
    # +[7,7]: n drawn -> stop at 8, majority 7 (4) over 5 (3)
    lat = [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]
    rounds = [0, 0, 1, 1, 2, 2, 3, 3]
    row = derive_runs(hand_table(latencies=lat, rounds=rounds), [spec]).iloc[0]
    assert row["n_samples"] == 8 and row["steps"] == 4 and row["answer"] == "7"
    assert row["latency_s"] == pytest.approx(10.0) and row["prompt_tokens"] == 80
    early = AdaptiveVote(8, batch=4, threshold=0.5)  # [7,5,7,None]: 7 has 2/4
    row = derive_runs(hand_table(latencies=lat, rounds=rounds), [early]).iloc[0]
    assert row["n_samples"] == 4 and row["tokens"] == sum(TOKENS[:4])
    # a calibrated line: a request of n samples, longest x tokens, takes 1 + 0.1 x seconds
    row = derive_runs(hand_table(), [early], request_latency=lambda n, x: 1 + 0.1 * x).iloc[0]
    assert row["latency_s"] == pytest.approx(1 + 0.1 * 30)
    par = derive_runs(hand_table(), [MajorityVote(2)],
                      request_latency=lambda n, x: n + x).iloc[0]
    assert par["latency_s"] == 2 + 12 and par["latency_source"] == "calibrated"


def test_derive_runs_keeps_modes_apart_and_refuses_what_it_cannot_derive():
    both = pd.concat([hand_table("cot"), hand_table("direct").assign(answer="5")])
    runs = derive_runs(both, ["majority_vote@n=2", "majority_vote@n=2,mode=direct"])
    assert runs.set_index("strategy")["answer"].to_dict() == {
        "majority_vote@n=2": "7", "majority_vote@n=2,mode=direct": "5"}
    with pytest.raises(ValueError, match="step by step"):
        derive_runs(hand_table(), ["beam_search@n=4,w=2"])
    with pytest.raises(ValueError, match="need more"):
        derive_runs(hand_table(), [MajorityVote(16)])


class ScriptedGenerator(Generator):
    """Answers each query from its script, in order, across calls; records system prompts."""

    backend = "scripted"

    def __init__(self, scripts):
        self.scripts = {q: list(a) for q, a in scripts.items()}
        self.system_prompt = "cot prompt"
        self.calls = []

    def _generate(self, requests, *, n, temperature, top_p, max_tokens, stop, logprobs):
        self.calls.append((self.system_prompt, n, len(requests)))
        self.asked = (requests[0].prefix, max_tokens, stop)
        out = []
        for r in requests:
            answers = [self.scripts[r.query].pop(0) for _ in range(n)]
            out.append([Completion(f"Answer: {a}", tokens=3 + len(a), prompt_tokens=11)
                        for a in answers])
        return out


SCRIPTS = {"q a": ["1", "2", "1", "1", "3", "3", "3", "3"],
           "q b": ["4", "4", "5", "6", "7", "8", "9", "9"],
           "q c": ["1", "2", "3", "4", "5", "6", "7", "8"]}


def test_live_adaptive_vote_and_derived_rows_agree_on_the_same_samples():
    spec = AdaptiveVote(8, batch=2, threshold=0.75)
    gen = ScriptedGenerator(SCRIPTS)
    results = StrategyExecutor(gen).execute_batch(spec, list(SCRIPTS))
    # q a: [1,2] no, [1,2,1,1] 3/4 stop; q b: [4,4] stop; q c: never, 8 drawn
    assert [len(r.candidates) for r in results] == [4, 2, 8]
    assert [r.steps for r in results] == [2, 1, 4] and [r.answer for r in results] == ["1", "4",
                                                                                       "1"]
    assert [c[1:] for c in gen.calls] == [(2, 3), (2, 2), (2, 1), (2, 1)]
    rows = []
    for qid, (q, res) in enumerate(zip(SCRIPTS, results)):
        rows += samples_from_pool(res, query_id=qid, gold="1", repeat=0)
    derived = derive_runs(pd.DataFrame(rows), [spec])
    assert derived["n_samples"].tolist() == [4, 2, 8]
    assert derived["answer"].tolist() == [r.answer for r in results]
    assert derived["tokens"].tolist() == [r.tokens for r in results]
    assert derived["prompt_tokens"].tolist() == [r.prompt_tokens for r in results]
    np.testing.assert_allclose(derived["latency_s"], [r.latency_s for r in results])


def test_prompt_modes_pick_their_system_prompt():
    gen = ScriptedGenerator({"q": ["2"] * 12})
    ex = StrategyExecutor(gen)
    ex.execute(parse_strategy("majority_vote@n=2,mode=direct"), "q")
    # direct: the answer starts at once (assistant prefix), one short line
    assert gen.asked == ("Answer:", 12, ["\n"])
    ex.execute("majority_vote@n=2", "q")
    assert gen.asked == ("", ex.max_tokens, [])
    custom = StrategyExecutor(gen, prompts={"direct": "Just the number."})
    custom.execute(MajorityVote(2, mode="direct"), "q")
    assert gen.asked[0] == "Answer:"  # a string replaces the system prompt only
    bare = StrategyExecutor(gen, prompts={"direct": PromptMode("Number:", max_tokens=4)})
    bare.execute(AdaptiveVote(2, batch=2, mode="direct"), "q")
    assert gen.asked == ("", 4, [])
    assert [c[0] for c in gen.calls] == [DEFAULT_PROMPTS["direct"].system, "cot prompt",
                                         "Just the number.", "Number:"]
    assert gen.system_prompt == "cot prompt"
    assert math.isfinite(ex.sample_pool(["q"], 2, mode="direct")[0].candidates[0]
                         .request_latency_s)


def test_derive_command_writes_a_runs_table(tmp_path, capsys):
    from ttcrouter.cli import main
    from ttcrouter.runs import read_runs

    path = write_samples(hand_table(), tmp_path / "s.parquet")
    code = main(["derive", str(path), "--strategies",
                 "majority_vote@n=2,best_of_n@n=8,adaptive_vote@n=8,b=2,t=0.6",
                 "--out", str(tmp_path / "runs.parquet")])
    assert code == 0 and "3 rows of 3 strategies from 8 samples" in capsys.readouterr().out
    runs = read_runs(tmp_path / "runs.parquet")
    assert runs.attrs["provenance"]["derived"]["latency"] == "measured"
    pd.testing.assert_frame_equal(
        runs.reset_index(drop=True)[["strategy", "answer", "tokens"]],
        derive_runs(hand_table(), ["majority_vote@n=2", "best_of_n@n=8",
                                   "adaptive_vote@n=8,b=2,t=0.6"])[
            ["strategy", "answer", "tokens"]], check_dtype=False)
    assert main(["derive", str(path), "--strategies", "majority_vote@n=2", "--out",
                 str(tmp_path / "r.parquet"), "--latency", "calibrated"]) == 2


@pytest.mark.slow
@pytest.mark.vllm
def test_live_adaptive_vote_on_the_real_engine_agrees_with_its_derived_rows(vllm_generator):
    """The test of 'live and derived agree': an early-stopping vote runs for real (each round
    one request of `batch` samples), its samples go into a samples table, and derive_runs on
    that table stops after the same samples, returns the same answer and tokens, and with
    measured request times gives the live latency (the sum of the rounds) within 5%."""
    spec = AdaptiveVote(8, batch=2, threshold=0.75)
    ex = StrategyExecutor(vllm_generator, max_tokens=24)
    queries = ["What is 3 + 4?", "What is 6 times 7?", "What is 12 + 9?"]
    results = [ex.execute(spec, q) for q in queries]  # isolated: latency is the query's own
    assert all(r.ok for r in results)
    rows = []
    for k, res in enumerate(results):
        assert len(res.candidates) % 2 == 0 and res.steps == len(res.candidates) // 2
        assert res.tokens == sum(c.tokens for c in res.candidates) > 0
        rows += samples_from_pool(res, query_id=k, gold=None, repeat=0)
    derived = derive_runs(pd.DataFrame(rows), [spec])
    assert derived["n_samples"].tolist() == [len(r.candidates) for r in results]
    assert derived["answer"].tolist() == [r.answer for r in results]
    assert derived["tokens"].tolist() == [r.tokens for r in results]
    np.testing.assert_allclose(derived["latency_s"], [r.latency_s for r in results], rtol=0.05)


@pytest.mark.slow
@pytest.mark.vllm
def test_tiny_collection_keeps_samples_in_both_modes_and_resumes(vllm_generator, tmp_path):
    from ttcrouter.collection import collect, load_samples
    from ttcrouter.datasets import arithmetic

    strats = ["majority_vote@n=1", "weighted_majority_vote@n=2", "adaptive_vote@n=4,b=2,t=1",
              "majority_vote@n=2,mode=direct", "adaptive_vote@n=4,b=2,t=1,mode=direct"]
    queries = arithmetic(2, seed=3)
    ex = StrategyExecutor(vllm_generator, max_tokens=16)
    out = tmp_path / "tiny"
    first = collect(queries, strats, repeats=1, out=out, executor=ex, calibration_queries=1,
                    progress=False)
    assert len(first) == 2 * len(strats) and first["error"].isna().all()
    assert len(load_samples(out)) == 2 * 1 * 2 * 4
    parts = sorted(p.name for p in out.glob("*-*.parquet"))
    more = collect(queries, strats, repeats=2, out=out, executor=ex, progress=False)
    assert len(more) == 2 * len(strats) * 2
    samples = load_samples(out)
    assert len(samples) == 2 * 2 * 2 * 4 and set(samples["mode"]) == {"cot", "direct"}
    assert set(parts) < {p.name for p in out.glob("*-*.parquet")}


def test_derived_runs_of_the_extended_space_aggregate_and_fit_a_router():
    """Runs with prompt modes and early-stopping votes pass through the runs-table contract,
    aggregate_runs (strategy order: cot first, early-stopping votes after the other methods)
    and a router."""
    from sklearn.linear_model import LogisticRegression

    from ttcrouter import UtilityRouter, aggregate_runs

    rng = np.random.default_rng(0)
    tables = []
    for q in range(12):
        for mode in ("cot", "direct"):
            for r in range(2):
                t = hand_table(mode).assign(query_id=f"q{q}", query=f"question {q}", repeat=r)
                answers = rng.choice(["7", "5", None], size=8).tolist()
                tables.append(t.assign(answer=answers,
                                       correct=[int(a == "7") for a in answers]))
    names = ["adaptive_vote@n=8,b=2,t=0.75", "majority_vote@n=4,mode=direct",
             "majority_vote@n=1", "best_of_n@n=8", "adaptive_vote@n=8,b=4,t=0.5,mode=direct"]
    runs = derive_runs(pd.concat(tables), names)
    summary = aggregate_runs(runs)
    assert summary.strategies == ["best_of_n@n=8", "majority_vote@n=1",
                                  "adaptive_vote@n=8,b=2,t=0.75",
                                  "majority_vote@n=4,mode=direct",
                                  "adaptive_vote@n=8,b=4,t=0.5,mode=direct"]
    X = rng.normal(size=(len(summary), 4))
    router = UtilityRouter(probe=LogisticRegression(), lambda_tokens=1e-3).fit(
        X, summary.Y, tokens=summary.T)
    assert router.strategy_encoding_.shape[1] == 10
    assert set(router.predict(X)) <= set(names)


def test_derive_runs_charges_a_scorers_tokens_and_time_to_the_rows_that_read_it():
    df = hand_table()
    df["score_verifier"] = SCORES[::-1]
    df["reward_tokens_verifier"] = [50.0] * len(df)
    df["score_latency_s_verifier"] = [0.25] * len(df)
    names = ["best_of_n@n=4", "weighted_majority_vote@n=8", "majority_vote@n=4",
             "adaptive_vote@n=8,b=2,t=1"]
    runs = derive_runs(df, names, score="verifier").set_index("strategy")
    assert runs.loc["best_of_n@n=4", "reward_tokens"] == 200
    assert runs.loc["best_of_n@n=4", "latency_s"] == pytest.approx(2.0 + 4 * 0.25)
    assert runs.loc["weighted_majority_vote@n=8", "score_latency_s"] == pytest.approx(2.0)
    assert runs.loc["best_of_n@n=4", "scorer"] == "verifier"
    # best-of-4 ranks by the verifier's scores: [0.1, 0.6, 0.4, 0.5] -> sample 1
    assert runs.loc["best_of_n@n=4", "answer"] == ANSWERS[1]
    for free in ("majority_vote@n=4", "adaptive_vote@n=8,b=2,t=1"):
        assert runs.loc[free, "reward_tokens"] == 0 and runs.loc[free, "score_latency_s"] == 0
        assert pd.isna(runs.loc[free, "scorer"])
    # the collection's own score keeps its own (zero) cost
    logprob = derive_runs(df, ["best_of_n@n=4"], score="logprob").iloc[0]
    assert logprob["latency_s"] == 2.0 and logprob["scorer"] == "logprob"
    bad = df.assign(score_latency_s_verifier=-1.0)
    with pytest.raises(SamplesTableError, match="negative"):
        validate_samples(bad)
