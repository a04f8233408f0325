"""The FastAPI application: OpenAI-compatible endpoints over the router and the executors.

``create_app(ServerConfig(router="router.joblib"))`` builds the app; its lifespan loads the
router, starts the backend (the embedded model on vLLM's async engine, or a pool of upstream
servers) and warms both up, so the first request pays neither. Every error becomes an
OpenAI-style error body; none stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..persistence import load_router
from .engine import AsyncVLLMGenerator, SyncGenerator
from .errors import APIError, error_body
from .execution import ExecutionService, ttc_block
from .metrics import ServerMetrics
from .protocol import (
    MODEL_NAME,
    chat_response,
    completion_response,
    parse_request,
    stream_chunks,
)
from .routing import RouterService
from .upstream import UpstreamPool

__all__ = ["ServerConfig", "ServerState", "create_app"]

logger = logging.getLogger("ttcrouter.server")


@dataclass
class ServerConfig:
    """Settings of ``ttcrouter serve`` (see ``ttcrouter serve --help``)."""

    router: str | None = None
    upstreams: list = field(default_factory=list)
    model: str | None = None
    upstream_model: str | None = None
    upstream_api_key: str = "EMPTY"
    api_key: str | None = None
    max_concurrency: int = 32
    request_timeout_s: float = 600.0
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 256
    max_tokens_limit: int = 1024
    executor_kwargs: dict = field(default_factory=dict)
    max_prompt_chars: int = 8000
    batch_window_ms: float = 3.0
    max_batch: int = 64
    route_threads: int | None = 1
    cooldown_s: float = 10.0
    upstream_timeout_s: float = 120.0
    seed: int = 0
    max_model_len: int = 2048
    kv_cache_space_gb: int | None = None
    enforce_eager: bool = True
    step_delimiter: str = "\n"
    disconnect_poll_s: float = 0.5


class ServerState:
    """What the endpoints share: config, router, execution, metrics and lifecycle flags."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.metrics = ServerMetrics()
        self.router: RouterService | None = None
        self.execution: ExecutionService | None = None
        self.backend = None
        self.backend_name = ""
        self.ready = False
        self.draining = False
        self.in_flight = 0


def _load_router(config, router):
    if router is None:
        if not config.router:
            raise ValueError("No router: pass ServerConfig(router='router.joblib').")
        router = load_router(config.router)
    if isinstance(router, dict):
        return router["router"], router.get("metadata") or {}
    return router, {}


async def _start(state: ServerState, router, generator):
    config = state.config
    pipe, meta = _load_router(config, router)
    state.router = RouterService(pipe, meta, window_s=config.batch_window_ms / 1000.0,
                                 max_batch=config.max_batch,
                                 on_batch=state.metrics.observe_batch,
                                 torch_threads=config.route_threads)
    seconds = await asyncio.to_thread(state.router.warm_up)
    logger.info("router ready: %d strategies, warm-up %.1f s", len(state.router.strategies),
                seconds)
    if generator is not None:
        state.backend, state.backend_name = generator, getattr(generator, "backend", "custom")
        sync_gen = generator
    elif config.upstreams:
        def on_change(url, healthy):
            state.metrics.upstream_up.labels(url).set(1 if healthy else 0)

        sync_gen = UpstreamPool(config.upstreams, model=config.upstream_model,
                                api_key=config.upstream_api_key,
                                timeout=config.upstream_timeout_s, cooldown_s=config.cooldown_s,
                                max_concurrency=config.max_concurrency, on_change=on_change)
        for u in config.upstreams:
            state.metrics.upstream_up.labels(u).set(1)
        state.backend, state.backend_name = sync_gen, "upstream"
    else:
        agen = AsyncVLLMGenerator(model=config.model, seed=config.seed,
                                  enforce_eager=config.enforce_eager,
                                  max_model_len=config.max_model_len,
                                  kv_cache_space_gb=config.kv_cache_space_gb)
        t0 = time.perf_counter()
        agen.start()  # on the serving loop: the engine's output handler is one of its tasks
        await agen.generate(["Hi"], n=1, max_tokens=1)
        logger.info("engine ready in %.1f s", time.perf_counter() - t0)
        state.backend, state.backend_name = agen, "vllm-async"
        sync_gen = SyncGenerator(agen, asyncio.get_running_loop())
    state.execution = ExecutionService(
        sync_gen, max_concurrency=config.max_concurrency, temperature=config.temperature,
        top_p=config.top_p, max_tokens=config.max_tokens,
        executor_kwargs={"step_delimiter": config.step_delimiter, **config.executor_kwargs})
    state.ready = True


async def _stop(state: ServerState):
    state.ready = False
    if state.router is not None:
        await state.router.close()
    if state.execution is not None:
        state.execution.close()
    if state.backend is not None and hasattr(state.backend, "close"):
        state.backend.close()


def create_app(config: ServerConfig, *, router=None, generator=None):
    """Build the OpenAI-compatible app.

    Parameters
    ----------
    config : ServerConfig
    router : Pipeline or dict, optional
        A fitted router Pipeline, or the dict of :func:`ttcrouter.load_router`; default: the
        file ``config.router``.
    generator : Generator, optional
        A thread-safe synchronous generator to run strategies on instead of the configured
        backend (tests, custom backends).

    Returns
    -------
    fastapi.FastAPI
        ``app.state.ttc`` is its :class:`ServerState`.
    """
    state = ServerState(config)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await _start(state, router, generator)
        try:
            yield
        finally:
            await _stop(state)

    app = FastAPI(title="ttcrouter", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.ttc = state

    def fail(endpoint: str, exc: APIError):
        state.metrics.requests.labels(endpoint, str(exc.status)).inc()
        state.metrics.errors.labels(str(exc.status), exc.code or exc.type).inc()
        return JSONResponse(exc.body(), status_code=exc.status)

    def check_access(request: Request):
        if state.draining:
            raise APIError(503, "The server is shutting down; send the request elsewhere.",
                           type="service_unavailable", code="shutting_down")
        if config.api_key:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    token.strip().encode(), config.api_key.encode()):
                raise APIError(401, "Missing or wrong API key: send 'Authorization: Bearer "
                                    "<key>'.", type="authentication_error",
                               code="invalid_api_key")
        if not state.ready:
            raise APIError(503, "The server is starting.", type="service_unavailable",
                           code="not_ready")

    async def run_watching(request: Request, coro):
        """Await ``coro``; if the client goes away first, cancel it (which stops the
        strategy's generation) rather than finish work nobody will read."""
        task = asyncio.ensure_future(coro)
        while True:
            done, _ = await asyncio.wait({task}, timeout=config.disconnect_poll_s)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                raise APIError(499, "The client closed the request; its work was stopped.",
                               type="client_closed_request", code="client_disconnected")

    async def complete(request: Request, kind: str, endpoint: str):
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        state.in_flight += 1
        state.metrics.in_flight.inc()
        try:
            check_access(request)
            req = parse_request(await request.body(), kind,
                                max_prompt_chars=config.max_prompt_chars,
                                max_tokens_limit=config.max_tokens_limit)
            timeout = config.request_timeout_s if req.timeout_s is None else req.timeout_s
            deadline = loop.time() + timeout
            try:
                decision = await asyncio.wait_for(state.router.route(req), timeout)
            except TimeoutError:
                raise APIError(504, f"The request passed its deadline of {timeout:g} s while "
                                    "being routed.", type="timeout", param="ttc.timeout_s",
                               code="deadline_exceeded") from None
            result = await run_watching(request, state.execution.run(decision.strategy, req,
                                                                     deadline))
            total = time.perf_counter() - t0
            ttc = ttc_block(decision, result, total_s=total, backend=state.backend_name,
                            ignored=req.ignored)
            state.metrics.observe_result(endpoint, decision, result, total)
            state.metrics.requests.labels(endpoint, "200").inc()
            if req.stream:
                return StreamingResponse(iter(stream_chunks(kind, req.model, result, ttc)),
                                         media_type="text/event-stream")
            build = chat_response if kind == "chat" else completion_response
            return JSONResponse(build(req.model, result, ttc))
        except APIError as exc:
            return fail(endpoint, exc)
        except Exception as exc:  # noqa: BLE001 - no error stops the server
            logger.exception("request failed")
            return fail(endpoint, APIError(500, f"Internal error: {type(exc).__name__}: {exc}",
                                           type="server_error", code="internal_error"))
        finally:
            state.in_flight -= 1
            state.metrics.in_flight.dec()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await complete(request, "chat", "/v1/chat/completions")

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await complete(request, "completion", "/v1/completions")

    @app.get("/v1/models")
    async def models(request: Request):
        try:
            check_access(request)
        except APIError as exc:
            return fail("/v1/models", exc)
        created = int(time.time())
        names = [MODEL_NAME] + [f"{MODEL_NAME}:{s}" for s in state.router.strategies]
        state.metrics.requests.labels("/v1/models", "200").inc()
        return {"object": "list", "data": [
            {"id": n, "object": "model", "created": created, "owned_by": "ttcrouter"}
            for n in names]}

    @app.get("/health")
    async def health():
        status = "draining" if state.draining else ("ok" if state.ready else "starting")
        body = {"status": status, "backend": state.backend_name, "in_flight": state.in_flight,
                "strategies": len(state.router.strategies) if state.router else 0}
        if isinstance(state.backend, UpstreamPool):
            body["upstreams"] = state.backend.status()
            if status == "ok" and not any(u["healthy"] for u in body["upstreams"]):
                body["status"] = status = "no_upstream"
        elif hasattr(state.backend, "status"):
            body["engine"] = state.backend.status()
            if body["engine"].get("engine_errored"):
                body["status"] = status = "engine_dead"
        if state.router is not None:
            stats = state.router.batcher.stats
            body["routing"] = {"batches": stats.batches, "mean_batch": round(stats.mean_batch, 2)}
        return JSONResponse(body, status_code=200 if status == "ok" else 503)

    @app.get("/metrics")
    async def metrics():
        data, content_type = state.metrics.render()
        return Response(data, media_type=content_type)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(f"{request.method} {request.url.path}: {exc.detail}",
                                       "invalid_request_error", None, kind),
                            status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def any_error(request, exc):  # pragma: no cover - the endpoints catch their own
        return JSONResponse(error_body(f"Internal error: {type(exc).__name__}: {exc}",
                                       "server_error", None, "internal_error"), 500)

    return app
