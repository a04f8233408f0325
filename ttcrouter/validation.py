"""Validate what estimators receive: strategy names and (query, strategy) matrices.

:class:`~ttcrouter.router.UtilityRouter` and :class:`~ttcrouter.tuning.UtilityRouterCV`
check their inputs with these functions, so both raise the same errors.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.utils import check_scalar

from .strategies import parse_strategy

__all__ = ["canonical_names", "check_strategy_names", "check_strategy_matrix", "check_int"]


def check_int(value, name, *, min_val, hint=""):
    """Check that ``value`` is an integer >= ``min_val`` (:func:`sklearn.utils.check_scalar`).

    Unlike ``check_scalar``, a bool or a float is a ValueError too, as these callers always
    raised.

    Parameters
    ----------
    value : object
    name : str
        The parameter's name in the message.
    min_val : int
    hint : str, default=""
        A sentence appended to the message.

    Returns
    -------
    int
    """
    try:
        if isinstance(value, bool):
            raise TypeError(f"{name} must be an integer, not a bool ({value!r}).")
        check_scalar(value, name, Integral, min_val=min_val)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{exc} {hint}".rstrip()) from None
    return int(value)


def canonical_names(names, what="strategies"):
    """Canonical strategy names of ``names``, in order; ValueError on a bad or repeated one.

    Parameters
    ----------
    names : iterable of str or Strategy
    what : str, default="strategies"
        How error messages call ``names``.

    Returns
    -------
    list of str
    """
    out = []
    for s in names:
        try:
            out.append(parse_strategy(s).name)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{what} holds {s!r}, which is not a strategy name ({exc}). Use canonical names "
                f"such as 'majority_vote@n=8' or 'beam_search@n=8,w=4'."
            ) from None
    if len(set(out)) != len(out):
        dup = sorted({n for n in out if out.count(n) > 1})
        raise ValueError(f"{what} names {dup} more than once.")
    return out


def check_strategy_names(Y, strategies=None):
    """The strategy names of the columns of ``Y``: ``strategies``, or a DataFrame's columns.

    Parameters
    ----------
    Y : DataFrame or array-like of shape (n_queries, n_strategies)
    strategies : list of str, default=None
        Names of the columns of an array ``Y``; with a DataFrame ``Y``, the subset (and
        order) of its columns to use.

    Returns
    -------
    list of str
        Canonical names.
    """
    if not isinstance(Y, pd.DataFrame) and np.ndim(Y) != 2:
        raise ValueError(
            f"Y must be 2-D (n_queries, n_strategies), got shape {np.shape(Y)}. A router "
            f"learns from every strategy's outcome on every query: pass a DataFrame with "
            f"strategy-name columns (e.g. aggregate_runs(runs).Y)."
        )
    if strategies is not None:
        names = canonical_names(list(strategies), "strategies")
    elif isinstance(Y, pd.DataFrame):
        names = canonical_names([str(c) for c in Y.columns], "the columns of Y")
    else:
        raise ValueError(
            "Y is an array without strategy names: pass Y as a DataFrame whose columns "
            "are strategy names (e.g. aggregate_runs(runs).Y), or set "
            "UtilityRouter(strategies=[...]) to name its columns."
        )
    if not names:
        raise ValueError("The router needs at least one strategy.")
    return names


def check_strategy_matrix(M, what, names, n_rows, *, bounded=False):
    """``M`` as a float (n_rows, len(names)) array in the column order ``names``.

    Parameters
    ----------
    M : DataFrame or array-like of shape (n_queries, n_strategies)
        Accuracies, tokens or latencies. DataFrame columns are strategy names.
    what : str
        Its name in error messages (``"Y"``, ``"tokens"``, ``"latency"``).
    names : list of str
        Canonical strategy names, in the wanted column order.
    n_rows : int
        Number of queries.
    bounded : bool, default=False
        True for accuracies (in [0, 1]); else values must be >= 0.

    Returns
    -------
    ndarray of shape (n_rows, len(names))
    """
    if isinstance(M, pd.DataFrame):
        cols = canonical_names([str(c) for c in M.columns], f"the columns of {what}")
        missing = [n for n in names if n not in cols]
        if missing:
            raise ValueError(
                f"{what} lacks columns for strategies {missing}; its columns are {cols}."
            )
        A = M.set_axis(cols, axis=1)[names].to_numpy(dtype=float)
    else:
        try:
            A = np.asarray(M, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what} must be numeric: {exc}") from None
        if A.ndim != 2:
            raise ValueError(
                f"{what} must be 2-D (n_queries, n_strategies), got shape {A.shape}. A router "
                f"learns from every strategy's outcome on every query: pass a DataFrame with "
                f"strategy-name columns (e.g. aggregate_runs(runs).Y)."
            )
        if A.shape[1] != len(names):
            raise ValueError(
                f"{what} has {A.shape[1]} columns but there are {len(names)} strategies "
                f"({names})."
            )
    if A.shape[0] != n_rows:
        raise ValueError(
            f"X and {what} have different lengths: {n_rows} queries in X, {A.shape[0]} rows "
            f"in {what}. Pass one row per query, in the same order."
        )
    if not np.isfinite(A).all():
        i, j = np.argwhere(~np.isfinite(A))[0]
        raise ValueError(
            f"{what} has a NaN or infinite value at query {i}, strategy {names[j]!r}. Every "
            f"(query, strategy) cell needs a measured value; drop incomplete queries "
            f"(aggregate_runs(missing='drop'))."
        )
    if bounded:
        if (A < 0).any() or (A > 1).any():
            i, j = np.argwhere((A < 0) | (A > 1))[0]
            raise ValueError(
                f"{what} must hold accuracies in [0, 1] (the fraction of correct runs); got "
                f"{A[i, j]!r} at query {i}, strategy {names[j]!r}."
            )
    elif (A < 0).any():
        i, j = np.argwhere(A < 0)[0]
        raise ValueError(
            f"{what} must not be negative (token counts and latencies never are); got "
            f"{A[i, j]!r} at query {i}, strategy {names[j]!r}."
        )
    return A
