import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.utils._param_validation import InvalidParameterError

from router_helpers import (
    SMALL_SPACE,

    default_costs,
    difficulty_features,
    fast_probe,
    split_synthetic,
)
from ttcrouter.metrics import realized_utility
from ttcrouter.costs import CostTable
from ttcrouter.router import UtilityRouter
from ttcrouter.tuning import UtilityRouterCV, lambda_grid


@pytest.fixture(scope="module")
def data():
    train, test, truth = split_synthetic(150)
    Xtr = difficulty_features(truth, train.Y.index, random_state=0)
    Xte = difficulty_features(truth, test.Y.index, random_state=1)
    return train, test, truth, Xtr, Xte


def _router():
    return UtilityRouter(probe=fast_probe(), costs=default_costs())


def _lr():
    return UtilityRouter(probe=LogisticRegression(), costs=CostTable())


def test_lambda_grid():
    T = np.array([[10.0, 110.0], [10.0, 110.0]])
    g = lambda_grid(T, 5)
    assert g[0] == 0 and len(g) == 5
    assert g[1] * 100 == pytest.approx(1e-3) and g[-1] * 100 == pytest.approx(10.0)
    assert lambda_grid(None, 5).tolist() == [0.0]
    assert lambda_grid(np.ones((3, 2)), 5).tolist() == [0.0]


@pytest.fixture(scope="module")
def fitted(data):
    train, _, _, Xtr, _ = data
    cv = UtilityRouterCV(_router(), lambda_tokens=[0.0, 1e-4], lambda_latency=6, cv=3,
                         scoring_lambdas=(1e-4, 0.02), random_state=0)
    return cv.fit(Xtr, train.Y, train.T, train.L)


@pytest.mark.slow
def test_cv_results_and_refit(fitted, data):
    train, test, _, Xtr, Xte = data
    cv = fitted
    res = cv.cv_results_
    assert isinstance(res, pd.DataFrame) and len(res) == 2 * 6
    for col in ("lambda_tokens", "lambda_latency", "accuracy", "mean_tokens", "mean_latency",
                "utility", "score", "std_score", "feasible", "split0_score"):
        assert col in res.columns
    best = res.iloc[cv.best_index_]
    assert best["score"] == pytest.approx(res["score"].max())
    assert (cv.best_lambda_tokens_, cv.best_lambda_latency_) == (
        best["lambda_tokens"], best["lambda_latency"])
    assert cv.best_estimator_ is cv.router_
    assert cv.best_estimator_.lambda_latency == cv.best_lambda_latency_
    assert cv.strategies_ == SMALL_SPACE
    np.testing.assert_array_equal(cv.predict(Xte), cv.best_estimator_.predict(Xte))
    assert cv.predict_utility(Xte).shape == (len(Xte), len(SMALL_SPACE))
    # utility is measured at the scoring lambdas, so lambda=0 does not win by default
    assert (cv.best_lambda_tokens_, cv.best_lambda_latency_) != (0.0, 0.0)
    # more latency price -> no slower routing (monotone on average)
    row0 = res[res.lambda_tokens == 0].sort_values("lambda_latency")
    assert row0["mean_latency"].iloc[-1] <= row0["mean_latency"].iloc[0]
    # tuned router beats every static strategy on held-out queries at the scoring trade-off
    u = realized_utility(test.Y, test.T, test.L, cv.predict(Xte), 1e-4, 0.02)
    statics = [realized_utility(test.Y, test.T, test.L, [s] * len(Xte), 1e-4, 0.02)
               for s in SMALL_SPACE]
    assert u > max(statics)


def test_cv_accuracy_matches_a_manual_fold(data):
    train, _, _, Xtr, _ = data
    splits = list(KFold(3).split(Xtr))
    cv = UtilityRouterCV(_lr(), lambda_tokens=[0.0], lambda_latency=[0.0, 0.05], cv=splits,
                         scoring="accuracy").fit(Xtr, train.Y, train.T, train.L)
    Y = train.Y.to_numpy()
    for k, (lt, ll) in enumerate(cv.cv_results_[["lambda_tokens", "lambda_latency"]].to_numpy()):
        accs, lats = [], []
        for tr, te in splits:
            r = _lr().set_params(lambda_latency=ll).fit(Xtr[tr], train.Y.iloc[tr],
                                                        train.T.iloc[tr], train.L.iloc[tr])
            idx = r.predict_index(Xtr[te])
            accs.append(Y[te, idx])
            lats.append(train.L.to_numpy()[te, idx])
        assert cv.cv_results_["accuracy"].iloc[k] == pytest.approx(np.concatenate(accs).mean())
        assert cv.cv_results_["mean_latency"].iloc[k] == pytest.approx(np.concatenate(lats).mean())


def test_latency_budget(data):
    train, test, _, Xtr, Xte = data
    budget = 4.0
    cv = UtilityRouterCV(_lr(), lambda_tokens=[0.0], lambda_latency=12, cv=3,
                         max_mean_latency=budget, random_state=0)
    cv.fit(Xtr, train.Y, train.T, train.L)
    res = cv.cv_results_
    best = res.iloc[cv.best_index_]
    assert best["mean_latency"] <= budget
    assert best["accuracy"] == pytest.approx(res.loc[res.feasible, "accuracy"].max())
    assert res["feasible"].tolist() == (res["mean_latency"] <= budget).tolist()


def test_tokens_budget_and_callable_scoring(data):
    train, _, _, Xtr, _ = data
    calls = []

    def neg_tokens(Y, T, L, idx):
        calls.append(len(idx))
        return -T[np.arange(len(idx)), idx].mean()

    cv = UtilityRouterCV(_lr(), lambda_tokens=5, lambda_latency=[0.0], cv=3, scoring=neg_tokens,
                         random_state=0).fit(Xtr, train.Y, train.T, train.L)
    assert calls and cv.best_score_ == pytest.approx(cv.cv_results_["score"].max())
    cv = UtilityRouterCV(_lr(), lambda_tokens=5, lambda_latency=[0.0], cv=3,
                         max_mean_tokens=2000.0, random_state=0).fit(Xtr, train.Y, train.T)
    assert cv.cv_results_.iloc[cv.best_index_]["mean_tokens"] <= 2000.0


def test_unreachable_budget_names_cheapest(data):
    train, _, _, Xtr, _ = data
    cheapest = train.L.mean().idxmin()
    with pytest.raises(ValueError, match=r"No lambda pair meets max_mean_latency=0\.01s.*"
                                         + cheapest.replace("@", ".")):
        UtilityRouterCV(_lr(), lambda_tokens=[0.0], lambda_latency=4, cv=2,
                        max_mean_latency=0.01).fit(Xtr, train.Y, train.T, train.L)


def test_bad_inputs(data):
    train, _, _, Xtr, _ = data
    Y, T, L = train.Y, train.T, train.L
    with pytest.raises(ValueError, match="needs the realized latency"):
        UtilityRouterCV(_lr(), max_mean_latency=3.0).fit(Xtr, Y, T)
    with pytest.raises(ValueError, match="no tokens"):
        UtilityRouterCV(_lr(), lambda_tokens=[0.0, 0.1]).fit(Xtr, Y, latency=L)
    with pytest.raises(ValueError, match=">= 0"):
        UtilityRouterCV(_lr(), lambda_tokens=[-1.0]).fit(Xtr, Y, T, L)
    with pytest.raises(InvalidParameterError):
        UtilityRouterCV(_lr(), max_mean_latency=-1.0).fit(Xtr, Y, T, L)
    with pytest.raises(ValueError, match="scoring_lambdas"):
        UtilityRouterCV(_lr(), scoring_lambdas=(0.1,)).fit(Xtr, Y, T, L)
    with pytest.raises(ValueError, match="different lengths"):
        UtilityRouterCV(_lr()).fit(Xtr[:-1], Y, T, L)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        UtilityRouterCV(_lr()).fit(Xtr, Y + 1, T, L)


def test_metadata_routing_and_n_jobs(data):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    train, _, _, Xtr, Xte = data
    with sklearn.config_context(enable_metadata_routing=True):
        cv = UtilityRouterCV(_lr(), lambda_tokens=[0.0], lambda_latency=3, cv=2, n_jobs=2,
                             max_mean_latency=5.0, random_state=0)
        pipe = Pipeline([("scale", StandardScaler()),
                         ("router", cv.set_fit_request(tokens=True, latency=True))])
        pipe.fit(Xtr, train.Y, tokens=train.T, latency=train.L)
        assert set(pipe.predict(Xte)) <= set(SMALL_SPACE)


def test_cv_sweep_keeps_pruned_strategies_out(data):
    from ttcrouter.crossfit import fit_predict_fold

    train, _, _, Xtr, _ = data
    Y, T, L = (M.to_numpy(dtype=float, copy=True) for M in (train.Y, train.T, train.L))
    Y[:, SMALL_SPACE.index("majority_vote@n=16")] = 0.0  # worse than n=1 at more cost
    idx = np.arange(len(Y))
    A = fit_predict_fold(UtilityRouter(probe=LogisticRegression(), prune_dominated=True),
                         Xtr, Y, T, L, SMALL_SPACE, idx[::2], idx[1::2]).accuracy
    pruned = np.isneginf(A).all(axis=0)
    assert pruned[SMALL_SPACE.index("majority_vote@n=16")]
    assert np.isfinite(A[:, ~pruned]).all() and (~pruned).sum() >= 2
