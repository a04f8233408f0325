import numpy as np
import pytest

from ttcrouter.metrics import oracle_choice, realized_utility
from ttcrouter.runs import aggregate_runs, validate_runs
from ttcrouter.strategies import default_strategy_space
from ttcrouter.synthetic import DIFFICULTIES, make_synthetic_runs


def test_valid_runs_table_with_provenance():
    runs, truth = make_synthetic_runs(30, repeats=3, random_state=0, return_truth=True)
    validate_runs(runs)
    n_s = len(default_strategy_space(single_sample_once=False))
    assert len(runs) == 30 * n_s * 3
    assert runs.attrs["provenance"]["synthetic"] is True
    assert "SYNTHETIC" in make_synthetic_runs.__doc__
    assert truth.accuracy.shape == (30, n_s)
    assert set(truth.difficulty) <= set(DIFFICULTIES)
    assert list(truth.accuracy.columns) == [s.name for s in default_strategy_space(single_sample_once=False)]
    assert ((truth.accuracy >= 0) & (truth.accuracy <= 1)).all().all()


def test_seeded_and_different_seeds_differ():
    a = make_synthetic_runs(20, random_state=3)
    b = make_synthetic_runs(20, random_state=3)
    c = make_synthetic_runs(20, random_state=4)
    assert a.equals(b)
    assert not a.equals(c)


def test_latent_structure():
    runs, truth = make_synthetic_runs(300, random_state=1, return_truth=True,
                                      accuracy_noise=0.0)
    acc = truth.accuracy.groupby(truth.difficulty).mean()
    # easy: one sample suffices
    assert acc.loc["easy", "majority_vote@n=1"] > 0.9
    # medium: majority voting gains with N, beam search does not help as much
    assert acc.loc["medium", "majority_vote@n=16"] > acc.loc["medium", "majority_vote@n=1"] + 0.4
    assert acc.loc["medium", "majority_vote@n=16"] > acc.loc["medium", "beam_search@n=8,w=4"]
    # hard: only beam search helps
    assert acc.loc["hard", "beam_search@n=8,w=4"] > 0.8
    assert acc.loc["hard"].drop(["beam_search@n=4,w=2", "beam_search@n=8,w=4"]).max() < 0.2


def test_costs_shape():
    runs, truth = make_synthetic_runs(100, random_state=2, return_truth=True)
    s = aggregate_runs(runs)
    T, L = s.T.mean(), s.L.mean()
    for m in ("majority_vote", "best_of_n", "weighted_majority_vote"):
        toks = [T[f"{m}@n={n}"] for n in (1, 2, 4, 8, 16)]
        assert all(np.diff(toks) > 0), m  # tokens grow with n
        # parallel: latency nearly flat in n
        assert L[f"{m}@n=16"] < 1.6 * L[f"{m}@n=1"]
    # beam search: latency grows with steps, above the parallel methods
    assert L["beam_search@n=4,w=2"] > L["majority_vote@n=16"]
    steps_lat = truth.latency["beam_search@n=4,w=2"].groupby(truth.difficulty).mean()
    assert steps_lat["easy"] < steps_lat["medium"] < steps_lat["hard"]


def test_oracle_routes_by_difficulty():
    _, truth = make_synthetic_runs(150, random_state=0, return_truth=True, accuracy_noise=0.0)
    A, T, L = truth.accuracy, truth.tokens, truth.latency
    names = np.array(truth.strategies)
    pick = names[oracle_choice(A, T, L, 1e-4, 0.02)]
    d = truth.difficulty.to_numpy()
    assert set(pick[d == "easy"]) == {"majority_vote@n=1"}
    assert all(p.startswith("beam_search") for p in pick[d == "hard"])
    assert all(p.startswith(("majority_vote", "weighted_majority_vote")) for p in pick[d == "medium"])
    # the oracle beats every static strategy by a clear margin
    u_or = realized_utility(A, T, L, pick, 1e-4, 0.02)
    u_static = max(realized_utility(A, T, L, np.full(len(A), j), 1e-4, 0.02)
                   for j in range(A.shape[1]))
    assert u_or > u_static + 0.1


def test_subset_of_strategies():
    runs = make_synthetic_runs(10, strategies=["majority_vote@n=4", "beam_search@n=8,w=4"],
                               repeats=2, random_state=0)
    assert sorted(runs["strategy"].unique()) == ["beam_search@n=8,w=4", "majority_vote@n=4"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_queries=0), "n_queries"),
    (dict(repeats=0), "repeats"),
    (dict(difficulty_weights=(1, 1)), "difficulty_weights"),
    (dict(strategies=["nonsense"]), "strategy"),
    (dict(strategies=["majority_vote@n=2", "majority_vote@n=2"]), "duplicates"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic_runs(**kwargs)


@pytest.mark.slow
def test_real_encoder_tells_difficulties_apart():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    from ttcrouter.embedding import EmbeddingTransformer

    runs, truth = make_synthetic_runs(120, strategies=["majority_vote@n=1"], repeats=1,
                                      random_state=0, return_truth=True)
    s = aggregate_runs(runs)
    E = EmbeddingTransformer().fit_transform(s.texts)
    y = truth.difficulty.loc[s.Y.index].to_numpy()
    assert cross_val_score(LogisticRegression(max_iter=1000), E, y, cv=3).mean() > 0.95
