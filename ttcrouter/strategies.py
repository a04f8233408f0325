"""Test-time-compute strategy specs: immutable values with canonical names.

A strategy is a method (best-of-N, majority voting, weighted majority voting, PRM-guided
beam search, early-stopping votes) together with its budget and prompt mode. Each spec has a
canonical string name, e.g. ``majority_vote@n=8``, ``beam_search@n=8,w=4`` or
``adaptive_vote@n=16,b=4,t=0.75,mode=direct``, that :func:`parse_strategy` turns back into
the spec, and a numeric encoding that the probe reads beside the query embedding. The default
prompt mode ``cot`` is left out of names, so names written before modes existed still mean
the same strategy. So is the default scorer: a strategy that reads rewards names its scorer
only when it is not the executor's default (``best_of_n@n=16,scorer=verifier`` ranks by a
:class:`~ttcrouter.TrainedVerifier`, ``best_of_n@n=16`` by the executor's own scorer).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import ClassVar, Iterable

import numpy as np

__all__ = [
    "Strategy",
    "BestOfN",
    "MajorityVote",
    "WeightedMajorityVote",
    "BeamSearch",
    "AdaptiveVote",
    "METHODS",
    "MODES",
    "encoding_scheme",
    "parse_strategy",
    "as_strategy",
    "split_strategy_names",
    "encode_strategies",
    "default_strategy_space",
]

#: Method names in the order of the one-hot part of :func:`encode_strategies` (scheme 1).
#: ``adaptive_vote`` has its own column in the columns scheme 2 appends.
METHODS = ("best_of_n", "majority_vote", "weighted_majority_vote", "beam_search")
#: Prompt modes: ``cot`` (step by step, the default) and ``direct`` (the final answer only).
MODES = ("cot", "direct")
DEFAULT_MODE = "cot"
#: Named scorers a strategy may ask for (``scorer=...``); None is the executor's own scorer
#: (:class:`~ttcrouter.executors.LogprobScorer` unless it is given another).
SCORERS = ("verifier",)


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
        Number of candidate solutions the strategy generates in all (at most, for an
        early-stopping vote).
    mode : {"cot", "direct"}, default="cot"
        Prompt mode (keyword only): ``cot`` asks for step-by-step reasoning, ``direct`` for
        the final answer alone. The executor maps each mode to a system prompt.
    scorer : {"verifier"} or None, default=None
        Scorer of the rewards (keyword only; strategies that read rewards only): None is the
        executor's own ``scorer``; ``"verifier"`` is its ``scorers["verifier"]``, a
        :class:`~ttcrouter.executors.VerifierScorer`, and a samples table's
        ``score_verifier`` column.
    """

    n: int
    mode: str = field(default=DEFAULT_MODE, kw_only=True)
    scorer: str | None = field(default=None, kw_only=True)
    method: ClassVar[str] = ""
    #: Whether the candidates are sampled in parallel (one request) rather than step by step.
    parallel: ClassVar[bool] = True
    #: Whether the strategy needs a reward model (PRM) to score candidates.
    needs_reward_model: ClassVar[bool] = False
    #: Whether its runs can be derived from a pool of full samples drawn in order
    #: (:func:`ttcrouter.samples.derive_runs`); beam search cannot.
    derivable: ClassVar[bool] = True

    def __post_init__(self):
        if type(self) is Strategy:
            raise TypeError("Strategy is abstract: use BestOfN, MajorityVote, "
                            "WeightedMajorityVote or BeamSearch.")
        object.__setattr__(self, "n", _check_positive_int(self.n, f"{type(self).__name__}.n"))
        if self.mode not in MODES:
            raise ValueError(f"{type(self).__name__}.mode must be one of {', '.join(MODES)}, "
                             f"got {self.mode!r}.")
        if self.scorer is not None:
            if not self.needs_reward_model:
                raise ValueError(f"{type(self).__name__} reads no rewards, so it takes no "
                                 f"scorer (got scorer={self.scorer!r}).")
            if self.scorer not in SCORERS:
                raise ValueError(f"{type(self).__name__}.scorer must be None (the executor's "
                                 f"own scorer) or one of {', '.join(SCORERS)}, got "
                                 f"{self.scorer!r}.")

    @property
    def suffix(self) -> str:
        """``",mode=<mode>"`` and ``",scorer=<scorer>"`` where not the defaults, else ``""``."""
        return self.mode_suffix + ("" if self.scorer is None else f",scorer={self.scorer}")

    @property
    def mode_suffix(self) -> str:
        """``",mode=<mode>"`` for a non-default mode, else ``""`` (names stay as before)."""
        return "" if self.mode == DEFAULT_MODE else f",mode={self.mode}"

    @property
    def beam_width(self) -> int:
        """Expansion factor per kept beam; 1 for the parallel methods."""
        return 1

    @property
    def name(self) -> str:
        """Canonical name, e.g. ``majority_vote@n=8``, ``majority_vote@n=8,mode=direct`` or
        ``best_of_n@n=8,mode=direct,scorer=verifier``."""
        return f"{self.method}@n={self.n}{self.suffix}"

    def encode(self) -> np.ndarray:
        """Numeric features of this strategy alone (``encode_strategies([self])``: the scheme
        it needs; encode a whole space with :func:`encode_strategies`)."""
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
    derivable: ClassVar[bool] = False
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
        return name + self.suffix


@dataclass(frozen=True)
class AdaptiveVote(Strategy):
    """Early-stopping majority vote: sample in rounds of ``batch``, stop once confident.

    Each round is one request of ``batch`` samples of the same prompt (the prefix cache makes
    the repeated prompt cheap). After each round the leading answer's share of the samples
    drawn so far is compared with ``threshold``; the vote stops when the share reaches it
    (with at least two votes for the leader) or when ``n`` samples are drawn, and returns
    the majority answer of the samples drawn. Tokens are the samples actually drawn; latency
    is the sum of the rounds (the rounds are sequential).

    Parameters
    ----------
    n : int
        Most samples drawn; a multiple of ``batch``.
    batch : int, default=4
        Samples per round (one request).
    threshold : float, default=0.75
        Share of the drawn samples the leading answer needs to stop, in (0, 1].
    """

    batch: int = 4
    threshold: float = 0.75
    method: ClassVar[str] = "adaptive_vote"
    parallel: ClassVar[bool] = False

    def __post_init__(self):
        super().__post_init__()
        b = _check_positive_int(self.batch, "AdaptiveVote.batch")
        if self.n % b:
            raise ValueError(f"AdaptiveVote batch={b} must divide n={self.n}: the vote draws "
                             f"whole rounds of batch samples.")
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float, np.floating)) \
                or not 0 < float(t) <= 1:
            raise ValueError(f"AdaptiveVote.threshold must be a number in (0, 1], got {t!r}.")
        object.__setattr__(self, "batch", b)
        object.__setattr__(self, "threshold", float(t))

    @property
    def max_rounds(self) -> int:
        """Rounds drawn when the vote never stops early."""
        return self.n // self.batch

    @property
    def name(self) -> str:
        """Canonical name, e.g. ``adaptive_vote@n=16,b=4,t=0.75`` (``,mode=direct`` last)."""
        return (f"{self.method}@n={self.n},b={self.batch},t={self.threshold:g}"
                + self.mode_suffix)


_CLASSES = {cls.method: cls for cls in (BestOfN, MajorityVote, WeightedMajorityVote, BeamSearch,
                                        AdaptiveVote)}
#: name key -> (field, parser) per method; every method takes n and mode.
_INT = int
_PARAM_KEYS = {"n": ("n", _INT), "mode": ("mode", str), "scorer": ("scorer", str)}
_EXTRA_KEYS = {
    "beam_search": {"w": ("beam_width", _INT), "steps": ("max_steps", _INT)},
    "adaptive_vote": {"b": ("batch", _INT), "t": ("threshold", float)},
}
_NAME_RE = re.compile(r"^\s*([a-z_]+)\s*@\s*(.+?)\s*$")
_VALUE_RE = {_INT: re.compile(r"^\d+$"), float: re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)$"),
             str: re.compile(r"^[a-z][a-z0-9_]*$")}


def parse_strategy(name: str) -> Strategy:
    """Turn a canonical strategy name back into its spec.

    Parameters
    ----------
    name : str
        A canonical name such as ``best_of_n@n=4``, ``beam_search@n=8,w=4``,
        ``majority_vote@n=4,mode=direct`` or ``adaptive_vote@n=16,b=4,t=0.75``.

    Returns
    -------
    Strategy

    Raises
    ------
    ValueError
        If the name is not of the form ``method@key=value,...`` with a known method and
        keys that method takes.

    Examples
    --------
    >>> parse_strategy("beam_search@n=8,w=4")
    BeamSearch(n=8, mode='cot', beam_width=4, max_steps=8)
    >>> parse_strategy("majority_vote@n=8").name
    'majority_vote@n=8'
    >>> parse_strategy("adaptive_vote@n=16,b=4,t=0.75,mode=direct").name
    'adaptive_vote@n=16,b=4,t=0.75,mode=direct'
    >>> parse_strategy("best_of_n@n=16,scorer=verifier").scorer
    'verifier'
    """
    if isinstance(name, Strategy):
        return name
    if not isinstance(name, str):
        raise TypeError(f"A strategy name must be a string, got {type(name).__name__}: {name!r}.")
    match = _NAME_RE.match(name)
    if match is None:
        raise ValueError(
            f"Cannot parse strategy name {name!r}: expected 'method@n=N' (or "
            f"'beam_search@n=N,w=W', 'adaptive_vote@n=N,b=B,t=T'), with method one of "
            f"{', '.join(_CLASSES)}."
        )
    method, params = match.groups()
    if method not in _CLASSES:
        raise ValueError(
            f"Unknown strategy method {method!r} in {name!r}; known methods: "
            f"{', '.join(_CLASSES)}."
        )
    keys = {**_PARAM_KEYS, **_EXTRA_KEYS.get(method, {})}
    kwargs = {}
    for item in params.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in keys or not _VALUE_RE[keys[key][1]].match(value):
            raise ValueError(
                f"Cannot parse parameter {item!r} in strategy name {name!r}: {method} takes "
                f"{', '.join(sorted(keys))} (key=value)."
            )
        field_name, convert = keys[key]
        kwargs[field_name] = convert(value)
    if "n" not in kwargs:
        raise ValueError(f"Strategy name {name!r} lacks n=...")
    return _CLASSES[method](**kwargs)


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


#: Columns scheme 2 appends to scheme 1: adaptive vote, log2(batch), threshold, direct mode.
EXTRA_ENCODING = ("adaptive_vote", "log2_batch", "threshold", "direct")
#: Columns scheme 3 appends to scheme 2: one flag per named scorer of :data:`SCORERS`.
SCORER_ENCODING = tuple(f"scorer_{name}" for name in SCORERS)


def _scheme_of(spec: Strategy) -> int:
    if spec.scorer is not None:
        return 3
    return 2 if spec.method not in METHODS or spec.mode != DEFAULT_MODE else 1


def encoding_scheme(strategies: Iterable) -> int:
    """The encoding scheme a strategy space needs: 1 (the original), 2 when it holds an
    early-stopping vote or a non-default prompt mode, 3 when a strategy names its scorer."""
    return max((_scheme_of(as_strategy(s)) for s in strategies), default=1)


def encode_strategies(strategies: Iterable, scheme: int | None = None) -> np.ndarray:
    """Numeric encoding of strategies for the probe.

    Scheme 1 (``len(METHODS) + 2`` columns) is the encoding routers were always trained
    on: method one-hot, ``log2(n)``, the beam width (1 for parallel methods). Scheme 2
    appends :data:`EXTRA_ENCODING`: an early-stopping-vote flag, ``log2(batch)`` and the
    threshold (0 for other methods), and a ``direct``-mode flag; scheme 3 appends
    :data:`SCORER_ENCODING`, a flag per named scorer (all 0 for the executor's own). The scheme a space gets by
    default is the smallest that tells its strategies apart (:func:`encoding_scheme`), so a
    space of the original strategies is encoded exactly as before, and a fitted router keeps
    the encoding it was trained on (``UtilityRouter.strategy_encoding_``).

    Parameters
    ----------
    strategies : iterable of Strategy or str
    scheme : {1, 2, 3} or None, default=None
        None: :func:`encoding_scheme` of ``strategies``.

    Returns
    -------
    ndarray of shape (n_strategies, len(METHODS) + 2), (..., len(METHODS) + 6) or
    (..., len(METHODS) + 6 + len(SCORERS)), float32

    Raises
    ------
    ValueError
        A scheme too small for a strategy (e.g. ``scheme=1`` for a ``direct`` one).
    """
    specs = [as_strategy(s) for s in strategies]
    if scheme is None:
        scheme = encoding_scheme(specs)
    if scheme not in (1, 2, 3):
        raise ValueError(f"scheme must be 1, 2 or 3, got {scheme!r}.")
    base = len(METHODS) + 2
    width = base + (len(EXTRA_ENCODING) if scheme >= 2 else 0) \
        + (len(SCORER_ENCODING) if scheme == 3 else 0)
    out = np.zeros((len(specs), width), dtype=np.float32)
    for i, spec in enumerate(specs):
        if _scheme_of(spec) > scheme:
            raise ValueError(f"{spec.name} needs encoding scheme {_scheme_of(spec)} (scheme "
                             f"{scheme} has no column for its method, prompt mode or scorer).")
        if spec.method in METHODS:
            out[i, METHODS.index(spec.method)] = 1.0
        out[i, len(METHODS)] = math.log2(spec.n)
        out[i, len(METHODS) + 1] = spec.beam_width
        if scheme >= 2:
            if isinstance(spec, AdaptiveVote):
                out[i, base:base + 3] = (1.0, math.log2(spec.batch), spec.threshold)
            out[i, base + 3] = float(spec.mode == "direct")
        if scheme == 3 and spec.scorer is not None:
            out[i, base + len(EXTRA_ENCODING) + SCORERS.index(spec.scorer)] = 1.0
    return out


#: Early-stopping configurations ``(batch, threshold)`` of :func:`default_strategy_space`'s
#: ``adaptive=True``, at ``n = max_n``.
ADAPTIVE_CONFIGS = ((4, 0.5), (4, 0.75), (2, 1.0))


def default_strategy_space(max_n: int = 16, *, modes=(DEFAULT_MODE,),
                           adaptive: bool = False,
                           single_sample_once: bool = True) -> list[Strategy]:
    """The default grid, each execution once.

    One sample is one execution whatever rule would vote over it, so the single sample is
    held once, as ``majority_vote@n=1``; then majority, weighted majority and best-of-N at
    N in {2, 4, ..., max_n}; with ``adaptive``, the early-stopping votes of
    :data:`ADAPTIVE_CONFIGS` at ``n = max_n``; all of them in every prompt mode of
    ``modes``; and beam search ``BeamSearch(4, 2)`` and ``BeamSearch(8, 4)`` in the default
    mode (15 strategies for the defaults). ``best_of_n@n=1`` and
    ``weighted_majority_vote@n=1`` stay valid names (tables that hold them still load); they
    name the same execution as ``majority_vote@n=1``.

    Parameters
    ----------
    max_n : int, default=16
    modes : sequence of str, default=("cot",)
        Prompt modes of the pooled strategies, e.g. ``("cot", "direct")``.
    adaptive : bool, default=False
        Add the early-stopping votes of :data:`ADAPTIVE_CONFIGS` (those whose batch
        divides ``max_n``).
    single_sample_once : bool, default=True
        False gives the grid before single samples were held once (the three methods at
        N = 1 too: 17 strategies), the grid of the shipped runs table and of
        :func:`ttcrouter.synthetic.make_synthetic_runs`.
    """
    max_n = _check_positive_int(max_n, "max_n")
    ns = [2**k for k in range(1, int(math.log2(max_n)) + 1)]
    space: list[Strategy] = []
    for mode in modes:
        if single_sample_once:
            space.append(MajorityVote(1, mode=mode))
        for cls in (MajorityVote, WeightedMajorityVote, BestOfN):
            space.extend(cls(n, mode=mode) for n in ([] if single_sample_once else [1]) + ns)
        if adaptive:
            space.extend(AdaptiveVote(max_n, batch=b, threshold=t, mode=mode)
                         for b, t in ADAPTIVE_CONFIGS if max_n % b == 0 and b < max_n)
    space.extend(BeamSearch(n, w) for n, w in ((4, 2), (8, 4)) if n <= max_n)
    return space
