"""Choose each request's strategy: batched router predictions, then per-request lambdas,
hard budgets or a forced strategy.

The router file's Pipeline (encoder, then a fitted router) is split in two: the encoder and
the router's ``predict_accuracy``/``predict_costs`` run once per micro-batch of concurrent
requests (:class:`~ttcrouter.server.batching.MicroBatcher`); the choice itself, which depends
on each request's own lambdas and budgets, is a few numpy operations per request.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.pipeline import Pipeline

from ..strategies import parse_strategy
from .batching import MicroBatcher
from .errors import bad_request

__all__ = ["RouteDecision", "RouterService"]


@dataclass
class RouteDecision:
    """The strategy chosen for one request and what the router predicted for it.

    ``route_s`` is the request's wall time in routing (waiting for its batch included);
    ``route_compute_s`` its share of the batch call's wall time (batch seconds / batch size);
    ``route_cpu_s`` its share of the CPU time that call used (the rest of the call's time
    went to waiting for a core).
    """

    strategy: str
    forced: bool
    predicted_accuracy: float
    predicted_tokens: float
    predicted_latency_s: float
    predicted_utility: float
    lambda_tokens: float
    lambda_latency: float
    route_s: float = 0.0
    route_compute_s: float = 0.0
    route_cpu_s: float = 0.0
    batch_size: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


def _lambda_of(final, metadata, name) -> float:
    """The lambda the router file routes with (metadata first, then the fitted estimator)."""
    if metadata.get(name) is not None:
        return float(metadata[name])
    for value in (getattr(final, f"best_{name}_", None),
                  getattr(getattr(final, "best_estimator_", None), name, None),
                  getattr(final, name, None)):
        if value is not None:
            return float(value)
    return 0.0


class RouterService:
    """Route requests with a fitted router Pipeline.

    Parameters
    ----------
    router : Pipeline
        A fitted ``Pipeline([("embed", encoder), ("router", UtilityRouter or
        UtilityRouterCV)])`` as ``ttcrouter fit`` saves it.
    metadata : dict, optional
        The router file's metadata (its lambdas are the defaults).
    window_s, max_batch : float, int
        Micro-batching of concurrent requests (see :class:`MicroBatcher`).
    on_batch : callable, optional
        Called with ``(n_items, seconds)`` after each batch.
    torch_threads : int or None, default=1
        Intra-op threads of torch in the routing thread (None leaves torch's default). One
        thread is the robust choice next to a busy engine: on the shared 2-core machine,
        MiniLM embedded one query in 5.5 ms with two threads and 7.8 ms with one when it was
        quiet, but in 780 ms with two and 17 ms with one under load (two threads spin waiting
        for each other when a core is taken).
    """

    def __init__(self, router, metadata=None, *, window_s=0.003, max_batch=64, on_batch=None,
                 torch_threads=1):
        steps = getattr(router, "steps", None)
        if not steps or len(steps) < 2:
            raise ValueError("The server needs a router file holding a Pipeline (encoder, "
                             "router), as `ttcrouter fit` writes it.")
        self.features = Pipeline(steps[:-1])
        self.final = steps[-1][1]
        for method in ("predict_accuracy", "predict_costs", "predict_utility"):
            if not hasattr(self.final, method):
                raise TypeError(f"The router ({type(self.final).__name__}) has no {method}; "
                                "the server needs a UtilityRouter or UtilityRouterCV.")
        self.metadata = dict(metadata or {})
        names = getattr(self.final, "strategies_", None)
        if names is None:
            names = getattr(getattr(self.final, "best_estimator_", None), "strategies_", None)
        if names is None:
            names = self.metadata.get("strategies")
        if not names:
            raise ValueError("The router names no strategies; is it fitted?")
        self.strategies = [str(s) for s in names]
        self.lambda_tokens = _lambda_of(self.final, self.metadata, "lambda_tokens")
        self.lambda_latency = _lambda_of(self.final, self.metadata, "lambda_latency")
        self.routable = np.ones(len(self.strategies), dtype=bool)
        self.torch_threads = torch_threads
        self._local = threading.local()
        self.batcher = MicroBatcher(self.predict_batch, window_s=window_s, max_batch=max_batch,
                                    on_batch=on_batch)

    # -- predictions --------------------------------------------------------------------------
    def _set_threads(self):
        # torch's thread count is per OS thread once that thread has run torch code, so it is
        # set in the thread that routes, not only where the server starts
        if self.torch_threads and not getattr(self._local, "threads_set", False):
            import torch

            torch.set_num_threads(int(self.torch_threads))
            self._local.threads_set = True

    def predict_batch(self, queries: list) -> list:
        """Predicted accuracy, tokens and latency of every strategy, one triple per query."""
        self._set_threads()
        X = self.features.transform(list(queries))
        A = np.asarray(self.final.predict_accuracy(X), dtype=float)
        T, L = self.final.predict_costs(X)
        T, L = np.asarray(T, dtype=float), np.asarray(L, dtype=float)
        return [(A[i], T[i], L[i]) for i in range(len(queries))]

    def warm_up(self) -> float:
        """Load the encoder and learn which strategies the router never routes to.

        The router marks strategies its training runs show dominated with ``-inf`` utility;
        that mask does not depend on the query or the lambdas, so it is read once here.

        Returns
        -------
        float
            Seconds it took.
        """
        t0 = time.perf_counter()
        self._set_threads()
        X = self.features.transform(["What is 1 + 1?"])
        U = np.asarray(self.final.predict_utility(X), dtype=float)
        self.routable = np.isfinite(U[0])
        if not self.routable.any():
            self.routable[:] = True
        self.predict_batch(["What is 2 + 2?", "What is 3 + 3?"])
        return time.perf_counter() - t0

    # -- choice -------------------------------------------------------------------------------
    def check_strategy(self, name: str) -> str:
        """Canonical name of a strategy the router knows, or a 400."""
        try:
            canonical = parse_strategy(name).name
        except (ValueError, TypeError) as exc:
            raise bad_request(f"Unknown strategy {name!r}: {exc} This router knows: "
                              f"{', '.join(self.strategies)}.", "ttc.strategy",
                              "unknown_strategy") from None
        if canonical not in self.strategies:
            raise bad_request(f"The router was not fitted on {canonical!r}, so it has no "
                              f"prediction for it; choose one of {', '.join(self.strategies)}.",
                              "ttc.strategy", "unknown_strategy")
        return canonical

    def choose(self, A, T, L, req) -> RouteDecision:
        """Pick the strategy for one request from its row of predictions.

        A forced strategy is run as asked. Otherwise the highest utility at the request's
        lambdas (the router file's by default), among the strategies the router routes to
        whose predicted tokens and latency fit the request's hard budgets.
        """
        lt = self.lambda_tokens if req.lambda_tokens is None else req.lambda_tokens
        ll = self.lambda_latency if req.lambda_latency is None else req.lambda_latency
        U = A - lt * T - ll * L
        if req.strategy is not None:
            j = self.strategies.index(self.check_strategy(req.strategy))
            forced = True
        else:
            ok = self.routable.copy()
            if req.max_total_tokens is not None:
                ok &= T <= req.max_total_tokens
            if req.max_latency_s is not None:
                ok &= L <= req.max_latency_s
            if not ok.any():
                raise self._unmeetable(T, L, req)
            j = int(np.argmax(np.where(ok, U, -np.inf)))
            forced = False
        return RouteDecision(
            strategy=self.strategies[j], forced=forced, predicted_accuracy=float(A[j]),
            predicted_tokens=float(T[j]), predicted_latency_s=float(L[j]),
            predicted_utility=float(U[j]), lambda_tokens=float(lt), lambda_latency=float(ll),
        )

    def _unmeetable(self, T, L, req):
        parts, param = [], "ttc"
        if req.max_total_tokens is not None:
            k = int(np.argmin(T))
            parts.append(f"the fewest predicted tokens is {T[k]:.0f} ({self.strategies[k]}), "
                         f"budget {req.max_total_tokens:g}")
            param = "ttc.max_tokens"
        if req.max_latency_s is not None:
            k = int(np.argmin(L))
            parts.append(f"the lowest predicted latency is {L[k]:.3g} s ({self.strategies[k]}), "
                         f"budget {req.max_latency_s:g} s")
            param = "ttc.max_latency_s" if req.max_total_tokens is None else "ttc"
        return bad_request("No strategy fits the budget for this question: "
                           + "; ".join(parts) + ". Raise the budget.", param,
                           "budget_unmeetable")

    async def route(self, req) -> RouteDecision:
        """Route one request (batched with the requests routed at the same moment)."""
        if req.strategy is not None:
            self.check_strategy(req.strategy)  # a bad name fails before any work
        t0 = time.perf_counter()
        (A, T, L), size, seconds, cpu = await self.batcher.submit(req.query)
        decision = self.choose(A, T, L, req)
        decision.route_s = time.perf_counter() - t0
        decision.route_compute_s = seconds / max(size, 1)
        decision.route_cpu_s = cpu / max(size, 1)
        decision.batch_size = size
        return decision

    async def close(self):
        await self.batcher.close()
