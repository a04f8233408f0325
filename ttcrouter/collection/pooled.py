"""The pooled estimator: every parallel strategy's row derived from one pool of samples.

Best-of-N, majority voting and weighted majority voting at every N are *derived* from one
pool: for each (query, repeat), :meth:`StrategyExecutor.sample_pool
<ttcrouter.executors.StrategyExecutor.sample_pool>` draws M i.i.d. samples (M =
``pool_size``, default the largest N of the parallel strategies) in one batched request,
each with its extracted answer, token count and reward score. The row of a parallel
strategy with budget N in repeat r uses the **first N samples of repeat r's pool**
(:func:`derive_pooled`); its ``tokens`` are the generated tokens of those N samples, its
``reward_tokens`` those the reward model read for them.

What this estimator means: the samples of a pool are exchangeable (i.i.d. given the
query), so the first N are distributed exactly as N fresh samples. Every row therefore has
the same distribution as an independent execution of its strategy, repeats are independent
of each other (each repeat draws its own pool), and the soft label (mean of ``correct``
over repeats) of every (query, strategy) cell is unbiased with the same variance as with
independent runs. What differs from independent runs is the *joint* distribution across
strategies within a repeat: ``majority_vote@n=4`` and ``best_of_n@n=4`` vote over the same
four samples, and ``@n=8`` extends them. Differences between strategies are thus estimated
with common random numbers (lower variance than independent runs), and the errors of
neighbouring cells are positively correlated. Cost: M samples per (query, repeat) instead
of 3 * (1 + 2 + ... + M) for the grid {1, 2, ..., M} of the three methods run separately
(5.8x fewer for M = 16; see docs/bench_collect.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..strategies import as_strategy

__all__ = ["PooledResult", "derive_pooled"]


@dataclass
class PooledResult:
    """What a parallel strategy returns when run on the first N samples of a pool."""

    answer: str | None
    tokens: int
    reward_tokens: int
    n_samples: int
    max_candidate_tokens: int


def derive_pooled(pool, strategies) -> dict:
    """Results of parallel strategies on prefixes of one pool of samples.

    A strategy with budget N is applied to the first N candidates of the pool with
    :meth:`CandidatePool.select <ttcrouter.executors.CandidatePool.select>` (the selection
    rule of a direct execution): majority voting takes the most frequent normalised answer,
    weighted majority voting the answer with the largest sum of rewards, best-of-N the
    highest-reward candidate; ties go to the earliest candidate, candidates without an
    answer do not vote.

    Parameters
    ----------
    pool : CandidatePool
        The pool, candidates in sampling order.
    strategies : iterable of Strategy or str
        Parallel strategies with ``n <= len(pool.candidates)``.

    Returns
    -------
    dict
        Canonical strategy name -> :class:`PooledResult`: the answer, the generated tokens
        of the N samples used, the reward-model tokens spent on them (the pool's reward
        tokens pro rata; 0 for majority voting), N, and the longest of the N samples in
        tokens (the feature of the latency model).

    Raises
    ------
    ValueError
        A strategy is not parallel, needs more samples than the pool holds, or its
        selection failed.
    """
    out = {}
    n_pool = len(pool.candidates)
    for s in strategies:
        spec = as_strategy(s)
        if not spec.parallel:
            raise ValueError(f"{spec.name} is not a parallel strategy; it cannot be derived "
                             f"from a pool.")
        if spec.n > n_pool:
            raise ValueError(f"{spec.name} needs {spec.n} samples but the pool holds "
                             f"{n_pool}; raise pool_size.")
        res = pool.select(spec, range(spec.n))
        if res.error:
            raise ValueError(res.error)
        used = pool.candidates[: spec.n]
        out[spec.name] = PooledResult(
            answer=None if res.answer is None else str(res.answer),
            tokens=int(res.tokens),
            reward_tokens=int(res.reward_tokens),
            n_samples=spec.n,
            max_candidate_tokens=int(max(c.tokens for c in used)),
        )
    return out
