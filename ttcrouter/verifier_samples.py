"""The trained verifier on a samples table: its training data, its scores, cross-fitting.

:func:`verifier_data` turns a samples table into ``(X, y, groups)`` for
:class:`~ttcrouter.verifier.TrainedVerifier`; :func:`score_samples` and
:func:`cross_fit_scores` write a verifier's scores, reward tokens and time into the samples
table's ``score_<name>``, ``reward_tokens_<name>`` and ``score_latency_s_<name>`` columns
(:func:`verifier_columns`), which :func:`ttcrouter.samples.derive_runs` charges.
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import GroupKFold
from sklearn.utils.validation import check_is_fitted

from .atomic import atomic_path
from .samples import SCORE_PREFIX, SamplesTableError, validate_samples
from .step_features import StepFeatures
from .verifier import TrainedVerifier

logger = logging.getLogger(__name__)

__all__ = ["verifier_columns", "verifier_data", "sample_features", "score_samples",
           "cross_fit_scores"]

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


def _distinct(X: pd.DataFrame):
    """(the distinct (query, mode, solution) rows of X, each row's index among them, digest)."""
    keys = pd.MultiIndex.from_frame(X[["query_id", "mode", "solution"]])
    codes, _ = pd.factorize(keys)
    first = pd.Series(np.arange(len(X))).groupby(codes).first().to_numpy()
    distinct = X.iloc[first].reset_index(drop=True)
    digest = hashlib.sha256("\x1f".join(distinct["query_id"] + "\x1e" + distinct["mode"]
                                        + "\x1e" + distinct["solution"]).encode()).hexdigest()
    return distinct, codes, digest


def sample_features(samples: pd.DataFrame, verifier: TrainedVerifier, *, cache_dir=None,
                    chunk: int = 1024, progress: bool = False) -> StepFeatures:
    """The generator's step features of every sample, each distinct text read once.

    Identical (query, mode, text) samples (common in ``direct`` mode) share one forward
    pass; every sample is still charged its own ``tokens_read`` and ``seconds``, as a
    verifier without a cache would be. With ``cache_dir`` the distinct texts are read in
    chunks of ``chunk``, each written to ``cache_dir/chunk-NNNNN.npz`` when done, and chunks
    already there are reused: a killed extraction resumes where it stopped.

    Parameters
    ----------
    samples : DataFrame
        A samples table; the features are in its validated (sorted) order, as
        :func:`score_samples` and :func:`cross_fit_scores` take them.
    verifier : TrainedVerifier
        Whose generator, layer and prompts read the samples (fitted or not).
    cache_dir : str or path, optional
    chunk : int, default=1024
    progress : bool, default=False
        A progress bar over the chunks.

    Returns
    -------
    StepFeatures
        One row per sample of ``validate_samples(samples)``.

    Raises
    ------
    ValueError
        ``cache_dir`` holds chunks of other samples or another chunk size.
    """
    X, _, _ = verifier_data(validate_samples(samples))
    distinct, codes, digest = _distinct(X)
    if cache_dir is None:
        return verifier.extract_features(distinct).subset(codes)
    if not isinstance(chunk, numbers.Integral) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}.")
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    manifest = {"samples": len(X), "distinct": len(distinct), "sha256": digest,
                "chunk": int(chunk), "layer": verifier.layer}
    manifest_path = cache / "manifest.json"
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old != manifest:
            raise ValueError(f"{cache} holds the features of other samples or settings "
                             f"({old} vs {manifest}); pass another cache_dir.")
    else:
        with atomic_path(manifest_path) as tmp:
            Path(tmp).write_text(json.dumps(manifest, indent=1))
    starts = range(0, len(distinct), chunk)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="verifier features", unit="chunk")
    parts = []
    for k, start in enumerate(starts):
        path = cache / f"chunk-{k:05d}.npz"
        if not path.exists():
            part = verifier.extract_features(distinct.iloc[start:start + chunk])
            tmp = path.with_name(path.name + ".tmp.npz")
            part.save(tmp)
            os.replace(tmp, path)  # a chunk is there whole or not at all
        parts.append(StepFeatures.load(path))
    return StepFeatures.concat(parts).subset(codes)


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
