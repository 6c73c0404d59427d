"""What the app says about itself during a run: deltas of its Prometheus metrics.

The workers report batch sizes and the time to make a batch durable; the edges report Kafka
produce time, ack latency and delivery latency as they see them. The bench reads them before
and after a run, so its report can say where the time went.
"""

from __future__ import annotations

import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]

# Every histogram the bench reads; tests/integration/test_bench_metrics.py checks that each one
# is in the live /metrics output, so a renamed metric fails a test instead of silently dropping
# out of the report.
WORKER_SERIES = ("chat_worker_batch_events", "chat_worker_batch_publish_seconds")
EDGE_SERIES = (
    "chat_edge_kafka_produce_seconds",
    "chat_edge_ack_latency_seconds",
    "chat_edge_delivery_latency_seconds",
)


def scrape(url: str) -> Scrape:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: Scrape = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith(("_sum", "_count")):
                out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def scrape_all(urls: dict[str, str]) -> dict[str, Scrape]:
    return {name: scrape(url) for name, url in urls.items()}


def deltas(before: dict[str, Scrape], after: dict[str, Scrape]) -> dict[str, Any]:
    """Per process and histogram (and label set): count and mean over the interval."""
    out: dict[str, Any] = {}
    for proc, now in after.items():
        then = before.get(proc, {})
        rows: dict[str, Any] = {}
        for (name, labels), value in now.items():
            if not name.endswith("_count"):
                continue
            base = name[: -len("_count")]
            if not base.startswith(WORKER_SERIES + EDGE_SERIES):
                continue
            count = value - then.get((name, labels), 0.0)
            total = now.get((base + "_sum", labels), 0.0) - then.get((base + "_sum", labels), 0.0)
            if count <= 0:
                continue
            label = ",".join(v for _, v in labels)
            key = base.removeprefix("chat_") + (f"[{label}]" if label else "")
            mean = total / count
            rows[key] = {
                "count": int(count),
                "mean_ms" if base.endswith("_seconds") else "mean": round(
                    mean * 1000 if base.endswith("_seconds") else mean, 2
                ),
            }
        if rows:
            out[proc] = rows
    return out
