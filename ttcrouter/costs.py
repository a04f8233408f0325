"""Cost model: predicted tokens and latency of every strategy for every query.

The paper predicts the cost of a strategy by its average over the training runs and shows
that these averages match oracle costs closely. :class:`CostTable` does that by default
(``per_query=False``); with ``per_query=True`` it regresses each cost on the query features
(a Ridge on ``log1p(cost)`` by default), since output length varies by query.
"""

from __future__ import annotations


import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context, clone
from sklearn.linear_model import Ridge
from sklearn.multioutput import MultiOutputRegressor
from sklearn.utils import get_tags
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["CostTable"]


def _cost_matrix(values, what):
    """(ndarray float64, column names or None, was_1d) with NaN/negative values reported."""
    columns = None
    if isinstance(values, pd.DataFrame):
        columns = [str(c) for c in values.columns]
        index = list(values.index)
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
    elif isinstance(values, pd.Series):
        index = list(values.index)
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        index = None
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what} must be numeric; could not convert it ({exc}).") from None
    was_1d = arr.ndim == 1
    if arr.ndim not in (1, 2):
        raise ValueError(
            f"{what} must be of shape (n_queries, n_strategies) or (n_queries,); got {arr.shape}."
        )
    arr2 = arr.reshape(arr.shape[0], -1)
    bad = ~np.isfinite(arr2) | (arr2 < 0)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        row = index[i] if index is not None else i
        col = columns[j] if columns is not None else j
        n_bad = int(bad.sum())
        raise ValueError(
            f"{what} must be finite and non-negative; strategy column {col!r}, row {row!r} "
            f"holds {arr2[i, j]!r} ({n_bad} bad value{'s' if n_bad > 1 else ''} in all). "
            "Drop or re-run the failed executions before aggregating, or fill the gaps."
        )
    return arr, columns, was_1d


class CostTable(RegressorMixin, BaseEstimator):
    """Per-strategy token and latency predictions.

    By default the prediction of strategy ``s`` for any query is its mean cost over the
    training queries (the paper's choice). With ``per_query=True`` a regressor on the query
    features predicts each cost matrix (all strategies as outputs).

    Parameters
    ----------
    per_query : bool, default=False
        Regress costs on the query features instead of using per-strategy means.
    regressor : regressor, default=None
        Used when ``per_query=True``; None means ``Ridge(alpha=1.0)``. It is fitted on
        ``log1p(cost)`` and its predictions mapped back with ``expm1`` and clipped at 0.
        A regressor without multi-output support is wrapped in ``MultiOutputRegressor``.

    Attributes
    ----------
    mean_tokens_ : ndarray of shape (n_strategies,)
        Mean tokens of each strategy over the training queries.
    mean_latency_ : ndarray of shape (n_strategies,)
        Mean latency (seconds) of each strategy; zeros when no latency was given.
    has_latency_ : bool
        Whether latency was given to ``fit``.
    n_strategies_ : int
        Number of strategies (cost columns).
    strategies_ : list of str
        Column names, when ``tokens`` was a DataFrame.
    tokens_regressor_, latency_regressor_ : regressor or None
        The fitted per-query regressors (``per_query=True``).
    n_features_in_ : int
        Number of query features.
    """

    _parameter_constraints = {
        "per_query": ["boolean"],
        "regressor": [HasMethods(["fit", "predict"]), None],
    }

    def __init__(self, per_query=False, regressor=None):
        self.per_query = per_query
        self.regressor = regressor

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, tokens, latency=None):
        """Fit the cost predictions.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query features (used when ``per_query=True``).
        tokens : array-like or DataFrame of shape (n_queries, n_strategies) or (n_queries,)
            Generated tokens of each strategy on each query (e.g. ``RunsSummary.T``).
            A 1-D array is one strategy.
        latency : array-like or DataFrame of the same shape, default=None
            Wall-clock seconds (e.g. ``RunsSummary.L``). None predicts latency 0.

        Returns
        -------
        self : CostTable
        """
        if tokens is None:
            validate_data(self, X, None)  # raises sklearn's "requires y" error
        T, columns, was_1d = _cost_matrix(tokens, "tokens")
        X, T = validate_data(
            self, X, T, multi_output=True, y_numeric=True, dtype=[np.float64, np.float32]
        )
        T = T.reshape(T.shape[0], -1)
        if latency is None:
            L = np.zeros_like(T)
            self.has_latency_ = False
        else:
            if isinstance(latency, pd.DataFrame) and columns is not None:
                lat_cols = [str(c) for c in latency.columns]
                if set(lat_cols) != set(columns):
                    raise ValueError(
                        f"latency columns {lat_cols} differ from tokens columns {columns}; "
                        "both must hold the same strategies."
                    )
                latency = latency.set_axis(lat_cols, axis=1)[columns]
            L, _, _ = _cost_matrix(latency, "latency")
            L = L.reshape(L.shape[0], -1)
            if L.shape != T.shape:
                raise ValueError(
                    f"latency has shape {L.shape} but tokens has shape {T.shape}; they must "
                    "match (n_queries, n_strategies)."
                )
            self.has_latency_ = True
        return self._fit(X, T, L, columns, was_1d)

    def _fit(self, X, T, L, columns, was_1d):
        self.n_strategies_ = T.shape[1]
        self._y_1d = was_1d
        if columns is not None:
            self.strategies_ = list(columns)
        self.mean_tokens_ = T.mean(axis=0)
        self.mean_latency_ = L.mean(axis=0)
        self.tokens_regressor_ = None
        self.latency_regressor_ = None
        if self.per_query:
            self.tokens_regressor_ = self._make_regressor().fit(X, np.log1p(T))
            if self.has_latency_:
                self.latency_regressor_ = self._make_regressor().fit(X, np.log1p(L))
        return self

    def _make_regressor(self):
        reg = Ridge(alpha=1.0) if self.regressor is None else clone(self.regressor)
        if not get_tags(reg).target_tags.multi_output:
            reg = MultiOutputRegressor(reg)
        return reg

    @staticmethod
    def _predict_log1p(reg, X, n_out):
        pred = np.asarray(reg.predict(X), dtype=np.float64).reshape(X.shape[0], n_out)
        return np.clip(np.expm1(pred), 0.0, None)

    def predict_costs(self, X):
        """Predicted tokens and latency of every strategy for every query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        T_hat : ndarray of shape (n_queries, n_strategies)
        L_hat : ndarray of shape (n_queries, n_strategies)
            Zeros when no latency was given to ``fit``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        n = X.shape[0]
        if self.tokens_regressor_ is not None:
            T = self._predict_log1p(self.tokens_regressor_, X, self.n_strategies_)
        else:
            T = np.tile(self.mean_tokens_, (n, 1))
        if self.latency_regressor_ is not None:
            L = self._predict_log1p(self.latency_regressor_, X, self.n_strategies_)
        else:
            L = np.tile(self.mean_latency_, (n, 1))
        return T, L

    def predict(self, X):
        """Predicted tokens (shaped like the ``tokens`` given to ``fit``).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        T_hat : ndarray of shape (n_queries, n_strategies), or (n_queries,) when fitted
            on 1-D tokens
        """
        T, _ = self.predict_costs(X)
        return T[:, 0] if self._y_1d else T

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.positive_only = True
        tags.regressor_tags.poor_score = not self.per_query
        return tags
