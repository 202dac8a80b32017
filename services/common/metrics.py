"""Prometheus metrics of a prelabel process. One `Metrics` per process (tests pass a
fresh registry); names carry their units."""
from __future__ import annotations

import time
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BYTES_BUCKETS = (1e3, 1e4, 1e5, 3e5, 1e6, 3e6, 1e7, 3e7)


class Metrics:
    def __init__(self, service: str, registry: CollectorRegistry | None = None):
        self.service = service
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "prelabel_rpc_requests", "RPCs handled, by final status code",
            ["service", "method", "code"], registry=r)
        self.latency = Histogram(
            "prelabel_rpc_latency_seconds", "RPC wall time", ["service", "method"],
            buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge(
            "prelabel_rpc_in_flight", "RPCs being handled", ["service", "method"], registry=r)
        self.stage = Histogram(
            "prelabel_stage_seconds", "Time per pipeline stage (decode, preprocess, triton, "
            "postprocess, fanout)", ["service", "stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.images = Counter(
            "prelabel_images", "Images labelled", ["service", "task"], registry=r)
        self.labels = Counter(
            "prelabel_labels", "Labels produced", ["service", "task", "model", "review"], registry=r)
        self.review_policy = Gauge(
            "prelabel_review_policy_info", "Review policy in force (1; 0 once replaced), by id and "
            "source (policy file or built-in defaults)", ["service", "policy_id", "source"], registry=r)
        self.review_policy_reloads = Counter(
            "prelabel_review_policy_reloads", "Policy-file changes seen, by outcome (ok, refused: "
            "the old policy stays)", ["service", "outcome"], registry=r)
        self.payload = Histogram(
            "prelabel_payload_bytes", "Request payload size", ["service", "method"],
            buckets=BYTES_BUCKETS, registry=r)
        # Per-image state (services.common.image_state), by the kind of derived value.
        self.image_state_hits = Counter(
            "prelabel_image_state_hits", "Per-image state found held or being computed for "
            "another request", ["service", "kind"], registry=r)
        self.image_state_misses = Counter(
            "prelabel_image_state_misses", "Per-image state computed (not held, not in progress)",
            ["service", "kind"], registry=r)
        self.image_state_evictions = Counter(
            "prelabel_image_state_evictions", "Per-image state entries evicted to stay within "
            "image_state_max_bytes (least recently used first)", ["service", "kind"], registry=r)
        self.image_state_bytes = Gauge(
            "prelabel_image_state_bytes", "Bytes of per-image state held", ["service", "kind"],
            registry=r)

    @contextmanager
    def timed(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stage.labels(self.service, stage).observe(time.perf_counter() - start)

    def serve_http(self, host: str, port: int) -> int:
        """Start /metrics; returns the bound port."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return server.server_port
