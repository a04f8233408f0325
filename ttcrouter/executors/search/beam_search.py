"""Step-wise beam search guided by the step scorer, each query with its own beam pool.

Each step ends at the step delimiter (a stop string). The first step samples ``n`` beams per
query; every later step expands each of the ``n // beam_width`` best unfinished beams (by
reward) ``beam_width`` ways. A beam finishes at end of sequence, at the candidate's token
budget, or when a step states the answer. Every generated token is counted, pruned beams
included; every step's prompt (the query and the beam's prefix) is counted once per request.
"""

from __future__ import annotations

import time

from ...strategies import BeamSearch
from ..base import GenerationRequest
from ..results import Candidate, ExecutionResult
from . import register
from .utils import ANSWER_LINE_RE, Beam

__all__ = ["BeamSearchFamily", "beam_done", "best_finished"]


def beam_done(beam: Beam, comp, max_tokens: int) -> tuple[bool, str]:
    """Whether ``beam`` (just extended by completion ``comp``) is finished, and why."""
    text = comp.text
    if comp.finish_reason != "length" and comp.stop_reason is None:
        return True, "stop"  # end of sequence: the model finished its answer
    if beam.tokens >= max_tokens:
        return True, "length"  # token budget of the candidate spent
    if ANSWER_LINE_RE.search(text) or not text.strip() and comp.tokens == 0:
        return True, comp.finish_reason or "stop"
    return False, comp.finish_reason or "stop"


def best_finished(candidates) -> int | None:
    """Index of the highest-reward finished candidate (any, if none finished); ties go first."""
    if not candidates:
        return None
    done = [k for k, c in enumerate(candidates) if c.finished] or list(range(len(candidates)))
    return max(done, key=lambda k: (candidates[k].reward, -k))


@register(BeamSearch)
class BeamSearchFamily:
    """Beam search: one generation call and one scorer call per step, for all queries."""

    @staticmethod
    def run(executor, strategy: BeamSearch, queries, progress=False) -> list[ExecutionResult]:
        """Run ``strategy`` on ``queries`` with ``executor``'s generator and scorer.

        Returns
        -------
        list of ExecutionResult
            One per query; ``latency_s`` is the wall time of the whole batch, ``steps`` the
            rounds that query took part in.
        """
        n, width = strategy.n, strategy.beam_width
        n_beams = strategy.n_beams
        max_steps = executor.max_steps if executor.max_steps is not None else strategy.max_steps
        delim = executor.step_delimiter
        scorer = executor.scorer_for(strategy)
        want_logprobs = bool(getattr(scorer, "uses_logprobs", False))
        errors = executor.query_errors(queries)
        live = [i for i in range(len(queries)) if i not in errors]
        tokens = {i: 0 for i in live}
        prompt_tokens = {i: 0 for i in live}
        reward_tokens = {i: 0 for i in live}
        steps_run = {i: 0 for i in live}
        finished: dict[int, list[Beam]] = {i: [] for i in live}
        active: dict[int, list[Beam]] = {i: [] for i in live}
        # Requests of the first step: one per query, n samples; later: one per kept beam.
        parents: list[tuple[int, Beam | None]] = [(i, None) for i in live]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=max_steps, desc=strategy.name)
        start = time.perf_counter()
        with executor.using_system_prompt(strategy.mode):
            for step in range(1, max_steps + 1):
                if not parents:
                    break
                owners = [qi for qi, _ in parents]
                requests = [GenerationRequest(queries[qi], prefix=b.text if b else "")
                            for qi, b in parents]
                comps = executor.generate_isolated(
                    requests, owners, errors, n=n if step == 1 else width,
                    max_tokens=min(executor.step_max_tokens, executor.max_tokens),
                    stop=[delim], logprobs=want_logprobs,
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
                        child = Beam(
                            steps=(parent.steps if parent else []) + [text],
                            step_logprobs=(parent.step_logprobs if parent else [])
                            + [list(c.logprobs or [])],
                            tokens=(parent.tokens if parent else 0) + int(c.tokens),
                        )
                        child.finished, child.finish_reason = beam_done(
                            child, c, executor.max_tokens)
                        active[qi].append(child)
                # Score every beam of this step, all queries in one scorer call.
                stepped = set(owners)
                order = [qi for qi in live if qi in stepped and qi not in errors and active[qi]]
                if order:
                    spent = executor.score_isolated(
                        [queries[qi] for qi in order], [active[qi] for qi in order],
                        order, errors, mode=strategy.mode, scorer=scorer,
                    )
                    for qi, nt in zip(order, spent):
                        reward_tokens[qi] += nt
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
            cands = [
                Candidate.from_text(
                    b.text, list(b.steps), b.tokens, reward=b.reward,
                    step_rewards=b.step_rewards, finish_reason=b.finish_reason,
                    finished=b.finished, step_logprobs=b.step_logprobs,
                )
                for b in finished[i] + active[i]
            ]
            k = best_finished(cands)
            best = cands[k] if k is not None else None
            out.append(ExecutionResult(
                strategy=strategy.name, query=q, answer=best.answer if best else None,
                text=best.text if best else "", tokens=tokens[i],
                prompt_tokens=prompt_tokens[i], reward_tokens=reward_tokens[i],
                latency_s=elapsed, steps=steps_run[i], candidates=cands,
            ))
        return out
