"""The utility router: pick, per query, the strategy with the best accuracy-cost trade-off.

For a query ``x`` and each strategy ``s`` the router predicts

    U_s(x) = a_s(x) - lambda_tokens * T_s(x) - lambda_latency * L_s(x)

and returns ``argmax_s U_s(x)``. ``a_s(x)`` comes from a binary probe over rows
``[x, encode_strategies([s])]`` (query features first, strategy encoding last); ``T`` and
``L`` from a cost model (:class:`~ttcrouter.costs.CostTable`).
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from numbers import Real

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, MetaEstimatorMixin, _fit_context, clone
from sklearn.utils import get_tags
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.validation import check_is_fitted, has_fit_parameter, validate_data

from . import allocation
from .costs import CostTable
from .frontier import dominated
from .probe import ProbeClassifier, soft_to_weighted
from .strategies import encode_strategies
from .validation import canonical_names, check_strategy_matrix, check_strategy_names

__all__ = ["UtilityRouter"]


def _accepts(method, name):
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False
    return name in params  # named explicitly: **kwargs (e.g. Pipeline.fit) is not enough


def _cross_rows(E, S):
    """Rows ``[E[i], S[j]]`` for every pair, query-major (row ``i * n_s + j``)."""
    n_q, n_s = E.shape[0], S.shape[0]
    return np.hstack([np.repeat(E, n_s, axis=0), np.tile(S.astype(E.dtype), (n_q, 1))])


class UtilityRouter(MetaEstimatorMixin, BaseEstimator):
    """Route each query to the strategy with the highest predicted utility.

    ``U_s(x) = a_s(x) - lambda_tokens * T_s(x) - lambda_latency * L_s(x)``, where ``a_s(x)``
    is the probe's predicted probability that strategy ``s`` answers ``x`` correctly and
    ``T``, ``L`` are predicted tokens and latency (seconds). :meth:`predict` returns
    ``argmax_s U_s(x)``; ties go to the first strategy in ``strategies_``.

    Parameters
    ----------
    probe : classifier, default=None
        Binary classifier over rows ``[x, encode_strategies([s])]``, fitted on soft labels
        as weighted hard labels (its ``fit`` must take ``sample_weight``; ``groups`` is
        passed too when ``fit`` takes it, so calibration folds keep a query whole). A probe
        with ``predict_proba_grid(E, S)`` is scored without building the cross product;
        any other sklearn classifier works through ``predict_proba``. None means
        :class:`~ttcrouter.probe.ProbeClassifier()`. Cloned in :meth:`fit`.
    costs : estimator, default=None
        Cost model with ``fit(X, tokens, latency)`` and ``predict_costs(X) -> (T, L)``.
        None means :class:`~ttcrouter.costs.CostTable()`. Cloned in :meth:`fit`.
    lambda_tokens : float, default=0.0
        Price of one generated token in accuracy units (>= 0).
    lambda_latency : float, default=0.0
        Price of one second of latency in accuracy units (>= 0).
    strategies : list of str, default=None
        Strategy names of the columns of ``Y`` when it is an array; with a DataFrame ``Y``,
        the subset (and order) of its columns to route among. None: all columns of a
        DataFrame ``Y``.
    prune_dominated : bool, default=True
        Never route to a strategy that the training runs show dominated: another strategy
        had at least its mean accuracy at no more mean tokens and no more mean latency
        (the cost axes given to :meth:`fit`; without costs nothing is pruned), and was
        strictly better on one of them. On
        average such a strategy is never worth its cost, so routing to it only follows
        noise in the probe's per-query predictions; with few training queries, pruning
        it usually raises the accuracy-cost frontier (see ``docs/results.md``). Leave it
        off when a strategy that is poor on average is the best one for a recognizable
        group of queries and there are enough runs for the probe to learn that.

    Attributes
    ----------
    strategies_ : list of str
        Canonical strategy names: the column order of every matrix the router returns.
    strategy_encoding_ : ndarray of shape (n_strategies, n_encoding)
        :func:`~ttcrouter.strategies.encode_strategies` of ``strategies_``.
    probe_ : classifier
        The fitted probe.
    costs_ : estimator
        The fitted cost model.
    training_means_ : DataFrame
        Mean ``accuracy``, ``tokens`` and ``latency`` of each strategy over the training
        queries (NaN for a cost not given to :meth:`fit`); index ``strategies_``.
    dominated_ : ndarray of bool of shape (n_strategies,)
        Which strategies the training means show dominated (computed whatever
        ``prune_dominated`` says; only used when it is True).
    n_features_in_ : int
        Number of query features.
    feature_names_in_ : ndarray of str
        Names of the query features, when ``X`` was a DataFrame with string column names.

    Notes
    -----
    :meth:`score` is the realized utility at the router's OWN lambdas. Do not use it to
    tune the lambdas (it always favors ``lambda=0``); score with a fixed trade-off instead:
    :func:`ttcrouter.metrics.make_utility_scorer` or :class:`~ttcrouter.tuning.UtilityRouterCV`.

    Examples
    --------
    >>> from sklearn.pipeline import Pipeline
    >>> from ttcrouter import EmbeddingTransformer, UtilityRouter, aggregate_runs
    >>> from ttcrouter.synthetic import make_synthetic_runs
    >>> s = aggregate_runs(make_synthetic_runs(60, random_state=0))
    >>> pipe = Pipeline([("embed", EmbeddingTransformer()),
    ...                  ("router", UtilityRouter(lambda_latency=0.02))])
    >>> pipe.fit(s.texts, s.Y, router__tokens=s.T, router__latency=s.L)  # doctest: +SKIP
    >>> pipe.predict(["Easy: what is 2 + 3?"])  # doctest: +SKIP
    array(['majority_vote@n=1'], dtype=object)
    """

    _parameter_constraints: dict = {
        "probe": [HasMethods(["fit", "predict_proba"]), None],
        "costs": [HasMethods(["fit", "predict_costs"]), None],
        "lambda_tokens": [Interval(Real, 0, None, closed="left")],
        "lambda_latency": [Interval(Real, 0, None, closed="left")],
        "strategies": ["array-like", None],
        "prune_dominated": ["boolean"],
    }

    def __init__(self, probe=None, costs=None, lambda_tokens=0.0, lambda_latency=0.0,
                 strategies=None, prune_dominated=True):
        self.probe = probe
        self.costs = costs
        self.lambda_tokens = lambda_tokens
        self.lambda_latency = lambda_latency
        self.strategies = strategies
        self.prune_dominated = prune_dominated

    # -- fitting ---------------------------------------------------------------------------

    def _strategy_names(self, Y):
        return check_strategy_names(Y, self.strategies)

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, Y, tokens=None, latency=None):
        """Fit the accuracy probe and the cost model.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query features (e.g. embeddings).
        Y : DataFrame or array-like of shape (n_queries, n_strategies)
            Soft labels in [0, 1]: the fraction of correct runs of each strategy on each
            query. DataFrame columns are strategy names.
        tokens : DataFrame or array-like of shape (n_queries, n_strategies), default=None
            Generated tokens per (query, strategy). Needed when ``lambda_tokens > 0``.
        latency : DataFrame or array-like of shape (n_queries, n_strategies), default=None
            Latency in seconds per (query, strategy). Needed when ``lambda_latency > 0``.

        Returns
        -------
        self : UtilityRouter
        """
        X = validate_data(self, X, dtype=[np.float32, np.float64], ensure_min_samples=2)
        if Y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None: "
                f"pass Y, the (n_queries, n_strategies) soft labels (aggregate_runs(runs).Y)."
            )
        names = self._strategy_names(Y)
        n = X.shape[0]
        Ya = check_strategy_matrix(Y, "Y", names, n, bounded=True)
        T = None if tokens is None else check_strategy_matrix(tokens, "tokens", names, n)
        L = None if latency is None else check_strategy_matrix(latency, "latency", names, n)
        for lam, M, what in ((self.lambda_tokens, T, "tokens"),
                             (self.lambda_latency, L, "latency")):
            if lam > 0 and M is None:
                raise ValueError(
                    f"lambda_{what}={lam} prices {what}, but fit got no {what}=... matrix. "
                    f"Pass {what} (n_queries, n_strategies) to fit (in a Pipeline: "
                    f"router__{what}=..., or set_fit_request({what}=True) with metadata "
                    f"routing), or set lambda_{what}=0."
                )
        return self._fit(X, Ya, T, L, names)

    def _fit(self, X, Ya, T, L, names):
        self.strategies_ = list(names)
        self.strategy_encoding_ = encode_strategies(self.strategies_)
        n, n_s = Ya.shape

        self.probe_ = clone(ProbeClassifier() if self.probe is None else self.probe)
        rows = _cross_rows(X, self.strategy_encoding_)
        groups = np.repeat(np.arange(n), n_s)
        X2, y2, w2, g2 = soft_to_weighted(rows, Ya.ravel(), groups, drop_zero=True)
        if np.unique(y2).size < 2:
            raise ValueError(
                "Y holds a single outcome everywhere (every strategy always "
                f"{'right' if y2.size and y2[0] == 1 else 'wrong'}): the probe needs both "
                "correct and wrong runs to learn from."
            )
        fit_params = {}
        if has_fit_parameter(self.probe_, "sample_weight"):
            fit_params["sample_weight"] = w2
        elif not np.all(np.isin(Ya, (0.0, 1.0))):
            raise ValueError(
                f"The probe {type(self.probe_).__name__} cannot take sample_weight, which the "
                f"router needs to train on soft labels. Use a classifier whose fit accepts "
                f"sample_weight (e.g. ProbeClassifier, LogisticRegression)."
            )
        if _accepts(self.probe_.fit, "groups"):
            fit_params["groups"] = g2
        self.probe_.fit(X2, y2, **fit_params)

        self.costs_ = clone(CostTable() if self.costs is None else self.costs)
        self._has_tokens = T is not None
        self._has_latency = L is not None
        zeros = np.zeros_like(Ya)
        self.costs_.fit(X, pd.DataFrame(zeros if T is None else T, columns=self.strategies_),
                        pd.DataFrame(zeros if L is None else L, columns=self.strategies_))
        nan = np.full(n_s, np.nan)
        self.training_means_ = pd.DataFrame(
            {"accuracy": Ya.mean(axis=0),
             "tokens": nan if T is None else T.mean(axis=0),
             "latency": nan if L is None else L.mean(axis=0)},
            index=pd.Index(self.strategies_, name="strategy"))
        self.dominated_ = dominated(self.training_means_.to_numpy())
        return self

    # -- prediction ------------------------------------------------------------------------

    def _subset(self, strategies):
        """Column indices of ``strategies`` within ``strategies_`` (all when None)."""
        if strategies is None:
            return np.arange(len(self.strategies_))
        if isinstance(strategies, str):
            strategies = [strategies]
        wanted = canonical_names(list(strategies), "strategies")
        unknown = [s for s in wanted if s not in self.strategies_]
        if unknown:
            raise ValueError(
                f"Strategies {unknown} were not among those the router was fitted on "
                f"({self.strategies_}); the router has no cost or accuracy data for them. "
                f"Route among a subset of the fitted strategies, or refit with them in Y."
            )
        if not wanted:
            raise ValueError("strategies must name at least one strategy.")
        return np.asarray([self.strategies_.index(s) for s in wanted], dtype=np.intp)

    def _validate_X(self, X):
        check_is_fitted(self)
        return validate_data(self, X, dtype=[np.float32, np.float64], reset=False)

    def _predict_accuracy(self, X, cols):
        S = self.strategy_encoding_[cols]
        if hasattr(self.probe_, "predict_proba_grid"):
            P = np.asarray(self.probe_.predict_proba_grid(X, S), dtype=float)
        else:
            proba = self.probe_.predict_proba(_cross_rows(X, S))
            classes = list(getattr(self.probe_, "classes_", [0, 1]))
            pos = classes.index(1) if 1 in classes else len(classes) - 1
            P = np.asarray(proba, dtype=float)[:, pos].reshape(X.shape[0], len(cols))
        return P

    def _predict_costs(self, X, cols):
        T, L = self.costs_.predict_costs(X)
        T = np.asarray(T, dtype=float)[:, cols]
        L = np.asarray(L, dtype=float)[:, cols]
        return T, L

    def _routable(self, cols):
        """Mask over ``cols``: False for a strategy pruned as dominated within ``cols``."""
        # getattr: a router pickled before pruning existed routes as it did then
        if not getattr(self, "prune_dominated", False) or not hasattr(self, "training_means_"):
            return np.ones(len(cols), dtype=bool)
        return ~dominated(self.training_means_.to_numpy()[cols])

    def routable(self, strategies=None):
        """Which strategies the router may route to: False for those pruned as dominated.

        Parameters
        ----------
        strategies : list of str, default=None
            Subset of ``strategies_`` (in this order); dominance is judged within it.
            None for all.

        Returns
        -------
        ndarray of bool of shape (n_strategies,)
            All True with ``prune_dominated=False``.
        """
        check_is_fitted(self)
        return self._routable(self._subset(strategies))

    def _predict_utility(self, X, cols):
        U = self._predict_accuracy(X, cols)
        if self.lambda_tokens or self.lambda_latency:
            T, L = self._predict_costs(X, cols)
            U = U - self.lambda_tokens * T - self.lambda_latency * L
        return np.where(self._routable(cols), U, -np.inf)

    def predict_accuracy(self, X, strategies=None):
        """Predicted probability of a correct answer for every (query, strategy).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
        strategies : list of str, default=None
            Subset of ``strategies_`` (columns in this order); None for all.

        Returns
        -------
        ndarray of shape (n_queries, n_strategies)
        """
        X = self._validate_X(X)
        return self._predict_accuracy(X, self._subset(strategies))

    def predict_costs(self, X, strategies=None):
        """Predicted tokens and latency for every (query, strategy).

        Returns
        -------
        T_hat, L_hat : ndarray of shape (n_queries, n_strategies)
        """
        X = self._validate_X(X)
        return self._predict_costs(X, self._subset(strategies))

    def predict_utility(self, X, strategies=None):
        """Predicted utility ``A - lambda_tokens * T - lambda_latency * L``.

        With ``prune_dominated=True``, ``-inf`` for the strategies pruned as dominated
        (among ``strategies``).

        Returns
        -------
        ndarray of shape (n_queries, n_strategies)
        """
        X = self._validate_X(X)
        return self._predict_utility(X, self._subset(strategies))

    def predict_index(self, X, strategies=None):
        """Index into ``strategies_`` of the chosen strategy per query."""
        X = self._validate_X(X)
        cols = self._subset(strategies)
        return cols[np.argmax(self._predict_utility(X, cols), axis=1)]

    def predict(self, X, strategies=None):
        """Chosen strategy per query: ``argmax_s U_s(x)`` (ties: first in order).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
        strategies : list of str, default=None
            Route only among these fitted strategies; a strategy the router was not fitted
            on raises ValueError.

        Returns
        -------
        ndarray of shape (n_queries,), dtype object
            Canonical strategy names.
        """
        idx = self.predict_index(X, strategies)
        return np.asarray(self.strategies_, dtype=object)[idx]

    def allocate(self, X, *, max_total_tokens=None, max_mean_tokens=None,
                 max_total_latency=None, max_mean_latency=None, max_query_latency=None,
                 concurrency=None, strategies=None, return_result=False):
        """One strategy per query of the batch ``X``, the best total accuracy within a budget.

        Unlike :meth:`predict` (a price per token or second), this spends one budget across
        the whole batch: it maximizes the total predicted accuracy subject to the predicted
        total (or mean) cost staying within the budget, by
        :func:`ttcrouter.allocation.allocate`, which documents the algorithm, the execution
        models of a latency budget (sequential, or ``concurrency`` requests at once) and the
        guarantees. Strategies pruned as dominated are never chosen, as in :meth:`predict`.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
        max_total_tokens, max_mean_tokens : float, default=None
            Budget on the predicted total (or mean per query) tokens.
        max_total_latency, max_mean_latency : float, default=None
            Job-level latency budget (seconds) under the execution model ``concurrency``.
        max_query_latency : float, default=None
            Per-query latency cap (a filter).
        concurrency : int, default=None
            None: queries run one after another (latencies add); K: K at once.
        strategies : list of str, default=None
            Allocate among these fitted strategies only.
        return_result : bool, default=False
            Also return the :class:`~ttcrouter.allocation.AllocationResult` (its ``choice``
            indexes ``strategies_``).

        Returns
        -------
        names : ndarray of shape (n_queries,), dtype object
        result : AllocationResult, only when ``return_result=True``

        Raises
        ------
        ValueError
            When no allocation fits (the message gives the minimum cost), or a budget prices
            a cost the router was fitted without.
        """
        X = self._validate_X(X)
        cols = self._subset(strategies)
        has_t = not self.training_means_["tokens"].isna().all()
        has_l = not self.training_means_["latency"].isna().all()
        for given, has, what in (
                (max_total_tokens is not None or max_mean_tokens is not None, has_t, "tokens"),
                (max_total_latency is not None or max_mean_latency is not None
                 or max_query_latency is not None, has_l, "latency")):
            if given and not has:
                raise ValueError(
                    f"A {what} budget needs predicted {what}, but the router was fitted "
                    f"without {what}=...; refit with it."
                )
        T, L = self._predict_costs(X, cols)
        res = allocation.allocate(
            self._predict_accuracy(X, cols), T if has_t else None, L if has_l else None,
            max_total_tokens=max_total_tokens, max_mean_tokens=max_mean_tokens,
            max_total_latency=max_total_latency, max_mean_latency=max_mean_latency,
            max_query_latency=max_query_latency, concurrency=concurrency,
            allowed=self._routable(cols))
        res = replace(res, choice=cols[res.choice])
        names = np.asarray(self.strategies_, dtype=object)[res.choice]
        return (names, res) if return_result else names

    def score(self, X, Y, tokens=None, latency=None):
        """Mean realized utility of the routed choices at the router's own lambdas.

        Not for tuning the lambdas (see the class Notes): use
        :func:`ttcrouter.metrics.make_utility_scorer` with fixed lambdas.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
        Y : DataFrame or array-like of shape (n_queries, n_strategies)
            Realized accuracies, columns as at fit.
        tokens, latency : DataFrame or array-like, default=None
            Realized costs; needed when the matching lambda is > 0.

        Returns
        -------
        float
        """
        X = self._validate_X(X)
        n = X.shape[0]
        names = self.strategies_
        Ya = check_strategy_matrix(Y, "Y", names, n, bounded=True)
        idx = np.argmax(self._predict_utility(X, np.arange(len(names))), axis=1)
        rows = np.arange(n)
        u = Ya[rows, idx]
        for lam, M, what in ((self.lambda_tokens, tokens, "tokens"),
                             (self.lambda_latency, latency, "latency")):
            if lam > 0:
                if M is None:
                    raise ValueError(
                        f"score needs {what}=... because lambda_{what}={lam} > 0."
                    )
                u = u - lam * check_strategy_matrix(M, what, names, n)[rows, idx]
        return float(u.mean())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.single_output = False
        tags.target_tags.multi_output = True
        # the default ProbeClassifier() is unseeded
        if self.probe is None:
            tags.non_deterministic = True
        else:
            tags.non_deterministic = get_tags(self.probe).non_deterministic
        return tags
