"""Pieces shared by the search families: step splitting, log-prob sharing, the beam record."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ANSWER_LINE_RE", "Beam", "split_logprobs", "split_steps"]

#: A step that states the final answer ends a beam: "Answer: <something>" or \boxed{.
ANSWER_LINE_RE = re.compile(
    r"answer\s*(?:is\s*)?[:：]\s*\S|answer\s+is\s+[-+$\\\d]|\\boxed\s*\{|^\s*####\s*\S",
    re.IGNORECASE | re.MULTILINE,
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


def split_logprobs(steps: list[str], logprobs) -> list[list[float]]:
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
class Beam:
    """One partial solution of a step-wise search: its steps so far and what they cost."""

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
