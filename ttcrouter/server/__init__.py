"""``ttcrouter serve``: an OpenAI-compatible endpoint that routes each request, runs the chosen
strategy and answers within the caller's budget.

Modules, one job each: :mod:`.protocol` (the wire format), :mod:`.errors` (error bodies),
:mod:`.batching` (micro-batches), :mod:`.routing` (the choice per request), :mod:`.context`
(per-request trace), :mod:`.engine` (vLLM's async engine and its sync facade),
:mod:`.upstream` (a fleet of OpenAI-compatible servers), :mod:`.execution` (strategies within
deadlines), :mod:`.metrics` (Prometheus), :mod:`.app` (FastAPI), :mod:`.launcher` (uvicorn).
Public names are imported lazily, so the package imports without FastAPI or vLLM.
"""

from importlib import import_module

_EXPORTS = {
    "ServerConfig": "app",
    "create_app": "app",
    "run_server": "launcher",
    "APIError": "errors",
    "MicroBatcher": "batching",
    "RouterService": "routing",
    "RouteDecision": "routing",
    "AsyncVLLMGenerator": "engine",
    "SyncGenerator": "engine",
    "UpstreamPool": "upstream",
    "ExecutionService": "execution",
    "ServerMetrics": "metrics",
    "parse_request": "protocol",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ttcrouter.server' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
