"""The trained verifier on a samples table: its training data, its scores, cross-fitting.

:func:`verifier_data` turns a samples table into ``(X, y, groups)`` for
:class:`~ttcrouter.verifier.TrainedVerifier`; :func:`score_samples` and
:func:`cross_fit_scores` write a verifier's scores, reward tokens and time into the samples
table's ``score_<name>``, ``reward_tokens_<name>`` and ``score_latency_s_<name>`` columns
(:func:`verifier_columns`), which :func:`ttcrouter.samples.derive_runs` charges.
"""

from __future__ import annotations

import logging
import numbers
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import GroupKFold
from sklearn.utils.validation import check_is_fitted

from .samples import SCORE_PREFIX, SamplesTableError, validate_samples
from .verifier import TrainedVerifier

logger = logging.getLogger(__name__)

__all__ = ["verifier_columns", "verifier_data", "score_samples", "cross_fit_scores"]

def verifier_columns(name: str = "verifier") -> tuple[str, str, str]:
    """The samples-table columns of scorer ``name``: score, reward tokens, verification time."""
    return f"{SCORE_PREFIX}{name}", f"reward_tokens_{name}", f"score_latency_s_{name}"



def verifier_data(samples: pd.DataFrame):
    """``(X, y, groups)`` of :meth:`TrainedVerifier.fit` from (any rows of) a samples table.

    Returns
    -------
    X : DataFrame
        ``question``, ``solution``, ``mode``, ``query_id`` (one row per sample, in order).
    y : ndarray of int
        The samples' ``correct``.
    groups : ndarray of str
        The samples' ``query_id``.

    Raises
    ------
    SamplesTableError
        A column of the five is missing, or ``correct`` is not 0/1.
    """
    if not isinstance(samples, pd.DataFrame):
        raise TypeError(f"samples must be a samples table (DataFrame), got "
                        f"{type(samples).__name__}.")
    need = ["query_id", "query", "mode", "text", "correct"]
    missing = [c for c in need if c not in samples.columns]
    if missing:
        raise SamplesTableError(f"Samples table lacks column(s) {missing}; the verifier reads "
                                f"{need}.")
    y = pd.to_numeric(samples["correct"], errors="coerce").to_numpy(float)
    if not np.isin(y, (0, 1)).all():
        raise SamplesTableError("Samples table column 'correct' must hold 0 or 1 only.")
    X = pd.DataFrame({"question": samples["query"].astype(str).to_numpy(),
                      "solution": samples["text"].fillna("").astype(str).to_numpy(),
                      "mode": samples["mode"].astype(str).to_numpy(),
                      "query_id": samples["query_id"].astype(str).to_numpy()})
    return X, y.astype(np.int64), X["query_id"].to_numpy(str)


def _write_scores(df, name, proba, features, head_seconds):
    score, tokens, latency = verifier_columns(name)
    df[score] = proba
    df[tokens] = features.tokens_read.astype(np.float64)
    df[latency] = features.seconds + head_seconds / max(len(df), 1)
    return df


def score_samples(samples: pd.DataFrame, verifier: TrainedVerifier, *, name="verifier",
                  features=None) -> pd.DataFrame:
    """A samples table with ``verifier``'s score, reward tokens and verification time added.

    Adds ``score_<name>`` (P(correct) of the complete sample), ``reward_tokens_<name>``
    (tokens its forward pass read) and ``score_latency_s_<name>`` (its share of the
    verification wall clock); :func:`ttcrouter.derive_runs` with ``score=name`` charges
    them to best-of-N and weighted-vote rows. Warns when the verifier was trained on some
    of these queries (their scores are optimistic); :func:`cross_fit_scores` avoids that.

    Parameters
    ----------
    samples : DataFrame
        A samples table.
    verifier : TrainedVerifier
        Fitted.
    name : str, default="verifier"
    features : StepFeatures, optional
        ``verifier.extract_features(verifier_data(validate_samples(samples))[0])``: the rows
        in the validated (sorted) order.

    Returns
    -------
    DataFrame
        The validated samples (sorted) with the three columns.
    """
    check_is_fitted(verifier, "calibrated_")
    df = validate_samples(samples)
    X, _, groups = verifier_data(df)
    seen = np.intersect1d(np.unique(groups), verifier.train_groups_)
    if seen.size:
        warnings.warn(f"The verifier was trained on {seen.size} of these "
                      f"{len(np.unique(groups))} queries (e.g. {seen[0]!r}); their scores are "
                      "optimistic. Use cross_fit_scores for held-out scores.", UserWarning,
                      stacklevel=2)
    if features is None:
        features = verifier.extract_features(X)
    t0 = time.perf_counter()
    proba = verifier.predict_proba(X, features=features)[:, 1]
    return _write_scores(df, name, proba, features, time.perf_counter() - t0)


def cross_fit_scores(samples: pd.DataFrame, verifier: TrainedVerifier, n_folds: int = 5, *,
                     random_state=0, name="verifier", features=None, return_step_proba=False):
    """Score every sample with a clone of ``verifier`` fitted on the other query folds.

    The generator's features of every sample are extracted once; each fold's head is fitted
    on the other folds' samples (all their step prefixes), so no query is scored by a
    verifier that saw it.

    Parameters
    ----------
    samples : DataFrame
        A samples table with at least ``n_folds`` queries.
    verifier : TrainedVerifier
        Unfitted template (cloned per fold).
    n_folds : int, default=5
    random_state : int, default=0
        Shuffles the assignment of queries to folds.
    name : str, default="verifier"
        Columns ``score_<name>``, ``reward_tokens_<name>``, ``score_latency_s_<name>``.
    features : StepFeatures, optional
        ``verifier.extract_features(verifier_data(validate_samples(samples))[0])``: the rows
        in the validated (sorted) order.
    return_step_proba : bool, default=False
        Also return every sample's per-step probabilities (held out as the scores).

    Returns
    -------
    scored : DataFrame
        The validated samples with the three columns and ``fold_<name>``.
    step_proba : list of ndarray
        Only with ``return_step_proba``; one array per row of ``scored``.
    """
    df = validate_samples(samples)
    X, y, groups = verifier_data(df)
    n_queries = len(np.unique(groups))
    if not isinstance(n_folds, numbers.Integral) or not 2 <= n_folds <= n_queries:
        raise ValueError(f"n_folds must be an integer in [2, {n_queries}] (the number of "
                         f"queries), got {n_folds!r}.")
    if features is None:
        features = clone(verifier).extract_features(X)
    folds = GroupKFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    proba = np.zeros(len(df))
    fold_of = np.zeros(len(df), dtype=np.int64)
    step_proba: list = [None] * len(df)
    head_seconds = 0.0
    for k, (train, test) in enumerate(folds.split(X, y, groups)):
        logger.info("verifier fold %d/%d: fitting on %d samples", k + 1, n_folds, len(train))
        est = clone(verifier).fit(X.iloc[train], y[train], groups[train],
                                  features=features.subset(train))
        t0 = time.perf_counter()
        steps = est.predict_step_proba(X.iloc[test], features=features.subset(test))
        head_seconds += time.perf_counter() - t0
        for i, p in zip(test, steps):
            step_proba[i], proba[i], fold_of[i] = p, p[-1], k
    scored = _write_scores(df, name, proba, features, head_seconds)
    scored[f"fold_{name}"] = fold_of
    return (scored, step_proba) if return_step_proba else scored


# -- files ----------------------------------------------------------------------------------
