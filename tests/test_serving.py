"""Tests of ttcrouter.serving: routed execution, its timings, and the real embedded model."""

import time
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline

import ttcrouter
from ttcrouter import persistence, serving
from ttcrouter.runs import aggregate_runs
from ttcrouter.serving import RoutedExecutor, RoutedResult, load_router, save_router
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


def test_router_file_names_are_reexported():
    """Code written before ttcrouter.persistence existed keeps importing from serving."""
    for name in ("save_router", "load_router", "RouterFileError", "ROUTER_FORMAT"):
        assert getattr(serving, name) is getattr(persistence, name)
        assert name in serving.__all__
    assert ttcrouter.save_router is persistence.save_router
    assert ttcrouter.load_router is persistence.load_router


class SlowFirstCall(BaseEstimator, TransformerMixin):
    """Features = question length; the first transform sleeps, as an encoder loading weights."""

    def __init__(self, load_seconds=0.3):
        self.load_seconds = load_seconds

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        if not getattr(self, "loaded_", False):
            time.sleep(self.load_seconds)
            self.loaded_ = True
        return np.array([[len(q)] for q in X], dtype=float)


class FakeExecutor:
    """Stands in for StrategyExecutor: one answer per question, no model."""

    def execute_batch(self, strategy, questions):
        return [SimpleNamespace(answer="5", text=f"{strategy}: 5", tokens=3, latency_s=0.01,
                                error=None) for _ in questions]

    def close(self):
        raise AssertionError("a given executor is not the RoutedExecutor's to close")


def test_load_is_reported_apart_from_routing():
    pipe = Pipeline([("features", SlowFirstCall(load_seconds=0.3)),
                     ("router", DummyClassifier(strategy="constant",
                                                constant="majority_vote@n=1"))])
    pipe.fit(["a", "bb"], ["majority_vote@n=1", "majority_vote@n=2"])
    pipe[0].loaded_ = False  # as after unpickling: weights not loaded yet
    routed = RoutedExecutor(pipe, FakeExecutor())
    assert routed.load_s is None  # nothing loaded before the first question
    choice, _, seconds = routed.route(["What is 2 + 3?", "What is 7 + 8?"])
    assert choice == ["majority_vote@n=1"] * 2
    assert routed.load_s >= 0.3 and seconds < 0.3
    assert routed.load() == routed.load_s  # loaded once
    results = routed.route_batch(["What is 7 + 8?"])
    r = results[0]
    assert r.load_s == routed.load_s and r.route_latency_s < 0.3
    assert r.engine_start_s is None  # the executor was given, not started here
    assert (r.answer, r.tokens, r.latency_s) == ("5", 3, 0.01)
    assert {"load_s", "engine_start_s", "route_latency_s"} <= set(r.to_dict())
    routed.close()


@pytest.mark.slow
def test_route_without_running(fitted_pipeline, tmp_path):
    path = save_router(fitted_pipeline, tmp_path / "r.joblib")
    routed = RoutedExecutor(path)
    assert routed.strategies == STRATEGIES
    qs = ["Easy: what is 1 + 1?", "Quick sum: what is 4 plus 5?"]
    choice, acc, seconds = routed.route(qs)
    assert list(choice) == list(fitted_pipeline.predict(qs))
    assert acc.shape == (2,) and np.all((acc >= 0) & (acc <= 1))
    # the encoder's weights load once, before the first question, and are not routing time
    assert 0 < seconds < routed.load_s
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
    from ttcrouter.executors.base import GenerationRequest
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
                          "route_latency_s", "predicted_accuracy", "error", "reward_tokens"}
        assert d["reward_tokens"] == 0  # the log-probability scorer reads nothing
    one = routed("What is 6 + 2?")
    assert one.strategy in STRATEGIES and one.tokens > 0
    # the fixture's encoder is loaded already: load_s is set once and kept; no engine started here
    assert one.load_s == routed.load_s == results[0].load_s and one.route_latency_s > 0
    assert one.engine_start_s is None
    routed.close()  # not ours: the shared engine must stay up
    (done,) = vllm_generator.generate([GenerationRequest("Hi")], n=1, max_tokens=2)
    assert done[0].tokens > 0


# -- batch budgets --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def text_pipe():
    from router_helpers import text_pipeline

    return text_pipeline()[0]


QUESTIONS = ["What is 3 + 4?", "Compute 12 * 13 - 7.", "What is 1 + 1?",
             "A train leaves at 3pm and travels 120 km at 60 km/h; when does it arrive?"]


def test_run_budgeted_allocates_runs_and_reports(text_pipe):
    routed = RoutedExecutor(text_pipe, FakeExecutor())
    budget = 300.0 * len(QUESTIONS)
    run = routed.run_budgeted(QUESTIONS, max_total_tokens=budget)
    assert isinstance(run, ttcrouter.BudgetedRun)
    # the same choice as the router's own allocation, question by question
    X = text_pipe[0].transform(QUESTIONS)
    expected = text_pipe[-1].allocate(X, max_total_tokens=budget)
    assert [r.strategy for r in run.results] == list(expected)
    assert [r.question for r in run.results] == QUESTIONS
    assert run.allocation.tokens <= budget and run.budget["tokens"] == budget
    assert run.realised_tokens == 3 * len(QUESTIONS)  # FakeExecutor: 3 tokens a question
    assert run.realised_over_budget == {"tokens": pytest.approx(run.realised_tokens / budget)}
    s = run.summary()
    assert s["predicted_tokens"] == pytest.approx(run.allocation.tokens)
    assert s["wall_clock_s"] >= 0 and s["failed"] == 0 and s["n_questions"] == 4
    # sequential latency model: the predicted makespan is the predicted latencies' sum
    assert run.predicted_makespan_s == pytest.approx(run.allocation.latency)


def test_run_budgeted_latency_with_concurrency(text_pipe):
    routed = RoutedExecutor(text_pipe, FakeExecutor())
    lat = text_pipe[-1].training_means_["latency"]
    budget = 2 * float(lat.max())  # 4 questions, 2 at a time
    run = routed.run_budgeted(QUESTIONS, max_total_latency=budget, concurrency=2)
    assert run.allocation.makespan <= budget + 1e-9
    assert run.predicted_makespan_s == run.allocation.makespan
    assert set(run.realised_over_budget) == {"latency"}


def test_run_budgeted_bad_budgets_fail_before_running(text_pipe):
    class Exploding(FakeExecutor):
        def execute_batch(self, strategy, questions):
            raise AssertionError("nothing may run on a bad budget")

    routed = RoutedExecutor(text_pipe, Exploding())
    with pytest.raises(ValueError, match="Give a budget"):
        routed.run_budgeted(QUESTIONS)
    with pytest.raises(ValueError, match="Give a budget"):
        routed.run_budgeted(QUESTIONS, concurrency=2)
    with pytest.raises(ValueError, match="Unknown budget keyword"):
        routed.run_budgeted(QUESTIONS, max_tokens=10)
    with pytest.raises(ValueError, match="max_mean_tokens"):
        routed.run_budgeted(QUESTIONS, max_mean_tokens=-1)
    with pytest.raises(ValueError, match="minimum possible cost"):
        routed.run_budgeted(QUESTIONS, max_mean_tokens=1.0)
    dummy = Pipeline([("features", SlowFirstCall(0.0)),
                      ("router", DummyClassifier(strategy="constant",
                                                 constant="majority_vote@n=1"))])
    dummy.fit(["a", "bb"], ["majority_vote@n=1", "majority_vote@n=2"])
    with pytest.raises(TypeError, match="allocate"):
        RoutedExecutor(dummy, FakeExecutor()).run_budgeted(QUESTIONS, max_mean_tokens=100)


def test_allocate_without_running(text_pipe):
    routed = RoutedExecutor(text_pipe, FakeExecutor())
    names, acc, alloc, seconds = routed.allocate(QUESTIONS, max_mean_tokens=400)
    assert len(names) == 4 and acc.shape == (4,) and seconds >= 0
    assert alloc.mean_tokens <= 400


@pytest.mark.slow
@pytest.mark.vllm
def test_run_budgeted_on_the_embedded_model(text_pipe, vllm_generator):
    from ttcrouter.executors.runner import StrategyExecutor

    routed = RoutedExecutor(text_pipe, StrategyExecutor(vllm_generator, max_tokens=48))
    run = routed.run_budgeted(QUESTIONS[:3], max_mean_tokens=300)
    assert [r.error for r in run.results] == [None] * 3
    assert run.realised_tokens == sum(r.tokens for r in run.results) > 0
    assert run.wall_clock_s > 0 and run.allocation.tokens <= 900
    assert run.realised_over_budget["tokens"] == pytest.approx(run.realised_tokens / 900)


def test_routed_execution_uses_the_settings_the_router_learned_under(fitted_pipeline, tmp_path):
    """A router file records how its runs were executed; the executor built for it uses that."""
    from ttcrouter.executors.base import PromptMode

    meta = {"execution": {"max_tokens": 80, "temperature": 0.5, "step_max_tokens": 32,
                          "prompts": {"direct": {"system": "Answer only.", "prefix": "Answer:",
                                                 "max_tokens": 12, "stop": ["\n"]}}}}
    path = save_router(fitted_pipeline, tmp_path / "r.joblib", metadata=meta)
    ex = RoutedExecutor(path)._build_executor()  # builds; starts no engine
    assert (ex.max_tokens, ex.temperature, ex.step_max_tokens) == (80, 0.5, 32)
    assert ex.prompts["direct"] == PromptMode("Answer only.", "Answer:", 12, ("\n",))
    # what the caller says wins
    ex = RoutedExecutor(path, executor_kwargs={"max_tokens": 40})._build_executor()
    assert (ex.max_tokens, ex.temperature) == (40, 0.5)
    # a file without the record keeps the executor's defaults
    plain = save_router(fitted_pipeline, tmp_path / "plain.joblib")
    ex = RoutedExecutor(plain)._build_executor()
    assert (ex.max_tokens, ex.temperature) == (256, 0.7)
