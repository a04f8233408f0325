"""Run the app under uvicorn, draining gracefully on SIGTERM or Ctrl-C.

On the signal the server stops accepting connections, answers any new request that still
arrives on an open connection with a 503, lets the requests in flight finish (up to
``graceful_timeout_s``), then shuts the backend down.
"""

from __future__ import annotations

import copy
import logging

import uvicorn

from .app import ServerConfig, create_app

__all__ = ["run_server", "DrainingServer"]

logger = logging.getLogger("ttcrouter.server")


class DrainingServer(uvicorn.Server):
    """uvicorn's server, telling the app to refuse new work as soon as a signal comes."""

    def __init__(self, config, state):
        super().__init__(config)
        self.ttc_state = state

    def handle_exit(self, sig, frame):
        if not self.ttc_state.draining:
            logger.info("signal %s: draining %d request(s) in flight, refusing new ones",
                        sig, self.ttc_state.in_flight)
        self.ttc_state.draining = True
        super().handle_exit(sig, frame)


def run_server(config: ServerConfig, *, host="127.0.0.1", port=8000, log_level="info",
               graceful_timeout_s=600.0, ready_message=None, router=None) -> int:
    """Serve until SIGTERM/SIGINT.

    Parameters
    ----------
    config : ServerConfig
    host, port : str, int
    log_level : str
    graceful_timeout_s : float
        Longest wait for requests in flight at shutdown.
    ready_message : callable, optional
        Called with the base URL once the server listens.
    router : Pipeline or dict, optional
        The router (or :func:`ttcrouter.load_router`'s dict); default: ``config.router``.

    Returns
    -------
    int
        Exit code (0).
    """
    app = create_app(config, router=router)
    # every log line on stderr, the access log included (stdout carries results only)
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    for handler in log_config.get("handlers", {}).values():
        if handler.get("stream") == "ext://sys.stdout":
            handler["stream"] = "ext://sys.stderr"
    uv_config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                               log_config=log_config,
                               timeout_graceful_shutdown=graceful_timeout_s,
                               timeout_keep_alive=5)
    server = DrainingServer(uv_config, app.state.ttc)
    if ready_message is not None:
        original = server.startup

        async def startup(sockets=None):
            await original(sockets=sockets)
            if server.started:
                ready_message(f"http://{host}:{port}/v1")

        server.startup = startup
    server.run()
    return 0
