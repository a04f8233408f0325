"""scikit-learn's common estimator checks over every ttcrouter estimator.

UtilityRouter and UtilityRouterCV learn from a 2-D target of soft labels in [0, 1] (one
column per strategy) and predict strategy NAMES. sklearn's generic checks feed them class
labels 0, 1, 2 as the target and compare predictions numerically, so the checks that fit on
such a target are expected to fail, each with its reason below; the same properties are
then tested here on valid soft labels (``test_router_*``).
"""

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.estimator_checks import parametrize_with_checks

from router_helpers import default_costs
from ttcrouter.costs import CostTable
from ttcrouter.embedding import EmbeddingTransformer
from ttcrouter.probe import ProbeClassifier
from ttcrouter.router import UtilityRouter
from ttcrouter.tuning import UtilityRouterCV
from ttcrouter.verifier import TrainedVerifier

_Y_RANGE = ("sklearn's generic target is class labels 0, 1, 2; the router's Y is soft labels "
            "in [0, 1] and is rejected (tested on valid Y in test_router_* below)")
_STR_PRED = ("predict returns strategy names (strings) and the check compares predictions "
             "numerically (tested in test_router_pickle_and_idempotent below)")

ROUTER_EXPECTED = {
    **{name: _Y_RANGE for name in (
        "check_dict_unchanged", "check_dont_overwrite_parameters", "check_dtype_object",
        "check_estimators_dtypes", "check_estimators_fit_returns_self",
        "check_estimators_overwrite_params", "check_f_contiguous_array_estimator",
        "check_fit2d_1feature", "check_fit2d_predict1d", "check_fit_score_takes_y",
        "check_methods_sample_order_invariance", "check_methods_subset_invariance",
        "check_n_features_in_after_fitting", "check_positive_only_tag_during_fit",
        "check_readonly_memmap_input")},
    "check_estimators_pickle": _STR_PRED,
    "check_fit_idempotent": _STR_PRED,
}

PROBE_EXPECTED = {
    "check_sample_weight_equivalence_on_dense_data": (
        "mini-batch SGD: weight 2 only approximately equals a repeated row"),
}


COSTS_EXPECTED = {
    "check_fit_score_takes_y": (
        "the contract names CostTable.fit's target 'tokens' (fit(X, tokens, latency=None))"),
    "check_regressor_multioutput": (
        "the check's target has negative values; token counts are never negative and are "
        "rejected"),
}


def _router(**kw):
    return UtilityRouter(probe=LogisticRegression(), costs=CostTable(),
                         strategies=["majority_vote@n=1"], **kw)


def _fast_estimators():
    # EmbeddingTransformer and TrainedVerifier take strings only (input tag string=True):
    # sklearn runs no numeric checks on them; their own tests run real models.
    return [
        EmbeddingTransformer(),
        TrainedVerifier(),
        CostTable(),
        CostTable(per_query=True),
        _router(),
        UtilityRouterCV(_router(), lambda_tokens=[0.0], lambda_latency=[0.0], cv=2),
    ]


def _expected_failed_checks(est):
    if isinstance(est, (UtilityRouter, UtilityRouterCV)):
        return ROUTER_EXPECTED
    if isinstance(est, ProbeClassifier):
        return PROBE_EXPECTED
    if isinstance(est, CostTable):
        return COSTS_EXPECTED
    return {}


@parametrize_with_checks(_fast_estimators(), expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.slow
@parametrize_with_checks([ProbeClassifier(hidden_units=(8,), max_epochs=2, cv=2, random_state=0)],
                         expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_probe(estimator, check):
    check(estimator)


# -- the expected failures above, re-tested with a valid soft-label target ------------------

NAMES = ["majority_vote@n=1", "majority_vote@n=8", "beam_search@n=8,w=4"]


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    Y = pd.DataFrame(np.clip(rng.random((40, 3)) + 0.3 * X[:, :1], 0, 1), columns=NAMES)
    T = pd.DataFrame(np.tile([10.0, 80.0, 300.0], (40, 1)) * rng.uniform(0.5, 1.5, (40, 3)),
                     columns=NAMES)
    L = pd.DataFrame(np.tile([1.0, 1.2, 5.0], (40, 1)), columns=NAMES)
    return X, Y, T, L


def _routers():
    r = UtilityRouter(probe=LogisticRegression(), costs=default_costs(), lambda_tokens=1e-3)
    return [r, UtilityRouterCV(clone(r), lambda_tokens=3, lambda_latency=[0.0], cv=2,
                               random_state=0)]


@pytest.mark.parametrize("est", _routers(), ids=["UtilityRouter", "UtilityRouterCV"])
def test_router_fit_returns_self_and_keeps_params(est, xy):
    X, Y, T, L = xy
    params = est.get_params(deep=False)
    X0, Y0 = X.copy(), Y.copy()
    assert est.fit(X, Y, tokens=T, latency=L) is est
    assert est.get_params(deep=False).keys() == params.keys()
    for k, v in params.items():
        assert est.get_params(deep=False)[k] is v
    np.testing.assert_array_equal(X, X0)
    pd.testing.assert_frame_equal(Y, Y0)
    assert est.n_features_in_ == 4
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:, :3])


@pytest.mark.parametrize("est", _routers(), ids=["UtilityRouter", "UtilityRouterCV"])
def test_router_pickle_and_idempotent(est, xy):
    X, Y, T, L = xy
    est.fit(X, Y, tokens=T, latency=L)
    p1 = est.predict(X)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(X), p1)
    np.testing.assert_allclose(again.predict_utility(X), est.predict_utility(X))
    est.fit(X, Y, tokens=T, latency=L)
    np.testing.assert_array_equal(est.predict(X), p1)


@pytest.mark.parametrize("est", _routers(), ids=["UtilityRouter", "UtilityRouterCV"])
def test_router_sample_order_and_subset_invariance(est, xy):
    X, Y, T, L = xy
    est.fit(X, Y, tokens=T, latency=L)
    U = est.predict_utility(X)
    perm = np.random.default_rng(1).permutation(len(X))
    np.testing.assert_allclose(est.predict_utility(X[perm]), U[perm])
    np.testing.assert_allclose(est.predict_utility(X[:7]), U[:7])
    np.testing.assert_array_equal(est.predict(X[:1]), est.predict(X)[:1])


@pytest.mark.parametrize("est", _routers(), ids=["UtilityRouter", "UtilityRouterCV"])
def test_router_dtypes_memmap_and_fortran(est, xy, tmp_path):
    X, Y, T, L = xy
    ref = clone(est).fit(X, Y, tokens=T, latency=L).predict_utility(X)
    for Xv in (X.astype(np.float32), np.asfortranarray(X), X.astype(object)):
        U = clone(est).fit(Xv, Y, tokens=T, latency=L).predict_utility(Xv)
        np.testing.assert_allclose(U, ref, atol=1e-4)
    path = tmp_path / "x.npy"
    np.save(path, X)
    Xm = np.load(path, mmap_mode="r")
    U = clone(est).fit(Xm, Y, tokens=T, latency=L).predict_utility(Xm)
    np.testing.assert_allclose(U, ref, atol=1e-6)


# -- TrainedVerifier: sklearn skips string-input estimators, so the data-free checks here ----

def test_trained_verifier_passes_the_checks_that_need_no_numeric_data():
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.estimator_checks import (check_get_params_invariance,
                                                check_no_attributes_set_in_init,
                                                check_parameters_default_constructible,
                                                check_set_params)

    est = TrainedVerifier(layer=3, C=0.5)
    for check in (check_parameters_default_constructible, check_no_attributes_set_in_init,
                  check_get_params_invariance, check_set_params):
        check("TrainedVerifier", est)
    assert clone(est).get_params() == est.get_params()
    with pytest.raises(NotFittedError):
        est.predict_proba(pd.DataFrame({"question": ["q"], "solution": ["a"]}))
