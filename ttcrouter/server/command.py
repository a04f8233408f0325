"""The work behind ``ttcrouter serve``, once :mod:`ttcrouter.cli` has parsed and checked.

Loads the router file before anything starts (a bad file is a one-line error, exit 2), then
builds the :class:`~ttcrouter.server.app.ServerConfig` and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import os

from ..persistence import load_router
from ..executors.factory import named_scorers_for
from ..serving import learned_executor_kwargs
from .app import ServerConfig
from .launcher import run_server
from .routing import RouterService

__all__ = ["cmd_serve"]

logger = logging.getLogger("ttcrouter.server")


def cmd_serve(args) -> int:
    """``ttcrouter serve``: route and answer OpenAI-style requests until stopped."""
    bundle = load_router(args.router)
    # the settings the router's runs were collected with, unless the command line says
    learned = learned_executor_kwargs(bundle.get("metadata"))
    try:
        service = RouterService(bundle["router"], bundle.get("metadata"))
    except TypeError as exc:
        raise ValueError(str(exc)) from exc
    # the verifier of the router's ...,scorer=verifier strategies, loaded before any engine
    scorers = named_scorers_for(service.strategies, scorer=args.scorer,
                                embedded_generator=not args.upstream and args.model is None)
    if scorers:
        learned["scorers"] = scorers
    config = ServerConfig(
        router=args.router, upstreams=list(args.upstream or []), model=args.model,
        upstream_model=args.upstream_model,
        api_key=args.api_key or os.environ.get("TTCROUTER_API_KEY") or None,
        max_concurrency=args.max_concurrency, request_timeout_s=args.timeout,
        max_tokens=_learned(args.max_tokens, learned, "max_tokens", 256),
        temperature=_learned(args.temperature, learned, "temperature", 0.7),
        top_p=learned.get("top_p", 1.0),
        executor_kwargs={k: v for k, v in learned.items()
                         if k not in ("max_tokens", "temperature", "top_p")},
        batch_window_ms=args.batch_window_ms, cooldown_s=args.cooldown,
        max_model_len=args.max_model_len, seed=args.seed,
        kv_cache_space_gb=args.kv_cache_space, route_threads=args.route_threads or None)
    where = ("upstreams " + ", ".join(config.upstreams) if config.upstreams
             else "the embedded model on vLLM")
    logger.info("serving %s on http://%s:%s/v1 (%s)", args.router, args.host, args.port, where)
    return run_server(config, host=args.host, port=args.port, router=bundle,
                      ready_message=lambda url: logger.info("ready: %s", url))


def _learned(given, learned, key, default):
    """The command line's value, else the router file's, else the default."""
    return given if given is not None else learned.get(key, default)
