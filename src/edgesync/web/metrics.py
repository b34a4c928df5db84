"""Prometheus metrics of the HTTP face, with the official client library.

Per request: ``edgesync_http_requests_total{route,method,status}`` and
``edgesync_http_request_duration_seconds{route}``. Read from the store at each
scrape: ``edgesync_rows{table}``, ``edgesync_outbox_pending`` (changes not yet
acknowledged by every push target, from the change log) and
``edgesync_last_sync_age_seconds{peer,action}`` (the last successful session
of each link this host started). With several worker processes, each answers
for itself.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

from .. import history, policy, reads

# Latency buckets from half a millisecond: an edge answers in about one.
# The *_created series say when a series was first seen: noise for a scraper here.
disable_created_metrics()
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _StoreCollector:
    def __init__(self, backend):
        self.backend = backend

    def collect(self):
        db, cfg = self.backend.read, self.backend.config
        rows = GaugeMetricFamily("edgesync_rows", "Visible records per table", labels=["table"])
        for name, spec in sorted(cfg.tables.items()):
            rows.add_metric([name], reads.count(db, spec))
        yield rows
        pending = GaugeMetricFamily(
            "edgesync_outbox_pending", "Changes not yet acknowledged by every push target"
        )
        pending.add_metric([], self.backend.log.pending(policy.push_targets_of(cfg)))
        yield pending
        age = GaugeMetricFamily(
            "edgesync_last_sync_age_seconds",
            "Seconds since the last successful sync session this host started, per link",
            labels=["peer", "action"],
        )
        for link in history.links(db):
            if link["initiated"] and link["last_ok_age_s"] is not None:
                age.add_metric([link["peer"], link["action"]], link["last_ok_age_s"])
        yield age


class Metrics:
    def __init__(self, backend):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "edgesync_http_requests",
            "HTTP requests answered, by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "edgesync_http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            ["route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StoreCollector(backend))
        self._children: dict = {}

    def observe(self, route: str, method: str, status: int, started: float) -> None:
        key = (route, method, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route),
            )
        child[0].inc()
        child[1].observe(time.perf_counter() - started)

    def render(self) -> bytes:
        return generate_latest(self.registry)
