"""Early-stopping votes: sample in rounds of ``batch``, stop once the leading answer is confident.

The stopping rule (:func:`should_stop`) and the walk over rounds (:func:`adaptive_prefix`)
are pure functions of the samples in drawing order, shared by the live execution here and by
the derivation from a samples table (:func:`ttcrouter.samples.derive_runs`): given the same
samples, both stop after the same number.

The rule is a share threshold: after each round, stop when the leading answer holds at
least ``threshold`` of the samples drawn so far (samples without an answer count in the
denominator) and at least two votes. We chose it over a Beta/Dirichlet posterior rule
(adaptive consistency, early-stopping self-consistency) because its one parameter reads
directly as "how unanimous", the probe's encoding takes it as it is, and with rounds of
2-4 samples and at most 16 samples the posterior rules stop after the same rounds for
matching thresholds on all but a few vote counts; a posterior rule is one more function
here and one more key in the name.
"""

from __future__ import annotations

import time
from typing import Sequence

from ...strategies import AdaptiveVote
from ..results import Candidate, ExecutionResult
from . import register
from .majority_vote import vote
from .utils import split_steps

__all__ = ["AdaptiveVoteSearch", "should_stop", "adaptive_prefix"]


def should_stop(strategy: AdaptiveVote, answers: Sequence) -> bool:
    """Whether the vote stops after the samples whose normalised answers are ``answers``.

    True when ``n`` samples are drawn, or the leading answer has at least two votes and at
    least ``threshold`` of the drawn samples (None answers count as drawn, never as votes).
    """
    drawn = len(answers)
    if drawn >= strategy.n:
        return True
    counts: dict = {}
    for a in answers:
        if a is not None:
            counts[a] = counts.get(a, 0) + 1
    lead = max(counts.values(), default=0)
    return lead >= 2 and lead >= strategy.threshold * drawn


def adaptive_prefix(strategy: AdaptiveVote, candidates: Sequence) -> tuple[int, int]:
    """Walk a pool in rounds of ``batch``: ``(samples drawn, index of the returned one)``.

    Parameters
    ----------
    strategy : AdaptiveVote
    candidates : sequence
        Objects with ``normalized`` answers, in drawing order: a pool of at least
        ``strategy.n``, or at least the samples a live run drew before it stopped.

    Returns
    -------
    drawn : int
        ``k * batch`` for the first round ``k`` after which :func:`should_stop` holds.
    index : int
        The majority vote over the first ``drawn`` candidates.
    """
    drawn = strategy.batch
    while drawn <= len(candidates):
        if should_stop(strategy, [c.normalized for c in candidates[:drawn]]):
            return drawn, vote(candidates[:drawn], weighted=False)
        drawn += strategy.batch
    raise ValueError(f"{strategy.name} has not stopped after the {len(candidates)} samples "
                     f"of the pool; it needs more (at most {strategy.n}).")


@register(AdaptiveVote)
class AdaptiveVoteSearch:
    """Rounds of ``batch`` samples per query, each round one request, until the vote stops."""

    @staticmethod
    def run(executor, strategy: AdaptiveVote, queries, progress=False) -> list[ExecutionResult]:
        """Run the early-stopping vote on ``queries``; one generation call per round.

        Every query still voting takes part in a round's call. A query's ``tokens`` are the
        samples it drew, ``prompt_tokens`` its requests' prompts, ``steps`` its rounds and
        ``latency_s`` the sum of the wall times of the rounds it took part in. Each candidate
        records its ``round`` and the wall time of that round's call
        (``request_latency_s``).
        """
        _, max_tokens, stop = executor.mode_request("", strategy.mode)
        errors = executor.query_errors(queries)
        live = [i for i in range(len(queries)) if i not in errors]
        cands = {i: [] for i in live}
        prompt_tokens = {i: 0 for i in live}
        latency = {i: 0.0 for i in live}
        rounds = {i: 0 for i in live}
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=strategy.max_rounds, desc=strategy.name)
        with executor.using_system_prompt(strategy.mode):
            for k in range(strategy.max_rounds):
                active = [i for i in live if i not in errors and not (cands[i] and should_stop(
                    strategy, [c.normalized for c in cands[i]]))]
                if not active:
                    break
                t0 = time.perf_counter()
                comps = executor.generate_isolated(
                    [executor.mode_request(queries[i], strategy.mode)[0] for i in active],
                    active, errors, n=strategy.batch, max_tokens=max_tokens, stop=stop)
                wall = time.perf_counter() - t0
                for i, cs in zip(active, comps):
                    latency[i] += wall
                    if cs is None or i in errors:
                        continue
                    rounds[i] = k + 1
                    prompt_tokens[i] += int(cs[0].prompt_tokens) if cs else 0
                    for c in cs:
                        cands[i].append(Candidate.from_text(
                            c.text, split_steps(c.text, executor.step_delimiter), c.tokens,
                            finish_reason=c.finish_reason, round=k, request_latency_s=wall))
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        out = []
        for i, q in enumerate(queries):
            if i in errors:
                out.append(ExecutionResult(strategy.name, q if isinstance(q, str) else str(q),
                                           error=errors[i], latency_s=latency.get(i, 0.0)))
                continue
            chosen = cands[i][vote(cands[i], weighted=False)]
            out.append(ExecutionResult(
                strategy=strategy.name, query=q, answer=chosen.answer, text=chosen.text,
                tokens=sum(c.tokens for c in cands[i]), prompt_tokens=prompt_tokens[i],
                latency_s=latency[i], steps=rounds[i], candidates=cands[i]))
        return out
