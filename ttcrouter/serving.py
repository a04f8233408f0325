"""Route questions with a fitted router and run the chosen strategy on a real model.

:class:`RoutedExecutor` is what a user calls in a loop::

    routed = RoutedExecutor(load_router("router.joblib"))   # vLLM on the embedded model
    for question in questions:
        result = routed(question)
        print(result.strategy, result.answer, result.tokens, result.latency_s)

Router files are written by :func:`save_router` and read by :func:`load_router`: a joblib
file holding a small header (format, ttcrouter and scikit-learn versions, metadata) and the
pickled router. The header is read and checked first, so a file made by an incompatible
ttcrouter version fails with a message naming both versions instead of an unpickling error.
"""

from __future__ import annotations

import io
import platform
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import joblib
import numpy as np

from ._version import __version__

__all__ = [
    "RoutedResult",
    "RoutedExecutor",
    "RouterFileError",
    "save_router",
    "load_router",
    "ROUTER_FORMAT",
]

#: Value of the ``format`` key of a router file.
ROUTER_FORMAT = "ttcrouter-router/1"


class RouterFileError(ValueError):
    """A router file is missing, not a ttcrouter router, or from an incompatible version."""


# ---------------------------------------------------------------------------------------
# save / load
# ---------------------------------------------------------------------------------------

def _major_minor(version: str) -> tuple:
    parts = str(version).split("+")[0].split(".")
    out = []
    for p in parts[:2]:
        digits = "".join(ch for ch in p if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out + [0] * (2 - len(out)))


def _compatible(made_by: str, running: str) -> bool:
    """Same major version, and for 0.x the same minor version too."""
    a, b = _major_minor(made_by), _major_minor(running)
    return a == b if a[0] == 0 else a[0] == b[0]


def _final_step(router):
    steps = getattr(router, "steps", None)
    return steps[-1][1] if steps else router


def _router_lambda(final, name):
    """The lambda a fitted router routes with (tuned routers: the chosen one)."""
    for value in (getattr(final, f"best_{name}_", None),
                  getattr(getattr(final, "best_estimator_", None), name, None),
                  getattr(final, name, None)):
        if value is not None:
            return float(value)
    return None


def _router_metadata(router) -> dict:
    """Strategies, lambdas and encoder of a fitted router (best effort, JSON-ready)."""
    meta = {}
    final = _final_step(router)
    strategies = getattr(final, "strategies_", None)
    if strategies is None and hasattr(final, "best_estimator_"):
        strategies = getattr(final.best_estimator_, "strategies_", None)
    if strategies is not None:
        meta["strategies"] = [str(s) for s in strategies]
    for name in ("lambda_tokens", "lambda_latency"):
        value = _router_lambda(final, name)
        if value is not None:
            meta[name] = value
    for name in ("max_mean_latency", "max_mean_tokens"):
        if getattr(final, name, None) is not None:
            meta[name] = float(getattr(final, name))
    steps = getattr(router, "steps", None)
    if steps and len(steps) > 1:
        meta["encoder"] = " ".join(repr(steps[0][1]).split())[:300]
    meta["router"] = " ".join(repr(final).split())[:300]
    return meta


def save_router(obj, path, metadata=None) -> Path:
    """Save a fitted router (a Pipeline, or a router with its encoder) to a joblib file.

    Parameters
    ----------
    obj : estimator
        A fitted ``Pipeline([("embed", ...), ("router", UtilityRouter())])`` (strings in,
        strategy names out), or a fitted router fed with features.
    path : str or Path
        Destination file (conventionally ``*.joblib``).
    metadata : dict, optional
        Extra JSON-ready facts (runs file, budget, ...). Strategies, lambdas and the encoder
        are filled in from the router when not given.

    Returns
    -------
    Path
    """
    import sklearn

    meta = _router_metadata(obj)
    meta.update(metadata or {})
    buffer = io.BytesIO()
    joblib.dump(obj, buffer)
    payload = {
        "format": ROUTER_FORMAT,
        "ttcrouter_version": __version__,
        "sklearn_version": sklearn.__version__,
        "python_version": platform.python_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "metadata": meta,
        "router": buffer.getvalue(),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    joblib.dump(payload, tmp)
    tmp.replace(path)
    return path


def load_router(path) -> dict:
    """Load a router file written by :func:`save_router`.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict
        ``{"format", "ttcrouter_version", "sklearn_version", "python_version", "created",
        "metadata", "router"}`` with ``router`` the fitted estimator.

    Raises
    ------
    RouterFileError
        If the file does not exist, is not a ttcrouter router file, was made by an
        incompatible ttcrouter version (the message names the version that made it and the
        one running), or cannot be unpickled here.
    """
    import sklearn

    path = Path(path)
    if not path.is_file():
        raise RouterFileError(f"No router file at {str(path)!r}; make one with `ttcrouter fit`.")
    try:
        payload = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise RouterFileError(
            f"{str(path)!r} is not a readable ttcrouter router file ({type(exc).__name__}: "
            f"{exc}); make one with `ttcrouter fit` or ttcrouter.serving.save_router."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != ROUTER_FORMAT:
        raise RouterFileError(
            f"{str(path)!r} is not a ttcrouter router file (expected format "
            f"{ROUTER_FORMAT!r}); make one with `ttcrouter fit` or "
            f"ttcrouter.serving.save_router(router, path)."
        )
    made_by = str(payload.get("ttcrouter_version"))
    sk_made = str(payload.get("sklearn_version"))
    if not _compatible(made_by, __version__):
        raise RouterFileError(
            f"Router file {str(path)!r} was made by ttcrouter {made_by} (scikit-learn "
            f"{sk_made}); this is ttcrouter {__version__} (scikit-learn {sklearn.__version__}), "
            f"which cannot read it. Refit it with `ttcrouter fit`, or install ttcrouter=={made_by}."
        )
    try:
        router = joblib.load(io.BytesIO(payload["router"]))
    except Exception as exc:  # noqa: BLE001
        raise RouterFileError(
            f"Router file {str(path)!r} (made by ttcrouter {made_by}, scikit-learn "
            f"{sk_made}) cannot be loaded with scikit-learn {sklearn.__version__} "
            f"({type(exc).__name__}: {exc}). Refit it with `ttcrouter fit`."
        ) from exc
    if sk_made != sklearn.__version__:
        warnings.warn(
            f"Router file {str(path)!r} was made with scikit-learn {sk_made}, running "
            f"{sklearn.__version__}; predictions may differ. Refit to be safe.",
            UserWarning, stacklevel=2,
        )
    out = dict(payload)
    out["router"] = router
    return out


# ---------------------------------------------------------------------------------------
# routed execution
# ---------------------------------------------------------------------------------------

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
    latency_s : float
        Wall-clock seconds of running the strategy (never the engine start: an executor built
        by :class:`RoutedExecutor` is warmed up first); questions of a batch routed to the same
        strategy run together, and each reports that shared call's wall time.
    route_latency_s : float
        Seconds spent choosing the strategy (embedding and router); in a batch, the batch's
        routing time divided evenly over its questions.
    predicted_accuracy : float or None
        The router's predicted accuracy of the chosen strategy on this question.
    error : str or None
        Why execution failed (then answer is None); None when it ran.
    """

    question: str
    strategy: str
    answer: str | None = None
    text: str = ""
    tokens: int = 0
    latency_s: float = 0.0
    route_latency_s: float = 0.0
    predicted_accuracy: float | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready)."""
        return asdict(self)


_BACKENDS = ("vllm", "transformers", "openai")


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
            self.metadata = _router_metadata(router)
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}.")
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
        steps = getattr(router, "steps", None)
        if steps:
            from sklearn.pipeline import Pipeline

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
        """The strategy executor (built and warmed up on first use when none was given)."""
        if self._executor is None:
            self._executor = self._build_executor()
            self.warm_up()
        return self._executor

    def warm_up(self):
        """Start the backend with a one-token generation, so that no result's ``latency_s``
        includes the engine start (a vLLM engine takes about a minute on CPU).

        Returns
        -------
        float
            Seconds the warm-up took.
        """
        from .executors.base import GenerationRequest

        t0 = time.perf_counter()
        self.executor.generator.generate([GenerationRequest("Hi")], n=1, max_tokens=1)
        return time.perf_counter() - t0

    def _build_executor(self):
        from .executors.runner import StrategyExecutor

        kw = dict(self.generator_kwargs)
        if self.backend == "vllm":
            from .executors.vllm_backend import VLLMGenerator

            generator = VLLMGenerator(model=self.model, **kw)
        elif self.backend == "transformers":
            from .executors.hf_backend import TransformersGenerator

            generator = TransformersGenerator(model=self.model, **kw)
        else:
            from .executors.openai_backend import OpenAIGenerator

            if self.base_url is None:
                raise ValueError("backend='openai' needs base_url (the server's /v1 URL).")
            if self.model is not None:
                kw["model"] = self.model
            generator = OpenAIGenerator(self.base_url, **kw)
        ekw = dict(self.executor_kwargs)
        if self.scorer is not None:
            ekw["scorer"] = self.scorer
        return StrategyExecutor(generator, **ekw)

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
            Wall-clock time of the routing.
        """
        questions = _check_questions(questions)
        t0 = time.perf_counter()
        X = self._features.transform(questions) if self._features is not None else questions
        choice = [str(s) for s in self._final.predict(X)]
        acc = None
        if hasattr(self._final, "predict_accuracy"):
            A = np.asarray(self._final.predict_accuracy(X), dtype=float)
            names = self.strategies
            if names and A.shape[1] == len(names):
                pos = {n: j for j, n in enumerate(names)}
                acc = np.array([A[i, pos[s]] if s in pos else np.nan
                                for i, s in enumerate(choice)])
        return choice, acc, time.perf_counter() - t0

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
            outs = self.executor.execute_batch(strategy, [questions[i] for i in idx])
            for i, out in zip(idx, outs):
                r = results[i]
                r.answer = getattr(out, "answer", None)
                r.text = getattr(out, "text", "") or ""
                r.tokens = int(getattr(out, "tokens", 0) or 0)
                r.latency_s = float(getattr(out, "latency_s", 0.0) or 0.0)
                r.error = getattr(out, "error", None)
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
