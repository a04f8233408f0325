"""Majority voting, plain and reward-weighted: selection rules over a pool of full samples."""

from __future__ import annotations

from typing import Sequence

from ...strategies import MajorityVote, WeightedMajorityVote
from . import register

__all__ = ["MajorityVoteSearch", "WeightedMajorityVoteSearch", "vote"]


def vote(candidates: Sequence, weighted: bool) -> int:
    """Index of the candidate a (weighted) vote over normalised answers returns.

    Plain: the most frequent answer wins, ties to the answer seen first, and its first
    candidate is returned. Weighted: the answer with the largest sum of rewards wins, ties to
    the answer seen first, and its highest-reward candidate (ties: the first) is returned.
    Candidates without an answer do not vote; when none has one, the first is returned.
    """
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


@register(MajorityVote)
class MajorityVoteSearch:
    """``n`` full samples in one request, unscored; the most frequent answer wins."""

    @staticmethod
    def select(strategy, candidates: Sequence) -> int:
        return vote(candidates, weighted=False)


@register(WeightedMajorityVote)
class WeightedMajorityVoteSearch:
    """``n`` full samples in one request, scored; each answer weighs its samples' rewards."""

    @staticmethod
    def select(strategy, candidates: Sequence) -> int:
        return vote(candidates, weighted=True)
