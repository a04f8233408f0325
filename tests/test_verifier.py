"""Tests of TrainedVerifier, its features, the samples helpers and VerifierScorer.

Everything runs the real embedded generator (SmolLM2-135M-Instruct) on a few dozen short
texts: solutions whose last lines state the right or a wrong sum. Features are extracted
once per module and passed to every fit that can take them.
"""

import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from ttcrouter.samples import SamplesTableError, samples_from_pool
from ttcrouter import (TrainedVerifier, cross_fit_scores, derive_runs, load_verifier,
                       save_verifier, score_samples, verifier_data)
from ttcrouter.executors import StrategyExecutor, VerifierScorer
from ttcrouter.executors.factory import make_executor
from ttcrouter.executors.search.utils import split_steps
from ttcrouter.step_features import STAT_NAMES
from verifier_helpers import toy_samples

N_TRAIN = 28


def small_verifier(**kw):
    return TrainedVerifier(n_threads=1, max_length=128, batch_size=32, **kw)


@pytest.fixture(scope="module")
def data():
    samples = toy_samples(40)
    X, y, groups = verifier_data(samples)
    verifier = small_verifier()
    features = verifier.extract_features(X)
    train = np.flatnonzero(np.isin(groups, [f"q{i:02d}" for i in range(N_TRAIN)]))
    test = np.setdiff1d(np.arange(len(X)), train)
    fitted = clone(verifier).fit(X.iloc[train], y[train], groups[train],
                                 features=features.subset(train))
    return {"samples": samples, "X": X, "y": y, "groups": groups, "features": features,
            "train": train, "test": test, "fitted": fitted}


def test_learns_to_separate_held_out_right_from_wrong(data):
    v, X, y, test = data["fitted"], data["X"], data["y"], data["test"]
    p = v.predict_proba(X.iloc[test], features=data["features"].subset(test))[:, 1]
    assert ((0 <= p) & (p <= 1)).all()
    assert roc_auc_score(y[test], p) > 0.75
    assert v.predict(X.iloc[test[:3]]).tolist() in ([0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1],
                                                    [1, 0, 0], [1, 0, 1], [1, 1, 0], [1, 1, 1])


def test_prefixes_expand_with_their_solution_label(data):
    v, X, train = data["fitted"], data["X"], data["train"]
    steps = [len(split_steps(t, "\n")) for t in X["solution"].iloc[train]]
    assert v.n_prefixes_ == sum(steps) == 3 * len(train)
    f = data["features"]
    assert f.hidden.shape == (3 * len(X), 576) and f.stats.shape[1] == len(STAT_NAMES)
    assert f.row.tolist() == np.repeat(np.arange(len(X)), 3).tolist()
    assert f.step.tolist() == [0, 1, 2] * len(X)
    # steps so far, solution tokens so far (increasing), tokens read: prompt and solution
    assert f.stats[:3, 4].tolist() == [1, 2, 3]
    assert np.all(np.diff(f.stats[:3, 3]) > 0)
    assert (f.tokens_read > f.stats[f.last_step(), 3]).all()
    assert v.n_features_ == 576 + 5


def test_step_features_equal_separate_passes_of_each_prefix(data):
    """One pass over the whole solution gives each prefix's features (causal attention)."""
    X, f = data["X"].iloc[:2], data["features"].subset([0, 1])
    rows = []
    for q, sol in zip(X["question"], X["solution"]):
        steps = split_steps(sol, "\n")
        rows += [{"question": q, "solution": "".join(steps[:k + 1])} for k in range(len(steps))]
    alone = small_verifier().extract_features(pd.DataFrame(rows))
    last = alone.last_step()
    np.testing.assert_allclose(alone.hidden[last], f.hidden, atol=2e-3, rtol=1e-3)
    np.testing.assert_allclose(alone.stats[last], f.stats, atol=1e-3)


def test_calibration_folds_are_grouped_by_query(data):
    v = data["fitted"]
    folds = v.calibration_groups_
    assert len(folds) == 3 and all(len(f) for f in folds)
    # every training query in exactly one calibration fold: no query on both sides
    assert sorted(np.concatenate(folds)) == sorted(v.train_groups_)
    assert sorted(v.train_groups_) == [f"q{i:02d}" for i in range(N_TRAIN)]


def test_persists_without_weights_and_scores_the_same(data, tmp_path):
    v, X = data["fitted"], data["X"].iloc[:4]
    before = v.predict_proba(X)  # loads the generator weights
    assert v.features_._model is not None
    path = save_verifier(v, tmp_path / "verifier.joblib")
    assert path.stat().st_size < 500_000  # head only: the generator is ~500 MB in float32
    assert v.calibrated_.cv == 3  # not the calibration splits, which grow with the data
    assert len(pickle.dumps(v)) < 500_000
    assert v.features_._model is not None  # pickling drops the weights of the copy only
    again = load_verifier(path)
    assert again.features_._model is None  # reloaded lazily
    np.testing.assert_allclose(again.predict_proba(X), before, atol=1e-6)
    joblib.dump({"not": "a verifier"}, tmp_path / "other.joblib")
    with pytest.raises(TypeError, match="not a TrainedVerifier"):
        load_verifier(tmp_path / "other.joblib")
    with pytest.raises(FileNotFoundError, match="train-verifier"):
        load_verifier(tmp_path / "missing.joblib")


@pytest.mark.parametrize("X, y, error, match", [
    (pd.DataFrame({"question": ["q"]}), [1], ValueError, "lacks column"),
    (pd.DataFrame({"question": ["q", "q"], "solution": ["a", 3]}), [0, 1], TypeError,
     "not a string"),
    (pd.DataFrame({"question": ["q", "q"], "solution": ["a", "b"]}), [0, 2], ValueError, "0 "),
    (pd.DataFrame({"question": ["q", "q"], "solution": ["a", "b"]}), [1, 1], ValueError,
     "one class"),
    ([["q", "a"]], [1], TypeError, "DataFrame"),
    (pd.DataFrame({"question": ["", "q"], "solution": ["a", "b"]}), [0, 1], ValueError, "empty"),
])
def test_clear_errors_on_bad_input(X, y, error, match):
    with pytest.raises(error, match=match):
        small_verifier().fit(X, y)


def test_clear_errors_on_bad_parameters_and_groups():
    X = pd.DataFrame({"question": ["q1", "q2"], "solution": ["a", "b"]})
    with pytest.raises(ValueError, match="layer"):
        small_verifier(layer=99).fit(X, [0, 1])  # before any weights load
    with pytest.raises(ValueError, match="C"):
        small_verifier(C=-1).fit(X, [0, 1])
    with pytest.raises(ValueError, match="one query"):
        small_verifier().fit(X, [0, 1], groups=["g", "g"])


def test_samples_helpers_score_charge_and_cross_fit(data):
    samples, features, v = data["samples"], data["features"], data["fitted"]
    with pytest.warns(UserWarning, match="trained on 28 of these 40"):
        scored = score_samples(samples, v, features=features)
    for col in ("score_verifier", "reward_tokens_verifier", "score_latency_s_verifier"):
        assert col in scored and (scored[col] >= 0).all()
    np.testing.assert_array_equal(scored["reward_tokens_verifier"], features.tokens_read)
    runs = derive_runs(scored, ["best_of_n@n=4", "majority_vote@n=4",
                                "weighted_majority_vote@n=2"], score="verifier")
    bon = runs[runs["strategy"] == "best_of_n@n=4"]
    pools = scored.groupby("query_id")
    np.testing.assert_array_equal(bon["reward_tokens"],
                                  pools["reward_tokens_verifier"].sum().to_numpy())
    np.testing.assert_allclose(bon["latency_s"],
                               1.0 + pools["score_latency_s_verifier"].sum().to_numpy())
    assert set(bon["scorer"]) == {"verifier"}
    mv = runs[runs["strategy"] == "majority_vote@n=4"]
    assert (mv["reward_tokens"] == 0).all() and (mv["latency_s"] == 1.0).all()
    assert mv["scorer"].isna().all()

    # a strategy that names its scorer reads that scorer's column, whatever score= says
    both = derive_runs(scored, ["best_of_n@n=4", "best_of_n@n=4,scorer=verifier",
                                "majority_vote@n=4"], score="logprob")
    marked = both[both["strategy"] == "best_of_n@n=4,scorer=verifier"].reset_index(drop=True)
    pd.testing.assert_frame_equal(marked.drop(columns="strategy"),
                                  bon.reset_index(drop=True).drop(columns="strategy"))
    plain = both[both["strategy"] == "best_of_n@n=4"]
    assert set(plain["scorer"]) == {"logprob"} and (plain["score_latency_s"] == 0).all()
    with pytest.raises(SamplesTableError, match="no 'score_verifier' column.*score_samples"):
        derive_runs(samples, ["best_of_n@n=4,scorer=verifier"])

    held, steps = cross_fit_scores(samples, small_verifier(), n_folds=3, features=features,
                                   return_step_proba=True)
    assert held.groupby("query_id")["fold_verifier"].nunique().eq(1).all()
    assert [len(s) for s in steps] == [3] * len(held)
    np.testing.assert_allclose(held["score_verifier"], [s[-1] for s in steps])
    # each fold's scores are those of a verifier fitted on the other folds only
    X, y, groups = verifier_data(samples)
    fold = held["fold_verifier"].to_numpy()
    other, mine = np.flatnonzero(fold != 0), np.flatnonzero(fold == 0)
    again = small_verifier().fit(X.iloc[other], y[other], groups[other],
                                 features=features.subset(other))
    np.testing.assert_allclose(again.predict_proba(X.iloc[mine],
                                                   features=features.subset(mine))[:, 1],
                               held["score_verifier"].to_numpy()[mine], atol=1e-9)
    assert roc_auc_score(held["correct"], held["score_verifier"]) > 0.7
    with pytest.raises(ValueError, match="n_folds"):
        cross_fit_scores(samples, small_verifier(), n_folds=1, features=features)


def test_scorer_rewards_steps_and_counts_tokens(data, tmp_path):
    v = data["fitted"]
    scorer = VerifierScorer(v)
    cands = [["We add 3 and 4.\n", "3 + 4 = 7\n", "Answer: 7"], ["3 + 4 = 9\n", "Answer: 9"]]
    res = scorer.score("What is 3 + 4?", cands)
    assert [len(r) for r in res.rewards] == [3, 2]
    assert all(0 <= r <= 1 for rs in res.rewards for r in rs)
    X = pd.DataFrame({"question": ["What is 3 + 4?"] * 2, "solution": ["".join(c) for c in cands]})
    steps, tokens = v.predict_step_proba(X, return_tokens=True)
    assert res.reward_tokens == int(tokens.sum()) > 0
    np.testing.assert_allclose(res.rewards[1], steps[1], atol=1e-6)
    direct = scorer.score("What is 3 + 4?", [[" 7"]], mode="direct")
    assert direct.reward_tokens != scorer.score("What is 3 + 4?", [[" 7"]]).reward_tokens
    batch = scorer.score_batch(["What is 3 + 4?", "What is 2 + 2?"], [cands, [["4"]]],
                               mode=["cot", "cot"])
    for got, want in zip(batch[0].rewards, res.rewards):  # padded with another question
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert sum(b.reward_tokens for b in batch) > res.reward_tokens
    path = save_verifier(v, tmp_path / "v.joblib")
    assert VerifierScorer(str(path)).model_name == str(path)
    with pytest.raises(TypeError, match="TrainedVerifier"):
        VerifierScorer(42)


def test_factory_takes_a_verifier_file(data, tmp_path):
    path = save_verifier(data["fitted"], tmp_path / "v.joblib")
    ex = make_executor("transformers", scorer=str(path), max_tokens=8)
    # the file is the scorer of the strategies named "...,scorer=verifier"; the others keep
    # the log-probability scorer their rows were measured with
    assert isinstance(ex.scorers["verifier"], VerifierScorer)
    assert isinstance(ex.scorer_for("best_of_n@n=4,scorer=verifier"), VerifierScorer)
    assert type(ex.scorer_for("best_of_n@n=4")).__name__ == "LogprobScorer"
    bare = make_executor("transformers", max_tokens=8)
    with pytest.raises(ValueError, match="scorers=.*'verifier'.*--scorer FILE"):
        bare.scorer_for("beam_search@n=4,w=2,scorer=verifier")
    with pytest.raises(ValueError, match="verifier file"):
        make_executor("transformers", scorer=str(tmp_path / "nope.joblib"))


@pytest.mark.slow
def test_best_of_n_on_transformers_pays_for_verification(data, hf_generator):
    """The scorer plugs into StrategyExecutor: rewards set, tokens charged, time counted."""
    ex = StrategyExecutor(hf_generator, scorer=VerifierScorer(data["fitted"]), max_tokens=24)
    res = ex.execute("best_of_n@n=2", "What is 3 + 4?")
    assert res.error is None and res.reward_tokens > 0
    assert len(res.candidates) == 2 and all(c.step_rewards for c in res.candidates)
    assert res.text == max(res.candidates, key=lambda c: c.reward).text
    assert res.latency_s > 0
    # as a named scorer, for the strategy that names it; the unnamed one reads log-probs
    named = StrategyExecutor(hf_generator, scorers={"verifier": VerifierScorer(data["fitted"])},
                             max_tokens=24)
    res = named.execute("best_of_n@n=2,scorer=verifier", "What is 3 + 4?")
    assert res.error is None and res.reward_tokens > 0
    assert all(0 <= c.reward <= 1 for c in res.candidates)
    plain = named.execute("best_of_n@n=2", "What is 3 + 4?")
    assert plain.error is None and plain.reward_tokens == 0
    pools = named.sample_pool(["What is 3 + 4?"], 2, scorers=[None, "verifier"])
    (own, own_tokens, _), (ver, ver_tokens, ver_s) = pools[0].scores[None], \
        pools[0].scores["verifier"]
    assert own_tokens == 0 and ver_tokens > 0 and ver_s > 0
    assert own != ver and all(0 <= r <= 1 for r in own + ver)
    rows = samples_from_pool(pools[0], query_id="q", gold="7", repeat=0)
    assert [r["score_logprob"] for r in rows] == own
    assert [r["score_verifier"] for r in rows] == ver
    assert sum(r["reward_tokens_verifier"] for r in rows) == pytest.approx(ver_tokens)
    with pytest.raises(ValueError, match="'prm' scorer, which this executor lacks"):
        named.sample_pool(["What is 3 + 4?"], 2, scorers=["prm"])


@pytest.mark.slow
@pytest.mark.vllm
def test_best_of_n_and_beam_search_on_vllm(data, vllm_generator):
    scorer = VerifierScorer(data["fitted"])
    ex = StrategyExecutor(vllm_generator, scorer=scorer, max_tokens=48, step_max_tokens=24)
    bon = ex.execute_batch("best_of_n@n=4", ["What is 3 + 4?", "What is 6 times 7?"])
    for res in bon:
        assert res.error is None and res.reward_tokens > 0
        assert all(0 <= c.reward <= 1 for c in res.candidates)
        assert res.text == max(res.candidates, key=lambda c: c.reward).text
    beam = ex.execute("beam_search@n=4,w=2", "What is 3 + 4?")
    assert beam.error is None and beam.steps >= 1
    # beam search re-reads every prefix at each step: more tokens than one pass of its pool
    assert beam.reward_tokens > 0
    assert all(len(c.step_rewards) == len(c.steps) for c in beam.candidates)


def test_rescore_runs_adds_the_verifier_rows(data, tmp_path, caplog):
    from ttcrouter.verifier_commands import rescore_runs

    samples = data["samples"]
    names = ["best_of_n@n=4", "weighted_majority_vote@n=4", "majority_vote@n=4"]
    runs = derive_runs(samples, names, score="logprob")
    path = save_verifier(data["fitted"], tmp_path / "v.joblib")
    with caplog.at_level("WARNING", logger="ttcrouter"):
        out = rescore_runs(runs, samples, path)
    assert "TRAINED ON 28 OF THE 40 EVALUATED QUERIES" in caplog.text
    per_strategy = len(runs) // 3
    assert len(out) == len(runs) + 2 * per_strategy
    key = ["query_id", "strategy", "repeat"]
    out, runs = out.set_index(key).sort_index(), runs.set_index(key).sort_index()
    for name in ("best_of_n@n=4,scorer=verifier", "weighted_majority_vote@n=4,scorer=verifier"):
        scored = out.xs(name, level="strategy")
        assert len(scored) == per_strategy
        assert (scored["reward_tokens"] > 0).all() and (scored["latency_s"] > 1.0).all()
        assert set(scored["scorer"]) == {"verifier"}
    # the rows already there are kept as they were
    pd.testing.assert_frame_equal(out.loc[runs.index, runs.columns], runs, check_dtype=False)
    again = rescore_runs(out.reset_index(), samples, path)  # idempotent: replaced, not added
    assert len(again) == len(out)


def test_a_router_with_verifier_strategies_gets_its_verifier(data, tmp_path, caplog):
    from ttcrouter.models import shipped_verifier_path
    from ttcrouter.executors.factory import named_scorers_for

    plain = ["majority_vote@n=4", "best_of_n@n=4"]
    marked = plain + ["best_of_n@n=4,scorer=verifier"]
    assert named_scorers_for(plain) == {}
    path = save_verifier(data["fitted"], tmp_path / "v.joblib")
    given = named_scorers_for(marked, scorer=str(path), embedded_generator=False)
    assert given["verifier"].path == str(path)
    # another generator: still runnable with the shipped verifier, and the log says so
    with caplog.at_level("WARNING", logger="ttcrouter"):
        other = named_scorers_for(marked, scorer="logprob", embedded_generator=False)
    assert "pass --scorer FILE" in caplog.text
    assert other["verifier"].path == str(shipped_verifier_path())
    shipped = named_scorers_for(marked)["verifier"]
    assert shipped.path == str(shipped_verifier_path())
    # the shipped verifier was fitted on the shipped samples of the embedded generator
    assert len(shipped.verifier.train_groups_) == 400
    res = shipped.score("What is 3 + 4?", [["3 + 4 = 7\n", "Answer: 7"], ["Answer: 9"]])
    assert [len(r) for r in res.rewards] == [2, 1] and res.reward_tokens > 0


def test_sample_features_read_each_text_once_and_resume(data, tmp_path):
    from ttcrouter import sample_features
    from ttcrouter.samples import validate_samples

    samples = data["samples"].iloc[:40]  # 10 queries; the two right solutions are one text
    v = small_verifier()
    X = verifier_data(validate_samples(samples))[0]
    every = v.extract_features(X)
    cache = tmp_path / "features"
    got = sample_features(samples, v, cache_dir=cache, chunk=8)
    np.testing.assert_allclose(got.matrix(), every.matrix(), atol=1e-4)
    # each sample is charged its own forward pass, even when its text was read once
    np.testing.assert_array_equal(got.tokens_read, every.tokens_read)
    assert (got.seconds > 0).all()
    distinct = len(X[["query_id", "mode", "solution"]].drop_duplicates())
    assert distinct < len(X)
    chunks = sorted(cache.glob("chunk-*.npz"))
    assert len(chunks) == -(-distinct // 8)
    # a run killed after some chunks: the next one reads only the missing chunk again
    kept = {p: p.stat().st_mtime_ns for p in chunks}
    chunks[1].unlink()
    again = sample_features(samples, v, cache_dir=cache, chunk=8)
    np.testing.assert_array_equal(again.matrix(), got.matrix())
    assert chunks[1].exists()
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items() if p != chunks[1])
    with pytest.raises(ValueError, match="other samples or settings"):
        sample_features(samples.iloc[:20], v, cache_dir=cache, chunk=8)
    np.testing.assert_allclose(sample_features(samples, v).matrix(), got.matrix(), atol=1e-4)
