"""Run a routed request's strategy in a worker thread, within its deadline, and describe it.

Each request gets its own :class:`~ttcrouter.executors.StrategyExecutor` (a light object:
its default scorer keeps per-call state, so executors are never shared between threads) over
the server's one shared generator, and its own
:class:`~ttcrouter.server.context.RequestTrace`, copied into the worker thread with the
context. What went wrong is told apart here: an unreachable upstream is a 503, a deadline a
504, a prompt the model cannot take a 400, anything else a 500.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from ..executors import StrategyExecutor
from ..executors.base import Generator
from .context import TRACE, RequestTrace, current_trace
from .errors import APIError

__all__ = ["ExecutionService", "TracedGenerator", "ttc_block", "vote_counts"]


class TracedGenerator(Generator):
    """Any generator, made to stop for a request that was cancelled (deadline, client gone):
    each call first checks the calling request's trace. Other attributes pass through."""

    def __init__(self, generator):
        self.inner = generator
        self.backend = getattr(generator, "backend", "")

    def generate(self, requests, **kwargs):
        trace = current_trace()
        if trace is not None:
            trace.check()
        return self.inner.generate(requests, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def close(self) -> None:
        self.inner.close()


class ExecutionService:
    """Execute strategies for requests on one shared generator.

    Parameters
    ----------
    generator : Generator
        A synchronous generator safe to call from several threads (the async engine's
        :class:`~ttcrouter.server.engine.SyncGenerator`, an
        :class:`~ttcrouter.server.upstream.UpstreamPool`).
    max_concurrency : int, default=32
        Strategies running at once; more requests wait (within their deadline).
    temperature, top_p : float
        Defaults when a request gives none (those of the router's training runs).
    max_tokens : int, default=256
        Token limit of one candidate when a request gives none.
    executor_kwargs : dict, optional
        Further :class:`StrategyExecutor` parameters (``step_delimiter``, ``scorer``, ...).
    """

    def __init__(self, generator, *, max_concurrency=32, temperature=0.7, top_p=1.0,
                 max_tokens=256, executor_kwargs=None):
        self.generator = TracedGenerator(generator)
        self.max_concurrency = int(max_concurrency)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_tokens = int(max_tokens)
        self.executor_kwargs = dict(executor_kwargs or {})
        self._pool = ThreadPoolExecutor(max_workers=self.max_concurrency,
                                        thread_name_prefix="ttc-exec")
        self._slots: asyncio.Semaphore | None = None

    def make_executor(self, req):
        """The StrategyExecutor for one request (its sampling parameters, the shared generator)."""
        return StrategyExecutor(
            self.generator,
            temperature=self.temperature if req.temperature is None else req.temperature,
            top_p=self.top_p if req.top_p is None else req.top_p,
            max_tokens=self.max_tokens if req.max_tokens is None else req.max_tokens,
            **self.executor_kwargs,
        )

    async def run(self, strategy: str, req, deadline: float):
        """Run ``strategy`` on ``req.query`` before ``deadline`` (``loop.time()`` units).

        Returns
        -------
        ExecutionResult

        Raises
        ------
        APIError
            503 (upstream unavailable), 504 (deadline), 400 (the model cannot take the
            prompt), 500 (anything else).
        """
        loop = asyncio.get_running_loop()
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrency)
        try:
            await asyncio.wait_for(self._slots.acquire(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise _deadline(req, "waiting for a free execution slot") from None
        trace = RequestTrace()
        try:
            executor = self.make_executor(req)
            ctx = contextvars.copy_context()
            ctx.run(TRACE.set, trace)
            future = loop.run_in_executor(self._pool, ctx.run, executor.execute, strategy,
                                          req.query)
            try:
                result = await asyncio.wait_for(asyncio.shield(future),
                                                max(0.0, deadline - loop.time()))
            except TimeoutError:
                trace.cancel()  # stops its engine requests and any further calls
                raise _deadline(req, f"running {strategy}") from None
            except asyncio.CancelledError:  # the client went away
                trace.cancel()
                raise
            except ValueError as exc:
                raise APIError(400, str(exc), code="invalid_request") from None
        finally:
            self._slots.release()
        if trace.upstream_error is not None:
            raise APIError(503, trace.upstream_error, type="service_unavailable",
                           code="upstream_unavailable")
        if result.error is not None:
            raise _classify(result.error, trace)
        return result

    def close(self):
        self._pool.shutdown(wait=False, cancel_futures=True)


def _deadline(req, doing):
    limit = "" if req.timeout_s is None else f" of {req.timeout_s:g} s"
    return APIError(504, f"The request passed its deadline{limit} while {doing}.",
                    type="timeout", param="ttc.timeout_s", code="deadline_exceeded")


def _classify(error: str, trace) -> APIError:
    if trace.cancelled.is_set() or error.startswith("DeadlineExceeded"):
        return APIError(504, f"The request passed its deadline: {error}", type="timeout",
                        code="deadline_exceeded")
    if error.startswith("ValueError") and ("prompt has" in error or "context" in error):
        return APIError(400, error, param="messages", code="context_length_exceeded")
    if error.startswith("ValueError"):
        return APIError(400, error, code="invalid_request")
    return APIError(500, f"The strategy failed: {error}", type="server_error",
                    code="execution_failed")


def vote_counts(result) -> dict:
    """Votes per extracted answer among the candidates, and their summed rewards."""
    cands = getattr(result, "candidates", None) or []
    counts = Counter(c.normalized for c in cands if c.normalized is not None)
    weights: dict = {}
    for c in cands:
        if c.normalized is not None:
            weights[c.normalized] = weights.get(c.normalized, 0.0) + float(c.reward)
    return {
        "votes": dict(counts.most_common()),
        "vote_weights": {k: round(v, 6) for k, v in weights.items()},
        "candidates": len(cands),
        "unanswered": sum(1 for c in cands if c.normalized is None),
    }


def ttc_block(decision, result, *, total_s: float, backend: str, ignored=()) -> dict:
    """The ``ttc`` block of a response: what was chosen, predicted and measured."""
    block = {
        "strategy": decision.strategy,
        "forced": decision.forced,
        "answer": result.answer,
        "predicted_accuracy": round(decision.predicted_accuracy, 6),
        "predicted_utility": round(decision.predicted_utility, 6),
        "predicted_tokens": round(decision.predicted_tokens, 2),
        "predicted_latency_s": round(decision.predicted_latency_s, 4),
        "measured_tokens": int(result.tokens),
        "measured_latency_s": round(float(result.latency_s), 4),
        "reward_tokens": int(result.reward_tokens),
        "steps": int(result.steps),
        "lambda_tokens": decision.lambda_tokens,
        "lambda_latency": decision.lambda_latency,
        "route_s": round(decision.route_s, 6),
        "route_compute_s": round(decision.route_compute_s, 6),
        "route_cpu_s": round(decision.route_cpu_s, 6),
        "route_batch_size": decision.batch_size,
        "total_s": round(total_s, 4),
        "backend": backend,
    }
    block.update(vote_counts(result))
    if ignored:
        block["ignored"] = list(ignored)
    return block

