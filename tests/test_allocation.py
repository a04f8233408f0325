import itertools

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from router_helpers import SMALL_SPACE, difficulty_features, split_synthetic
from ttcrouter import (
    AllocationResult,
    CostTable,
    UtilityRouter,
    UtilityRouterCV,
    allocate,
    allocate_batch,
    calibrate_lambda,
)
from ttcrouter.budgeting import predicted_mean_costs


def _instance(rng, n, k, integer=True):
    A = rng.random((n, k))
    T = rng.integers(1, 20, (n, k)).astype(float) if integer else rng.random((n, k)) * 20
    return A, T


def _brute_force(A, C, budget):
    n, k = A.shape
    rows = np.arange(n)
    best = -np.inf
    for ch in itertools.product(range(k), repeat=n):
        ch = np.asarray(ch)
        if C[rows, ch].sum() <= budget:
            best = max(best, A[rows, ch].sum())
    return best


@pytest.mark.parametrize("seed", range(40))
def test_matches_brute_force_within_one_query_gain(seed):
    rng = np.random.default_rng(seed)
    A, T = _instance(rng, 6, 3, integer=seed % 2 == 0)
    lo, hi = T.min(axis=1).sum(), T.max(axis=1).sum()
    rows = np.arange(6)
    gain = (A.max(axis=1) - A[rows, T.argmin(axis=1)]).max()
    for budget in np.linspace(lo, hi, 7):
        opt = _brute_force(A, T, budget)
        res = allocate(A, T, max_total_tokens=budget)
        assert isinstance(res, AllocationResult)
        assert res.tokens <= budget
        assert res.tokens == pytest.approx(T[rows, res.choice].sum())
        assert res.accuracy == pytest.approx(A[rows, res.choice].sum())
        assert res.accuracy <= opt + 1e-9
        assert res.accuracy >= opt - gain - 1e-9
        # the LP bound is a certified ceiling
        assert res.upper_bound >= opt - 1e-9
    # a budget that binds nowhere: every query gets its most accurate strategy
    res = allocate(A, T, max_total_tokens=hi)
    assert res.accuracy == pytest.approx(A.max(axis=1).sum())
    assert res.lambda_tokens == 0.0


def test_budget_always_met_with_ties_and_zero_costs():
    rng = np.random.default_rng(0)
    for trial in range(30):
        n, k = 200, 7
        A = np.round(rng.random((n, k)), 1)  # many ties
        T = rng.integers(0, 5, (n, k)).astype(float) * 10
        T[:, 0] = 0.0
        budget = rng.random() * T.max(axis=1).sum()
        res = allocate(A, T, max_total_tokens=budget)
        assert res.tokens <= budget
        assert res.accuracy <= res.upper_bound + 1e-9


def test_lambda_is_the_per_query_price():
    rng = np.random.default_rng(3)
    A, T = _instance(rng, 300, 6, integer=False)
    res = allocate(A, T, max_mean_tokens=6.0)
    assert res.lambda_tokens > 0
    rows = np.arange(300)
    # per-query routing just above that price fits the budget, and the allocation is at
    # least as accurate; just below it, the rounded-down upgrade is taken and overruns
    above = np.argmax(A - res.lambda_tokens * (1 + 1e-9) * T, axis=1)
    below = np.argmax(A - res.lambda_tokens * (1 - 1e-9) * T, axis=1)
    assert T[rows, above].sum() <= 6.0 * 300 < T[rows, below].sum()
    assert res.accuracy >= A[rows, above].sum() - 1e-9
    assert res.tokens <= 6.0 * 300


def test_infeasible_budget_names_the_minimum():
    A = np.array([[0.5, 0.9], [0.6, 0.8], [0.1, 0.7]])
    T = np.array([[10.0, 100.0], [20.0, 50.0], [30.0, 40.0]])
    with pytest.raises(ValueError, match=r"60 tokens.*minimum possible cost"):
        allocate(A, T, max_total_tokens=59)
    with pytest.raises(ValueError, match=r"20 tokens per query"):
        allocate(A, T, max_mean_tokens=19)
    res = allocate(A, T, max_total_tokens=60)
    np.testing.assert_array_equal(res.choice, [0, 0, 0])


def test_per_query_latency_cap_is_a_filter():
    rng = np.random.default_rng(1)
    A, T = _instance(rng, 50, 5)
    L = rng.random((50, 5)) * 10
    L[:, 0] = 0.5
    res = allocate(A, T, L, max_query_latency=3.0)
    rows = np.arange(50)
    assert (L[rows, res.choice] <= 3.0).all()
    expect = np.where(L <= 3.0, A, -np.inf).max(axis=1)
    np.testing.assert_allclose(A[rows, res.choice], expect)
    with pytest.raises(ValueError, match="per-query latency cap"):
        allocate(A, T, L, max_query_latency=0.1)


def test_mean_and_total_budgets_agree():
    rng = np.random.default_rng(2)
    A, T = _instance(rng, 40, 4)
    L = rng.random((40, 4))
    a = allocate(A, T, L, max_total_tokens=400, max_total_latency=12.0)
    b = allocate(A, T, L, max_mean_tokens=10, max_mean_latency=0.3)
    np.testing.assert_array_equal(a.choice, b.choice)
    assert a.budget["tokens"] == b.budget["tokens"] == pytest.approx(400)


def test_accuracy_is_monotone_in_the_budget():
    rng = np.random.default_rng(4)
    A, T = _instance(rng, 30, 5)
    budgets = np.linspace(T.min(axis=1).sum(), T.max(axis=1).sum(), 60)
    acc = [allocate(A, T, max_total_tokens=b).accuracy for b in budgets]
    bound = [allocate(A, T, max_total_tokens=b).upper_bound for b in budgets]
    assert (np.diff(acc) >= -1e-12).all()
    assert (np.diff(bound) >= -1e-12).all()


def test_two_budgets_are_both_met():
    rng = np.random.default_rng(5)
    for _ in range(10):
        A, T = _instance(rng, 60, 6)
        L = rng.random((60, 6)) * 4
        res = allocate(A, T, L, max_mean_tokens=9, max_mean_latency=1.2)
        assert res.tokens <= 9 * 60 and res.latency <= 1.2 * 60
        assert res.accuracy <= res.upper_bound + 1e-9
        single = allocate(A, T, max_mean_tokens=9)
        assert res.accuracy <= single.upper_bound + 1e-9


def test_small_two_budget_instance_near_optimum():
    rng = np.random.default_rng(6)
    A, T = _instance(rng, 6, 3)
    L = rng.random((6, 3))
    budget_t, budget_l = np.median(T.sum(axis=0)), float(np.median(L.sum(axis=0)))
    rows = np.arange(6)
    opt = -np.inf
    for ch in itertools.product(range(3), repeat=6):
        ch = np.asarray(ch)
        if T[rows, ch].sum() <= budget_t and L[rows, ch].sum() <= budget_l:
            opt = max(opt, A[rows, ch].sum())
    res = allocate(A, T, L, max_total_tokens=budget_t, max_total_latency=budget_l)
    assert res.upper_bound >= opt - 1e-9
    assert res.accuracy <= opt + 1e-9


def test_latency_execution_models():
    rng = np.random.default_rng(7)
    A, T = _instance(rng, 20, 4)
    L = np.sort(rng.random((20, 4)) * 3, axis=1)
    A = np.sort(A, axis=1)  # slower is more accurate
    seq = allocate(A, None, L, max_total_latency=20.0)
    assert seq.latency <= 20.0 and seq.makespan is None
    # all at once: the job takes the slowest query, so the budget caps each query
    wide = allocate(A, None, L, max_total_latency=2.0, concurrency=20)
    assert L[np.arange(20), wide.choice].max() <= 2.0 and wide.makespan <= 2.0
    # K workers: the list-scheduling makespan is guaranteed within the budget
    for K in (2, 4, 7):
        res = allocate(A, None, L, max_total_latency=8.0, concurrency=K)
        assert res.makespan <= 8.0
        assert res.latency / K <= 8.0
    more = allocate(A, None, L, max_total_latency=8.0, concurrency=7)
    fewer = allocate(A, None, L, max_total_latency=8.0, concurrency=2)
    assert more.accuracy >= fewer.accuracy
    with pytest.raises(ValueError, match="concurrency=2"):
        allocate(A, None, L, max_total_latency=0.01, concurrency=2)


def test_allowed_mask_and_bad_inputs():
    A = np.array([[0.1, 0.9, 0.95]] * 4)
    T = np.array([[1.0, 2.0, 3.0]] * 4)
    res = allocate(A, T, max_total_tokens=100, allowed=[True, True, False])
    assert (res.choice == 1).all()
    with pytest.raises(ValueError, match="no allowed strategy"):
        allocate(A, T, allowed=np.zeros((4, 3), dtype=bool))
    with pytest.raises(ValueError, match="tokens budget needs"):
        allocate(A, max_total_tokens=10)
    with pytest.raises(ValueError, match="shape"):
        allocate(A, T[:, :2], max_total_tokens=10)
    assert (allocate(A).choice == 2).all()


# -- routers ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data():
    train, test, truth = split_synthetic(150)
    Xtr = difficulty_features(truth, train.Y.index, random_state=0)
    Xte = difficulty_features(truth, test.Y.index, random_state=1)
    return train, test, Xtr, Xte


@pytest.fixture(scope="module")
def router(data):
    train, _, Xtr, _ = data
    Y, T, L = train.Y.copy(), train.T.copy(), train.L.copy()
    # make majority_vote@n=16 dominated, so pruning has something to prune
    Y["majority_vote@n=16"] = np.clip(Y["majority_vote@n=4"] - 0.2, 0, 1)
    T["majority_vote@n=16"] = np.maximum(T["majority_vote@n=16"], T["majority_vote@n=4"])
    L["majority_vote@n=16"] = np.maximum(L["majority_vote@n=16"], L["majority_vote@n=4"])
    r = UtilityRouter(probe=LogisticRegression(), costs=CostTable()).fit(Xtr, Y, T, L)
    assert r.dominated_[SMALL_SPACE.index("majority_vote@n=16")]
    return r


def test_router_allocate_meets_the_budget_and_skips_pruned(router, data):
    _, _, _, Xte = data
    T, L = router.predict_costs(Xte)
    budget = float(np.median(T.mean(axis=0)))
    names, res = router.allocate(Xte, max_mean_tokens=budget, return_result=True)
    assert names.shape == (len(Xte),) and set(names) <= set(SMALL_SPACE)
    assert res.mean_tokens <= budget
    idx = [router.strategies_.index(s) for s in names]
    np.testing.assert_array_equal(idx, res.choice)
    assert not set(names) & set(np.asarray(router.strategies_)[router.dominated_])
    # a looser budget never lowers the predicted accuracy
    _, loose = router.allocate(Xte, max_mean_tokens=2 * budget, return_result=True)
    assert loose.accuracy >= res.accuracy
    # among a subset
    sub = ["majority_vote@n=1", "beam_search@n=8,w=4"]
    assert set(router.allocate(Xte, max_mean_tokens=budget, strategies=sub)) <= set(sub)
    with pytest.raises(ValueError, match="minimum possible cost"):
        router.allocate(Xte, max_mean_tokens=T.min() / 2)


def test_router_allocate_with_latency_models(router, data):
    _, _, _, Xte = data
    _, L = router.predict_costs(Xte)
    budget = float(L.min(axis=1).sum() * 2)
    names, res = router.allocate(Xte, max_total_latency=budget, return_result=True)
    assert res.latency <= budget
    _, res = router.allocate(Xte, max_total_latency=budget / 4, concurrency=8,
                             return_result=True)
    assert res.makespan <= budget / 4


def test_cv_and_pipeline_forward(data):
    train, _, Xtr, Xte = data
    cv = UtilityRouterCV(UtilityRouter(probe=LogisticRegression(), costs=CostTable()),
                         lambda_tokens=3, lambda_latency=[0.0], cv=2, random_state=0)
    cv.fit(Xtr, train.Y, train.T, train.L)
    budget = float(train.T.mean().median())
    direct = cv.best_estimator_.allocate(Xte, max_mean_tokens=budget)
    np.testing.assert_array_equal(cv.allocate(Xte, max_mean_tokens=budget), direct)
    np.testing.assert_array_equal(allocate_batch(cv, Xte, max_mean_tokens=budget), direct)

    pipe = Pipeline([("scale", StandardScaler()),
                     ("router", UtilityRouter(probe=LogisticRegression(), costs=CostTable()))])
    pipe.fit(Xtr, train.Y, router__tokens=train.T, router__latency=train.L)
    names = allocate_batch(pipe, Xte, max_mean_tokens=budget)
    Xs = pipe["scale"].transform(Xte)
    np.testing.assert_array_equal(names, pipe["router"].allocate(Xs, max_mean_tokens=budget))


def test_router_without_tokens_refuses_a_tokens_budget(data):
    train, _, Xtr, Xte = data
    r = UtilityRouter(probe=LogisticRegression(), costs=CostTable()).fit(Xtr, train.Y,
                                                                        latency=train.L)
    with pytest.raises(ValueError, match="fitted without tokens"):
        r.allocate(Xte, max_mean_tokens=100)
    with pytest.raises(ValueError, match="fitted without tokens"):
        calibrate_lambda(r, Xte, target_mean_tokens=100)


def _mean_cost(router, X):
    idx = router.predict_index(X)
    T, L = router.predict_costs(X)
    rows = np.arange(len(X))
    return T[rows, idx].mean(), L[rows, idx].mean()


def test_calibrate_lambda_meets_the_target(router, data):
    _, _, _, Xte = data
    T, _ = router.predict_costs(Xte)
    free_tokens, _ = _mean_cost(router, Xte)
    target = 0.5 * free_tokens
    out = calibrate_lambda(router, Xte, target_mean_tokens=target)
    assert out is not router and router.lambda_tokens == 0.0  # copy by default
    got, _ = _mean_cost(out, Xte)
    assert got <= target
    assert predicted_mean_costs(out, Xte) == pytest.approx(
        dict(zip(("tokens", "latency"), _mean_cost(out, Xte))))
    assert out.lambda_tokens > 0 and out.lambda_latency == router.lambda_latency
    # the smallest such price: a slightly lower one overshoots
    lower = calibrate_lambda(router, Xte, target_mean_tokens=target)
    lower.set_params(lambda_tokens=out.lambda_tokens * (1 - 1e-6))
    assert _mean_cost(lower, Xte)[0] > target
    # an unbinding target keeps lambda at 0
    assert calibrate_lambda(router, Xte, target_mean_tokens=10 * free_tokens).lambda_tokens == 0
    with pytest.raises(ValueError, match="cheapest routable strategy"):
        calibrate_lambda(router, Xte, target_mean_tokens=T.min() / 2)
    # both targets
    _, free_latency = _mean_cost(router, Xte)
    both = calibrate_lambda(router, Xte, target_mean_tokens=0.7 * free_tokens,
                            target_mean_latency=0.7 * free_latency)
    t, lat = _mean_cost(both, Xte)
    assert t <= 0.7 * free_tokens and lat <= 0.7 * free_latency


def test_calibrate_lambda_in_place_on_cv_and_pipeline(data):
    train, _, Xtr, Xte = data
    cv = UtilityRouterCV(UtilityRouter(probe=LogisticRegression(), costs=CostTable()),
                         lambda_tokens=[0.0], lambda_latency=[0.0], cv=2, random_state=0)
    cv.fit(Xtr, train.Y, train.T, train.L)
    target = 0.5 * _mean_cost(cv.best_estimator_, Xte)[0]
    same = calibrate_lambda(cv, Xte, target_mean_tokens=target, copy=False)
    assert same is cv and cv.best_lambda_tokens_ == cv.best_estimator_.lambda_tokens > 0
    assert _mean_cost(cv.best_estimator_, Xte)[0] <= target

    pipe = Pipeline([("scale", StandardScaler()),
                     ("router", UtilityRouter(probe=LogisticRegression(), costs=CostTable()))])
    pipe.fit(Xtr, train.Y, router__tokens=train.T, router__latency=train.L)
    out = calibrate_lambda(pipe, Xte, target_mean_latency=0.6 * _mean_cost(
        pipe["router"], pipe["scale"].transform(Xte))[1])
    assert out["router"].lambda_latency > 0 and pipe["router"].lambda_latency == 0
