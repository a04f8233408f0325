"""Test-time-compute strategy specs: immutable values with canonical names.

A strategy is a method (best-of-N, majority voting, weighted majority voting, PRM-guided
beam search) together with its budget. Each spec has a canonical string name, e.g.
``majority_vote@n=8`` or ``beam_search@n=8,w=4``, that :func:`parse_strategy` turns back
into the spec, and a numeric encoding that the probe reads beside the query embedding.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import ClassVar, Iterable

import numpy as np

__all__ = [
    "Strategy",
    "BestOfN",
    "MajorityVote",
    "WeightedMajorityVote",
    "BeamSearch",
    "METHODS",
    "parse_strategy",
    "as_strategy",
    "split_strategy_names",
    "encode_strategies",
    "default_strategy_space",
]

#: Method names in the order of the one-hot part of :func:`encode_strategies`.
METHODS = ("best_of_n", "majority_vote", "weighted_majority_vote", "beam_search")


def _check_positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an integer, got {value!r} ({type(value).__name__}).")
    if value < 1:
        raise ValueError(f"{what} must be >= 1, got {value}.")
    return int(value)


@dataclass(frozen=True)
class Strategy:
    """Base class of the strategy specs; use one of its subclasses.

    Parameters
    ----------
    n : int
        Number of candidate solutions the strategy generates in all.
    """

    n: int
    method: ClassVar[str] = ""
    #: Whether the candidates are sampled in parallel (one request) rather than step by step.
    parallel: ClassVar[bool] = True
    #: Whether the strategy needs a reward model (PRM) to score candidates.
    needs_reward_model: ClassVar[bool] = False

    def __post_init__(self):
        if type(self) is Strategy:
            raise TypeError("Strategy is abstract: use BestOfN, MajorityVote, "
                            "WeightedMajorityVote or BeamSearch.")
        object.__setattr__(self, "n", _check_positive_int(self.n, f"{type(self).__name__}.n"))

    @property
    def beam_width(self) -> int:
        """Expansion factor per kept beam; 1 for the parallel methods."""
        return 1

    @property
    def name(self) -> str:
        """Canonical name, e.g. ``majority_vote@n=8``."""
        return f"{self.method}@n={self.n}"

    def encode(self) -> np.ndarray:
        """Numeric features: method one-hot, log2(n), beam width."""
        return encode_strategies([self])[0]

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class BestOfN(Strategy):
    """Sample ``n`` full solutions in parallel and return the one the reward model ranks first."""

    method: ClassVar[str] = "best_of_n"
    needs_reward_model: ClassVar[bool] = True


@dataclass(frozen=True)
class MajorityVote(Strategy):
    """Sample ``n`` full solutions in parallel and return the most frequent final answer."""

    method: ClassVar[str] = "majority_vote"


@dataclass(frozen=True)
class WeightedMajorityVote(Strategy):
    """Sample ``n`` solutions; each answer scores the sum of its solutions' rewards."""

    method: ClassVar[str] = "weighted_majority_vote"
    needs_reward_model: ClassVar[bool] = True


@dataclass(frozen=True)
class BeamSearch(Strategy):
    """Reward-guided beam search over solution steps.

    Each step keeps the ``n // beam_width`` best partial solutions by reward and expands
    each of them ``beam_width`` ways, so ``n`` candidates are alive at every step.

    Parameters
    ----------
    n : int
        Number of candidates alive at each step.
    beam_width : int
        Expansions per kept beam; must divide ``n``.
    max_steps : int, default=8
        Step limit; beams still unfinished after it are scored as they are.
    """

    beam_width: int = 1
    max_steps: int = 8
    method: ClassVar[str] = "beam_search"
    parallel: ClassVar[bool] = False
    needs_reward_model: ClassVar[bool] = True

    DEFAULT_MAX_STEPS: ClassVar[int] = 8

    def __post_init__(self):
        super().__post_init__()
        w = _check_positive_int(self.beam_width, "BeamSearch.beam_width")
        steps = _check_positive_int(self.max_steps, "BeamSearch.max_steps")
        if self.n % w:
            raise ValueError(
                f"BeamSearch beam_width={w} must divide n={self.n}: each step keeps "
                f"n // beam_width beams and expands each beam_width ways. Choose n as a "
                f"multiple of beam_width, e.g. BeamSearch(n={w * max(1, self.n // w)}, "
                f"beam_width={w})."
            )
        object.__setattr__(self, "beam_width", w)
        object.__setattr__(self, "max_steps", steps)

    @property
    def n_beams(self) -> int:
        """Beams kept after each step."""
        return self.n // self.beam_width

    @property
    def name(self) -> str:
        name = f"{self.method}@n={self.n},w={self.beam_width}"
        if self.max_steps != self.DEFAULT_MAX_STEPS:
            name += f",steps={self.max_steps}"
        return name


_CLASSES = {cls.method: cls for cls in (BestOfN, MajorityVote, WeightedMajorityVote, BeamSearch)}
_PARAM_KEYS = {"n": "n", "w": "beam_width", "steps": "max_steps"}
_NAME_RE = re.compile(r"^\s*([a-z_]+)\s*@\s*(.+?)\s*$")


def parse_strategy(name: str) -> Strategy:
    """Turn a canonical strategy name back into its spec.

    Parameters
    ----------
    name : str
        A canonical name such as ``best_of_n@n=4`` or ``beam_search@n=8,w=4``.

    Returns
    -------
    Strategy

    Raises
    ------
    ValueError
        If the name is not of the form ``method@key=value,...`` with a known method.

    Examples
    --------
    >>> parse_strategy("beam_search@n=8,w=4")
    BeamSearch(n=8, beam_width=4, max_steps=8)
    >>> parse_strategy("majority_vote@n=8").name
    'majority_vote@n=8'
    """
    if isinstance(name, Strategy):
        return name
    if not isinstance(name, str):
        raise TypeError(f"A strategy name must be a string, got {type(name).__name__}: {name!r}.")
    match = _NAME_RE.match(name)
    if match is None:
        raise ValueError(
            f"Cannot parse strategy name {name!r}: expected 'method@n=N' (or "
            f"'beam_search@n=N,w=W'), with method one of {', '.join(METHODS)}."
        )
    method, params = match.groups()
    if method not in _CLASSES:
        raise ValueError(
            f"Unknown strategy method {method!r} in {name!r}; known methods: {', '.join(METHODS)}."
        )
    kwargs = {}
    for item in params.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in _PARAM_KEYS or not value.strip().isdigit():
            raise ValueError(
                f"Cannot parse parameter {item!r} in strategy name {name!r}: expected "
                f"key=integer with key in {sorted(_PARAM_KEYS)}."
            )
        kwargs[_PARAM_KEYS[key]] = int(value)
    cls = _CLASSES[method]
    if cls is not BeamSearch and set(kwargs) != {"n"}:
        raise ValueError(f"{method} takes only n, got {name!r}.")
    if "n" not in kwargs:
        raise ValueError(f"Strategy name {name!r} lacks n=...")
    return cls(**kwargs)


def split_strategy_names(text: str) -> list[str]:
    """Split a comma list of strategy names where beam names hold commas themselves.

    ``"majority_vote@n=1, beam_search@n=8,w=4"`` -> ``["majority_vote@n=1",
    "beam_search@n=8,w=4"]``: a piece without ``@`` continues the name before it.
    """
    names, current = [], ""
    for piece in text.split(","):
        piece = piece.strip()
        if not piece:
            continue
        if "@" in piece or not current:
            if current:
                names.append(current)
            current = piece
        else:
            current += "," + piece
    if current:
        names.append(current)
    return names


def as_strategy(value) -> Strategy:
    """Return ``value`` as a :class:`Strategy` (a spec passes through, a name is parsed)."""
    return value if isinstance(value, Strategy) else parse_strategy(value)


def encode_strategies(strategies: Iterable) -> np.ndarray:
    """Numeric encoding of strategies for the probe.

    Parameters
    ----------
    strategies : iterable of Strategy or str

    Returns
    -------
    ndarray of shape (n_strategies, len(METHODS) + 2), float32
        Method one-hot, ``log2(n)`` and the beam width (1 for parallel methods).
    """
    specs = [as_strategy(s) for s in strategies]
    out = np.zeros((len(specs), len(METHODS) + 2), dtype=np.float32)
    for i, spec in enumerate(specs):
        out[i, METHODS.index(spec.method)] = 1.0
        out[i, len(METHODS)] = math.log2(spec.n)
        out[i, len(METHODS) + 1] = spec.beam_width
    return out


def default_strategy_space(max_n: int = 16) -> list[Strategy]:
    """The default grid: the three parallel methods at N in {1, 2, 4, ..., max_n} plus beam
    search at ``BeamSearch(4, 2)`` and ``BeamSearch(8, 4)`` (17 strategies for ``max_n=16``).
    """
    max_n = _check_positive_int(max_n, "max_n")
    ns = [2**k for k in range(int(math.log2(max_n)) + 1)]
    space: list[Strategy] = []
    for cls in (MajorityVote, WeightedMajorityVote, BestOfN):
        space.extend(cls(n) for n in ns)
    space.extend(BeamSearch(n, w) for n, w in ((4, 2), (8, 4)) if n <= max_n)
    return space
