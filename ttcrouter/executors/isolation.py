"""Generation and scoring with per-query error isolation: one bad query fails alone.

:class:`IsolatedCalls` is the part of :class:`~ttcrouter.executors.StrategyExecutor` that
sends one batched generator (or scorer) call for many queries and, when it fails, retries
query by query, so a prompt too long for the model records its error and the other queries
of the batch go on. Search families that run their own loop (beam search) generate and score
through these methods.
"""

from __future__ import annotations

from .scoring import ScoreResult, aggregate_step_scores

__all__ = ["IsolatedCalls"]


class IsolatedCalls:
    """Batched generator and scorer calls of an executor with ``generator``, ``temperature``,
    ``top_p``, ``aggregation`` and ``scorer_`` attributes."""

    def generate_isolated(self, requests, owners, errors, *, n, max_tokens, stop=None,
                          logprobs=False) -> list:
        """Generate for all requests in one call, isolating failures per query.

        If the batched call fails, it is retried query by query, so one bad query (e.g. a
        prompt too long) records its error and the others go on.

        Parameters
        ----------
        requests : list of GenerationRequest
        owners : list of int
            The query index each request belongs to (a query may own several requests).
        errors : dict
            ``{query index: reason}``; failures are added to it.
        n, max_tokens, stop, logprobs
            Passed to the generator, with this executor's temperature and top_p.

        Returns
        -------
        list
            One entry per request: its completions, or None when its query failed.
        """
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

    def score_isolated(self, questions, groups, owners, errors, mode="cot", *,
                       scorer=None) -> list[int]:
        """Score candidates of several questions in one scorer call, rewarding them in place.

        Parameters
        ----------
        questions : list of str
        groups : list of list
            ``groups[k]``: the candidates of ``questions[k]``, objects with ``steps`` and
            ``step_logprobs`` (:class:`~ttcrouter.executors.results.Candidate`, a beam).
            Their ``step_rewards`` and aggregated ``reward`` are set.
        owners : list of int
            The query index of each question.
        errors : dict
            ``{query index: reason}``; a failed scorer call records every owner.
        mode : str, default="cot"
            Prompt mode of the candidates, passed to a scorer with ``uses_prompt_mode``.
        scorer : StepScorer, optional
            The scorer to use (default :attr:`scorer_`; see :meth:`scorer_for`).

        Returns
        -------
        list of int
            Tokens the reward model read per question (zeros when scoring failed).
        """
        try:
            results = self._score_results(
                questions, [[c.steps for c in g] for g in groups],
                [[c.step_logprobs for c in g] for g in groups], mode,
                scorer=self.scorer_ if scorer is None else scorer,
            )
        except Exception as exc:  # noqa: BLE001 - recorded per query
            for o in owners:
                errors[o] = f"scoring failed: {type(exc).__name__}: {exc}"
            return [0] * len(questions)
        for group, res in zip(groups, results):
            for cand, steps_r in zip(group, res.rewards):
                cand.step_rewards = [float(r) for r in steps_r]
                cand.reward = float(aggregate_step_scores(steps_r, self.aggregation))
        return [int(res.reward_tokens) for res in results]

    def _score_results(self, questions, solutions, step_logprobs, mode="cot", *,
                       scorer) -> list[ScoreResult]:
        kwargs = {"step_logprobs": step_logprobs} if getattr(scorer, "uses_logprobs", False) else {}
        if getattr(scorer, "uses_prompt_mode", False):  # e.g. a verifier reads the mode's prompt
            kwargs["mode"] = [mode] * len(questions)
        if hasattr(scorer, "score_batch"):
            results = list(scorer.score_batch(questions, solutions, **kwargs))
        else:
            results = [scorer.score(q, sols, **{k: v[i] for k, v in kwargs.items()})
                       for i, (q, sols) in enumerate(zip(questions, solutions))]
        if len(results) != len(questions) or not all(
                isinstance(r, ScoreResult) for r in results):
            raise TypeError(
                f"{type(scorer).__name__} must return a ScoreResult(rewards, reward_tokens) "
                "from score() and one per question from score_batch()."
            )
        return results
