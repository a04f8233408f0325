"""The per-request trace that generator calls made on a request's behalf consult and mark.

Strategies run in worker threads over a synchronous generator; the server gives each request
a :class:`RequestTrace` in a context variable copied into its worker thread. Generators check
it before each call (a request past its deadline makes no further calls), register their
in-flight work on it (so the deadline can cancel that work) and mark an unreachable upstream
on it (so the server answers 503 instead of a per-query error).
"""

from __future__ import annotations

import contextvars
import threading

__all__ = ["RequestTrace", "DeadlineExceeded", "UpstreamUnavailable", "current_trace",
           "TRACE"]


class DeadlineExceeded(TimeoutError):
    """The request's deadline passed; no more generation is done for it."""


class UpstreamUnavailable(ConnectionError):
    """No upstream server could answer a generation call."""


class RequestTrace:
    """What happened to one request's generation calls, and a switch to stop them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: set = set()
        self.cancelled = threading.Event()
        self.upstream_error: str | None = None
        self.calls = 0

    def check(self) -> None:
        """Raise :class:`DeadlineExceeded` once the request was cancelled."""
        if self.cancelled.is_set():
            raise DeadlineExceeded("the request's deadline passed")

    def add(self, future) -> None:
        """Register in-flight work (a ``concurrent.futures.Future``) to cancel on deadline."""
        with self._lock:
            self.calls += 1
            self._pending.add(future)
            cancelled = self.cancelled.is_set()
        if cancelled:
            future.cancel()

    def discard(self, future) -> None:
        with self._lock:
            self._pending.discard(future)

    def cancel(self) -> None:
        """Stop the request: cancel its in-flight work and refuse further calls."""
        with self._lock:
            self.cancelled.set()
            pending = list(self._pending)
        for fut in pending:
            fut.cancel()

    def mark_upstream_error(self, message: str) -> None:
        self.upstream_error = message


#: The trace of the request the current thread works for (None outside the server).
TRACE: contextvars.ContextVar = contextvars.ContextVar("ttcrouter_trace", default=None)


def current_trace() -> RequestTrace | None:
    """The running request's trace, or None."""
    return TRACE.get()
