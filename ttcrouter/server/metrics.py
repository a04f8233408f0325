"""Prometheus metrics of one server: requests, strategies, tokens, latency, errors.

Each app has its own ``CollectorRegistry``, so several apps (tests, a bench) in one process
never clash on metric names.
"""

from __future__ import annotations

__all__ = ["ServerMetrics"]

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 300)
_ROUTE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


class ServerMetrics:
    """The server's metrics, in their own registry; :meth:`render` gives the text format."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.requests = Counter("ttcrouter_requests", "HTTP requests answered",
                                ["endpoint", "status"], registry=r)
        self.strategies = Counter("ttcrouter_strategy_requests",
                                  "Requests run per strategy", ["strategy", "forced"], registry=r)
        self.tokens = Counter("ttcrouter_tokens", "Tokens, by kind (completion: every "
                              "generated token of every sample and beam)", ["kind"], registry=r)
        self.latency = Histogram("ttcrouter_request_latency_seconds",
                                 "Wall time of answered completions", ["endpoint"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.route_latency = Histogram("ttcrouter_route_latency_seconds",
                                       "Wall time of routing one request (batch wait included)",
                                       buckets=_ROUTE_BUCKETS, registry=r)
        self.route_batch = Histogram("ttcrouter_route_batch_size", "Requests per routing batch",
                                     buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.errors = Counter("ttcrouter_errors", "Error responses, by OpenAI error code",
                              ["status", "code"], registry=r)
        self.in_flight = Gauge("ttcrouter_in_flight", "Completions being served", registry=r)
        self.upstream_up = Gauge("ttcrouter_upstream_up", "1 when an upstream is in rotation",
                                 ["url"], registry=r)

    def observe_result(self, endpoint, decision, result, seconds) -> None:
        self.strategies.labels(decision.strategy, str(decision.forced).lower()).inc()
        self.tokens.labels("completion").inc(int(result.tokens))
        self.tokens.labels("prompt").inc(int(result.prompt_tokens))
        self.tokens.labels("reward").inc(int(result.reward_tokens))
        self.latency.labels(endpoint).observe(seconds)
        self.route_latency.observe(decision.route_s)

    def observe_batch(self, size, seconds) -> None:
        self.route_batch.observe(size)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
