"""VerifierScorer: a :class:`~ttcrouter.verifier.TrainedVerifier` behind the step-scorer interface.

Best-of-N, weighted majority voting and beam search take it through
``StrategyExecutor(scorer=VerifierScorer("verifier.joblib"))`` unchanged. Each step's reward
is the verifier's P(correct) of the solution up to that step; ``reward_tokens`` are the
tokens its forward passes read (prompt and solution of every candidate, every time it is
scored: beam search re-reads the prefixes each step). The executor times scoring inside each
execution's ``latency_s``, so verification time counts in latency.

The executor passes each strategy's prompt ``mode`` (the scorer declares
``uses_prompt_mode``), so a ``direct`` candidate is read after the ``direct`` system prompt
and the ``Answer:`` prefix, as the generator wrote it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pandas as pd

from ..verifier import TrainedVerifier, load_verifier
from .scoring import ScoreResult, StepScorer, check_solutions

__all__ = ["VerifierScorer"]


class VerifierScorer(StepScorer):
    """Step rewards from a trained verifier: P(correct | question, solution so far).

    Parameters
    ----------
    verifier : TrainedVerifier, str or path
        A fitted verifier, or its joblib file (:func:`ttcrouter.verifier.save_verifier`).

    Examples
    --------
    >>> scorer = VerifierScorer("verifier.joblib")                      # doctest: +SKIP
    >>> res = scorer.score("What is 3 + 4?", [["3 + 4 = 7\\n", "Answer: 7"]])  # doctest: +SKIP
    >>> res.rewards, res.reward_tokens                                   # doctest: +SKIP
    ([[0.41, 0.83]], 58)
    """

    uses_prompt_mode = True
    #: The samples table's score column is ``score_verifier``.
    name = "verifier"

    def __init__(self, verifier):
        if isinstance(verifier, (str, os.PathLike)):
            self.path = str(Path(verifier))
            verifier = load_verifier(verifier)
        elif isinstance(verifier, TrainedVerifier):
            self.path = None
        else:
            raise TypeError(f"verifier must be a fitted TrainedVerifier or the path of its "
                            f"joblib file, got {type(verifier).__name__}.")
        self.verifier = verifier
        self._lock = threading.Lock()

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        """What provenance records: the verifier file, or the generator it reads."""
        return self.path or f"TrainedVerifier({self.verifier.model or 'embedded'})"

    def score(self, question, solutions, mode="cot", **kwargs) -> ScoreResult:
        """Per-step P(correct) of each candidate of ``question``.

        Parameters
        ----------
        question : str
        solutions : list of list of str
            Candidates as step strings.
        mode : str, default="cot"
            Prompt mode the candidates were generated in.

        Returns
        -------
        ScoreResult
        """
        return self.score_batch([question], [solutions], mode=[mode])[0]

    def score_batch(self, questions, solutions, mode=None, **kwargs) -> list[ScoreResult]:
        """Score the candidates of several questions in one batched verifier call.

        Parameters
        ----------
        questions : list of str
        solutions : list of list of list of str
            ``solutions[i]``: the candidates of ``questions[i]``.
        mode : list of str or None, default=None
            Prompt mode per question (None: all ``cot``).

        Returns
        -------
        list of ScoreResult
            One per question; ``reward_tokens`` the tokens read for its candidates.
        """
        questions = list(questions)
        groups = [check_solutions(s) for s in solutions]
        if len(groups) != len(questions):
            raise ValueError(f"{len(questions)} questions but {len(groups)} groups of "
                             "candidates.")
        modes = list(mode) if mode is not None else ["cot"] * len(questions)
        rows = [{"question": q, "solution": sol, "mode": m}
                for q, sols, m in zip(questions, groups, modes) for sol in sols]
        if not rows:
            return [ScoreResult([], 0) for _ in questions]
        # one forward pass at a time: the server's executor threads share this scorer, and
        # the generator it reads loads on first use
        with self._lock:
            proba, tokens = self.verifier.predict_step_proba(pd.DataFrame(rows),
                                                             return_tokens=True)
        out, k = [], 0
        for sols in groups:
            n = len(sols)
            rewards = [[min(1.0, max(0.0, float(p))) for p in proba[j]]
                       for j in range(k, k + n)]
            out.append(ScoreResult(rewards, int(tokens[k:k + n].sum())))
            k += n
        return out
