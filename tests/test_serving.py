"""Tests of ttcrouter.serving: router files and routed execution on the real embedded model."""

import joblib
import numpy as np
import pytest
from sklearn.pipeline import Pipeline

import ttcrouter
from ttcrouter.runs import aggregate_runs
from ttcrouter.serving import (
    ROUTER_FORMAT,
    RoutedExecutor,
    RoutedResult,
    RouterFileError,
    load_router,
    save_router,
)
from ttcrouter.synthetic import make_synthetic_runs

STRATEGIES = ["majority_vote@n=1", "majority_vote@n=2", "majority_vote@n=4"]


@pytest.fixture(scope="module")
def fitted_pipeline():
    """A real EmbeddingTransformer + UtilityRouter fitted on a small synthetic table."""
    from ttcrouter.embedding import EmbeddingTransformer
    from ttcrouter.probe import ProbeClassifier
    from ttcrouter.router import UtilityRouter

    s = aggregate_runs(make_synthetic_runs(40, strategies=STRATEGIES, repeats=2,
                                           random_state=0))
    pipe = Pipeline([
        ("embed", EmbeddingTransformer()),
        ("router", UtilityRouter(probe=ProbeClassifier(max_epochs=5, random_state=0),
                                 lambda_tokens=1e-3)),
    ])
    pipe.fit(s.texts, s.Y, router__tokens=s.T, router__latency=s.L)
    return pipe


@pytest.mark.slow
def test_save_load_roundtrip(fitted_pipeline, tmp_path):
    path = save_router(fitted_pipeline, tmp_path / "r.joblib", metadata={"runs": "synthetic"})
    bundle = load_router(path)
    assert bundle["format"] == ROUTER_FORMAT
    assert bundle["ttcrouter_version"] == ttcrouter.__version__
    meta = bundle["metadata"]
    assert meta["strategies"] == STRATEGIES
    assert meta["lambda_tokens"] == pytest.approx(1e-3)
    assert meta["runs"] == "synthetic" and "encoder" in meta
    qs = ["Easy: what is 2 + 3?", "Olympiad problem: find the number of pairs."]
    np.testing.assert_array_equal(bundle["router"].predict(qs), fitted_pipeline.predict(qs))


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


def test_not_a_router_file(tmp_path):
    joblib.dump({"something": 1}, tmp_path / "x.joblib")
    with pytest.raises(RouterFileError, match="not a ttcrouter router file"):
        load_router(tmp_path / "x.joblib")
    (tmp_path / "junk.joblib").write_bytes(b"not a pickle at all")
    with pytest.raises(RouterFileError, match="not a readable"):
        load_router(tmp_path / "junk.joblib")
    with pytest.raises(RouterFileError, match="No router file"):
        load_router(tmp_path / "missing.joblib")


@pytest.mark.slow
def test_route_without_running(fitted_pipeline, tmp_path):
    path = save_router(fitted_pipeline, tmp_path / "r.joblib")
    routed = RoutedExecutor(path)
    assert routed.strategies == STRATEGIES
    qs = ["Easy: what is 1 + 1?", "Quick sum: what is 4 plus 5?"]
    choice, acc, seconds = routed.route(qs)
    assert list(choice) == list(fitted_pipeline.predict(qs))
    assert acc.shape == (2,) and np.all((acc >= 0) & (acc <= 1))
    assert seconds >= 0
    with pytest.raises(ValueError, match="empty"):
        routed.route(["ok", "  "])
    with pytest.raises(TypeError, match="list of questions"):
        routed.route("a single string")


@pytest.mark.slow
def test_router_plus_encoder(fitted_pipeline):
    encoder, router = fitted_pipeline[0], fitted_pipeline[-1]
    routed = RoutedExecutor(router, encoder=encoder)
    q = ["Easy: what is 1 + 1?"]
    assert routed.route(q)[0] == list(fitted_pipeline.predict(q))
    with pytest.raises(ValueError, match="encoder="):
        RoutedExecutor(router)
    with pytest.raises(ValueError, match="backend"):
        RoutedExecutor(fitted_pipeline, backend="tgi")


def test_executor_is_built_lazily_per_backend():
    from sklearn.dummy import DummyClassifier
    from sklearn.preprocessing import FunctionTransformer

    pipe = Pipeline([("len", FunctionTransformer(lambda qs: [[len(q)] for q in qs])),
                     ("router", DummyClassifier(strategy="constant",
                                                constant="majority_vote@n=1"))])
    pipe.fit(["a", "bb"], ["majority_vote@n=1", "majority_vote@n=2"])
    urls = ["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"]
    routed = RoutedExecutor(pipe, backend="openai", base_url=urls, model="m",
                            executor_kwargs={"max_tokens": 16})
    assert routed._executor is None  # nothing started yet
    assert routed.route(["What is 1 + 1?"])[0] == ["majority_vote@n=1"]
    ex = routed._build_executor()  # .executor would also warm it up (a request)
    assert type(ex.generator).__name__ == "OpenAIGenerator"
    assert ex.generator.urls == urls and ex.generator.model == "m" and ex.max_tokens == 16
    routed.close()
    with pytest.raises(ValueError, match="base_url"):
        RoutedExecutor(pipe, backend="openai")._build_executor()


@pytest.mark.slow
@pytest.mark.vllm
def test_routed_execution_on_the_embedded_model(fitted_pipeline, vllm_generator):
    from ttcrouter.executors.runner import StrategyExecutor

    executor = StrategyExecutor(vllm_generator, max_tokens=48)
    routed = RoutedExecutor(fitted_pipeline, executor)
    questions = ["What is 3 + 4?", "What is 2 times 3?", "Easy: what is 5 + 1?"]
    results = routed.route_batch(questions)
    assert [r.question for r in results] == questions
    for r in results:
        assert isinstance(r, RoutedResult)
        assert r.strategy in STRATEGIES
        assert r.error is None, r.error
        assert r.tokens > 0 and r.latency_s > 0 and r.text
        assert 0 <= r.predicted_accuracy <= 1
        d = r.to_dict()
        assert set(d) >= {"question", "strategy", "answer", "tokens", "latency_s",
                          "route_latency_s", "predicted_accuracy", "error"}
    one = routed("What is 6 + 2?")
    assert one.strategy in STRATEGIES and one.tokens > 0
    routed.close()  # not ours: the shared engine must stay up
    assert vllm_generator.generate is not None
