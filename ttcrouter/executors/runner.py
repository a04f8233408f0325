"""Run a test-time-compute strategy on a real generator, with honest token and latency counts.

:class:`StrategyExecutor` runs the four strategies of :mod:`ttcrouter.strategies`:

- best-of-N: ``n`` full samples in one request, scored by the step scorer, the best kept;
- majority voting: ``n`` samples, the most frequent extracted answer;
- weighted majority voting: ``n`` samples, each answer weighted by its samples' rewards;
- beam search: step-wise generation (each step ends at the step delimiter), keeping the
  ``n // beam_width`` best unfinished beams by reward and expanding each ``beam_width`` ways.

Token accounting is honest: ``tokens`` counts every token generated for the query, by every
candidate and every beam at every step (pruned beams included); ``prompt_tokens`` counts the
prompt of every request once (parallel samples of one request share their prompt);
``reward_tokens`` counts the tokens the reward model read. Each query of a batch has its own
beam pool.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..grading import extract_answer, normalize_answer
from ..strategies import BeamSearch, BestOfN, MajorityVote, Strategy, WeightedMajorityVote
from ..strategies import as_strategy
from .base import GenerationRequest
from .rewards import AGGREGATIONS, LogprobScorer, aggregate_step_scores

__all__ = [
    "Candidate",
    "CandidatePool",
    "ExecutionResult",
    "StrategyExecutor",
    "execute",
    "split_steps",
    "select_candidate",
]

#: A step that states the final answer ends a beam: "Answer: <something>" or \boxed{.
_ANSWER_LINE_RE = re.compile(
    r"answer\s*(?:is\s*)?[:：]\s*\S|answer\s+is\s+[-+$\\\d]|\\boxed\s*\{|^\s*####\s*\S",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass
class Candidate:
    """One candidate solution.

    Attributes
    ----------
    text : str
        The generated solution.
    steps : list of str
        The solution split into steps (their concatenation is ``text``).
    answer : str or None
        Extracted final answer (:func:`ttcrouter.grading.extract_answer`).
    normalized : str or None
        Canonical answer used for voting (:func:`ttcrouter.grading.normalize_answer`).
    tokens : int
        Tokens generated along this candidate's own path (for a beam: its steps only).
    reward : float
        Aggregated step reward (0.0 when the strategy did not score candidates).
    step_rewards : list of float
        Per-step rewards in [0, 1].
    finish_reason : str
        Finish reason of the last generation call.
    finished : bool
        Whether the solution is complete (always True for full samples).
    """

    text: str
    steps: list
    answer: str | None
    normalized: str | None
    tokens: int
    reward: float = 0.0
    step_rewards: list = field(default_factory=list)
    finish_reason: str = "stop"
    finished: bool = True
    step_logprobs: list | None = field(default=None, repr=False)


@dataclass
class ExecutionResult:
    """The outcome of running one strategy on one query.

    Attributes
    ----------
    strategy : str
        Canonical strategy name.
    query : str
    answer : str or None
        Final extracted answer.
    text : str
        Text of the chosen candidate.
    tokens : int
        Every generated token for this query (all candidates, beams and steps).
    prompt_tokens : int
        Prompt tokens of every request, each request counted once.
    reward_tokens : int
        Tokens read by the reward model.
    latency_s : float
        Wall-clock seconds (see :meth:`StrategyExecutor.execute_batch` for batches).
    steps : int
        Sequential generation rounds (1 for the parallel methods).
    error : str or None
        Why the query failed; None when it ran.
    candidates : list of Candidate
        The final candidate pool.
    """

    strategy: str
    query: str
    answer: str | None = None
    text: str = ""
    tokens: int = 0
    prompt_tokens: int = 0
    reward_tokens: int = 0
    latency_s: float = 0.0
    steps: int = 0
    error: str | None = None
    candidates: list = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        """Whether the execution ran without error."""
        return self.error is None

    def as_row(self) -> dict:
        """The runs-table columns this result fills (without query_id, gold, repeat, correct)."""
        return {
            "query": self.query, "strategy": self.strategy, "answer": self.answer,
            "tokens": int(self.tokens), "latency_s": float(self.latency_s),
            "error": self.error, "prompt_tokens": int(self.prompt_tokens),
            "reward_tokens": int(self.reward_tokens), "steps": int(self.steps),
        }


def select_candidate(strategy, candidates: Sequence[Candidate]) -> int:
    """Index of the candidate a parallel strategy returns.

    - best-of-N: the highest reward; ties go to the first candidate.
    - majority voting: the most frequent normalised answer; ties go to the answer that
      appeared first; the first candidate with that answer is returned.
    - weighted majority voting: the answer with the largest sum of rewards; ties go to the
      answer that appeared first; its highest-reward candidate is returned.

    Candidates without an answer do not vote; when none has one, the first candidate is
    returned (its answer is None).
    """
    strategy = as_strategy(strategy)
    if not candidates:
        raise ValueError("No candidates to select from.")
    if isinstance(strategy, BestOfN):
        rewards = np.array([c.reward for c in candidates], dtype=float)
        return int(np.argmax(np.nan_to_num(rewards, nan=-np.inf)))
    if isinstance(strategy, (MajorityVote, WeightedMajorityVote)):
        weighted = isinstance(strategy, WeightedMajorityVote)
        totals: dict[str, float] = {}
        first: dict[str, int] = {}
        for i, c in enumerate(candidates):
            if c.normalized is None:
                continue
            first.setdefault(c.normalized, i)
            totals[c.normalized] = totals.get(c.normalized, 0.0) + (
                float(c.reward) if weighted else 1.0
            )
        if not totals:
            return 0
        best = max(totals, key=lambda a: (totals[a], -first[a]))
        if not weighted:
            return first[best]
        members = [i for i, c in enumerate(candidates) if c.normalized == best]
        return max(members, key=lambda i: (candidates[i].reward, -i))
    raise ValueError(
        f"{strategy.name} is not a parallel strategy; beam search cannot pick from a pool of "
        "full samples (run it with StrategyExecutor.execute)."
    )


@dataclass
class CandidatePool:
    """``n`` full samples for one query, scored: the raw material of pooled collection.

    Attributes
    ----------
    query : str
    candidates : list of Candidate
    prompt_tokens : int
        Prompt tokens of the request (one request with ``n`` samples).
    reward_tokens : int
        Tokens the reward model read to score all candidates.
    latency_s : float
        Wall-clock seconds of the whole batched request that produced the pool (generation
        and scoring; shared by all queries sampled together).
    error : str or None
    """

    query: str
    candidates: list = field(default_factory=list)
    prompt_tokens: int = 0
    reward_tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None

    @property
    def tokens(self) -> int:
        """Tokens generated for all candidates."""
        return int(sum(c.tokens for c in self.candidates))

    def select(self, strategy, indices=None) -> ExecutionResult:
        """Apply a parallel strategy to (a subset of) the pool.

        Parameters
        ----------
        strategy : Strategy or str
            A best-of-N, majority or weighted majority strategy; its ``n`` must equal the
            number of candidates used.
        indices : sequence of int or None
            Which candidates to use; None uses the first ``strategy.n``.

        Returns
        -------
        ExecutionResult
            ``tokens`` sums the used candidates; ``latency_s`` is the pool's latency (the
            latency of a subset was not measured); ``reward_tokens`` is the pool's share for
            the used candidates (0 for majority voting, which needs no scores).
        """
        strategy = as_strategy(strategy)
        if self.error is not None:
            return ExecutionResult(strategy.name, self.query, error=self.error)
        if indices is None:
            indices = range(strategy.n)
        indices = list(indices)
        if len(indices) != strategy.n:
            raise ValueError(f"{strategy.name} needs {strategy.n} candidates, got {len(indices)}.")
        if indices and max(indices) >= len(self.candidates):
            raise ValueError(
                f"The pool holds {len(self.candidates)} candidates; index {max(indices)} is out "
                "of range. Sample a larger pool."
            )
        used = [self.candidates[i] for i in indices]
        chosen = used[select_candidate(strategy, used)]
        reward_tokens = 0
        if strategy.needs_reward_model and self.candidates:
            reward_tokens = int(round(self.reward_tokens * len(used) / len(self.candidates)))
        return ExecutionResult(
            strategy=strategy.name, query=self.query, answer=chosen.answer, text=chosen.text,
            tokens=int(sum(c.tokens for c in used)), prompt_tokens=self.prompt_tokens,
            reward_tokens=reward_tokens, latency_s=self.latency_s, steps=1, candidates=used,
        )


def split_steps(text: str, delimiter: str) -> list[str]:
    """Split a solution into steps at ``delimiter``, each step keeping its delimiter.

    Blank pieces join the step before them, so ``"".join(split_steps(t, d)) == t``.

    Examples
    --------
    >>> split_steps("a\\nb\\n\\nc", "\\n")
    ['a\\n', 'b\\n\\n', 'c']
    """
    if not delimiter:
        return [text]
    parts = text.split(delimiter)
    steps: list[str] = []
    for i, part in enumerate(parts):
        piece = part + (delimiter if i < len(parts) - 1 else "")
        if not piece:
            continue
        if steps and not part.strip():
            steps[-1] += piece
        else:
            steps.append(piece)
    if len(steps) > 1 and not steps[0].strip():
        steps[1] = steps[0] + steps[1]
        del steps[0]
    return steps or [text]


def _split_logprobs(steps: list[str], logprobs) -> list[list[float]]:
    """Share a completion's token log-probabilities among its steps.

    Token texts are not recorded, so token i is placed at the character position
    ``(i + 0.5) / n_tokens`` of the text and given to the step holding that position.
    """
    out: list[list[float]] = [[] for _ in steps]
    if not logprobs:
        return out
    total = sum(len(s) for s in steps)
    if total == 0 or len(steps) == 1:
        out[0] = list(logprobs)
        return out
    ends = np.cumsum([len(s) for s in steps])
    n = len(logprobs)
    for i, lp in enumerate(logprobs):
        pos = (i + 0.5) / n * total
        k = min(int(np.searchsorted(ends, pos, side="right")), len(steps) - 1)
        out[k].append(lp)
    return out


@dataclass
class _Beam:
    steps: list
    step_logprobs: list
    tokens: int
    finished: bool = False
    finish_reason: str = "stop"
    reward: float = 0.0
    step_rewards: list = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.steps)


class StrategyExecutor:
    """Run strategies on a generator backend, scoring candidates with a step scorer.

    Parameters
    ----------
    generator : Generator
        A backend (:class:`~ttcrouter.executors.VLLMGenerator`, ``OpenAIGenerator``,
        ``TransformersGenerator``).
    scorer : StepScorer or None, default=None
        Step scorer for best-of-N, weighted voting and beam search; None means
        :class:`~ttcrouter.executors.LogprobScorer` (no extra model).
    step_delimiter : str, default="\\n"
        Ends a step: a stop string in beam search, the split point of full samples.
        Use ``"\\n\\n"`` for Qwen-style models and the Qwen PRM.
    max_tokens : int, default=256
        Token budget of one candidate (a full sample, or a beam over all its steps).
    step_max_tokens : int, default=64
        Token limit of one beam-search step.
    temperature : float, default=0.7
    top_p : float, default=1.0
    aggregation : {"last", "min", "prod", "mean"}, default="last"
        How step rewards become a candidate's reward.
    max_steps : int or None, default=None
        Overrides ``BeamSearch.max_steps`` when set.
    system_prompt : str or None, default=None
        System prompt for this executor's requests; None keeps the generator's own. When set,
        it replaces the generator's ``system_prompt`` for the duration of each call (do not
        share the generator between threads then).
    """

    def __init__(
        self,
        generator,
        scorer=None,
        step_delimiter="\n",
        max_tokens=256,
        step_max_tokens=64,
        temperature=0.7,
        top_p=1.0,
        aggregation="last",
        max_steps=None,
        system_prompt=None,
    ):
        self.generator = generator
        self.scorer = scorer
        self.step_delimiter = step_delimiter
        self.max_tokens = max_tokens
        self.step_max_tokens = step_max_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.aggregation = aggregation
        self.max_steps = max_steps
        self.system_prompt = system_prompt
        self._default_scorer = None

    # -- checks ----------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.generator is None or not hasattr(self.generator, "generate"):
            raise TypeError("generator must be a generator backend with a generate() method.")
        for name in ("max_tokens", "step_max_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if self.max_steps is not None and (
            isinstance(self.max_steps, bool) or not isinstance(self.max_steps, (int, np.integer))
            or self.max_steps < 1
        ):
            raise ValueError(
                f"max_steps must be None or a positive integer, got {self.max_steps!r}."
            )
        if not isinstance(self.step_delimiter, str) or not self.step_delimiter:
            raise ValueError(
                f"step_delimiter must be a non-empty string, got {self.step_delimiter!r}."
            )
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {self.aggregation!r}."
            )
        if not (isinstance(self.temperature, (int, float)) and self.temperature >= 0):
            raise ValueError(f"temperature must be a number >= 0, got {self.temperature!r}.")
        if self.scorer is not None and not hasattr(self.scorer, "score"):
            raise TypeError("scorer must have a score(question, solutions) method.")

    @property
    def scorer_(self):
        """The step scorer in use (``scorer``, or a :class:`LogprobScorer`)."""
        if self.scorer is not None:
            return self.scorer
        if self._default_scorer is None:
            self._default_scorer = LogprobScorer()
        return self._default_scorer

    @staticmethod
    def _check_query(query) -> str | None:
        """The reason a query is unusable, or None."""
        if not isinstance(query, str):
            return f"query must be a string, got {type(query).__name__}."
        if not query.strip():
            return "query is empty; pass the question text."
        return None

    @contextlib.contextmanager
    def _system_prompt(self):
        if self.system_prompt is None:
            yield
            return
        if not hasattr(self.generator, "system_prompt"):
            raise TypeError(
                f"{type(self.generator).__name__} has no system_prompt to override; leave "
                "StrategyExecutor(system_prompt=None) and set it on the generator."
            )
        old = self.generator.system_prompt
        self.generator.system_prompt = self.system_prompt
        try:
            yield
        finally:
            self.generator.system_prompt = old

    # -- generation with per-query error isolation ------------------------------------------------
    def _generate(self, requests, owners, errors, *, n, max_tokens, stop=None, logprobs=False):
        """Generate for all requests in one call; if it fails, retry query by query so one
        bad query (e.g. a prompt too long) records its error and the others go on."""
        kwargs = dict(n=n, temperature=self.temperature, top_p=self.top_p,
                      max_tokens=int(max_tokens), stop=stop, logprobs=logprobs)
        if not requests:
            return []
        try:
            return self.generator.generate(requests, **kwargs)
        except Exception as exc:  # noqa: BLE001 - recorded per query
            groups: dict[int, list[int]] = {}
            for i, o in enumerate(owners):
                groups.setdefault(o, []).append(i)
            out: list = [None] * len(requests)
            if len(groups) == 1:
                errors[owners[0]] = f"{type(exc).__name__}: {exc}"
                return out
            for o, idx in groups.items():
                try:
                    got = self.generator.generate([requests[i] for i in idx], **kwargs)
                except Exception as sub:  # noqa: BLE001
                    errors[o] = f"{type(sub).__name__}: {sub}"
                    continue
                for i, comps in zip(idx, got):
                    out[i] = comps
            return out

    def _score(self, questions, solutions, step_logprobs, owners, errors):
        """Score candidates (lists of steps) of several questions; returns rewards, tokens."""
        scorer = self.scorer_
        kwargs = {"step_logprobs": step_logprobs} if getattr(scorer, "uses_logprobs", False) else {}
        try:
            if hasattr(scorer, "score_batch"):
                scores = scorer.score_batch(questions, solutions, **kwargs)
                n_tokens = list(getattr(scorer, "last_batch_reward_tokens", None) or [])
                if len(n_tokens) != len(questions):  # scorer without per-question counts
                    total = int(getattr(scorer, "last_reward_tokens", 0) or 0)
                    n_tokens = [total] + [0] * (len(questions) - 1)
            else:
                scores, n_tokens = [], []
                for i, (q, sols) in enumerate(zip(questions, solutions)):
                    extra = {k: v[i] for k, v in kwargs.items()}
                    scores.append(scorer.score(q, sols, **extra))
                    n_tokens.append(int(getattr(scorer, "last_reward_tokens", 0) or 0))
        except Exception as exc:  # noqa: BLE001 - recorded per query
            for o in owners:
                errors[o] = f"scoring failed: {type(exc).__name__}: {exc}"
            return None, [0] * len(questions)
        return scores, n_tokens

    # -- parallel sampling ------------------------------------------------------------------------
    def _sample(self, queries, n, *, score, progress=False):
        """n full samples per valid query in one request; returns CandidatePools."""
        errors: dict[int, str] = {}
        for i, q in enumerate(queries):
            why = self._check_query(q)
            if why:
                errors[i] = why
        valid = [i for i in range(len(queries)) if i not in errors]
        scorer = self.scorer_ if score else None
        want_logprobs = bool(score and getattr(scorer, "uses_logprobs", False))
        start = time.perf_counter()
        with self._system_prompt():
            comps = self._generate(
                [GenerationRequest(queries[i]) for i in valid], valid, errors,
                n=n, max_tokens=self.max_tokens, logprobs=want_logprobs,
            )
        pools: dict[int, CandidatePool] = {}
        for i, cs in zip(valid, comps):
            if cs is None or i in errors:
                continue
            cands = []
            for c in cs:
                steps = split_steps(c.text, self.step_delimiter)
                answer = extract_answer(c.text)
                cands.append(Candidate(
                    text=c.text, steps=steps, answer=answer,
                    normalized=normalize_answer(answer), tokens=int(c.tokens),
                    finish_reason=c.finish_reason, finished=True,
                    step_logprobs=_split_logprobs(steps, c.logprobs) if want_logprobs else None,
                ))
            pools[i] = CandidatePool(
                query=queries[i], candidates=cands,
                prompt_tokens=int(cs[0].prompt_tokens) if cs else 0,
            )
        if score and pools:
            order = list(pools)
            scores, n_tok = self._score(
                [queries[i] for i in order],
                [[c.steps for c in pools[i].candidates] for i in order],
                [[c.step_logprobs for c in pools[i].candidates] for i in order],
                order, errors,
            )
            if scores is not None:
                for i, sc, nt in zip(order, scores, n_tok):
                    pools[i].reward_tokens = nt
                    for cand, steps_r in zip(pools[i].candidates, sc):
                        cand.step_rewards = [float(r) for r in steps_r]
                        cand.reward = float(aggregate_step_scores(steps_r, self.aggregation))
        elapsed = time.perf_counter() - start
        out = []
        for i, q in enumerate(queries):
            if i in errors:
                out.append(CandidatePool(query=q if isinstance(q, str) else str(q),
                                         error=errors[i], latency_s=elapsed))
            else:
                pools[i].latency_s = elapsed
                out.append(pools[i])
        return out

    def sample_pool(self, queries, n) -> list[CandidatePool]:
        """Draw ``n`` full samples per query in one batched request and score them all.

        Parameters
        ----------
        queries : sequence of str
        n : int
            Samples per query.

        Returns
        -------
        list of CandidatePool
            One pool per query, in order. Each candidate carries its text, extracted and
            normalised answer, generated tokens, step rewards and aggregated reward. A query
            that failed (empty, prompt too long, ...) gets a pool with ``error`` set.
            ``latency_s`` is the wall time of the whole batched request, shared by all pools.
        """
        self._check_params()
        queries = self._check_queries(queries)
        n = self._check_n(n)
        return self._sample(queries, n, score=True)

    @staticmethod
    def _check_n(n) -> int:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}.")
        return int(n)

    @staticmethod
    def _check_queries(queries) -> list:
        if isinstance(queries, str):
            raise TypeError("queries must be a list of strings; wrap a single query: [query].")
        return list(queries)

    # -- strategies -------------------------------------------------------------------------------
    def execute(self, strategy, query) -> ExecutionResult:
        """Run one strategy on one query.

        Parameters
        ----------
        strategy : Strategy or str
            A spec or canonical name (``"majority_vote@n=4"``).
        query : str

        Returns
        -------
        ExecutionResult
            ``latency_s`` is the wall clock of this execution. Generation or scoring failures
            are recorded in ``error``.

        Raises
        ------
        ValueError
            For an unknown strategy, bad parameters or an empty query.
        """
        why = self._check_query(query)
        if why:
            raise ValueError(why)
        return self.execute_batch(strategy, [query])[0]

    def execute_batch(self, strategy, queries, progress=False, measure="batch"):
        """Run one strategy on several queries, batched.

        Parallel methods send one request per query (``n`` samples each) in one generation
        call; beam search makes one generation call per step for all queries' beams, each
        query keeping its own beam pool.

        Parameters
        ----------
        strategy : Strategy or str
        queries : sequence of str
        progress : bool, default=False
            Show a progress bar (beam-search steps, or queries with ``measure="isolated"``).
        measure : {"batch", "isolated"}, default="batch"
            ``"batch"``: all queries run together and each result's ``latency_s`` is the
            batch's wall time (what a user who sent the batch waits). ``"isolated"``: queries
            run one at a time, each ``latency_s`` is that query's own wall time (slower, but
            the latency of a single request).

        Returns
        -------
        list of ExecutionResult
            One per query, in order; a failed query has ``error`` set and the others go on.
        """
        strategy = as_strategy(strategy)
        self._check_params()
        queries = self._check_queries(queries)
        if measure not in ("batch", "isolated"):
            raise ValueError(f"measure must be 'batch' or 'isolated', got {measure!r}.")
        if measure == "isolated":
            items = queries
            if progress:
                from tqdm.auto import tqdm

                items = tqdm(queries, desc=strategy.name)
            return [self._run_batch(strategy, [q], False)[0] for q in items]
        return self._run_batch(strategy, queries, progress)

    def _run_batch(self, strategy: Strategy, queries, progress) -> list[ExecutionResult]:
        if isinstance(strategy, BeamSearch):
            return self._beam_search(strategy, queries, progress)
        start = time.perf_counter()
        pools = self._sample(queries, strategy.n, score=strategy.needs_reward_model)
        elapsed = time.perf_counter() - start
        out = []
        for pool in pools:
            if pool.error is not None:
                res = ExecutionResult(strategy.name, pool.query, error=pool.error)
            else:
                res = pool.select(strategy, range(len(pool.candidates)))
                res.reward_tokens = pool.reward_tokens
                res.candidates = pool.candidates
            res.latency_s = elapsed
            out.append(res)
        return out

    # -- beam search ------------------------------------------------------------------------------
    def _beam_done(self, beam: _Beam, comp) -> tuple[bool, str]:
        text = comp.text
        if comp.finish_reason != "length" and comp.stop_reason is None:
            return True, "stop"  # end of sequence: the model finished its answer
        if beam.tokens >= self.max_tokens:
            return True, "length"  # token budget of the candidate spent
        if _ANSWER_LINE_RE.search(text) or not text.strip() and comp.tokens == 0:
            return True, comp.finish_reason or "stop"
        return False, comp.finish_reason or "stop"

    def _beam_search(self, strategy: BeamSearch, queries, progress) -> list[ExecutionResult]:
        n, width = strategy.n, strategy.beam_width
        n_beams = strategy.n_beams
        max_steps = self.max_steps if self.max_steps is not None else strategy.max_steps
        delim = self.step_delimiter
        scorer = self.scorer_
        want_logprobs = bool(getattr(scorer, "uses_logprobs", False))
        errors: dict[int, str] = {}
        for i, q in enumerate(queries):
            why = self._check_query(q)
            if why:
                errors[i] = why
        live = [i for i in range(len(queries)) if i not in errors]
        tokens = {i: 0 for i in live}
        prompt_tokens = {i: 0 for i in live}
        reward_tokens = {i: 0 for i in live}
        steps_run = {i: 0 for i in live}
        finished: dict[int, list[_Beam]] = {i: [] for i in live}
        active: dict[int, list[_Beam]] = {i: [] for i in live}
        # Requests of the first step: one per query, n samples; later: one per kept beam.
        parents: list[tuple[int, _Beam | None]] = [(i, None) for i in live]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=max_steps, desc=strategy.name)
        start = time.perf_counter()
        with self._system_prompt():
            for step in range(1, max_steps + 1):
                if not parents:
                    break
                owners = [qi for qi, _ in parents]
                requests = [GenerationRequest(queries[qi], prefix=b.text if b else "")
                            for qi, b in parents]
                budget = min(self.step_max_tokens, self.max_tokens)
                comps = self._generate(
                    requests, owners, errors, n=n if step == 1 else width,
                    max_tokens=budget, stop=[delim], logprobs=want_logprobs,
                )
                for qi in set(owners):
                    if qi not in errors:
                        active[qi] = []
                        steps_run[qi] = step
                for (qi, parent), cs in zip(parents, comps):
                    if cs is None or qi in errors:
                        continue
                    if cs:
                        prompt_tokens[qi] += int(cs[0].prompt_tokens)
                    for c in cs:
                        tokens[qi] += int(c.tokens)
                        text = c.text
                        if c.stop_reason == delim and not text.endswith(delim):
                            text += delim
                        child = _Beam(
                            steps=(parent.steps if parent else []) + [text],
                            step_logprobs=(parent.step_logprobs if parent else [])
                            + [list(c.logprobs or [])],
                            tokens=(parent.tokens if parent else 0) + int(c.tokens),
                        )
                        child.finished, child.finish_reason = self._beam_done(child, c)
                        active[qi].append(child)
                # Score every beam of this step, all queries in one scorer call.
                stepped = set(owners)
                order = [qi for qi in live if qi in stepped and qi not in errors and active[qi]]
                if order:
                    scores, n_tok = self._score(
                        [queries[qi] for qi in order],
                        [[b.steps for b in active[qi]] for qi in order],
                        [[b.step_logprobs for b in active[qi]] for qi in order],
                        order, errors,
                    )
                    if scores is not None:
                        for qi, sc, nt in zip(order, scores, n_tok):
                            reward_tokens[qi] += nt
                            for b, r in zip(active[qi], sc):
                                b.step_rewards = [float(x) for x in r]
                                b.reward = float(aggregate_step_scores(r, self.aggregation))
                # Keep finished beams; expand the best unfinished ones.
                parents = []
                for qi in order:
                    if qi in errors:
                        continue
                    finished[qi].extend(b for b in active[qi] if b.finished)
                    active[qi] = [b for b in active[qi] if not b.finished]
                    if len(finished[qi]) >= n or not active[qi] or step == max_steps:
                        continue
                    ranked = sorted(range(len(active[qi])), key=lambda k: -active[qi][k].reward)
                    parents.extend((qi, active[qi][k]) for k in ranked[:n_beams])
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        elapsed = time.perf_counter() - start
        out = []
        for i, q in enumerate(queries):
            if i in errors:
                res = ExecutionResult(strategy.name, q if isinstance(q, str) else str(q),
                                      error=errors[i], latency_s=elapsed)
                if i in tokens:
                    res.tokens, res.prompt_tokens = tokens[i], prompt_tokens[i]
                    res.reward_tokens, res.steps = reward_tokens[i], steps_run[i]
                out.append(res)
                continue
            pool = finished[i] + active[i]
            cands = []
            for b in pool:
                text = b.text
                answer = extract_answer(text)
                cands.append(Candidate(
                    text=text, steps=list(b.steps), answer=answer,
                    normalized=normalize_answer(answer), tokens=b.tokens, reward=b.reward,
                    step_rewards=b.step_rewards, finish_reason=b.finish_reason,
                    finished=b.finished, step_logprobs=b.step_logprobs,
                ))
            best = None
            if cands:
                done = [k for k, c in enumerate(cands) if c.finished] or list(range(len(cands)))
                best = cands[max(done, key=lambda k: (cands[k].reward, -k))]
            out.append(ExecutionResult(
                strategy=strategy.name, query=q, answer=best.answer if best else None,
                text=best.text if best else "", tokens=tokens[i],
                prompt_tokens=prompt_tokens[i], reward_tokens=reward_tokens[i],
                latency_s=elapsed, steps=steps_run[i], candidates=cands,
            ))
        return out

    def close(self) -> None:
        """Close the generator and the scorer."""
        for part in (self.generator, self.scorer):
            if part is not None and hasattr(part, "close"):
                part.close()


def execute(strategy, query, executor: StrategyExecutor) -> ExecutionResult:
    """Run ``strategy`` on ``query`` with ``executor`` (see :meth:`StrategyExecutor.execute`)."""
    if not isinstance(executor, StrategyExecutor):
        raise TypeError(
            f"executor must be a StrategyExecutor, got {type(executor).__name__}; build one "
            "with StrategyExecutor(generator)."
        )
    return executor.execute(strategy, query)
