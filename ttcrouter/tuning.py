"""Choose the router's lambdas by cross-validation, or to meet a mean-cost budget.

:class:`UtilityRouterCV` follows :class:`sklearn.model_selection.TunedThresholdClassifierCV`:
the expensive part (the probe and the cost model) is fitted once per fold, and the whole
lambda grid is swept on each fold's held-out predictions, which is cheap because routing is
an argmax over predicted utilities. Scores use the TRUE held-out accuracies and costs.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, MetaEstimatorMixin, _fit_context, clone
from sklearn.model_selection import KFold, check_cv
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .crossfit import fit_predict_fold
from .frontier import lambda_grid
from .router import UtilityRouter
from .validation import check_int, check_strategy_matrix, check_strategy_names

__all__ = ["UtilityRouterCV", "lambda_grid"]


class UtilityRouterCV(MetaEstimatorMixin, BaseEstimator):
    """Tune the router's lambdas by cross-validation, optionally under a mean-cost budget.

    The probe and cost model are fitted once per fold (folds split the queries); every
    lambda pair of the grid is then scored on the fold's held-out queries with their true
    accuracies and costs. Without a budget the pair with the best mean ``scoring`` wins;
    with ``max_mean_latency`` and/or ``max_mean_tokens`` the pair with the best accuracy
    among those whose cross-validated mean cost of the routed choices stays within the
    budget wins. Finally the router is refitted on all queries with the chosen lambdas.

    Parameters
    ----------
    router : UtilityRouter, default=None
        The router to tune (its own lambdas are ignored). None means ``UtilityRouter()``.
    lambda_tokens : int or array-like of float, default=10
        Candidate prices of a token. An int asks for that many values: 0 and a log grid
        scaled by the spread of the strategies' mean tokens (:func:`lambda_grid`).
    lambda_latency : int or array-like of float, default=10
        Candidate prices of a second of latency, as ``lambda_tokens``.
    cv : int, cross-validation generator or iterable, default=5
        Query-level folds; an int gives ``KFold(cv, shuffle=True, random_state=...)``.
    scoring : {"utility", "accuracy"} or callable, default="utility"
        What the best pair maximizes without a budget. "utility": the mean realized utility
        at the FIXED ``scoring_lambdas`` (the trade-off you care about; the tuned lambdas
        are the router's decision rule and may differ from it). A callable is called as
        ``scoring(Y, T, L, choice_idx) -> float`` on each fold's held-out queries.
    scoring_lambdas : (float, float), default=(0.0, 0.0)
        ``(lambda_tokens, lambda_latency)`` at which ``scoring="utility"`` is measured.
        Ties go to the cheaper routing (lower mean latency, then tokens).
    max_mean_latency : float, default=None
        Budget on the mean latency (seconds) of the routed choices.
    max_mean_tokens : float, default=None
        Budget on the mean tokens of the routed choices.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffled folds when ``cv`` is an int.
    n_jobs : int, default=None
        Folds fitted in parallel (joblib).

    Attributes
    ----------
    best_lambda_tokens_, best_lambda_latency_ : float
        The chosen lambdas.
    best_index_ : int
        Row of ``cv_results_`` chosen.
    best_score_ : float
        Its cross-validated score (accuracy when a budget is set).
    cv_results_ : DataFrame
        One row per lambda pair: ``lambda_tokens``, ``lambda_latency``, ``accuracy``,
        ``mean_tokens``, ``mean_latency`` (of the routed choices, pooled over the held-out
        queries), ``utility`` (at ``scoring_lambdas``), ``score``, ``std_score`` (over
        folds) and ``feasible`` (within the budget).
    best_estimator_ : UtilityRouter
        The router refitted on all queries with the chosen lambdas (``router_`` is the
        same object).
    strategies_ : list of str
        Strategy names, as the refitted router's.
    n_features_in_ : int
    """

    _parameter_constraints: dict = {
        "router": [HasMethods(["fit", "predict_accuracy", "predict_costs"]), None],
        "lambda_tokens": [Interval(Integral, 1, None, closed="left"), "array-like"],
        "lambda_latency": [Interval(Integral, 1, None, closed="left"), "array-like"],
        "cv": ["cv_object"],
        "scoring": [StrOptions({"utility", "accuracy"}), callable],
        "scoring_lambdas": ["array-like"],
        "max_mean_latency": [Interval(Real, 0, None, closed="neither"), None],
        "max_mean_tokens": [Interval(Real, 0, None, closed="neither"), None],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
    }

    def __init__(self, router=None, lambda_tokens=10, lambda_latency=10, cv=5,
                 scoring="utility", scoring_lambdas=(0.0, 0.0), max_mean_latency=None,
                 max_mean_tokens=None, random_state=None, n_jobs=None):
        self.router = router
        self.lambda_tokens = lambda_tokens
        self.lambda_latency = lambda_latency
        self.cv = cv
        self.scoring = scoring
        self.scoring_lambdas = scoring_lambdas
        self.max_mean_latency = max_mean_latency
        self.max_mean_tokens = max_mean_tokens
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _grid(self, value, M, what):
        if isinstance(value, Integral) and not isinstance(value, bool):
            return lambda_grid(M, int(value))
        grid = np.asarray(value, dtype=float).ravel()
        if grid.size == 0 or not np.isfinite(grid).all() or (grid < 0).any():
            raise ValueError(
                f"lambda_{what} must be an int (grid size) or finite values >= 0, got {value!r}."
            )
        if M is None and (grid > 0).any():
            raise ValueError(
                f"The lambda_{what} grid has values > 0 but fit got no {what}=... matrix; "
                f"pass {what} to fit or use lambda_{what}=[0.0]."
            )
        return grid

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, Y, tokens=None, latency=None):
        """Cross-validate the lambda grid, pick the best pair and refit on all queries.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query features.
        Y : DataFrame or array-like of shape (n_queries, n_strategies)
            Soft labels in [0, 1] (see :meth:`UtilityRouter.fit`).
        tokens, latency : DataFrame or array-like of shape (n_queries, n_strategies), default=None
            Realized tokens and latency (seconds); needed by the matching grid and budget.

        Returns
        -------
        self : UtilityRouterCV
        """
        router = UtilityRouter() if self.router is None else self.router
        X = validate_data(self, X, dtype=[np.float32, np.float64], ensure_min_samples=2)
        if Y is None:
            raise ValueError(
                "UtilityRouterCV requires y to be passed, but the target y is None: pass Y, "
                "the (n_queries, n_strategies) soft labels (aggregate_runs(runs).Y)."
            )
        names = check_strategy_names(Y, getattr(router, "strategies", None))
        n = len(X)
        Ya = check_strategy_matrix(Y, "Y", names, n, bounded=True)
        T = None if tokens is None else check_strategy_matrix(tokens, "tokens", names, n)
        L = None if latency is None else check_strategy_matrix(latency, "latency", names, n)
        for budget, M, what in ((self.max_mean_latency, L, "latency"),
                                (self.max_mean_tokens, T, "tokens")):
            if budget is not None and M is None:
                raise ValueError(
                    f"max_mean_{what}={budget} needs the realized {what}: pass {what}=... to fit."
                )
        lam = np.asarray(self.scoring_lambdas, dtype=float).ravel()
        if lam.shape != (2,) or (lam < 0).any() or not np.isfinite(lam).all():
            raise ValueError(
                f"scoring_lambdas must be (lambda_tokens, lambda_latency), both >= 0; got "
                f"{self.scoring_lambdas!r}."
            )
        if self.scoring == "utility" and ((lam[0] > 0 and T is None) or (lam[1] > 0 and L is None)):
            raise ValueError("scoring_lambdas price a cost whose matrix was not passed to fit.")
        grid_t = self._grid(self.lambda_tokens, T, "tokens")
        grid_l = self._grid(self.lambda_latency, L, "latency")
        pairs = np.array([(a, b) for a in grid_t for b in grid_l], dtype=float)

        cv = self.cv
        if isinstance(cv, Integral) and not isinstance(cv, bool):
            cv = KFold(check_int(cv, "cv", min_val=2), shuffle=True,
                       random_state=check_random_state(self.random_state).randint(2**31 - 1))
        cv = check_cv(cv)
        splits = list(cv.split(np.zeros((n, 1))))
        # the router's own lambdas do not matter here (the sweep sets them) and must not
        # ask fit for a cost matrix the grid does not need
        zero = {"lambda_tokens": 0.0, "lambda_latency": 0.0}
        folds = Parallel(n_jobs=self.n_jobs)(
            delayed(fit_predict_fold)(router, X, Ya, T, L, names, tr, te, params=zero)
            for tr, te in splits
        )
        self._sweep(folds, splits, pairs, Ya, T, L, lam)
        self._select(names, Ya, T, L)

        best = self.cv_results_.iloc[self.best_index_]
        self.best_lambda_tokens_ = float(best["lambda_tokens"])
        self.best_lambda_latency_ = float(best["lambda_latency"])
        frame = lambda M: None if M is None else pd.DataFrame(M, columns=names)  # noqa: E731
        self.best_estimator_ = clone(router).set_params(
            lambda_tokens=self.best_lambda_tokens_, lambda_latency=self.best_lambda_latency_
        ).fit(X, frame(Ya), tokens=frame(T), latency=frame(L))
        self.router_ = self.best_estimator_
        self.strategies_ = list(self.best_estimator_.strategies_)
        return self

    def _sweep(self, folds, splits, pairs, Ya, T, L, lam):
        n_p, n_f = len(pairs), len(folds)
        sums = {k: np.zeros(n_p) for k in ("accuracy", "tokens", "latency", "utility")}
        scores = np.zeros((n_f, n_p))
        sizes = np.array([len(te) for _, te in splits], dtype=float)
        for f, ((A, Th, Lh, *_), (_, te)) in enumerate(zip(folds, splits)):
            Yte = Ya[te]
            Tte = None if T is None else T[te]
            Lte = None if L is None else L[te]
            rows = np.arange(len(te))
            for p, (lt, ll) in enumerate(pairs):
                U = A
                if lt:
                    U = U - lt * Th
                if ll:
                    U = U - ll * Lh
                idx = np.argmax(U, axis=1)
                acc = Yte[rows, idx]
                tok = 0.0 if Tte is None else Tte[rows, idx]
                lat = 0.0 if Lte is None else Lte[rows, idx]
                util = acc - lam[0] * tok - lam[1] * lat
                sums["accuracy"][p] += acc.sum()
                sums["tokens"][p] += np.sum(tok) if Tte is not None else 0.0
                sums["latency"][p] += np.sum(lat) if Lte is not None else 0.0
                sums["utility"][p] += util.sum()
                if callable(self.scoring):
                    scores[f, p] = float(self.scoring(Yte, Tte, Lte, idx))
                elif self.scoring == "accuracy":
                    scores[f, p] = acc.mean()
                else:
                    scores[f, p] = util.mean()
        total = sizes.sum()
        res = pd.DataFrame({
            "lambda_tokens": pairs[:, 0],
            "lambda_latency": pairs[:, 1],
            "accuracy": sums["accuracy"] / total,
            "mean_tokens": sums["tokens"] / total if T is not None else np.nan,
            "mean_latency": sums["latency"] / total if L is not None else np.nan,
            "utility": sums["utility"] / total,
            "score": (scores * sizes[:, None]).sum(axis=0) / total,
            "std_score": scores.std(axis=0),
        })
        for f in range(n_f):
            res[f"split{f}_score"] = scores[f]
        self.cv_results_ = res

    def _select(self, names, Ya, T, L):
        res = self.cv_results_
        feasible = np.ones(len(res), dtype=bool)
        budgets = [(self.max_mean_latency, "mean_latency", L, "latency", "s"),
                   (self.max_mean_tokens, "mean_tokens", T, "tokens", " tokens")]
        for budget, col, M, what, unit in budgets:
            if budget is None:
                continue
            ok = res[col].to_numpy() <= budget
            if not ok.any():
                cheapest = int(np.argmin(res[col].to_numpy()))
                means = M.mean(axis=0)
                j = int(np.argmin(means))
                raise ValueError(
                    f"No lambda pair meets max_mean_{what}={budget:g}{unit}: the cheapest "
                    f"routing found has mean {what} {res[col].iloc[cheapest]:.4g}{unit} "
                    f"(lambda_tokens={res['lambda_tokens'].iloc[cheapest]:.3g}, "
                    f"lambda_latency={res['lambda_latency'].iloc[cheapest]:.3g}), and the "
                    f"cheapest single strategy, {names[j]}, has mean {what} "
                    f"{means[j]:.4g}{unit} on these queries. Raise the budget, or widen the "
                    f"lambda_{what} grid."
                )
            feasible &= ok
        res["feasible"] = feasible
        budgeted = self.max_mean_latency is not None or self.max_mean_tokens is not None
        if budgeted and not feasible.any():
            raise ValueError(
                "No lambda pair meets the latency and token budgets together; raise one of "
                "them."
            )
        key = res["accuracy" if budgeted else "score"].to_numpy().copy()
        key[~feasible] = -np.inf
        best = key.max()
        tied = np.flatnonzero(np.isclose(key, best, rtol=0, atol=1e-12))
        # ties: the cheaper routing (lower mean latency, then tokens)
        lat = res["mean_latency"].fillna(0).to_numpy()[tied]
        tok = res["mean_tokens"].fillna(0).to_numpy()[tied]
        self.best_index_ = int(tied[np.lexsort((tok, lat))[0]])
        self.best_score_ = float(best)
        res["rank"] = pd.Series(-key).rank(method="min").astype(int).to_numpy()

    # -- delegation ------------------------------------------------------------------------

    def predict(self, X, strategies=None):
        """Chosen strategy per query, by the refitted router (see UtilityRouter.predict)."""
        check_is_fitted(self)
        return self.best_estimator_.predict(X, strategies=strategies)

    def predict_index(self, X, strategies=None):
        """Index into ``strategies_`` of the chosen strategy per query."""
        check_is_fitted(self)
        return self.best_estimator_.predict_index(X, strategies=strategies)

    def predict_accuracy(self, X, strategies=None):
        """Predicted accuracy per (query, strategy), by the refitted router."""
        check_is_fitted(self)
        return self.best_estimator_.predict_accuracy(X, strategies=strategies)

    def predict_costs(self, X, strategies=None):
        """Predicted tokens and latency per (query, strategy), by the refitted router."""
        check_is_fitted(self)
        return self.best_estimator_.predict_costs(X, strategies=strategies)

    def predict_utility(self, X, strategies=None):
        """Predicted utility at the chosen lambdas, by the refitted router."""
        check_is_fitted(self)
        return self.best_estimator_.predict_utility(X, strategies=strategies)

    def allocate(self, X, **budget):
        """One strategy per query within a batch budget, by the refitted router.

        See :meth:`UtilityRouter.allocate` for the keywords.
        """
        check_is_fitted(self)
        return self.best_estimator_.allocate(X, **budget)

    def score(self, X, Y, tokens=None, latency=None):
        """Realized utility at the chosen lambdas (see UtilityRouter.score)."""
        check_is_fitted(self)
        return self.best_estimator_.score(X, Y, tokens=tokens, latency=latency)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.single_output = False
        tags.target_tags.multi_output = True
        return tags
