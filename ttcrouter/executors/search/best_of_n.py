"""Best-of-N: the selection rule that keeps the highest-reward sample of the pool."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...strategies import BestOfN
from . import register

__all__ = ["BestOfNSearch"]


@register(BestOfN)
class BestOfNSearch:
    """``n`` full samples in one request, scored by the step scorer; the best is kept."""

    @staticmethod
    def select(strategy, candidates: Sequence) -> int:
        """Index of the highest reward; ties (and NaN rewards, which never win) go first."""
        rewards = np.array([c.reward for c in candidates], dtype=float)
        return int(np.argmax(np.nan_to_num(rewards, nan=-np.inf)))
