"""Result types of strategy execution: one candidate, a pool of samples, one execution.

:class:`CandidatePool` keeps every sample of one request in order, so that votes and reranking
can be derived from samples already drawn; :meth:`CandidatePool.select` applies a parallel
family's selection rule (:func:`ttcrouter.executors.search.select_candidate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..grading import extract_answer, normalize_answer
from ..strategies import as_strategy
from .search import select_candidate
# The parallel families register their selection rules when imported; CandidatePool.select
# needs them even where the runner (which imports every family) is not imported.
from .search import best_of_n, majority_vote  # noqa: F401

__all__ = ["Candidate", "CandidatePool", "ExecutionResult"]


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
    step_logprobs : list or None
        Per-step token log-probabilities, when the scorer reads them.
    round : int
        Index of the request (round) that drew this sample; 0 for a pool drawn at once.
    request_latency_s : float
        Wall-clock seconds of the generation call that drew it (NaN when not measured).
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
    round: int = 0
    request_latency_s: float = float("nan")

    @classmethod
    def from_text(cls, text: str, steps: list, tokens: int, **fields) -> "Candidate":
        """A candidate whose answer is extracted from ``text`` and normalised for voting."""
        answer = extract_answer(text)
        return cls(text=text, steps=steps, answer=answer, normalized=normalize_answer(answer),
                   tokens=int(tokens), **fields)


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
    scores : dict
        Scorer -> ``(rewards of the candidates, reward tokens, scoring seconds of the
        pool)``, one entry per scorer that
        scored the pool (:meth:`StrategyExecutor.sample_pool`'s ``scorers``; None is the
        executor's own); the candidates' ``reward`` is the last one's.
    """

    query: str
    candidates: list = field(default_factory=list)
    prompt_tokens: int = 0
    reward_tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None
    scores: dict = field(default_factory=dict)

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
