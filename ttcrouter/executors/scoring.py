"""The step-scorer interface, reward aggregation and the log-probability scorer.

Every scorer has ``score(question, solutions) -> ScoreResult``: ``solutions`` is a list of
candidate solutions, each a list of step strings; the result holds one reward in [0, 1] per
step of each candidate (``rewards``) and the tokens the scorer read to compute them
(``reward_tokens``). ``score_batch(questions, solutions)`` returns one :class:`ScoreResult`
per question. Scorers keep no count of their own: the tokens travel with the rewards, so
executors report reward-model tokens without reading attributes set as a side effect.
:func:`aggregate_step_scores` turns the step rewards of a candidate into one number (last,
min, product or mean).

- :class:`LogprobScorer` (here): ``exp(mean token log-probability)`` of each step, from the
  log-probabilities the generator recorded while sampling; no extra model pass, so it is the
  default where no PRM fits (CPU machines). It reads no tokens.
- :class:`~ttcrouter.executors.prm.QwenMathPRM` and
  :class:`~ttcrouter.executors.prm.VLLMRewardModel`: process reward models (``prm.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = [
    "AGGREGATIONS",
    "ScoreResult",
    "StepScorer",
    "LogprobScorer",
    "aggregate_step_scores",
    "check_solutions",
]

AGGREGATIONS = ("last", "min", "prod", "mean")


def _aggregate_one(scores: Sequence[float], how: str) -> float:
    values = [float(s) for s in scores]
    if not values:
        return 0.0
    if how == "last":
        return values[-1]
    if how == "min":
        return min(values)
    if how == "prod":
        return float(math.prod(values))
    return float(sum(values) / len(values))


def aggregate_step_scores(scores, how: str = "last"):
    """Aggregate per-step rewards into one score per candidate.

    Parameters
    ----------
    scores : sequence of float, or sequence of sequences of float
        The step rewards of one candidate, or of several candidates.
    how : {"last", "min", "prod", "mean"}, default="last"
        ``"last"``: reward of the final step (the usual choice for Qwen PRMs);
        ``"min"``: weakest step; ``"prod"``: product; ``"mean"``: average.

    Returns
    -------
    float or list of float
        One score per candidate (a float for a single candidate). A candidate with no steps
        scores 0.0, so it never wins a ranking.

    Examples
    --------
    >>> aggregate_step_scores([0.9, 0.5, 0.8], "min")
    0.5
    >>> aggregate_step_scores([[0.9, 0.5], [0.2]], "last")
    [0.5, 0.2]
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"Unknown aggregation {how!r}; choose one of {', '.join(AGGREGATIONS)}.")
    if isinstance(scores, np.ndarray):
        scores = scores.tolist()
    scores = list(scores)
    if scores and all(isinstance(s, (list, tuple, np.ndarray)) for s in scores):
        return [_aggregate_one(list(s), how) for s in scores]
    return _aggregate_one(scores, how)


def check_solutions(solutions) -> list[list[str]]:
    """Candidates as lists of step strings; a bare string (or string candidate) is refused."""
    if isinstance(solutions, str):
        raise TypeError(
            "solutions must be a list of candidates, each a list of step strings; got a "
            "string. Wrap it: [[step1, step2, ...]]."
        )
    solutions = list(solutions)
    bad = next((i for i, sol in enumerate(solutions) if isinstance(sol, str)), None)
    if bad is not None:
        raise TypeError(
            f"Candidate {bad} is a string; each candidate must be a list of step strings "
            "(split the solution at the step delimiter)."
        )
    return [[str(s) for s in sol] for sol in solutions]


@dataclass(frozen=True)
class ScoreResult:
    """What a scorer returns for one question: step rewards and the tokens it read.

    Attributes
    ----------
    rewards : list of list of float
        For each candidate solution, one reward in [0, 1] per step.
    reward_tokens : int
        Tokens the scorer's model read (without padding) to score these candidates; 0 for a
        scorer without a model of its own.
    """

    rewards: list
    reward_tokens: int = 0


class StepScorer:
    """Base class of the step scorers.

    Subclasses implement :meth:`score`; :meth:`score_batch` scores several questions at once
    (the default loops over :meth:`score`).
    """

    #: Whether the scorer reads the generator's token log-probabilities (no model of its own).
    uses_logprobs: bool = False
    #: Whether the scorer takes each question's prompt mode (``mode=``, one per question in
    #: ``score_batch``): the executor passes the strategy's mode.
    uses_prompt_mode: bool = False

    def score(self, question: str, solutions, **kwargs) -> ScoreResult:
        """Per-step rewards in [0, 1] of each candidate solution of ``question``.

        Returns
        -------
        ScoreResult
            ``rewards[i][j]``: reward of step ``j`` of candidate ``i``; ``reward_tokens``:
            tokens read.
        """
        raise NotImplementedError

    def score_batch(self, questions, solutions, **kwargs) -> list[ScoreResult]:
        """Score ``solutions[i]`` (a list of candidates) for ``questions[i]``, for every i.

        Keyword arguments hold one entry per question (e.g. ``step_logprobs``).

        Returns
        -------
        list of ScoreResult
            One per question, in order.
        """
        out = []
        for i, (q, sols) in enumerate(zip(questions, solutions)):
            extra = {k: v[i] for k, v in kwargs.items() if v is not None}
            out.append(self.score(q, sols, **extra))
        return out

    def close(self) -> None:
        """Free the model, if any."""


# -- log-probability scorer --------------------------------------------------------------------
class LogprobScorer(StepScorer):
    """Score each step by the generator's confidence: ``exp(mean token log-probability)``.

    Needs no model of its own: the executor asks the generator for token log-probabilities
    while sampling and passes them as ``step_logprobs``. A step with no tokens scores 0.0.

    Examples
    --------
    >>> LogprobScorer().score("q", [["a", "b"]], step_logprobs=[[[0.0, 0.0], [-1.0]]]).rewards
    [[1.0, 0.36787944117144233]]
    """

    uses_logprobs = True

    def score(self, question, solutions, step_logprobs=None, **kwargs) -> ScoreResult:
        """Per-step rewards from recorded log-probabilities.

        Parameters
        ----------
        question : str
            Unused (the log-probabilities already depend on it).
        solutions : list of list of str
            Candidate solutions as step strings.
        step_logprobs : list of list of (list of float or float)
            For each candidate and step, the token log-probabilities of that step (or their
            mean, as one float).

        Returns
        -------
        ScoreResult
            The step rewards; ``reward_tokens`` is 0 (no model is run).
        """
        solutions = check_solutions(solutions)
        if step_logprobs is None:
            raise ValueError(
                "LogprobScorer scores from the generator's token log-probabilities: pass "
                "step_logprobs (one list per candidate, one entry per step). StrategyExecutor "
                "records them while sampling."
            )
        if len(step_logprobs) != len(solutions):
            raise ValueError(
                f"step_logprobs has {len(step_logprobs)} candidates, solutions has "
                f"{len(solutions)}."
            )
        out = []
        for i, (steps, lps) in enumerate(zip(solutions, step_logprobs)):
            if len(lps) != len(steps):
                raise ValueError(
                    f"Candidate {i}: {len(steps)} steps but {len(lps)} log-probability entries."
                )
            out.append([self._step_reward(lp) for lp in lps])
        return ScoreResult(out, 0)

    @staticmethod
    def _step_reward(lp) -> float:
        if lp is None:
            return 0.0
        if isinstance(lp, (int, float, np.floating)):
            mean = float(lp)
        else:
            values = [float(v) for v in lp if v is not None and math.isfinite(float(v))]
            if not values:
                return 0.0
            mean = sum(values) / len(values)
        return float(min(1.0, math.exp(min(0.0, mean))))
