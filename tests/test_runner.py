"""Strategy execution on the real embedded model (vLLM engine shared per session).

Prompts are simple arithmetic, budgets tiny (few samples, few tokens): these tests check the
mechanics (selection rules, token accounting, beam steps, error isolation), not accuracy.
"""

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import pytest

from ttcrouter.executors import ScoreResult, register, search_for
from ttcrouter.executors.base import Completion, GenerationRequest, Generator
from ttcrouter.executors.rewards import LogprobScorer, StepScorer
from ttcrouter.executors.runner import (
    Candidate,
    CandidatePool,
    ExecutionResult,
    StrategyExecutor,
    execute,
    select_candidate,
    split_steps,
)
from ttcrouter.strategies import BeamSearch, BestOfN, MajorityVote, Strategy, WeightedMajorityVote

QUERIES = ["What is 3 + 4?", "What is 6 times 7?", "Tom has 5 apples and buys 3 more. "
           "How many apples does he have?"]


class TallyGenerator(Generator):
    """Forwards to a real generator and keeps every completion it returned."""

    backend = "tally"

    def __init__(self, inner):
        self.inner = inner
        self.calls = []

    @property
    def system_prompt(self):
        return self.inner.system_prompt

    @system_prompt.setter
    def system_prompt(self, value):
        self.inner.system_prompt = value

    def generate(self, requests, **kwargs):
        out = self.inner.generate(requests, **kwargs)
        self.calls.append((list(requests), kwargs, out))
        return out

    def generated_tokens(self):
        return sum(c.tokens for _, _, out in self.calls for cs in out for c in cs)

    def prompt_tokens(self):
        return sum(cs[0].prompt_tokens for _, _, out in self.calls for cs in out if cs)


class LengthScorer(StepScorer):
    """Deterministic scorer for selection tests: shorter steps score higher."""

    def score(self, question, solutions, **kwargs):
        out = [[1.0 / (1.0 + len(s)) for s in steps] for steps in solutions]
        return ScoreResult(out, sum(len(s) for steps in solutions for s in steps))


def _cand(answer, reward=0.0, text=None):
    from ttcrouter.grading import normalize_answer

    return Candidate(text=text or f"Answer: {answer}", steps=[f"Answer: {answer}"],
                     answer=answer, normalized=normalize_answer(answer), tokens=3,
                     reward=reward)


# -- pure selection rules (no model) --------------------------------------------------------------
def test_select_majority_mode_and_ties():
    cands = [_cand("3"), _cand("4"), _cand("4.0"), _cand(None), _cand("3")]
    # 3 and 4 tie with two votes each: the answer seen first wins
    assert select_candidate(MajorityVote(5), cands) == 0
    cands.append(_cand("4"))
    assert select_candidate(MajorityVote(6), cands) == 1
    assert select_candidate(MajorityVote(2), [_cand(None), _cand(None)]) == 0
    assert select_candidate(MajorityVote(2), [_cand(None), _cand("7")]) == 1


def test_select_weighted_and_best_of_n():
    cands = [_cand("3", 0.9), _cand("4", 0.5), _cand("4", 0.6), _cand("5", 0.95)]
    assert select_candidate(WeightedMajorityVote(4), cands) == 2  # 1.1 for "4"; its best
    assert select_candidate(BestOfN(4), cands) == 3
    assert select_candidate(BestOfN(2), [_cand("1", 0.5), _cand("2", 0.5)]) == 0
    with pytest.raises(ValueError, match="not a parallel strategy"):
        select_candidate(BeamSearch(4, 2), cands)


def test_pool_select_subsets():
    pool = CandidatePool("q", [_cand("3", 0.1), _cand("4", 0.9), _cand("4", 0.2),
                               _cand("5", 0.3)], prompt_tokens=10, reward_tokens=40,
                         latency_s=1.5)
    res = pool.select("best_of_n@n=2", [2, 3])
    assert res.answer == "5" and res.tokens == 6 and res.reward_tokens == 20
    res = pool.select(MajorityVote(4))
    assert res.answer == "4" and res.reward_tokens == 0 and res.latency_s == 1.5
    with pytest.raises(ValueError, match="needs 2 candidates"):
        pool.select(BestOfN(2), [0])
    with pytest.raises(ValueError, match="Sample a larger pool"):
        pool.select(BestOfN(8))


def test_split_steps_roundtrip():
    text = "\nStep one.\nStep two.\n\nAnswer: 5"
    steps = split_steps(text, "\n")
    assert "".join(steps) == text
    assert steps == ["\nStep one.\n", "Step two.\n\n", "Answer: 5"]
    assert split_steps("", "\n") == [""]


def test_executor_validation_without_model():
    class Never(Generator):
        def generate(self, requests, **kwargs):  # pragma: no cover - must not be reached
            raise AssertionError("generate must not be called")

    ex = StrategyExecutor(Never())
    with pytest.raises(ValueError, match="Unknown strategy method 'tree'"):
        ex.execute("tree@n=4", "What is 1+1?")
    with pytest.raises(ValueError, match="must be >= 1"):
        ex.execute("majority_vote@n=0", "What is 1+1?")
    with pytest.raises(ValueError, match="must divide n"):
        ex.execute("beam_search@n=6,w=4", "What is 1+1?")
    with pytest.raises(ValueError, match="query is empty"):
        ex.execute(MajorityVote(2), "   ")
    with pytest.raises(ValueError, match="n == 0, must be >= 1"):
        ex.sample_pool(["q"], 0)
    with pytest.raises(TypeError, match="max_tokens must be"):
        StrategyExecutor(Never(), max_tokens=True).execute(MajorityVote(2), "q")
    with pytest.raises(ValueError, match="step_max_tokens == 0"):
        StrategyExecutor(Never(), step_max_tokens=0).execute(MajorityVote(2), "q")
    with pytest.raises(TypeError, match="wrap a single query"):
        ex.sample_pool("q", 2)
    with pytest.raises(ValueError, match="aggregation must be one of"):
        StrategyExecutor(Never(), aggregation="max").execute(MajorityVote(2), "q")
    with pytest.raises(ValueError, match="measure must be"):
        ex.execute_batch(MajorityVote(2), ["q"], measure="wall")
    with pytest.raises(TypeError, match="must be a StrategyExecutor"):
        execute(MajorityVote(2), "q", object())


# -- the family registry, through its public names (no model) -----------------------------------
@dataclass(frozen=True)
class LastOfN(Strategy):
    """A parallel family for the tests: the last candidate with an answer wins."""

    method: ClassVar[str] = "last_of_n"


@register(LastOfN)
class LastOfNSearch:
    @staticmethod
    def select(strategy, candidates):
        answered = [i for i, c in enumerate(candidates) if c.answer is not None]
        return answered[-1] if answered else 0


@dataclass(frozen=True)
class Echo(Strategy):
    """A family that generates by itself: one greedy sample through the executor."""

    method: ClassVar[str] = "echo"


@register(Echo)
class EchoSearch:
    @staticmethod
    def run(executor, strategy, queries, progress=False):
        errors = executor.query_errors(queries)
        live = [i for i in range(len(queries)) if i not in errors]
        comps = executor.generate_isolated(
            [GenerationRequest(queries[i]) for i in live], live, errors, n=1,
            max_tokens=executor.max_tokens)
        got = dict(zip(live, comps))
        return [ExecutionResult(strategy.name, q, error=errors.get(i),
                                text=got[i][0].text if i in got else "",
                                tokens=got[i][0].tokens if i in got else 0)
                for i, q in enumerate(queries)]


class CountingGenerator(Generator):
    """Implements only _generate: sample j of a request answers j + 1, with j + 1 tokens."""

    backend = "counting"

    def __init__(self):
        self.calls = 0

    def _generate(self, requests, *, n, temperature, top_p, max_tokens, stop, logprobs):
        self.calls += 1
        return [[Completion(f"Answer: {j + 1}", tokens=j + 1, prompt_tokens=5)
                 for j in range(n)] for _ in requests]


def test_registered_family_is_dispatched_to():
    assert search_for(LastOfN(3)) is LastOfNSearch and search_for("best_of_n@n=2") is not None
    cands = [_cand("3"), _cand("4"), _cand(None)]
    assert select_candidate(LastOfN(3), cands) == 1
    pool = CandidatePool("q", cands, prompt_tokens=7, latency_s=0.5)
    assert pool.select(LastOfN(2)).answer == "4"
    gen = CountingGenerator()
    res = StrategyExecutor(gen).execute_batch(LastOfN(3), ["What is 1+2?", ""])
    assert res[0].strategy == "last_of_n@n=3" and res[0].answer == "3"
    assert res[0].tokens == 1 + 2 + 3 and res[0].prompt_tokens == 5 and res[0].steps == 1
    assert "empty" in res[1].error and gen.calls == 1  # one batched request


def test_registered_run_family_generates_itself():
    gen = CountingGenerator()
    res = StrategyExecutor(gen, max_tokens=9).execute(Echo(1), "q")
    assert res.text == "Answer: 1" and res.tokens == 1 and gen.calls == 1
    with pytest.raises(ValueError, match="not a parallel strategy"):
        select_candidate(Echo(1), [_cand("1")])


def test_register_refuses_bad_families():
    with pytest.raises(ValueError, match="already runs with LastOfNSearch"):
        register(LastOfN)(type("Other", (), {"select": staticmethod(lambda s, c: 0)}))
    with pytest.raises(TypeError, match="Strategy subclass"):
        register(int)
    with pytest.raises(TypeError, match="neither select"):
        register(Echo)(type("Empty", (), {}))

    @dataclass(frozen=True)
    class Unknown(Strategy):
        method: ClassVar[str] = "unknown"

    with pytest.raises(ValueError, match="No strategy family is registered for Unknown"):
        StrategyExecutor(CountingGenerator()).execute(Unknown(1), "q")


def test_scorer_must_return_score_result():
    class OldScorer(StepScorer):
        def score(self, question, solutions, **kwargs):
            return [[0.5] for _ in solutions]  # the pre-ScoreResult protocol

    res = StrategyExecutor(CountingGenerator(), scorer=OldScorer()).execute(BestOfN(2), "q")
    assert "scoring failed" in res.error and "ScoreResult" in res.error


def test_scored_pool_counts_scorer_tokens():
    ex = StrategyExecutor(CountingGenerator(), scorer=LengthScorer())
    pool, = ex.sample_pool(["What is 1+2?"], 3)
    assert pool.reward_tokens == sum(len(c.text) for c in pool.candidates)
    assert [c.reward for c in pool.candidates] == [1.0 / (1 + len("Answer: 1"))] * 3
    assert ex.execute(BestOfN(3), "q").reward_tokens == pool.reward_tokens


class ModeScorer(StepScorer):
    """Records the prompt modes it is given and takes 0.2 s, as a verifier's pass would."""

    uses_prompt_mode = True

    def __init__(self):
        self.modes = []

    def score(self, question, solutions, mode="cot", **kwargs):
        import time

        self.modes.append(mode)
        time.sleep(0.2)
        return ScoreResult([[0.5] * len(steps) for steps in solutions], 1)


@pytest.mark.parametrize("strategy", ["best_of_n@n=2,mode=direct", "beam_search@n=2,w=1",
                                      "weighted_majority_vote@n=2"])
def test_scorer_gets_the_prompt_mode_and_its_time_counts_in_latency(strategy):
    scorer = ModeScorer()
    gen = CountingGenerator()
    gen.system_prompt = None  # the direct mode sets its own
    res = StrategyExecutor(gen, scorer=scorer, max_steps=1).execute(
        strategy, "What is 1+2?")
    assert res.error is None and scorer.modes
    assert set(scorer.modes) == {"direct" if "direct" in strategy else "cot"}
    assert res.latency_s >= 0.2 * len(scorer.modes) and res.reward_tokens == len(scorer.modes)


# -- real model ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tally(vllm_generator):
    return TallyGenerator(vllm_generator)


def _executor(gen, **kw):
    kw.setdefault("max_tokens", 48)
    kw.setdefault("step_max_tokens", 16)
    return StrategyExecutor(gen, **kw)


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.parametrize("strategy", [
    BestOfN(3), MajorityVote(3), WeightedMajorityVote(3), BeamSearch(4, 2, max_steps=3)])
def test_every_strategy_runs_and_counts_tokens_honestly(tally, strategy):
    ex = _executor(tally)
    tally.calls.clear()
    results = ex.execute_batch(strategy, QUERIES[:2])
    assert [r.strategy for r in results] == [strategy.name] * 2
    for r, q in zip(results, QUERIES):
        assert isinstance(r, ExecutionResult) and r.error is None and r.query == q
        assert r.tokens > 0 and r.prompt_tokens > 0 and r.latency_s > 0
        assert r.candidates and r.text in {c.text for c in r.candidates}
    # Every generated token of every candidate, beam and step is counted, per query.
    assert sum(r.tokens for r in results) == tally.generated_tokens()
    assert sum(r.prompt_tokens for r in results) == tally.prompt_tokens()
    if strategy.parallel:
        assert len(tally.calls) == 1  # one batched request for all queries
        for r in results:
            assert r.steps == 1 and len(r.candidates) == strategy.n
            assert r.tokens == sum(c.tokens for c in r.candidates)
    else:
        assert len(tally.calls) == max(r.steps for r in results)  # one call per step


@pytest.mark.slow
@pytest.mark.vllm
def test_beam_search_takes_several_steps_with_own_pools(tally):
    ex = _executor(tally, step_max_tokens=12, max_tokens=64)
    tally.calls.clear()
    results = ex.execute_batch(BeamSearch(4, 2, max_steps=4), QUERIES)
    assert max(r.steps for r in results) > 1
    first_n = tally.calls[0][1]["n"]
    assert first_n == 4 and all(c[1]["n"] == 2 for c in tally.calls[1:])
    assert all(c[1]["stop"] == ["\n"] for c in tally.calls)
    for r, call_q in zip(results, QUERIES):
        assert all(c.text.count("\n") <= len(c.steps) for c in r.candidates)
        # each query's beams continue only its own prompt
        for reqs, _, _ in tally.calls[1:]:
            for req in reqs:
                assert req.query in QUERIES
        assert all(len(c.step_rewards) == len(c.steps) for c in r.candidates)
        assert all(0.0 <= x <= 1.0 for c in r.candidates for x in c.step_rewards)
    # later requests continue a prefix written in an earlier step
    assert any(req.prefix for reqs, _, _ in tally.calls[1:] for req in reqs)


@pytest.mark.slow
@pytest.mark.vllm
def test_best_of_n_returns_top_ranked(vllm_generator):
    for scorer in (LogprobScorer(), LengthScorer()):
        ex = _executor(vllm_generator, scorer=scorer)
        r = ex.execute(BestOfN(4), QUERIES[0])
        rewards = [c.reward for c in r.candidates]
        best = rewards.index(max(rewards))
        assert r.text == r.candidates[best].text and r.answer == r.candidates[best].answer
    assert r.reward_tokens > 0  # LengthScorer reports the characters it read


@pytest.mark.slow
@pytest.mark.vllm
def test_majority_vote_returns_mode(vllm_generator):
    ex = _executor(vllm_generator)
    r = ex.execute(MajorityVote(5), QUERIES[1])
    votes = Counter(c.normalized for c in r.candidates if c.normalized is not None)
    assert votes, "no sample stated an answer; the test query should make the model write one"
    top = max(votes.values())
    # the mode, ties to the answer seen first, and that answer's first candidate
    winner = next(c.normalized for c in r.candidates if votes.get(c.normalized) == top)
    expected = next(i for i, c in enumerate(r.candidates) if c.normalized == winner)
    assert r.text == r.candidates[expected].text and r.answer == r.candidates[expected].answer
    assert r.reward_tokens == 0


@pytest.mark.slow
@pytest.mark.vllm
def test_sample_pool(vllm_generator):
    ex = _executor(vllm_generator)
    pools = ex.sample_pool(QUERIES[:2] + [""], 3)
    assert len(pools) == 3 and pools[2].error and not pools[2].candidates
    for pool in pools[:2]:
        assert pool.error is None and len(pool.candidates) == 3 and pool.prompt_tokens > 0
        assert pool.latency_s > 0 and pool.tokens == sum(c.tokens for c in pool.candidates)
        for c in pool.candidates:
            assert 0.0 <= c.reward <= 1.0 and len(c.step_rewards) == len(c.steps)
            assert "".join(c.steps) == c.text
        assert pool.select(MajorityVote(3)).answer is not None or all(
            c.answer is None for c in pool.candidates)


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.parametrize("strategy", [MajorityVote(2), BeamSearch(2, 2, max_steps=2)])
def test_per_query_errors_do_not_stop_others(vllm_generator, strategy):
    too_long = "count: " + " ".join(str(i) for i in range(3000))
    ex = _executor(vllm_generator)
    results = ex.execute_batch(strategy, [QUERIES[0], "", too_long, QUERIES[1]])
    assert results[0].error is None and results[3].error is None
    assert "empty" in results[1].error
    assert "prompt" in results[2].error and "tokens" in results[2].error
    assert results[0].tokens > 0 and results[2].answer is None


@pytest.mark.slow
@pytest.mark.vllm
def test_isolated_latency_and_system_prompt(vllm_generator):
    before = vllm_generator.system_prompt
    ex = _executor(vllm_generator, system_prompt="Reply with one number only.")
    rs = ex.execute_batch(MajorityVote(2), QUERIES[:2], measure="isolated")
    assert all(r.error is None and r.latency_s > 0 for r in rs)
    assert vllm_generator.system_prompt == before  # restored after the call
