"""Tests for ttcrouter.costs.CostTable."""

import io

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.neighbors import KNeighborsRegressor
from sklearn.svm import SVR

from ttcrouter.costs import CostTable

STRATS = ["best_of_n@n=1", "majority_vote@n=4", "beam_search@n=4,w=2"]


def _frames(n=20, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    idx = [f"q{i}" for i in range(n)]
    T = pd.DataFrame(rng.integers(50, 500, size=(n, 3)).astype(float), index=idx, columns=STRATS)
    L = pd.DataFrame(rng.uniform(0.5, 5.0, size=(n, 3)), index=idx, columns=STRATS)
    return X, T, L


def test_means_per_strategy():
    X, T, L = _frames()
    ct = CostTable().fit(X, T, L)
    np.testing.assert_allclose(ct.mean_tokens_, T.mean().to_numpy())
    np.testing.assert_allclose(ct.mean_latency_, L.mean().to_numpy())
    assert ct.n_strategies_ == 3
    assert ct.strategies_ == STRATS
    assert ct.has_latency_
    T_hat, L_hat = ct.predict_costs(X[:5])
    assert T_hat.shape == L_hat.shape == (5, 3)
    np.testing.assert_allclose(T_hat, np.tile(T.mean().to_numpy(), (5, 1)))
    np.testing.assert_allclose(L_hat[2], L.mean().to_numpy())
    np.testing.assert_array_equal(ct.predict(X[:5]), T_hat)


def test_arrays_and_no_latency():
    X, T, _ = _frames()
    ct = CostTable().fit(X, T.to_numpy())
    assert not hasattr(ct, "strategies_")
    assert not ct.has_latency_
    T_hat, L_hat = ct.predict_costs(X)
    np.testing.assert_array_equal(L_hat, 0.0)
    assert T_hat.shape == (len(X), 3)


def test_one_dimensional_tokens_give_one_dimensional_predict():
    X, T, _ = _frames()
    ct = CostTable().fit(X, T.iloc[:, 0].to_numpy())
    assert ct.n_strategies_ == 1
    assert ct.predict(X).shape == (len(X),)
    assert ct.predict_costs(X)[0].shape == (len(X), 1)


def test_latency_columns_reordered_to_tokens():
    X, T, L = _frames()
    ct = CostTable().fit(X, T, L[STRATS[::-1]])
    np.testing.assert_allclose(ct.mean_latency_, L.mean().to_numpy())


def test_per_query_regression_follows_the_query():
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, size=(200, 2))
    # cost of strategy j grows with feature 0 (longer answers for harder queries)
    T = np.exp(3 + 2 * X[:, [0]] + np.array([[0.0, 1.0, 2.0]]))
    L = T / 100.0
    ct = CostTable(per_query=True).fit(X, T, L)
    T_hat, L_hat = ct.predict_costs(np.array([[0.1, 0.5], [0.9, 0.5]]))
    assert (T_hat[1] > T_hat[0]).all()
    assert (L_hat[1] > L_hat[0]).all()
    assert (T_hat >= 0).all()
    np.testing.assert_allclose(T_hat[0], np.exp(3 + 0.2 + np.array([0.0, 1.0, 2.0])), rtol=0.15)
    mean_only = CostTable().fit(X, T, L).predict_costs(np.array([[0.1, 0.5]]))[0]
    assert np.abs(T_hat[0] - np.exp(3.2 + np.arange(3))).sum() < np.abs(
        mean_only[0] - np.exp(3.2 + np.arange(3))
    ).sum()


def test_per_query_custom_regressors():
    X, T, L = _frames()
    for reg in (KNeighborsRegressor(n_neighbors=3), SVR()):  # SVR is single-output
        ct = CostTable(per_query=True, regressor=reg).fit(X, T, L)
        T_hat, L_hat = ct.predict_costs(X)
        assert T_hat.shape == (len(X), 3) and (T_hat >= 0).all()
    assert reg.get_params() == SVR().get_params()  # the parameter is not fitted in place


def test_bad_costs_name_column_and_row():
    X, T, L = _frames()
    T_nan = T.copy()
    T_nan.loc["q3", STRATS[1]] = np.nan
    with pytest.raises(ValueError, match=r"tokens.*'majority_vote@n=4'.*'q3'"):
        CostTable().fit(X, T_nan, L)
    L_neg = L.copy()
    L_neg.loc["q7", STRATS[2]] = -1.0
    with pytest.raises(ValueError, match=r"latency.*'beam_search@n=4,w=2'.*'q7'"):
        CostTable().fit(X, T, L_neg)
    with pytest.raises(ValueError, match="column 1, row 2"):
        arr = T.to_numpy().copy()
        arr[2, 1] = -5
        CostTable().fit(X, arr)
    with pytest.raises(ValueError, match="differ from tokens columns"):
        CostTable().fit(X, T, L.rename(columns={STRATS[0]: "other"}))
    with pytest.raises(ValueError, match="shape"):
        CostTable().fit(X, T.to_numpy(), L.to_numpy()[:, :2])
    with pytest.raises(ValueError, match="inconsistent"):
        CostTable().fit(X[:5], T)
    with pytest.raises(ValueError, match="requires y"):
        CostTable().fit(X, None)
    with pytest.raises(ValueError, match="numeric"):
        CostTable().fit(X, [["a"]] * len(X))
    ct = CostTable().fit(X, T, L)
    with pytest.raises(ValueError, match="features"):
        ct.predict_costs(X[:, :2])


def test_clone_and_pickle():
    X, T, L = _frames()
    ct = CostTable(per_query=True).fit(X, T, L)
    assert clone(ct).get_params() == {"per_query": True, "regressor": None}
    buf = io.BytesIO()
    joblib.dump(ct, buf)
    buf.seek(0)
    loaded = joblib.load(buf)
    for a, b in zip(loaded.predict_costs(X), ct.predict_costs(X)):
        np.testing.assert_array_equal(a, b)
