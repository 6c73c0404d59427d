"""Prometheus metrics of the stream workers (served at the worker's ``/metrics``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

events_processed = Counter(
    "chat_worker_events_total", "Input events processed by an agent", ["agent"]
)
batch_publish_seconds = Histogram(
    "chat_worker_batch_publish_seconds",
    "Time to make one batch durable (outputs, then table rows)",
    ["agent"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
)
batch_events = Histogram(
    "chat_worker_batch_events",
    "Input events per processed batch",
    ["agent"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
batch_records = Histogram(
    "chat_worker_batch_records",
    "Input records (bundles count once) per processed batch",
    ["agent"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
moderation_blocked = Counter(
    "chat_moderation_blocked_total",
    "Messages the router's inline rules refused, by reason",
    ["reason"],
)
moderation_decisions = Counter(
    "chat_moderation_decisions_total",
    "Detector decisions the router applied",
    ["source", "reason", "action"],
)
timer_failures = Counter(
    "chat_worker_timer_failures_total",
    "Timer runs that raised (logged with the traceback; the worker keeps running)",
    ["agent"],
)
dead_letters = Counter(
    "chat_worker_dead_letters_total",
    "Records the broker refused for good, written to the dead-letter topic instead",
    ["topic"],
)
undecodable_records = Counter(
    "chat_worker_undecodable_records_total",
    "Input records skipped because they could not be decoded",
    ["topic"],
)
table_rows = Gauge(
    "chat_worker_table_rows", "Rows held by this worker (active and standby)", ["table"]
)
publish_retries = Counter(
    "chat_worker_publish_retries_total", "Batches re-published after an error"
)
duplicate_sends = Counter(
    "chat_router_duplicate_sends_total", "message.send retries answered with the original ack"
)
event_age_seconds = Histogram(
    "chat_worker_event_age_seconds",
    "How old the first event of a batch is when the agent takes it (its Kafka timestamp to now):"
    " the time spent queued upstream of the agent",
    ["agent"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

agent_lag_seconds = Gauge(
    "chat_worker_agent_lag_seconds",
    "How far behind its input an agent is: the newest event of its last batch (its Kafka"
    " timestamp) to the moment that batch was durable",
    ["agent"],
)
detector_decisions = Counter(
    "chat_moderation_detector_decisions_total",
    "Decisions the detector agents (classifier, spam) sent to the router, which applies them",
    ["source", "reason", "action"],
)


def observe_lag(agent: str, events: Sequence[Any]) -> None:
    agent_lag_seconds.labels(agent).set(time.time() - events[-1].message.timestamp)


def observe_batch_age(agent: str, events: Sequence[Any]) -> None:
    """How long the batch's first event waited in Kafka before ``agent`` took it."""
    event_age_seconds.labels(agent).observe(time.time() - events[0].message.timestamp)
