"""Shared data and stand-ins for the router, tuning, metrics and persistence tests."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from ttcrouter.runs import aggregate_runs, train_test_split_runs
from ttcrouter.synthetic import make_synthetic_runs

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: A small strategy space with one strategy that is right for each difficulty level.
SMALL_SPACE = ["majority_vote@n=1", "majority_vote@n=4", "majority_vote@n=16",
               "best_of_n@n=4", "beam_search@n=4,w=2", "beam_search@n=8,w=4"]


class MeanCosts(BaseEstimator):
    """Minimal cost model (per-strategy means), a stand-in with the CostTable interface."""

    def fit(self, X, tokens, latency=None):
        T = np.asarray(tokens, dtype=float)
        self.mean_tokens_ = T.mean(axis=0)
        self.mean_latency_ = (np.zeros_like(self.mean_tokens_) if latency is None
                              else np.asarray(latency, dtype=float).mean(axis=0))
        self.n_strategies_ = T.shape[1]
        return self

    def predict_costs(self, X):
        n = len(X)
        return np.tile(self.mean_tokens_, (n, 1)), np.tile(self.mean_latency_, (n, 1))

    def predict(self, X):
        return self.predict_costs(X)[0]


def default_costs():
    """CostTable when it exists, else the stand-in."""
    try:
        from ttcrouter.costs import CostTable
    except ImportError:
        return MeanCosts()
    return CostTable()


def fast_probe(random_state=0, **kw):
    """A small, quick ProbeClassifier (nonlinear, so it can learn per-query routing)."""
    from ttcrouter.probe import ProbeClassifier

    params = dict(hidden_units=(64,), max_epochs=30, lr=3e-3, batch_size=64, cv=2,
                  random_state=random_state)
    params.update(kw)
    return ProbeClassifier(**params)


def difficulty_features(truth, query_ids, noise=0.1, random_state=0):
    """Cheap query features: one-hot latent difficulty plus noise (no encoder needed)."""
    rng = np.random.default_rng(random_state)
    codes = truth.difficulty_code.loc[list(query_ids)].to_numpy()
    X = np.eye(3)[codes] + rng.normal(0, noise, size=(len(codes), 3))
    return X.astype(np.float32)


def split_synthetic(n_queries=150, strategies=SMALL_SPACE, repeats=4, random_state=0,
                    test_size=0.3):
    """Train/test RunsSummary pairs of a synthetic table and its truth."""
    runs, truth = make_synthetic_runs(n_queries, strategies=strategies, repeats=repeats,
                                      random_state=random_state, return_truth=True)
    tr, te = train_test_split_runs(runs, test_size, random_state=random_state)
    return aggregate_runs(tr, strategies), aggregate_runs(te, strategies), truth


def encoder():
    from ttcrouter.embedding import EmbeddingTransformer

    return EmbeddingTransformer()


def as_frame(M, names):
    return pd.DataFrame(np.asarray(M), columns=names)


class TextFeatures(BaseEstimator):
    """Cheap featurizer of query strings (length, digits, words): a picklable stand-in
    for EmbeddingTransformer in fast tests that need a Pipeline over strings."""

    def fit(self, X, y=None):
        return self

    def __sklearn_is_fitted__(self):
        return True  # stateless

    def transform(self, X):
        return np.array([[len(q) / 50, sum(c.isdigit() for c in q) / 5, len(q.split()) / 10]
                         for q in X], dtype=np.float32)


def text_pipeline(n_queries=60, strategies=("majority_vote@n=1", "majority_vote@n=4",
                                             "beam_search@n=4,w=2"), random_state=0):
    """A fitted Pipeline(TextFeatures, UtilityRouter) on a synthetic table, and its summary."""
    from sklearn.pipeline import Pipeline

    from ttcrouter.router import UtilityRouter

    s = aggregate_runs(make_synthetic_runs(n_queries, strategies=list(strategies), repeats=2,
                                           random_state=random_state))
    pipe = Pipeline([("features", TextFeatures()),
                     ("router", UtilityRouter(probe=fast_probe(random_state)))])
    pipe.fit(s.texts, s.Y, router__tokens=s.T, router__latency=s.L)
    return pipe, s
