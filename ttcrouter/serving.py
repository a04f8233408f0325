"""Routed execution: route each question with a fitted router, then run the chosen strategy.

:class:`RoutedExecutor` is what a user calls in a loop::

    routed = RoutedExecutor(load_router("router.joblib"))   # vLLM on the embedded model
    for question in questions:
        result = routed(question)
        print(result.strategy, result.answer, result.tokens, result.latency_s)

Three times are reported apart: ``load_s`` (loading the router's models, once),
``route_latency_s`` (choosing the strategy for one question: embedding and router) and
``latency_s`` (running the chosen strategy). Starting the generator is ``engine_start_s``,
counted in none of them. A batch with one budget for all of it (``max_total_tokens=...``)
goes through :meth:`RoutedExecutor.run_budgeted`, which allocates, runs and reports
predicted against realised totals (:class:`~ttcrouter.budgeting.BudgetedRun`). Router
files are read and written by :mod:`ttcrouter.persistence`; ``save_router``,
``load_router``, ``RouterFileError`` and ``ROUTER_FORMAT`` are re-exported here for code
written before it existed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.pipeline import Pipeline

from .budgeting import BudgetedRun, check_budget
from .executors.base import GenerationRequest, PromptMode
from .executors.factory import BACKENDS, make_executor, named_scorers_for
from .persistence import (
    ROUTER_FORMAT,
    RouterFileError,
    load_router,
    router_metadata,
    save_router,
)

__all__ = [
    "RoutedResult",
    "RoutedExecutor",
    "learned_executor_kwargs",
    # the result of run_budgeted, from ttcrouter.budgeting
    "BudgetedRun",
    # re-exported from ttcrouter.persistence (their home since issue 13)
    "RouterFileError",
    "save_router",
    "load_router",
    "ROUTER_FORMAT",
]

#: Question routed once to load the router's models before timing any real question.
_LOAD_QUESTION = "What is 1 + 1?"


@dataclass
class RoutedResult:
    """One routed question: the strategy the router chose and what running it gave.

    Attributes
    ----------
    question : str
    strategy : str
        Canonical name of the chosen strategy.
    answer : str or None
        Extracted final answer.
    text : str
        The selected solution text.
    tokens : int
        Generated tokens, all candidates and steps together.
    reward_tokens : int
        Tokens the strategy's scorer read (a verifier's forward passes; 0 for the
        log-probability scorer and for votes that read no score).
    latency_s : float
        Wall-clock seconds of running the strategy (never the engine start: an executor built
        by :class:`RoutedExecutor` is warmed up first); questions of a batch routed to the same
        strategy run together, and each reports that shared call's wall time.
    route_latency_s : float
        Seconds spent choosing the strategy for this question: embedding it and running the
        router. Never the loading of the router's models (see ``load_s``). In a batch, the
        batch's routing time divided evenly over its questions.
    predicted_accuracy : float or None
        The router's predicted accuracy of the chosen strategy on this question.
    error : str or None
        Why execution failed (then answer is None); None when it ran.
    load_s : float or None
        Seconds the :class:`RoutedExecutor` spent loading the router's models (the encoder's
        weights, the first call's imports) before routing its first question. Paid once per
        RoutedExecutor and repeated in each of its results; not part of ``route_latency_s``.
    engine_start_s : float or None
        Seconds spent starting the generator (the warm-up of an executor the RoutedExecutor
        built itself); paid once, repeated in each result; None when the executor was given
        or not started. Not part of ``latency_s``.
    """

    question: str
    strategy: str
    answer: str | None = None
    text: str = ""
    tokens: int = 0
    reward_tokens: int = 0
    latency_s: float = 0.0
    route_latency_s: float = 0.0
    predicted_accuracy: float | None = None
    error: str | None = None
    load_s: float | None = None
    engine_start_s: float | None = None

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready)."""
        return asdict(self)




def learned_executor_kwargs(metadata) -> dict:
    """:class:`~ttcrouter.executors.StrategyExecutor` arguments a router file records.

    ``ttcrouter fit`` and ``ttcrouter demo`` store how the runs table was executed
    (:func:`ttcrouter.provenance.execution_settings`) in the file's metadata under
    ``"execution"``; a router predicts costs under those settings, so routed execution uses
    them unless told otherwise.

    Parameters
    ----------
    metadata : dict or None
        A router file's metadata (:func:`ttcrouter.persistence.load_router`).

    Returns
    -------
    dict
        ``max_tokens``, ``temperature``, ... as recorded, and ``prompts`` as
        :class:`~ttcrouter.executors.base.PromptMode` objects; empty for files without them.
    """
    learned = dict((metadata or {}).get("execution") or {})
    prompts = learned.pop("prompts", None)
    if prompts:
        learned["prompts"] = {mode: PromptMode(system=p.get("system"),
                                               prefix=p.get("prefix", ""),
                                               max_tokens=p.get("max_tokens"),
                                               stop=tuple(p.get("stop") or ()))
                              for mode, p in prompts.items()}
    return learned


class RoutedExecutor:
    """Route each question with a fitted router, then run the chosen strategy.

    Parameters
    ----------
    router : estimator, dict, str or Path
        A fitted Pipeline mapping query strings to strategy names (e.g.
        ``Pipeline([("embed", EmbeddingTransformer()), ("router", UtilityRouter())])``), a
        fitted router fed with features (then pass ``encoder``), the dict returned by
        :func:`load_router`, or the path of a router file.
    executor : StrategyExecutor, optional
        Runs the strategies. ``None`` builds one lazily on first use, on the generator named
        by ``backend`` and ``model``.
    encoder : transformer, optional
        Maps query strings to the router's features, when ``router`` is not a Pipeline.
    backend : {"vllm", "transformers", "openai"}, default="vllm"
        Generator backend of the executor built when ``executor`` is None.
    model : str, optional
        Model of that generator; ``None`` means the embedded SmolLM2-135M-Instruct (for
        ``openai``, the model the server serves).
    base_url : str or list of str, optional
        Server URL(s) for ``backend="openai"``.
    scorer : StepScorer, optional
        Reward model for the strategies that need one; passed to the executor.
    generator_kwargs, executor_kwargs : dict, optional
        Extra arguments of the generator and of :class:`StrategyExecutor` (e.g.
        ``max_tokens``, ``step_delimiter``).

    Attributes
    ----------
    load_s : float or None
        Seconds :meth:`load` took to load the router's models; None before the first route.
    engine_start_s : float or None
        Seconds the warm-up of the executor built here took; None until it started.

    Examples
    --------
    >>> routed = RoutedExecutor(load_router("router.joblib"))  # doctest: +SKIP
    >>> routed("What is 3 + 4?").strategy  # doctest: +SKIP
    'majority_vote@n=4'
    """

    def __init__(self, router, executor=None, *, encoder=None, backend="vllm", model=None,
                 base_url=None, scorer=None, generator_kwargs=None, executor_kwargs=None):
        if isinstance(router, (str, Path)):
            router = load_router(router)
        if isinstance(router, dict):
            self.metadata = dict(router.get("metadata") or {})
            router = router["router"]
        else:
            self.metadata = router_metadata(router)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {tuple(BACKENDS)}, got {backend!r}.")
        self.router = router
        self.encoder = encoder
        self.backend = backend
        self.model = model
        self.base_url = base_url
        self.scorer = scorer
        self.generator_kwargs = dict(generator_kwargs or {})
        self.executor_kwargs = dict(executor_kwargs or {})
        self._executor = executor
        self._owns_executor = executor is None
        self.load_s = None
        self.engine_start_s = None
        steps = getattr(router, "steps", None)
        if steps:
            self._features = Pipeline(steps[:-1]) if len(steps) > 1 else None
            self._final = steps[-1][1]
        else:
            self._features = encoder
            self._final = router
        if self._features is None and encoder is None and steps is None:
            raise ValueError(
                "The router reads features, not strings: pass a Pipeline "
                "(EmbeddingTransformer + router) or encoder=EmbeddingTransformer()."
            )
        if not hasattr(self._final, "predict"):
            raise TypeError(f"router must be a fitted estimator with predict, got "
                            f"{type(self._final).__name__}.")

    # -- executor -----------------------------------------------------------------------------
    @property
    def executor(self):
        """The strategy executor (built and warmed up on first use when none was given).

        The warm-up's seconds are kept in ``engine_start_s``.
        """
        if self._executor is None:
            self._executor = self._build_executor()
            self.engine_start_s = self.warm_up()
        return self._executor

    def warm_up(self):
        """Start the backend with a one-token generation, so that no result's ``latency_s``
        includes the engine start (a vLLM engine takes about a minute on CPU).

        Returns
        -------
        float
            Seconds the warm-up took.
        """
        t0 = time.perf_counter()
        self.executor.generator.generate([GenerationRequest("Hi")], n=1, max_tokens=1)
        return time.perf_counter() - t0

    def _build_executor(self):
        ekw = dict(self.executor_kwargs)
        generator_kwargs = dict(self.generator_kwargs)
        if self.backend == "vllm":
            # a routed query should not wait minutes for graph compilation
            generator_kwargs.setdefault("enforce_eager", True)
        if self.backend == "openai" and self.base_url is None:
            raise ValueError("backend='openai' needs base_url (the server's /v1 URL).")
        # run as the router's table was collected (token cap, temperature, prompt modes),
        # so that realised costs are the ones it learned; executor_kwargs override
        for key, value in learned_executor_kwargs(self.metadata).items():
            ekw.setdefault(key, value)
        if "scorers" not in ekw and (self.scorer is None or isinstance(self.scorer, (str, Path))):
            ekw["scorers"] = named_scorers_for(
                self.strategies, scorer=self.scorer,
                embedded_generator=self.backend != "openai" and self.model in (None, "embedded"))
        return make_executor(
            self.backend, self.model, self.base_url, scorer=self.scorer,
            max_tokens=ekw.pop("max_tokens", 256), temperature=ekw.pop("temperature", 0.7),
            generator_kwargs=generator_kwargs, **ekw,
        )

    def close(self):
        """Release the executor's generator if this object built it."""
        if self._owns_executor and self._executor is not None:
            self._executor.close()
            self._executor = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- routing ------------------------------------------------------------------------------
    @property
    def strategies(self) -> list:
        """Strategy names the router chooses between."""
        names = getattr(self._final, "strategies_", None) or self.metadata.get("strategies")
        return [str(s) for s in names] if names is not None else []

    def load(self) -> float:
        """Load the router's models by routing one throw-away question, once.

        The first call of an encoder loads its weights (seconds); routing a question after
        that takes milliseconds. :meth:`route` calls this first, so its timing never includes
        the load.

        Returns
        -------
        float
            Seconds the load took (the same value on later calls); also in ``load_s``.
        """
        if self.load_s is None:
            t0 = time.perf_counter()
            self._route([_LOAD_QUESTION])
            self.load_s = time.perf_counter() - t0
        return self.load_s

    def route(self, questions):
        """Choose a strategy for each question without running it.

        Parameters
        ----------
        questions : list of str

        Returns
        -------
        strategies : list of str
        predicted_accuracy : ndarray of shape (n_questions,) or None
        seconds : float
            Wall-clock time of routing these questions (embedding and router), after
            :meth:`load`; the load itself is in ``load_s``.
        """
        questions = _check_questions(questions)
        self.load()
        t0 = time.perf_counter()
        choice, acc = self._route(questions)
        return choice, acc, time.perf_counter() - t0

    def _route(self, questions, budget=None):
        X = self._features.transform(questions) if self._features is not None else questions
        allocation = None
        if budget is None:
            choice = [str(s) for s in self._final.predict(X)]
        else:
            if not hasattr(self._final, "allocate"):
                raise TypeError(f"A budget needs a router with allocate (UtilityRouter or "
                                f"UtilityRouterCV), got {type(self._final).__name__}.")
            names, allocation = self._final.allocate(X, return_result=True, **budget)
            choice = [str(s) for s in names]
        acc = None
        if hasattr(self._final, "predict_accuracy"):
            A = np.asarray(self._final.predict_accuracy(X), dtype=float)
            names = self.strategies
            if names and A.shape[1] == len(names):
                pos = {n: j for j, n in enumerate(names)}
                acc = np.array([A[i, pos[s]] if s in pos else np.nan
                                for i, s in enumerate(choice)])
        return (choice, acc) if budget is None else (choice, acc, allocation)

    def route_batch(self, questions) -> list:
        """Route and run a batch of questions.

        Questions routed to the same strategy run together in one batched call of the
        executor. A question that fails is recorded in its result's ``error`` and the others
        go on; a failure of the backend itself (an engine that cannot start, an unreachable
        server) raises.

        Parameters
        ----------
        questions : list of str

        Returns
        -------
        list of RoutedResult
            In the order of ``questions``.
        """
        questions = _check_questions(questions)
        choice, acc, seconds = self.route(questions)
        return self._execute(questions, choice, acc, seconds)

    def run_budgeted(self, questions, **budget) -> BudgetedRun:
        """Spend one budget across a batch: allocate, run, report predicted and realised.

        The router's ``allocate`` (:meth:`ttcrouter.UtilityRouter.allocate`) picks one
        strategy per question, the best total predicted accuracy whose predicted total cost
        fits the budget; the questions then run as in :meth:`route_batch` (grouped by
        strategy). Budgets hold on predicted costs; the returned run says how the realised
        ones compare.

        Parameters
        ----------
        questions : list of str
        **budget
            Keywords of ``allocate``: ``max_total_tokens``, ``max_mean_tokens``,
            ``max_total_latency``, ``max_mean_latency``, ``max_query_latency``,
            ``concurrency`` (:data:`ttcrouter.budgeting.BUDGET_KEYWORDS`).

        Returns
        -------
        BudgetedRun

        Raises
        ------
        ValueError
            No budget, an unknown keyword, or no allocation fits (the message gives the
            minimum possible cost), all before any strategy runs.
        """
        choice, acc, allocation, route_s = self.allocate(questions, **budget)
        executor = self.executor  # started (and warmed up) outside the measured wall clock
        t1 = time.perf_counter()
        results = self._execute(questions, choice, acc, route_s, executor)
        return BudgetedRun(results, allocation, time.perf_counter() - t1, route_s)

    def allocate(self, questions, **budget):
        """Choose one strategy per question within a batch budget, without running them.

        Parameters
        ----------
        questions : list of str
        **budget
            As :meth:`run_budgeted`.

        Returns
        -------
        strategies : list of str
        predicted_accuracy : ndarray of shape (n_questions,) or None
        allocation : AllocationResult
        seconds : float
            Wall-clock time of embedding and allocating, after :meth:`load`.
        """
        budget = check_budget(budget)
        questions = _check_questions(questions)
        self.load()
        t0 = time.perf_counter()
        choice, acc, allocation = self._route(questions, budget)
        return choice, acc, allocation, time.perf_counter() - t0

    def _execute(self, questions, choice, acc, seconds, executor=None):
        executor = executor or self.executor
        per_q = seconds / len(questions)
        results = [RoutedResult(question=q, strategy=s, route_latency_s=per_q,
                                predicted_accuracy=None if acc is None else float(acc[i]))
                   for i, (q, s) in enumerate(zip(questions, choice))]
        groups: dict = {}
        for i, s in enumerate(choice):
            groups.setdefault(s, []).append(i)
        for strategy, idx in groups.items():
            # the executor records per-question failures in each result; an exception here
            # is systemic (the engine cannot start, the server is unreachable) and propagates
            outs = executor.execute_batch(strategy, [questions[i] for i in idx])
            for i, out in zip(idx, outs):
                r = results[i]
                r.answer = getattr(out, "answer", None)
                r.text = getattr(out, "text", "") or ""
                r.tokens = int(getattr(out, "tokens", 0) or 0)
                r.reward_tokens = int(getattr(out, "reward_tokens", 0) or 0)
                r.latency_s = float(getattr(out, "latency_s", 0.0) or 0.0)
                r.error = getattr(out, "error", None)
        for r in results:
            r.load_s, r.engine_start_s = self.load_s, self.engine_start_s
        return results

    def __call__(self, question: str) -> RoutedResult:
        """Route one question and run the chosen strategy."""
        if not isinstance(question, str):
            raise TypeError(f"question must be a string, got {type(question).__name__}.")
        return self.route_batch([question])[0]

    def __repr__(self):
        return (f"RoutedExecutor(strategies={len(self.strategies)}, backend={self.backend!r}, "
                f"model={self.model!r})")


def _check_questions(questions) -> list:
    if isinstance(questions, str):
        raise TypeError("Pass a list of questions (a single string is one question: "
                        "call the RoutedExecutor on it directly).")
    questions = list(questions)
    if not questions:
        raise ValueError("No questions to route.")
    bad = [i for i, q in enumerate(questions) if not isinstance(q, str) or not q.strip()]
    if bad:
        raise ValueError(f"Question {bad[0]} is empty or not a string: {questions[bad[0]]!r}.")
    return questions
