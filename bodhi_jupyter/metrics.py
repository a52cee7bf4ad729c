"""Prometheus metrics for ``GET bodhi/metrics``.

Each app has its own registry (several servers can live in one process, as in the tests).
Request figures are counted as requests finish; engine figures are read from the supervisor
at scrape time, so they can never drift from it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .engine.supervisor import EngineSupervisor
from .usage import UsageEntry

#: the exposition format generate_latest writes
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# from a one-token reply to a long generation on a CPU
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
                    float("inf"))


class _EngineCollector:
    """Loaded engines, starts and crashes, straight from the supervisor."""

    def __init__(self, supervisor: EngineSupervisor):
        self.supervisor = supervisor

    def collect(self):
        yield GaugeMetricFamily("bodhi_models_loaded", "Engines loaded and ready.",
                                value=self.supervisor.ready_count)
        yield CounterMetricFamily("bodhi_engine_starts", "Engine starts attempted.",
                                  value=self.supervisor.starts_total)
        yield CounterMetricFamily("bodhi_engine_crashes",
                                  "Engines that exited without being asked to.",
                                  value=self.supervisor.crashes_total)


class BodhiMetrics:
    def __init__(self, supervisor: EngineSupervisor):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("bodhi_requests", "Inference requests by final status.",
                                ["model", "endpoint", "status"], registry=self.registry)
        self.tokens = Counter("bodhi_tokens", "Tokens processed, by kind (prompt or "
                              "completion).", ["model", "kind"], registry=self.registry)
        self.duration = Histogram("bodhi_request_duration_seconds",
                                  "Time from request to the end of the reply.",
                                  ["model", "endpoint"], buckets=DURATION_BUCKETS,
                                  registry=self.registry)
        self.registry.register(_EngineCollector(supervisor))

    def observe(self, entry: UsageEntry) -> None:
        self.requests.labels(entry.model, entry.endpoint, str(entry.status)).inc()
        if entry.prompt_tokens:
            self.tokens.labels(entry.model, "prompt").inc(entry.prompt_tokens)
        if entry.completion_tokens:
            self.tokens.labels(entry.model, "completion").inc(entry.completion_tokens)
        self.duration.labels(entry.model, entry.endpoint).observe(entry.duration_ms / 1000)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
