"""``ttcrouter serve``: an OpenAI-compatible endpoint that routes each request, runs the chosen
strategy and answers within the caller's budget.

Modules, one job each: :mod:`.protocol` (the wire format), :mod:`.errors` (error bodies),
:mod:`.batching` (micro-batches), :mod:`.routing` (the choice per request), :mod:`.context`
(per-request trace), :mod:`.engine` (vLLM's async engine and its sync facade),
:mod:`.upstream` (a fleet of OpenAI-compatible servers), :mod:`.execution` (strategies within
deadlines), :mod:`.metrics` (Prometheus), :mod:`.app` (FastAPI), :mod:`.launcher` (uvicorn).
Public names are imported lazily, so the package imports without FastAPI or vLLM.
"""

from .._lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
