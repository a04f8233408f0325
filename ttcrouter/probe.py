"""The accuracy probe: a calibrated MLP over ``[query features, strategy encoding]`` rows.

:class:`ProbeClassifier` is the paper's probe: a 2-layer MLP (200-200-1, ReLU) trained with
binary cross-entropy and Adam, then calibrated with Platt scaling. Inside it is a skorch
:class:`~skorch.NeuralNetBinaryClassifier` whose loss is weighted by ``sample_weight``
(carried in a dict ``X``, as in the skorch FAQ), wrapped in
:class:`~sklearn.calibration.CalibratedClassifierCV` (``method="sigmoid"``,
``ensemble=True``) whose folds keep each group (query) whole.

Soft labels (the empirical accuracy ``p`` of a strategy on a query) are trained as two
weighted hard rows, ``(x, 1, p)`` and ``(x, 0, 1 - p)``, which gives exactly the soft-label
BCE; :func:`soft_to_weighted` builds them.

:meth:`ProbeClassifier.predict_proba_grid` scores every (query, strategy) pair without
building the cross product: the first linear layer splits into a query half, computed once
per query, and a strategy half, computed once per strategy.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn import config_context
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import GroupKFold, StratifiedKFold
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from .mlp import (
    BatchIterator,
    ProbeModule,
    WeightedBinaryNet,
    grid_proba,
    member_params,
    resolve_device,
)
from .validation import check_int

__all__ = ["ProbeClassifier", "soft_to_weighted"]


def soft_to_weighted(X, p, groups=None, *, drop_zero=True):
    """Turn soft labels into weighted hard labels for :class:`ProbeClassifier`.

    Each row ``x`` with soft label ``p`` becomes two rows, ``(x, y=1, w=p)`` and
    ``(x, y=0, w=1-p)``; the weighted BCE over them equals the soft-label BCE.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Features.
    p : array-like of shape (n_samples,)
        Soft labels in [0, 1] (e.g. the fraction of correct runs).
    groups : array-like of shape (n_samples,), default=None
        Group of each row (e.g. the query id). None gives each row its own group, so
        that both copies of a row always fall in the same cross-validation fold.
    drop_zero : bool, default=True
        Drop the rows whose weight is 0 (``p`` exactly 0 or 1).

    Returns
    -------
    X2 : ndarray of shape (n_rows, n_features)
    y2 : ndarray of shape (n_rows,), int64 0/1 labels
    w2 : ndarray of shape (n_rows,), float64 weights
    groups2 : ndarray of shape (n_rows,)
        Positive rows first, then negative rows (zero-weight rows removed).
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {X.shape}.")
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    n = X.shape[0]
    if p.shape[0] != n:
        raise ValueError(f"p has {p.shape[0]} values but X has {n} rows.")
    bad = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"Soft labels must lie in [0, 1]; p[{i}] = {p[i]!r}.")
    if groups is None:
        groups = np.arange(n)
    groups = np.asarray(groups)
    if groups.shape[0] != n:
        raise ValueError(f"groups has {groups.shape[0]} values but X has {n} rows.")
    X2 = np.concatenate([X, X], axis=0)
    y2 = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)])
    w2 = np.concatenate([p, 1.0 - p])
    g2 = np.concatenate([groups, groups])
    if drop_zero:
        keep = w2 > 0
        X2, y2, w2, g2 = X2[keep], y2[keep], w2[keep], g2[keep]
    return X2, y2, w2, g2


class ProbeClassifier(ClassifierMixin, BaseEstimator):
    """Calibrated MLP probe predicting P(correct) for (query, strategy) rows.

    A skorch MLP (``hidden_units`` ReLU layers, one logit out) trained with sample-weighted
    binary cross-entropy and Adam, wrapped in ``CalibratedClassifierCV(method="sigmoid",
    ensemble=True)``: ``cv`` networks, each fitted on the other folds and Platt-calibrated on
    its own fold; predictions average the ``cv`` calibrated networks. With ``groups`` the
    folds keep every group whole (``GroupKFold``); without, they are ``StratifiedKFold``.

    Parameters
    ----------
    hidden_units : tuple of int, default=(200, 200)
        Sizes of the hidden layers (the paper's probe is 200-200-1).
    max_epochs : int, default=20
        Training epochs of each network (more on small data, see ``min_steps``).
    min_steps : int, default=0
        Train each network for at least this many optimizer steps: on small data (few
        batches per epoch) the number of epochs grows to reach it.
    lr : float, default=1e-3
        Adam learning rate.
    batch_size : int, default=256
        Mini-batch size (also used for prediction).
    weight_decay : float, default=0.0
        Adam weight decay (L2).
    standardize : bool, default=True
        Standardize the inputs with the mean and std of each network's training rows
        (kept inside the network, so inputs need no scaler).
    cv : int, cross-validation splitter or iterable of (train, test), default=3
        Number of calibration folds (>= 2), a splitter whose ``split(X, y, groups)``
        yields the folds, or the folds themselves as index arrays.
    random_state : int, RandomState instance or None, default=None
        Seeds the folds and torch (weights init, batch order): an int gives identical fits.
    device : {"cpu", "cuda", "auto"} or str, default="cpu"
        Torch device for training ("auto": cuda when available).
    n_threads : int or None, default=1
        Torch CPU threads while fitting (restored afterwards). Networks this small train
        fastest on one thread, and several threads collapse on a busy machine; None keeps
        torch's setting.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two class labels; probabilities are for ``classes_[1]``.
    calibrated_ : CalibratedClassifierCV
        The fitted calibrated ensemble.
    n_features_in_ : int
        Number of input features.
    cv_splits_ : list of (train, test) index arrays
        The calibration folds used.

    Notes
    -----
    Soft labels: use :func:`soft_to_weighted` and pass its weights and groups to ``fit``.
    Training is stochastic (mini-batch SGD): ``sample_weight=2`` only approximately equals
    repeating a row.
    """

    _parameter_constraints = {
        "hidden_units": ["array-like"],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "min_steps": [Interval(numbers.Integral, 0, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "standardize": ["boolean"],
        "cv": [Interval(numbers.Integral, 2, None, closed="left"), "cv_object"],
        "random_state": ["random_state"],
        "device": [StrOptions({"auto"}), str],
        "n_threads": [Interval(numbers.Integral, 1, None, closed="left"), None],
    }

    def __init__(
        self,
        hidden_units=(200, 200),
        max_epochs=20,
        min_steps=0,
        lr=1e-3,
        batch_size=256,
        weight_decay=0.0,
        standardize=True,
        cv=3,
        random_state=None,
        device="cpu",
        n_threads=1,
    ):
        self.hidden_units = hidden_units
        self.max_epochs = max_epochs
        self.min_steps = min_steps
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.standardize = standardize
        self.cv = cv
        self.random_state = random_state
        self.device = device
        self.n_threads = n_threads

    # -- fitting ---------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, groups=None):
        """Fit the calibrated ensemble.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows ``[query features, strategy encoding]``; finite floats.
        y : array-like of shape (n_samples,)
            Binary labels (normally 0/1 = wrong/right). Soft labels: see
            :func:`soft_to_weighted`.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative finite weights of the rows in the loss and in calibration.
        groups : array-like of shape (n_samples,), default=None
            Group of each row (query id); rows of a group never straddle calibration folds.

        Returns
        -------
        self : ProbeClassifier
        """
        X, y = validate_data(
            self, X, y, dtype=[np.float32, np.float64], y_numeric=False, ensure_min_samples=2
        )
        y01 = self._encode_y(y)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True
            )
            if not sample_weight.sum() > 0:
                raise ValueError("sample_weight sums to 0; at least one row needs weight > 0.")
        if groups is not None:
            groups = np.asarray(groups).reshape(-1)
            if groups.shape[0] != X.shape[0]:
                raise ValueError(
                    f"groups has {groups.shape[0]} values but X has {X.shape[0]} rows."
                )
        return self._fit(np.asarray(X, dtype=np.float32), y01, sample_weight, groups)

    def _encode_y(self, y):
        y = np.asarray(y)
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type in ("continuous", "continuous-multioutput"):
            raise ValueError(
                "Unknown label type: continuous. ProbeClassifier expects hard binary "
                "labels (0/1); turn soft labels in [0, 1] into weighted hard labels with "
                "ttcrouter.probe.soft_to_weighted(X, p, groups) and pass the weights as "
                "sample_weight."
            )
        if y_type != "binary":
            raise ValueError(
                f"Only binary classification is supported. The type of the target is {y_type}."
            )
        classes, y01 = np.unique(y, return_inverse=True)
        if classes.shape[0] < 2:
            raise ValueError(
                f"y has a single class ({classes[0]!r}); the probe needs both correct and "
                "wrong examples."
            )
        self.classes_ = classes
        return y01.astype(np.int64)

    def _splits(self, X, y01, groups, seed):
        cv = self.cv
        if hasattr(cv, "split"):
            splits = list(cv.split(X, y01, groups))
        elif not isinstance(cv, numbers.Integral):
            splits = list(cv)
        elif groups is None:
            counts = np.bincount(y01, minlength=2)
            if counts.min() < cv:
                raise ValueError(
                    f"ProbeClassifier(cv={cv}) needs at least {cv} rows of each class for "
                    f"its calibration folds; got {counts[0]} of class {self.classes_[0]!r} "
                    f"and {counts[1]} of class {self.classes_[1]!r}. Lower cv or add data."
                )
            splitter = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
            splits = list(splitter.split(X, y01))
        else:
            n_groups = np.unique(groups).shape[0]
            if n_groups < cv:
                raise ValueError(
                    f"ProbeClassifier(cv={cv}) needs at least {cv} groups (queries) for its "
                    f"group-aware calibration folds; got {n_groups}. Lower cv or add queries."
                )
            splitter = GroupKFold(n_splits=cv, shuffle=True, random_state=seed)
            splits = list(splitter.split(X, y01, groups))
        return [(np.asarray(tr), np.asarray(te)) for tr, te in splits]

    def _make_net(self):
        net = WeightedBinaryNet(
            module=ProbeModule,
            module__hidden_units=tuple(int(h) for h in self.hidden_units),
            criterion=torch.nn.BCEWithLogitsLoss,
            criterion__reduction="none",
            optimizer=torch.optim.Adam,
            optimizer__weight_decay=float(self.weight_decay),
            lr=float(self.lr),
            max_epochs=int(self.max_epochs),
            batch_size=int(self.batch_size),
            train_split=None,
            iterator_train=BatchIterator,
            iterator_train__shuffle=True,
            iterator_valid=BatchIterator,
            callbacks="disable",
            device=resolve_device(self.device),
            verbose=0,
            standardize=bool(self.standardize),
            min_steps=int(self.min_steps),
        )
        return net

    def _fit(self, X, y01, sample_weight, groups):
        for h in self.hidden_units:
            check_int(h, "each of hidden_units", min_val=1,
                      hint=f"hidden_units must be a tuple of positive ints; got "
                           f"{self.hidden_units!r}.")
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        splits = self._splits(X, y01, groups, seed if self.random_state is not None else None)
        calibrated = CalibratedClassifierCV(
            estimator=self._make_net(), method="sigmoid", cv=splits, ensemble=True
        )
        old_threads = torch.get_num_threads()
        try:
            if self.n_threads is not None:
                torch.set_num_threads(int(self.n_threads))
            with torch.random.fork_rng(devices=[]), config_context(
                enable_metadata_routing=False
            ):
                if self.random_state is not None:
                    torch.manual_seed(seed)
                calibrated.fit(X, y01, sample_weight=sample_weight)
        finally:
            torch.set_num_threads(old_threads)
        self.calibrated_ = calibrated
        self.cv_splits_ = splits
        self._fast_members_ = [member_params(cc) for cc in calibrated.calibrated_classifiers_]
        return self

    # -- prediction ------------------------------------------------------------------
    def _check_X(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float32, np.float64], reset=False)
        return np.asarray(X, dtype=np.float32)

    def predict_proba(self, X):
        """Calibrated class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, 2)
            Columns follow ``classes_``.
        """
        X = self._check_X(X)
        with config_context(enable_metadata_routing=False):
            return self.calibrated_.predict_proba(X)

    def predict(self, X):
        """Predicted class (``classes_[1]`` when its probability exceeds 0.5).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        proba = self.predict_proba(X)
        return self.classes_[(proba[:, 1] > 0.5).astype(int)]

    def predict_proba_grid(self, E, S):
        """P(``classes_[1]``) for every (query, strategy) pair, without the cross product.

        Equals ``predict_proba(np.hstack([E[i], S[j]]))[:, 1]`` for all i, j (to float32
        precision): the first layer's query half is computed once per query and its
        strategy half once per strategy.

        Parameters
        ----------
        E : array-like of shape (n_queries, d_query)
            Query features (the first ``d_query`` probe inputs).
        S : array-like of shape (n_strategies, d_strategy)
            Strategy encodings (the last inputs); ``d_query + d_strategy`` must equal
            ``n_features_in_``.

        Returns
        -------
        proba : ndarray of shape (n_queries, n_strategies), float64
        """
        check_is_fitted(self)
        E = np.asarray(E, dtype=np.float32)
        S = np.asarray(S, dtype=np.float32)
        if E.ndim != 2 or S.ndim != 2:
            raise ValueError(
                f"E and S must be 2-D (n_queries, d_query) and (n_strategies, d_strategy); "
                f"got shapes {E.shape} and {S.shape}."
            )
        if E.shape[1] + S.shape[1] != self.n_features_in_:
            raise ValueError(
                f"E has {E.shape[1]} columns and S has {S.shape[1]}: together "
                f"{E.shape[1] + S.shape[1]}, but the probe was fitted on "
                f"{self.n_features_in_} features (query features first, strategy encoding last)."
            )
        if not (np.isfinite(E).all() and np.isfinite(S).all()):
            raise ValueError("E and S must be finite (no NaN or inf).")
        return grid_proba(self._fast_members_, E, S)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.non_deterministic = self.random_state is None
        return tags


# Routers and probes pickled before the torch side moved to ttcrouter.mlp name these classes
# by their old paths: keep them resolvable, so an old router file still loads.
_ProbeModule = ProbeModule
_BatchIterator = BatchIterator
_WeightedBinaryNet = WeightedBinaryNet
