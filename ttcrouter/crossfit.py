"""Fit a router on one fold's training queries and predict on its test queries.

:class:`~ttcrouter.tuning.UtilityRouterCV` (lambda tuning) and
:func:`~ttcrouter.evaluation.evaluate` (cross-fitting) both fit a router once per fold and
then sweep penalties over its held-out predictions. :func:`fit_predict_fold` is that one
fold: the sweep re-does the router's argmax, so strategies the router prunes as dominated
come back with accuracy ``-inf`` and no lambda can pick them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.utils import _safe_indexing

__all__ = ["FoldPrediction", "fit_predict_fold"]


class FoldPrediction(NamedTuple):
    """Predictions of a router fitted on one fold, on that fold's test queries.

    Attributes
    ----------
    accuracy : ndarray of shape (n_test, n_strategies)
        Predicted accuracy; ``-inf`` for a strategy the router prunes as dominated.
    tokens, latency : ndarray of shape (n_test, n_strategies)
        Predicted costs.
    router : estimator
        The router fitted on the training queries.
    encoder : transformer or None
        The encoder fitted on the training queries, when one was given.
    """

    accuracy: np.ndarray
    tokens: np.ndarray
    latency: np.ndarray
    router: object
    encoder: object = None


def fit_predict_fold(router, X, Y, tokens, latency, strategies, train, test, *,
                     encoder=None, params=None):
    """Fit a clone of ``router`` on the ``train`` queries; predict on the ``test`` queries.

    Parameters
    ----------
    router : estimator
        A router with ``fit(X, Y, tokens=, latency=)``, ``predict_accuracy`` and
        ``predict_costs`` (e.g. :class:`~ttcrouter.router.UtilityRouter`). Cloned. A
        router with ``routable(strategies)`` has its pruned strategies kept out.
    X : array-like of shape (n_queries, n_features), or of query strings with ``encoder``
    Y : ndarray of shape (n_queries, n_strategies)
        Realized accuracy (soft labels), columns in the order ``strategies``.
    tokens, latency : ndarray of shape (n_queries, n_strategies) or None
        Realized costs.
    strategies : list of str
        Canonical names of the columns; the predictions come back in this order.
    train, test : array-like of int
        Query indices of the fold.
    encoder : transformer, default=None
        When given, cloned, fitted on the training rows of ``X`` (a list of strings) and
        used to featurize both sides.
    params : dict, default=None
        Parameters set on the router's clone before fitting (e.g. zero lambdas).

    Returns
    -------
    FoldPrediction
    """
    def frame(M):
        return None if M is None else pd.DataFrame(M[train], columns=strategies)

    X_train, X_test = _safe_indexing(X, train), _safe_indexing(X, test)
    if encoder is not None:
        encoder = clone(encoder)
        X_train = np.asarray(encoder.fit_transform(list(X_train)))
        X_test = np.asarray(encoder.transform(list(X_test)))
    est = clone(router)
    if params:
        est.set_params(**params)
    est.fit(X_train, frame(Y), tokens=frame(tokens), latency=frame(latency))
    fitted = [str(s) for s in getattr(est, "strategies_", strategies)]
    order = pd.Index(fitted).get_indexer(strategies)
    if (order < 0).any():
        raise RuntimeError(
            f"The fitted router knows strategies {fitted}, the runs have {list(strategies)}."
        )
    A = np.asarray(est.predict_accuracy(X_test), dtype=float)[:, order]
    if hasattr(est, "routable"):
        A[:, ~est.routable(list(strategies))] = -np.inf
    T, L = (np.asarray(M, dtype=float)[:, order] for M in est.predict_costs(X_test))
    return FoldPrediction(A, T, L, est, encoder)
