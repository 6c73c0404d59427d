"""Prometheus metrics of an edge node (served at ``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

connections = Gauge("chat_edge_connections", "Open WebSocket sessions on this edge")
frames_in = Counter("chat_edge_frames_in_total", "Client frames received", ["type"])
frames_out = Counter("chat_edge_frames_out_total", "Server frames sent", ["type"])
errors = Counter("chat_edge_errors_total", "Error frames sent", ["code"])
upgrades_refused = Counter(
    "chat_edge_upgrades_refused_total", "WebSocket upgrades refused", ["reason"]
)
rate_limited = Counter("chat_edge_rate_limited_total", "Frames refused by a rate limit", ["scope"])
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
ack_seconds = Histogram(
    "chat_edge_ack_latency_seconds",
    "message.send received by the edge until its message.ack is written to the session",
    buckets=LATENCY_BUCKETS,
)
delivery_seconds = Histogram(
    "chat_edge_delivery_latency_seconds",
    "A message's sequencing time (its ts) until the edge hands it to a recipient session",
    buckets=LATENCY_BUCKETS,
)
produce_seconds = Histogram(
    "chat_edge_kafka_produce_seconds",
    "Time to write one record to Kafka (acks=all)",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
)
sync_store_behind = Counter(
    "chat_edge_sync_store_behind_total",
    "Sync answers refused with `unavailable` because the store lacked older messages",
)
duplicates_dropped = Counter(
    "chat_edge_duplicates_dropped_total",
    "Message frames not written because the session already had that seq",
)
announcements_pending = Gauge(
    "chat_edge_close_announcements_pending",
    "session.close / presence.unsubscribe records Kafka has not taken yet (retried)",
)
announcements_dropped = Counter(
    "chat_edge_close_announcements_dropped_total",
    "Unannounced session closes dropped because too many were waiting",
)
