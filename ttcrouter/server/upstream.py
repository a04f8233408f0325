"""A fleet of upstream OpenAI-compatible servers behind one synchronous generator.

Each generation call goes to the healthy upstream with the fewest calls in flight (ties in
turn). An upstream that cannot be reached or answers 5xx is taken out for ``cooldown_s`` and
the call is retried on the next one; when every upstream is out, the one whose cool-down ends
first is tried once more before the call fails with
:class:`~ttcrouter.server.context.UpstreamUnavailable` (the server answers 503). Each call of a
strategy (a beam-search step, a batch of samples) is independent, so a strategy goes on on
another upstream when one dies under it.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, field

from ..executors import OpenAIGenerator
from ..executors.base import Generator
from .context import UpstreamUnavailable, current_trace

__all__ = ["Upstream", "UpstreamPool"]


@dataclass
class Upstream:
    """One upstream server and its state."""

    url: str
    generator: object
    in_flight: int = 0
    down_until: float = 0.0
    failures: int = 0
    calls: int = 0
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def healthy(self, now: float) -> bool:
        return self.down_until <= now

    def status(self, now: float) -> dict:
        return {"url": self.url, "healthy": self.healthy(now), "in_flight": self.in_flight,
                "calls": self.calls, "failures": self.failures,
                "retry_in_s": round(max(0.0, self.down_until - now), 2),
                "last_error": self.last_error}


class UpstreamPool(Generator):
    """Spread generation calls over several OpenAI-compatible servers.

    Parameters
    ----------
    urls : list of str
        Server URLs (``http://127.0.0.1:8001/v1``; a URL without a path gets ``/v1``).
    model : str or None, default=None
        Model name on the upstreams; None asks each server (``GET /models``).
    api_key : str, default="EMPTY"
        Bearer token sent upstream.
    timeout : float, default=120
        Seconds per HTTP call.
    cooldown_s : float, default=10
        How long a failed upstream is left out.
    max_concurrency : int, default=16
        HTTP calls in flight per upstream and generation call.
    generator_factory : callable, optional
        ``factory(url) -> Generator``; default an
        :class:`~ttcrouter.executors.OpenAIGenerator` without retries of its own.
    on_change : callable, optional
        Called with ``(url, healthy)`` when an upstream goes out or comes back (metrics).
    """

    backend = "openai"

    def __init__(self, urls, model=None, api_key="EMPTY", timeout=120.0, cooldown_s=10.0,
                 max_concurrency=16, generator_factory=None, on_change=None):
        urls = [urls] if isinstance(urls, str) else list(urls)
        if not urls:
            raise ValueError("UpstreamPool needs at least one upstream URL.")
        if generator_factory is None:
            def generator_factory(url):
                return OpenAIGenerator(url, model=model, api_key=api_key, timeout=timeout,
                                       max_retries=0, max_concurrency=max_concurrency)
        self.model = model
        self.cooldown_s = float(cooldown_s)
        self.on_change = on_change
        self.upstreams = [Upstream(u, generator_factory(u)) for u in urls]
        self._lock = threading.Lock()
        self._turn = 0

    @property
    def system_prompt(self):
        return getattr(self.upstreams[0].generator, "system_prompt", None)

    @property
    def model_name(self) -> str:
        return self.model or "upstream"

    def _pick(self, exclude) -> Upstream | None:
        """The healthy upstream with the fewest calls in flight, taken (its count raised)."""
        now = time.monotonic()
        with self._lock:
            n = len(self.upstreams)
            order = [self.upstreams[(self._turn + k) % n] for k in range(n)]
            self._turn = (self._turn + 1) % n
            live = [u for u in order if u not in exclude and u.healthy(now)]
            if not live:
                # all out: try the one that comes back first, once, rather than fail blind
                rest = [u for u in order if u not in exclude]
                if not rest:
                    return None
                live = [min(rest, key=lambda u: u.down_until)]
            best = min(live, key=lambda u: u.in_flight)
            best.in_flight += 1
            best.calls += 1
            return best

    def _release(self, up: Upstream, error: str | None) -> None:
        came_back = went_down = False
        with self._lock:
            up.in_flight -= 1
            if error is None:
                came_back = up.down_until > 0
                up.down_until = 0.0
            else:
                went_down = up.healthy(time.monotonic())
                up.failures += 1
                up.last_error = error
                up.down_until = time.monotonic() + self.cooldown_s
        if self.on_change is not None and (came_back or went_down):
            self.on_change(up.url, came_back)

    def generate(self, requests, *, n=1, temperature=0.7, top_p=1.0, max_tokens=256,
                 stop=None, logprobs=False):
        """Generate on one upstream, moving on to the next when one fails.

        Raises
        ------
        UpstreamUnavailable
            When every upstream failed this call (marked on the request's trace too).
        ValueError
            When an upstream rejects the request itself (HTTP 4xx): not an upstream fault.
        """
        trace = current_trace()
        if trace is not None:
            trace.check()
        if temperature == 0 and n > 1:
            # vLLM servers refuse n > 1 with greedy decoding; greedy samples are identical,
            # so decode once and copy (each copy counts the tokens it would have cost), as
            # the offline VLLMGenerator does
            out = self.generate(requests, n=1, temperature=0, top_p=top_p,
                                max_tokens=max_tokens, stop=stop, logprobs=logprobs)
            return [[copy.copy(c[0]) for _ in range(n)] for c in out]
        tried, errors = [], []
        while True:
            up = self._pick(tried)
            if up is None:
                break
            tried.append(up)
            try:
                out = up.generator.generate(requests, n=n, temperature=temperature,
                                            top_p=top_p, max_tokens=max_tokens, stop=stop,
                                            logprobs=logprobs)
            except (ConnectionError, OSError, TimeoutError) as exc:
                msg = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
                errors.append(f"{up.url}: {msg}")
                self._release(up, msg)
                if trace is not None:
                    trace.check()
                continue
            except BaseException:
                self._release(up, None)
                raise
            self._release(up, None)
            return out
        message = "No upstream server answered: " + "; ".join(errors)
        if trace is not None:
            trace.mark_upstream_error(message)
        raise UpstreamUnavailable(message)

    def status(self) -> list[dict]:
        """Health, load and failures of every upstream."""
        now = time.monotonic()
        return [u.status(now) for u in self.upstreams]

    def close(self) -> None:
        for u in self.upstreams:
            try:
                u.generator.close()
            except Exception:  # noqa: BLE001
                pass
