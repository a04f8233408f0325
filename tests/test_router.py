import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import InvalidParameterError

from router_helpers import (
    SMALL_SPACE,

    default_costs,
    difficulty_features,
    fast_probe,
    split_synthetic,
)
from ttcrouter.metrics import oracle_choice, realized_utility
from ttcrouter.costs import CostTable
from ttcrouter.router import UtilityRouter


@pytest.fixture(scope="module")
def data():
    train, test, truth = split_synthetic(150)
    Xtr = difficulty_features(truth, train.Y.index, random_state=0)
    Xte = difficulty_features(truth, test.Y.index, random_state=1)
    return train, test, truth, Xtr, Xte


def _lr_router(**kw):
    return UtilityRouter(probe=LogisticRegression(), costs=CostTable(), **kw)


def test_fit_attributes_and_shapes(data):
    train, test, _, Xtr, Xte = data
    r = _lr_router(lambda_tokens=1e-4, lambda_latency=0.01).fit(Xtr, train.Y, train.T, train.L)
    assert r.strategies_ == SMALL_SPACE
    assert r.strategy_encoding_.shape[0] == len(SMALL_SPACE)
    assert r.n_features_in_ == 3
    A = r.predict_accuracy(Xte)
    T, L = r.predict_costs(Xte)
    U = r.predict_utility(Xte)
    assert A.shape == T.shape == L.shape == U.shape == (len(Xte), len(SMALL_SPACE))
    assert ((A >= 0) & (A <= 1)).all()
    np.testing.assert_allclose(U, A - 1e-4 * T - 0.01 * L)
    pred = r.predict(Xte)
    assert pred.dtype == object and set(pred) <= set(SMALL_SPACE)
    np.testing.assert_array_equal(pred, np.asarray(SMALL_SPACE, dtype=object)[U.argmax(1)])
    np.testing.assert_allclose(T[0], train.T.mean().to_numpy())


def test_columns_of_dataframes_are_aligned_by_name(data):
    train, _, _, Xtr, Xte = data
    r1 = _lr_router().fit(Xtr, train.Y, train.T, train.L)
    shuffled = train.Y.columns[::-1]
    r2 = _lr_router().fit(Xtr, train.Y[shuffled], train.T, train.L[shuffled])
    assert r2.strategies_ == list(shuffled)
    A1 = pd.DataFrame(r1.predict_accuracy(Xte), columns=r1.strategies_)
    A2 = pd.DataFrame(r2.predict_accuracy(Xte), columns=r2.strategies_)
    # same rows up to the order of the probe's training rows
    np.testing.assert_allclose(A1[shuffled].to_numpy(), A2.to_numpy(), atol=1e-3)


def test_array_Y_needs_names_and_strategies_param_selects(data):
    train, _, _, Xtr, Xte = data
    with pytest.raises(ValueError, match="strategy names"):
        _lr_router().fit(Xtr, train.Y.to_numpy())
    r = _lr_router(strategies=SMALL_SPACE).fit(Xtr, train.Y.to_numpy(), train.T.to_numpy())
    assert r.strategies_ == SMALL_SPACE
    sub = ["beam_search@n=8,w=4", "majority_vote@n=1"]
    r = _lr_router(strategies=sub).fit(Xtr, train.Y, train.T)
    assert r.strategies_ == sub and r.predict_accuracy(Xte).shape[1] == 2


def test_predict_among_subset_and_unfitted_strategy(data):
    train, _, _, Xtr, Xte = data
    r = _lr_router(lambda_latency=0.01).fit(Xtr, train.Y, train.T, train.L)
    sub = ["majority_vote@n=4", "beam_search@n=4,w=2"]
    U = r.predict_utility(Xte)
    expect = np.asarray(sub, dtype=object)[U[:, [1, 4]].argmax(1)]
    np.testing.assert_array_equal(r.predict(Xte, strategies=sub), expect)
    assert r.predict_accuracy(Xte, strategies=sub).shape == (len(Xte), 2)
    with pytest.raises(ValueError, match=r"not among those the router was fitted on"):
        r.predict(Xte, strategies=["weighted_majority_vote@n=8"])
    with pytest.raises(ValueError, match="not a strategy name"):
        r.predict(Xte, strategies=["foo"])


class _ConstantProbe(LogisticRegression):
    """A probe whose grid path predicts the same accuracy for every pair."""

    def predict_proba_grid(self, E, S):
        return np.full((len(E), len(S)), 0.5)


def test_ties_go_to_first_strategy(data):
    train, _, _, Xtr, Xte = data
    order = ["beam_search@n=8,w=4", "majority_vote@n=16", "majority_vote@n=1"]
    r = UtilityRouter(probe=_ConstantProbe(), costs=CostTable(), strategies=order)
    r.fit(Xtr, train.Y, train.T, train.L)
    assert (r.predict(Xte) == order[0]).all()  # all utilities tie -> first in order
    r.set_params(lambda_tokens=1e-6).fit(Xtr, train.Y, train.T, train.L)
    assert (r.predict(Xte) == "majority_vote@n=1").all()  # ties broken by cost


def test_bad_inputs(data):
    train, _, _, Xtr, _ = data
    Y, T, L = train.Y, train.T, train.L
    r = _lr_router()
    with pytest.raises(ValueError, match="different lengths"):
        r.fit(Xtr[:-1], Y, T, L)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        r.fit(Xtr, Y * 2, T, L)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        r.fit(Xtr, Y - 0.5, T, L)
    bad = T.copy()
    bad.iloc[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        r.fit(Xtr, Y, bad, L)
    bad = L.copy()
    bad.iloc[0, 0] = -1.0
    with pytest.raises(ValueError, match="negative"):
        r.fit(Xtr, Y, T, bad)
    with pytest.raises(ValueError, match="different lengths"):
        r.fit(Xtr, Y, T.iloc[:-2], L)
    with pytest.raises(ValueError, match="lacks columns"):
        r.fit(Xtr, Y, T.iloc[:, :3], L)
    with pytest.raises(ValueError, match="columns"):
        r.fit(Xtr, Y, T.to_numpy()[:, :3], L)
    with pytest.raises(ValueError, match="2-D"):
        r.fit(Xtr, Y.iloc[:, 0].to_numpy())
    with pytest.raises(ValueError, match="not a strategy name"):
        r.fit(Xtr, Y.rename(columns={Y.columns[0]: "fastest"}))
    for kw in (dict(lambda_tokens=-1.0), dict(lambda_latency=-0.5)):
        with pytest.raises(InvalidParameterError, match="lambda"):
            _lr_router(**kw).fit(Xtr, Y, T, L)
    with pytest.raises(ValueError, match="lambda_tokens=0.1 prices tokens"):
        _lr_router(lambda_tokens=0.1).fit(Xtr, Y, latency=L)
    with pytest.raises(ValueError, match="single outcome"):
        r.fit(Xtr, Y * 0 + 1.0)
    with pytest.raises(ValueError, match="NaN"):
        r.fit(np.where(Xtr > 0.5, np.nan, Xtr), Y)


def test_unfitted_router_raises():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        UtilityRouter().predict(np.zeros((2, 3)))


def test_score_is_realized_utility_at_own_lambdas(data):
    train, test, _, Xtr, Xte = data
    r = _lr_router(lambda_tokens=1e-4, lambda_latency=0.01).fit(Xtr, train.Y, train.T, train.L)
    expect = realized_utility(test.Y, test.T, test.L, r.predict(Xte), 1e-4, 0.01)
    assert r.score(Xte, test.Y, test.T, test.L) == pytest.approx(expect)
    with pytest.raises(ValueError, match="tokens"):
        r.score(Xte, test.Y)


def test_any_sklearn_classifier_and_grid_path_agree(data):
    """LogisticRegression goes through predict_proba on the cross product; a probe with
    predict_proba_grid gives the same matrix through the fast path."""
    train, _, _, Xtr, Xte = data

    class GridLR(LogisticRegression):
        def predict_proba_grid(self, E, S):
            rows = np.hstack([np.repeat(E, len(S), 0), np.tile(S, (len(E), 1))])
            return self.predict_proba(rows)[:, 1].reshape(len(E), len(S)) * 0 + 0.5

    r1 = _lr_router().fit(Xtr, train.Y)
    r2 = UtilityRouter(probe=GridLR(), costs=CostTable()).fit(Xtr, train.Y)
    assert np.allclose(r2.predict_accuracy(Xte), 0.5)  # the grid path was used
    assert not np.allclose(r1.predict_accuracy(Xte), 0.5)


@pytest.mark.slow
def test_router_beats_every_static_strategy(data):
    """Known right answer: easy -> one sample, medium -> voting, hard -> beam search."""
    train, test, truth, Xtr, Xte = data
    lt, ll = 1e-4, 0.02
    r = UtilityRouter(probe=fast_probe(), costs=default_costs(), lambda_tokens=lt,
                      lambda_latency=ll).fit(Xtr, train.Y, train.T, train.L)
    pred = r.predict(Xte)
    u_router = realized_utility(test.Y, test.T, test.L, pred, lt, ll)
    statics = {s: realized_utility(test.Y, test.T, test.L, [s] * len(Xte), lt, ll)
               for s in SMALL_SPACE}
    assert u_router > max(statics.values()) + 0.05, (u_router, statics)
    d = truth.difficulty.loc[test.Y.index].to_numpy()
    assert (pred[d == "easy"] == "majority_vote@n=1").mean() > 0.9
    assert np.char.startswith(pred[d == "hard"].astype(str), "beam_search").mean() > 0.9
    # expected utility (latent truth) close to the per-query oracle's
    A = truth.accuracy.loc[test.Y.index, SMALL_SPACE]
    Tt = truth.tokens.loc[test.Y.index, SMALL_SPACE]
    Lt = truth.latency.loc[test.Y.index, SMALL_SPACE]
    u_oracle = realized_utility(A, Tt, Lt, oracle_choice(A, Tt, Lt, lt, ll), lt, ll)
    assert realized_utility(A, Tt, Lt, pred, lt, ll) > u_oracle - 0.03


def test_metadata_routing_in_pipeline_and_direct(data):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    train, _, _, Xtr, Xte = data
    with sklearn.config_context(enable_metadata_routing=True):
        router = _lr_router(lambda_latency=0.01).set_fit_request(tokens=True, latency=True)
        pipe = Pipeline([("scale", StandardScaler()), ("router", router)])
        pipe.fit(Xtr, train.Y, tokens=train.T, latency=train.L)
        assert pipe.predict(Xte).shape == (len(Xte),)
        # direct call with routing on
        _lr_router(lambda_latency=0.01).fit(Xtr, train.Y, tokens=train.T, latency=train.L)
    # without routing: step-prefixed fit params
    pipe = Pipeline([("scale", StandardScaler()), ("router", _lr_router(lambda_latency=0.01))])
    pipe.fit(Xtr, train.Y, router__tokens=train.T, router__latency=train.L)
    np.testing.assert_array_equal(pipe.predict(Xte), pipe[-1].predict(pipe[0].transform(Xte)))


def test_groups_reach_the_probe_and_weights_are_soft_labels(data):
    train, _, _, Xtr, _ = data
    seen = {}

    class Spy(LogisticRegression):
        def fit(self, X, y, sample_weight=None, groups=None):
            seen.update(X=X, y=y, w=sample_weight, groups=groups)
            return super().fit(X, y, sample_weight=sample_weight)

    UtilityRouter(probe=Spy(), costs=CostTable()).fit(Xtr, train.Y)
    n, n_s = train.Y.shape
    Yv = train.Y.to_numpy().ravel()
    # positive weight total = sum of soft labels, negative = sum of 1 - p
    assert seen["w"][seen["y"] == 1].sum() == pytest.approx(Yv.sum())
    assert seen["w"][seen["y"] == 0].sum() == pytest.approx((1 - Yv).sum())
    assert set(np.unique(seen["groups"])) <= set(range(n))
    assert seen["X"].shape[1] == Xtr.shape[1] + len(seen["X"][0]) - Xtr.shape[1]
    # query features first, strategy encoding last
    from ttcrouter.strategies import encode_strategies

    enc = encode_strategies(SMALL_SPACE)
    assert any(np.allclose(seen["X"][0, Xtr.shape[1]:], e) for e in enc)


@pytest.mark.slow
def test_pipeline_on_raw_strings_with_real_encoder():
    from sklearn.pipeline import Pipeline

    from ttcrouter.embedding import EmbeddingTransformer

    train, test, truth = split_synthetic(120)
    lt, ll = 1e-4, 0.02
    pipe = Pipeline([("embed", EmbeddingTransformer()),
                     ("router", UtilityRouter(probe=fast_probe(), costs=default_costs(),
                                              lambda_tokens=lt, lambda_latency=ll))])
    pipe.fit(train.texts, train.Y, router__tokens=train.T, router__latency=train.L)
    pred = pipe.predict(test.texts)
    u = realized_utility(test.Y, test.T, test.L, pred, lt, ll)
    best_static = max(realized_utility(test.Y, test.T, test.L, [s] * len(pred), lt, ll)
                      for s in SMALL_SPACE)
    assert u > best_static
    assert pipe.predict(["Easy: what is 2 + 3?"])[0] == "majority_vote@n=1"


def test_any_cost_model_with_predict_costs(data):
    from router_helpers import MeanCosts

    train, _, _, Xtr, Xte = data
    r = UtilityRouter(probe=LogisticRegression(), costs=MeanCosts(), lambda_tokens=1e-4)
    r.fit(Xtr, train.Y, train.T)
    T, L = r.predict_costs(Xte)
    np.testing.assert_allclose(T[0], train.T.mean().to_numpy())
    assert (L == 0).all()  # no latency given: zero predicted latency


@pytest.mark.slow
def test_defaults_are_probe_classifier_and_cost_table(data):
    from ttcrouter.probe import ProbeClassifier

    train, _, _, Xtr, _ = data
    r = UtilityRouter(probe=fast_probe()).fit(Xtr, train.Y, train.T, train.L)
    assert isinstance(r.costs_, CostTable)
    assert r.costs_.strategies_ == SMALL_SPACE
    assert isinstance(r.probe_, ProbeClassifier)
    assert r.probe is not r.probe_  # cloned
    assert UtilityRouter().probe is None and UtilityRouter().costs is None


def test_probe_without_sample_weight_takes_hard_labels_only(data):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, _, _, Xtr, Xte = data
    probe = make_pipeline(StandardScaler(), LogisticRegression())  # fit(X, y, **params)
    hard = (train.Y >= 0.5).astype(float)
    r = UtilityRouter(probe=probe, costs=CostTable()).fit(Xtr, hard)
    assert r.predict_accuracy(Xte).shape == (len(Xte), len(SMALL_SPACE))
    with pytest.raises(ValueError, match="cannot take sample_weight"):
        UtilityRouter(probe=probe, costs=CostTable()).fit(Xtr, train.Y)


def test_dominated_strategies_are_pruned_unless_switched_off(data):
    train, test, _, Xtr, Xte = data
    # make majority_vote@n=16 dominated: worse than majority_vote@n=4 at equal or higher cost
    Y = train.Y.copy()
    Y["majority_vote@n=16"] = np.clip(Y["majority_vote@n=4"] - 0.2, 0, 1)
    T, L = train.T.copy(), train.L.copy()
    T["majority_vote@n=16"] = np.maximum(T["majority_vote@n=16"], T["majority_vote@n=4"])
    L["majority_vote@n=16"] = np.maximum(L["majority_vote@n=16"], L["majority_vote@n=4"])
    r = _lr_router().fit(Xtr, Y, T, L)  # pruning is the default
    means = r.training_means_
    assert list(means.index) == SMALL_SPACE
    np.testing.assert_allclose(means["accuracy"], Y.mean().to_numpy())
    np.testing.assert_allclose(means["tokens"], T.mean().to_numpy())
    dominated = dict(zip(r.strategies_, r.dominated_))
    assert dominated["majority_vote@n=16"]
    # every dominated strategy really has a dominator in the training means
    for name in np.asarray(r.strategies_)[r.dominated_]:
        m, others = means.loc[name], means.drop(index=name)
        assert ((others["accuracy"] >= m["accuracy"]) & (others["tokens"] <= m["tokens"])
                & (others["latency"] <= m["latency"])).any()
    U = r.predict_utility(Xte)
    assert np.isneginf(U[:, r.dominated_]).all() and np.isfinite(U[:, ~r.dominated_]).all()
    assert not set(r.predict(Xte)) & set(np.asarray(r.strategies_)[r.dominated_])
    # off: the same fit routes by the probe alone
    off = _lr_router(prune_dominated=False).fit(Xtr, Y, T, L)
    np.testing.assert_array_equal(off.dominated_, r.dominated_)
    assert np.isfinite(off.predict_utility(Xte)).all()
    # asked to route only among dominated ones, the router still answers
    only = r.predict(Xte, strategies=["majority_vote@n=16"])
    assert set(only) == {"majority_vote@n=16"}


def test_pruning_needs_a_cost():
    from ttcrouter.frontier import dominated

    # accuracy only: a cheaper, less accurate strategy may exist, so nothing is pruned
    means = np.array([[0.5, np.nan, np.nan], [0.7, np.nan, np.nan]])
    assert not dominated(means).any()
    # identical strategies do not prune each other; a strictly worse one is pruned
    means = np.array([[0.5, 10.0, 1.0], [0.5, 10.0, 1.0], [0.4, 10.0, 1.0], [0.6, 20.0, 0.5]])
    np.testing.assert_array_equal(dominated(means), [False, False, True, False])
