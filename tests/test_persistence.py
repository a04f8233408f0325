"""Tests of ttcrouter.persistence: router files, their versions, and old files still loading.

tests/data holds router files saved by ttcrouter 0.1.0 before persistence.py existed (made by
tests/data/make_router_files.py) with the predictions they gave then.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.pipeline import Pipeline

import ttcrouter
from ttcrouter.persistence import (
    ROUTER_FORMAT,
    RouterFileError,
    is_compatible,
    load_router,
    router_lambda,
    router_metadata,
    save_router,
)

DATA = Path(__file__).parent / "data"
EXPECTED = json.loads((DATA / "router_0.1.0_expected.json").read_text())
STRATEGIES = ["majority_vote@n=1", "majority_vote@n=2", "majority_vote@n=4"]


def test_router_file_saved_before_the_split_loads_and_predicts_the_same():
    bundle = load_router(DATA / "router_features_0.1.0.joblib")
    assert bundle["format"] == ROUTER_FORMAT and bundle["ttcrouter_version"] == "0.1.0"
    meta = bundle["metadata"]
    assert meta["strategies"] == EXPECTED["strategies"] and meta["runs"] == "synthetic"
    assert meta["lambda_tokens"] == pytest.approx(1e-3)
    router, exp = bundle["router"], EXPECTED["features"]
    X = np.asarray(exp["X"], dtype=np.float32)
    assert [str(s) for s in router.predict(X)] == exp["predict"]
    np.testing.assert_allclose(router.predict_utility(X), exp["predict_utility"], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(router.predict_accuracy(X), exp["predict_accuracy"], rtol=1e-5,
                               atol=1e-6)
    assert router_metadata(router)["strategies"] == EXPECTED["strategies"]


@pytest.mark.slow
def test_pipeline_file_saved_before_the_split_routes_the_same():
    from ttcrouter.serving import RoutedExecutor

    exp = EXPECTED["pipeline"]
    pipe = load_router(DATA / "router_pipeline_0.1.0.joblib")["router"]
    assert [str(s) for s in pipe.predict(exp["questions"])] == exp["predict"]
    U = pipe[-1].predict_utility(pipe[0].transform(exp["questions"]))
    np.testing.assert_allclose(U, exp["predict_utility"], rtol=1e-4, atol=1e-5)
    choice, _, _ = RoutedExecutor(DATA / "router_pipeline_0.1.0.joblib").route(exp["questions"])
    assert choice == exp["predict"]


def test_version_compatibility():
    assert is_compatible("0.1.0", "0.1.7") and is_compatible("0.1.0+local", "0.1.0")
    assert not is_compatible("0.1.0", "0.2.0")
    assert is_compatible("1.2.0", "1.9.3") and not is_compatible("1.2.0", "2.0.0")
    assert is_compatible(ttcrouter.__version__)


def test_incompatible_version_is_a_clear_error(tmp_path):
    from sklearn.linear_model import LogisticRegression

    path = save_router(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), tmp_path / "r.joblib")
    payload = joblib.load(path)
    payload["ttcrouter_version"] = "7.3.0"
    payload["sklearn_version"] = "0.24.2"
    joblib.dump(payload, path)
    with pytest.raises(RouterFileError) as err:
        load_router(path)
    msg = str(err.value)
    assert "made by ttcrouter 7.3.0" in msg and f"this is ttcrouter {ttcrouter.__version__}" in msg
    assert "scikit-learn 0.24.2" in msg


def test_other_scikit_learn_version_warns(tmp_path):
    from sklearn.linear_model import LogisticRegression

    path = save_router(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), tmp_path / "r.joblib")
    payload = joblib.load(path)
    payload["sklearn_version"] = "1.0.0"
    joblib.dump(payload, path)
    with pytest.warns(UserWarning, match="made with scikit-learn 1.0.0"):
        assert load_router(path)["router"].predict([[1.0]]) == [1]


def test_not_a_router_file(tmp_path):
    joblib.dump({"something": 1}, tmp_path / "x.joblib")
    with pytest.raises(RouterFileError, match="not a ttcrouter router file"):
        load_router(tmp_path / "x.joblib")
    (tmp_path / "junk.joblib").write_bytes(b"not a pickle at all")
    with pytest.raises(RouterFileError, match="not a readable"):
        load_router(tmp_path / "junk.joblib")
    with pytest.raises(RouterFileError, match="No router file"):
        load_router(tmp_path / "missing.joblib")
    assert issubclass(RouterFileError, ValueError)


def test_router_lambda_of_plain_tuned_and_piped_routers():
    from sklearn.preprocessing import FunctionTransformer

    from ttcrouter.router import UtilityRouter

    plain = UtilityRouter(lambda_tokens=0.5)
    assert router_lambda(plain, "lambda_tokens") == 0.5
    assert router_lambda(Pipeline([("f", FunctionTransformer()), ("r", plain)]),
                         "lambda_tokens") == 0.5

    class Tuned:  # what UtilityRouterCV exposes after fit
        best_lambda_latency_ = 0.25
        lambda_latency = None

    assert router_lambda(Tuned(), "lambda_latency") == 0.25
    assert router_lambda(object(), "lambda_tokens") is None


@pytest.mark.slow
def test_save_load_roundtrip(tmp_path):
    from ttcrouter.embedding import EmbeddingTransformer
    from ttcrouter.probe import ProbeClassifier
    from ttcrouter.router import UtilityRouter
    from ttcrouter.runs import aggregate_runs
    from ttcrouter.synthetic import make_synthetic_runs

    s = aggregate_runs(make_synthetic_runs(40, strategies=STRATEGIES, repeats=2,
                                           random_state=0))
    pipe = Pipeline([
        ("embed", EmbeddingTransformer()),
        ("router", UtilityRouter(probe=ProbeClassifier(max_epochs=5, random_state=0),
                                 lambda_tokens=1e-3)),
    ])
    pipe.fit(s.texts, s.Y, router__tokens=s.T, router__latency=s.L)
    path = save_router(pipe, tmp_path / "r.joblib", metadata={"runs": "synthetic"})
    assert not (tmp_path / "r.joblib.tmp").exists()
    bundle = load_router(path)
    assert bundle["format"] == ROUTER_FORMAT
    assert bundle["ttcrouter_version"] == ttcrouter.__version__
    meta = bundle["metadata"]
    assert meta["strategies"] == STRATEGIES
    assert meta["lambda_tokens"] == pytest.approx(1e-3)
    assert meta["runs"] == "synthetic" and "encoder" in meta
    qs = ["Easy: what is 2 + 3?", "Olympiad problem: find the number of pairs."]
    np.testing.assert_array_equal(bundle["router"].predict(qs), pipe.predict(qs))


@pytest.mark.slow
def test_pipeline_roundtrip_in_fresh_process(tmp_path):
    from sklearn.pipeline import Pipeline

    from router_helpers import split_synthetic
    from ttcrouter.costs import CostTable
    from ttcrouter.embedding import EmbeddingTransformer
    from ttcrouter.probe import ProbeClassifier
    from ttcrouter.router import UtilityRouter

    train, test, _ = split_synthetic(80, random_state=2)
    # A small probe keeps the file small; the paper's 200-200 probe is sized in
    # bench/bench_routing.py (docs/bench_routing.md).
    router = UtilityRouter(probe=ProbeClassifier(hidden_units=(64,), max_epochs=5,
                                                 random_state=0),
                           costs=CostTable(), lambda_tokens=1e-4, lambda_latency=0.02)
    pipe = Pipeline([("embed", EmbeddingTransformer()), ("router", router)])
    pipe.fit(train.texts, train.Y, router__tokens=train.T, router__latency=train.L)
    texts = test.texts
    expected_pred = pipe.predict(texts).tolist()
    expected_u = pipe[-1].predict_utility(pipe[0].transform(texts))

    path = tmp_path / "router.joblib"
    joblib.dump(pipe, path)
    size = path.stat().st_size
    assert size < 5 * 2**20, f"pickled pipeline is {size} bytes: encoder weights inside?"
    # the encoder step pickles without its weights (all-MiniLM-L6-v2 is ~90 MB)
    import pickle

    assert len(pickle.dumps(pipe[0])) < 100_000

    (tmp_path / "texts.json").write_text(json.dumps(texts))
    script = textwrap.dedent(f"""
        import json, joblib, numpy as np
        pipe = joblib.load({str(path)!r})
        texts = json.load(open({str(tmp_path / 'texts.json')!r}))
        pred = pipe.predict(texts).tolist()
        U = pipe[-1].predict_utility(pipe[0].transform(texts))
        np.save({str(tmp_path / 'u.npy')!r}, U)
        print(json.dumps(pred))
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected_pred
    np.testing.assert_allclose(np.load(tmp_path / "u.npy"), expected_u, rtol=1e-5, atol=1e-6)
