"""Tests for ttcrouter.probe: the calibrated MLP probe and its fast grid path."""

import io

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from ttcrouter.probe import ProbeClassifier, soft_to_weighted

SMALL = dict(hidden_units=(16,), max_epochs=20, batch_size=16, random_state=0)


def _blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, 3)) + 3.0 * y[:, None]
    return X.astype(np.float32), y


def _grid_problem(n_q=30, d=5, seed=0):
    """Queries in a few clusters x strategy encodings, soft labels from a known rule."""
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, 3, size=n_q)
    centers = np.eye(3, d) * 2.0
    E = (centers[kinds] + 0.1 * rng.normal(size=(n_q, d))).astype(np.float32)
    S = np.array([[1, 0, 0], [1, 0, 2], [0, 1, 4]], dtype=np.float32)
    base = np.array([-1.5, 0.0, 1.5])[kinds]
    P = 1 / (1 + np.exp(-(base[:, None] + 0.4 * S[None, :, 2])))
    X = np.hstack([np.repeat(E, len(S), axis=0), np.tile(S, (n_q, 1))])
    groups = np.repeat(np.arange(n_q), len(S))
    return E, S, X, P.reshape(-1), groups


def test_learns_separable_problem():
    X, y = _blobs()
    clf = ProbeClassifier(**{**SMALL, "max_epochs": 60}).fit(X, y)
    assert clf.score(X, y) > 0.95
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert list(clf.classes_) == [0, 1]
    assert clf.n_features_in_ == 3


def test_string_labels_map_back():
    X, y = _blobs()
    labels = np.array(["wrong", "right"])[y]
    clf = ProbeClassifier(**SMALL).fit(X, labels)
    assert set(clf.predict(X)) <= {"wrong", "right"}
    assert list(clf.classes_) == ["right", "wrong"]
    # probabilities are for classes_[1] == "wrong" (label 0 of the blobs)
    assert clf.predict_proba(X[y == 0])[:, 1].mean() > 0.8


def test_soft_labels_recovered_and_weights_matter():
    # four one-hot "queries" repeated, each with a known accuracy
    p_true = np.array([0.1, 0.4, 0.7, 0.9])
    X = np.repeat(np.eye(4, dtype=np.float32), 30, axis=0)
    p = np.repeat(p_true, 30)
    X2, y2, w2, g2 = soft_to_weighted(X, p)
    clf = ProbeClassifier(hidden_units=(8,), max_epochs=100, batch_size=32, random_state=0)
    clf.fit(X2, y2, sample_weight=w2, groups=g2)
    pred = clf.predict_proba(np.eye(4, dtype=np.float32))[:, 1]
    np.testing.assert_allclose(pred, p_true, atol=0.08)
    # without the weights every query has one positive and one negative row: p = 0.5
    unweighted = clone(clf).fit(X2, y2, groups=g2).predict_proba(np.eye(4))[:, 1]
    np.testing.assert_allclose(unweighted, 0.5, atol=0.08)


def test_calibration_ensemble_size_equals_cv():
    X, y = _blobs()
    for cv in (2, 4):
        clf = ProbeClassifier(**{**SMALL, "cv": cv}).fit(X, y)
        assert len(clf.calibrated_.calibrated_classifiers_) == cv
        assert len(clf.cv_splits_) == cv


def test_group_aware_folds_keep_groups_whole():
    E, S, X, p, groups = _grid_problem()
    X2, y2, w2, g2 = soft_to_weighted(X, p, groups)
    clf = ProbeClassifier(**SMALL).fit(X2, y2, sample_weight=w2, groups=g2)
    seen = []
    for train, test in clf.cv_splits_:
        assert not set(g2[train]) & set(g2[test])
        seen.extend(test)
    assert sorted(seen) == list(range(len(X2)))


@pytest.mark.parametrize("hidden_units", [(12, 7), (), (200, 200)])
def test_predict_proba_grid_matches_cross_product(hidden_units):
    E, S, X, p, groups = _grid_problem()
    X2, y2, w2, g2 = soft_to_weighted(X, p, groups)
    clf = ProbeClassifier(hidden_units=hidden_units, max_epochs=10, random_state=0)
    clf.fit(X2, y2, sample_weight=w2, groups=g2)
    rng = np.random.default_rng(1)
    E_new = rng.normal(size=(9, E.shape[1])).astype(np.float32)
    S_new = rng.normal(size=(4, S.shape[1])).astype(np.float32)
    grid = clf.predict_proba_grid(E_new, S_new)
    cross = np.hstack([np.repeat(E_new, 4, axis=0), np.tile(S_new, (9, 1))])
    ref = clf.predict_proba(cross)[:, 1].reshape(9, 4)
    assert grid.shape == (9, 4)
    np.testing.assert_allclose(grid, ref, atol=1e-5)


def test_grid_learns_the_rule():
    E, S, X, p, groups = _grid_problem(n_q=60)
    X2, y2, w2, g2 = soft_to_weighted(X, p, groups)
    clf = ProbeClassifier(hidden_units=(16,), max_epochs=40, batch_size=32, random_state=0)
    clf.fit(X2, y2, sample_weight=w2, groups=g2)
    grid = clf.predict_proba_grid(E, S)
    assert np.abs(grid - p.reshape(len(E), len(S))).mean() < 0.08


def test_reproducible_with_random_state():
    X, y = _blobs()
    a = ProbeClassifier(**SMALL).fit(X, y).predict_proba(X)
    b = ProbeClassifier(**SMALL).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    c = ProbeClassifier(**{**SMALL, "random_state": 1}).fit(X, y).predict_proba(X)
    assert not np.array_equal(a, c)


def test_clone_params_and_pickle():
    X, y = _blobs()
    pipe = Pipeline([("probe", ProbeClassifier(**SMALL))])
    pipe.set_params(probe__hidden_units=(8, 4), probe__max_epochs=5)
    assert pipe.get_params()["probe__hidden_units"] == (8, 4)
    cloned = clone(pipe)
    assert cloned.named_steps["probe"].max_epochs == 5
    pipe.fit(X, y)
    buf = io.BytesIO()
    joblib.dump(pipe, buf)
    buf.seek(0)
    loaded = joblib.load(buf)
    np.testing.assert_array_equal(loaded.predict_proba(X), pipe.predict_proba(X))
    probe = loaded.named_steps["probe"]
    np.testing.assert_array_equal(
        probe.predict_proba_grid(X[:5, :2], X[:3, 2:]),
        pipe.named_steps["probe"].predict_proba_grid(X[:5, :2], X[:3, 2:]),
    )


def test_fit_leaves_torch_threads_alone():
    import torch

    before = torch.get_num_threads()
    X, y = _blobs(40)
    ProbeClassifier(**{**SMALL, "max_epochs": 1}).fit(X, y)
    assert torch.get_num_threads() == before


def test_bad_inputs():
    X, y = _blobs(60)
    clf = ProbeClassifier(**{**SMALL, "max_epochs": 1})
    with pytest.raises(ValueError, match="soft_to_weighted"):
        clf.fit(X, np.linspace(0, 1, len(X)))
    with pytest.raises(ValueError, match="Only binary classification"):
        clf.fit(X, np.arange(len(X)) % 3)
    with pytest.raises(ValueError, match="single class"):
        clf.fit(X, np.ones(len(X), dtype=int))
    X_nan = X.copy()
    X_nan[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(X_nan, y)
    with pytest.raises(ValueError, match="[Nn]egative"):
        clf.fit(X, y, sample_weight=-np.ones(len(X)))
    w = np.ones(len(X))
    w[0] = np.inf
    with pytest.raises(ValueError):
        clf.fit(X, y, sample_weight=w)
    with pytest.raises(ValueError, match="at least 3 groups"):
        clf.fit(X, y, groups=np.arange(len(X)) % 2)
    with pytest.raises(ValueError, match="groups has"):
        clf.fit(X, y, groups=np.arange(3))
    with pytest.raises(ValueError, match="at least 3 rows of each class"):
        clf.fit(X[:4], np.array([0, 1, 1, 1]))
    with pytest.raises(ValueError):
        ProbeClassifier(cv=1).fit(X, y)
    with pytest.raises(ValueError):
        ProbeClassifier(lr=-1.0).fit(X, y)
    with pytest.raises(ValueError, match="hidden_units"):
        ProbeClassifier(hidden_units=(0,)).fit(X, y)


def test_grid_bad_shapes_and_unfitted():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        ProbeClassifier().predict_proba_grid(np.zeros((2, 2)), np.zeros((2, 1)))
    X, y = _blobs(60)
    clf = ProbeClassifier(**{**SMALL, "max_epochs": 1}).fit(X, y)
    with pytest.raises(ValueError, match="fitted on 3 features"):
        clf.predict_proba_grid(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="2-D"):
        clf.predict_proba_grid(np.zeros(2), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="finite"):
        clf.predict_proba_grid(np.full((2, 2), np.nan), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="features"):
        clf.predict_proba(np.zeros((2, 5)))


def test_soft_to_weighted():
    X = np.arange(6, dtype=float).reshape(3, 2)
    X2, y2, w2, g2 = soft_to_weighted(X, [0.25, 1.0, 0.0], groups=["a", "b", "c"])
    # p=1 drops its y=0 copy, p=0 drops its y=1 copy
    assert X2.shape == (4, 2)
    assert list(y2) == [1, 1, 0, 0]
    np.testing.assert_allclose(w2, [0.25, 1.0, 0.75, 1.0])
    assert list(g2) == ["a", "b", "a", "c"]
    X2, y2, w2, g2 = soft_to_weighted(X, [0.25, 1.0, 0.0], drop_zero=False)
    assert X2.shape == (6, 2) and list(g2) == [0, 1, 2, 0, 1, 2]
    with pytest.raises(ValueError, match=r"p\[1\]"):
        soft_to_weighted(X, [0.5, 1.5, 0.0])
    with pytest.raises(ValueError, match="rows"):
        soft_to_weighted(X, [0.5, 0.5])


def test_cv_accepts_splitter_and_explicit_folds():
    from sklearn.model_selection import KFold

    X, y = _blobs(60)
    clf = ProbeClassifier(**{**SMALL, "max_epochs": 2, "cv": KFold(4)}).fit(X, y)
    assert len(clf.calibrated_.calibrated_classifiers_) == 4
    folds = [(np.arange(30, 60), np.arange(30)), (np.arange(30), np.arange(30, 60))]
    clf = ProbeClassifier(**{**SMALL, "max_epochs": 2, "cv": folds}).fit(X, y)
    assert len(clf.calibrated_.calibrated_classifiers_) == 2
    np.testing.assert_array_equal(clf.cv_splits_[0][1], np.arange(30))


def test_min_steps_adds_epochs_on_small_data():
    X, y = _blobs(60)  # 40 training rows per fold: 3 batches of 16
    clf = ProbeClassifier(**{**SMALL, "max_epochs": 2, "min_steps": 10}).fit(X, y)
    assert [len(cc.estimator.history) for cc in clf.calibrated_.calibrated_classifiers_] == [4] * 3
    clf = ProbeClassifier(**{**SMALL, "max_epochs": 2}).fit(X, y)
    assert len(clf.calibrated_.calibrated_classifiers_[0].estimator.history) == 2


def test_grid_chunking_gives_the_same_result():
    from ttcrouter.mlp import grid_proba

    E, S, X, p, groups = _grid_problem()
    X2, y2, w2, g2 = soft_to_weighted(X, p, groups)
    clf = ProbeClassifier(**{**SMALL, "max_epochs": 3}).fit(X2, y2, sample_weight=w2, groups=g2)
    full = clf.predict_proba_grid(E, S)
    chunked = grid_proba(clf._fast_members_, E, S, max_pairs=7)  # 2 queries per chunk
    np.testing.assert_allclose(chunked, full, atol=1e-12)
