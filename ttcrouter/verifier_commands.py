"""The work behind ``ttcrouter train-verifier``, and ``evaluate --scorer``'s re-scoring of pooled runs.

``train-verifier`` reads a samples file or a collection directory, extracts the generator's
features of every sample once, reports the held-out AUROC of query-grouped cross-fitting
(beside the log-probability scorer's when the table has ``score_logprob``), fits one
:class:`~ttcrouter.verifier.TrainedVerifier` on every sample and saves it. ``evaluate
--scorer FILE`` scores a collection's samples with a verifier file and adds a
``scorer=verifier`` copy of each pooled strategy that reads a score (best-of-N, weighted
voting) derived with it (:func:`rescore_runs`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from .collection import load_samples
from .collection.latency import request_latency_model
from .samples import derive_runs, read_samples, score_columns, validate_samples
from .strategies import as_strategy
from .verifier import TrainedVerifier, load_verifier, save_verifier
from .verifier_samples import cross_fit_scores, sample_features, score_samples, verifier_data

__all__ = ["cmd_train_verifier", "read_samples_arg", "rescore_runs", "held_out_auroc",
           "collection_request_latency"]

logger = logging.getLogger(__name__)


def read_samples_arg(path) -> pd.DataFrame:
    """A samples table from a samples file or a collection directory."""
    path = Path(path)
    return load_samples(path) if path.is_dir() else read_samples(path)


def held_out_auroc(y, score) -> float:
    """AUROC, or NaN where ``y`` has one class only."""
    y = np.asarray(y)
    return float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else float("nan")


def cmd_train_verifier(args) -> int:
    """``ttcrouter train-verifier``: fit a verifier on a samples table and save it."""
    t0 = time.perf_counter()
    samples = read_samples_arg(args.samples)
    if args.max_samples is not None and len(samples) > args.max_samples:
        keep = (samples["query_id"].drop_duplicates()
                .sample(frac=1.0, random_state=args.seed).tolist())
        counts = samples.groupby("query_id").size().reindex(keep).cumsum()
        chosen = counts.index[counts <= args.max_samples].tolist() or keep[:1]
        samples = samples[samples["query_id"].isin(chosen)]
        logger.info("kept %d samples of %d queries (--max-samples)", len(samples), len(chosen))
    samples = validate_samples(samples)  # the order of sample_features' rows
    X, y, groups = verifier_data(samples)
    verifier = TrainedVerifier(model=args.model, layer=args.layer, C=args.C,
                               n_threads=args.threads, batch_size=args.batch_size,
                               show_progress=not args.no_progress)
    logger.info("%d samples of %d queries (%.3f correct); reading them with the generator",
                len(X), len(np.unique(groups)), float(np.mean(y)))
    features = sample_features(samples, verifier, cache_dir=args.features_cache,
                               progress=not args.no_progress)
    extract_s = time.perf_counter() - t0
    tokens = int(features.tokens_read.sum())
    logger.info("features of %d samples (%d tokens) in %.1fs", len(X), tokens, extract_s)
    if args.folds >= 2:
        held = cross_fit_scores(samples, verifier, n_folds=args.folds, random_state=args.seed,
                                features=features)
        line = f"held-out AUROC ({args.folds} query folds): verifier " \
               f"{held_out_auroc(held['correct'], held['score_verifier']):.3f}"
        if "score_logprob" in held.columns:
            line += f", logprob {held_out_auroc(held['correct'], held['score_logprob']):.3f}"
        for mode, part in held.groupby("mode"):
            line += (f"; {mode}: verifier "
                     f"{held_out_auroc(part['correct'], part['score_verifier']):.3f}")
            if "score_logprob" in part.columns:
                line += f" / logprob {held_out_auroc(part['correct'], part['score_logprob']):.3f}"
        print(line)
    verifier.fit(X, y, groups, features=features)
    out = save_verifier(verifier, args.out)
    print(f"verifier saved to {out} ({len(X)} samples, {verifier.n_prefixes_} step prefixes, "
          f"{len(verifier.train_groups_)} queries; features in {extract_s:.1f}s, "
          f"{time.perf_counter() - t0:.1f}s in all)")
    return 0


def rescore_runs(runs: pd.DataFrame, samples: pd.DataFrame, verifier, *,
                 request_latency=None) -> pd.DataFrame:
    """Runs with a verifier-scored copy of every best-of-N and weighted-vote row added.

    The samples are scored with ``verifier`` (:func:`ttcrouter.verifier_samples.score_samples`,
    which warns when it was trained on some of these queries), and each pooled strategy that
    reads a score is derived again from its pools as ``<name>,scorer=verifier``, charged the
    verifier's reward tokens and time. The rows already there are kept, so a router chooses
    between the scorers as between any other strategies; verifier rows already in ``runs``
    are replaced.

    Parameters
    ----------
    runs : DataFrame
        The runs table of the collection the samples come from.
    samples : DataFrame
    verifier : TrainedVerifier or path
    request_latency : callable, optional
        The collection's calibrated request latency (see :func:`ttcrouter.derive_runs`).

    Returns
    -------
    DataFrame
        ``runs`` and the verifier rows.
    """
    if not isinstance(verifier, TrainedVerifier):
        verifier = load_verifier(verifier)
    specs = [as_strategy(n) for n in pd.unique(runs["strategy"])]
    marked = list(dict.fromkeys(dataclasses.replace(s, scorer="verifier") for s in specs
                                if s.derivable and s.needs_reward_model))
    if not marked:
        logger.warning("no best-of-N or weighted-vote rows to re-score")
        return runs
    queries = np.unique(samples["query_id"].astype(str))
    seen = np.intersect1d(queries, verifier.train_groups_)
    if seen.size:
        logger.warning("THE VERIFIER WAS TRAINED ON %d OF THE %d EVALUATED QUERIES (e.g. %r): "
                       "their best-of-N and weighted-vote rows are optimistic. Train it on "
                       "other queries (or cross-fit: bench/verifier_eval.py) for held-out "
                       "numbers.", seen.size, len(queries), seen[0])
    with warnings.catch_warnings():  # the overlap was reported above, once
        warnings.simplefilter("ignore", UserWarning)
        scored = score_samples(samples, verifier, name="verifier")
    derived = derive_runs(scored, marked, request_latency=request_latency,
                          score=_own_score(scored))
    key = ["query_id", "strategy", "repeat"]
    keep = ~runs.set_index(key).index.isin(derived.set_index(key).index)
    cols = [c for c in runs.columns if c in derived.columns]
    out = pd.concat([runs[keep], derived[cols]], ignore_index=True)
    out.attrs = dict(runs.attrs)
    logger.info("added %d rows of %d verifier-scored strategies", len(derived), len(marked))
    return out


def _own_score(samples):
    """The samples' own score column (not the verifier's), or None."""
    own = [c for c in score_columns(samples) if c != "score_verifier"]
    return own[0] if own else None


def collection_request_latency(samples: pd.DataFrame):
    """The calibrated request latency recorded with a collection's samples, or None."""
    prov = samples.attrs.get("provenance", {})
    models = prov.get("latency_calibration", {}).get("models")
    return request_latency_model(models) if models else None
