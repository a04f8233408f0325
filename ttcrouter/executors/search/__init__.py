"""The registry of strategy families: each family registers itself with its spec class.

A family is a class registered with :func:`register` for a strategy spec class
(:class:`~ttcrouter.strategies.BestOfN`, ...). It provides one of two things:

- ``select(strategy, candidates) -> int``: the selection rule of a *parallel* family, which
  picks one of ``strategy.n`` full samples drawn in one request. :class:`StrategyExecutor`
  samples and scores the pool; the family only chooses.
- ``run(executor, strategy, queries, progress) -> list[ExecutionResult]``: a family that
  generates by itself (beam search), through the executor's public generation and scoring
  methods (:meth:`StrategyExecutor.generate_isolated`,
  :meth:`StrategyExecutor.score_isolated`).

:class:`~ttcrouter.executors.StrategyExecutor` dispatches on the spec through
:func:`search_for`; :func:`select_candidate` applies a parallel family's rule. This module
imports no family: the built-in ones (``best_of_n``, ``majority_vote``, ``beam_search``) are
imported by :mod:`ttcrouter.executors.runner`, which registers them.
"""

from __future__ import annotations

from typing import Sequence

from ...strategies import Strategy, as_strategy

__all__ = ["register", "search_for", "registered_families", "select_candidate"]

_REGISTRY: dict[type, type] = {}


def register(spec_type: type):
    """Class decorator: make ``family`` the family that runs strategies of ``spec_type``.

    Parameters
    ----------
    spec_type : type
        A subclass of :class:`~ttcrouter.strategies.Strategy`. Subclasses of ``spec_type``
        dispatch to the same family unless they register their own.

    Returns
    -------
    callable
        The decorator; it returns the family class unchanged.

    Raises
    ------
    TypeError
        If ``spec_type`` is not a Strategy subclass, or the family has neither ``select`` nor
        ``run``.
    ValueError
        If another family is already registered for ``spec_type``.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> from typing import ClassVar
    >>> from ttcrouter.strategies import Strategy
    >>> @dataclass(frozen=True)
    ... class FirstOfN(Strategy):
    ...     method: ClassVar[str] = "first_of_n"
    >>> @register(FirstOfN)
    ... class FirstOfNSearch:
    ...     @staticmethod
    ...     def select(strategy, candidates):
    ...         return 0
    >>> search_for(FirstOfN(2)) is FirstOfNSearch
    True
    """
    if not (isinstance(spec_type, type) and issubclass(spec_type, Strategy)):
        raise TypeError(f"register() takes a Strategy subclass, got {spec_type!r}.")

    def decorator(family):
        if getattr(family, "select", None) is None and getattr(family, "run", None) is None:
            raise TypeError(
                f"{getattr(family, '__name__', family)!r} defines neither select(strategy, "
                "candidates) nor run(executor, strategy, queries, progress)."
            )
        current = _REGISTRY.get(spec_type)
        if current is not None and current is not family:
            raise ValueError(
                f"{spec_type.__name__} already runs with {current.__name__}; one family per "
                "spec class."
            )
        _REGISTRY[spec_type] = family
        return family

    return decorator


def search_for(strategy) -> type:
    """The family registered for ``strategy`` (a spec, a spec class or a canonical name).

    Raises
    ------
    ValueError
        If no family is registered for the spec's class or any of its bases.
    """
    spec_type = strategy if isinstance(strategy, type) else type(as_strategy(strategy))
    for klass in spec_type.__mro__:
        family = _REGISTRY.get(klass)
        if family is not None:
            return family
    raise ValueError(
        f"No strategy family is registered for {spec_type.__name__}; decorate its family "
        "class with @ttcrouter.executors.search.register(...) and import its module."
    )


def registered_families() -> dict[type, type]:
    """A copy of the registry: spec class -> family class."""
    return dict(_REGISTRY)


def select_candidate(strategy, candidates: Sequence) -> int:
    """Index of the candidate a parallel strategy returns (its family's selection rule).

    - best-of-N: the highest reward; ties go to the first candidate.
    - majority voting: the most frequent normalised answer; ties go to the answer that
      appeared first; the first candidate with that answer is returned.
    - weighted majority voting: the answer with the largest sum of rewards; ties go to the
      answer that appeared first; its highest-reward candidate is returned.

    Candidates without an answer do not vote; when none has one, the first candidate is
    returned (its answer is None).

    Raises
    ------
    ValueError
        If ``candidates`` is empty, or the strategy's family has no selection rule over a pool
        of full samples (beam search).
    """
    strategy = as_strategy(strategy)
    if not candidates:
        raise ValueError("No candidates to select from.")
    family = search_for(strategy)
    select = getattr(family, "select", None)
    if select is None:
        raise ValueError(
            f"{strategy.name} is not a parallel strategy; its family generates step by step and "
            "cannot pick from a pool of full samples (run it with StrategyExecutor.execute)."
        )
    return int(select(strategy, candidates))
