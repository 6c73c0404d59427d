"""Prometheus metrics of the stream workers (served at the worker's ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter

events_processed = Counter(
    "chat_worker_events_total", "Input events processed by an agent", ["agent"]
)
duplicate_sends = Counter(
    "chat_router_duplicate_sends_total", "message.send retries answered with the original ack"
)
