"""Run one stream worker: ``python -m topologies``.

Health: ``GET /healthz`` (process up), ``GET /readyz`` (Kafka reachable and partitions
assigned), ``GET /metrics`` (Prometheus), on CHAT_WORKER_WEB_PORT (default 6066).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import uvloop
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chat.kafka_security import exit_unless_kafka_accepts
from chat.logs import setup_logging
from topologies import metrics
from topologies.runtime import app, settings


@app.page("/healthz")
async def healthz(web: Any, request: Any) -> Any:
    return web.json({"status": "ok"})


@app.page("/readyz")
async def readyz(web: Any, request: Any) -> Any:
    assigned = app.consumer.assignment() if app.consumer else set()
    ready = app.rebalancing is False and bool(assigned)
    return web.json({"ready": ready, "partitions": len(assigned)}, status=200 if ready else 503)


@app.page("/metrics")
async def metrics_page(web: Any, request: Any) -> Any:
    return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@app.timer(interval=10.0)
async def count_table_rows() -> None:
    for table in app.tables.values():
        metrics.table_rows.labels(table.name).set(len(table))


def main() -> None:
    setup_logging("worker", settings.log_level)
    exit_unless_kafka_accepts(settings, "worker")
    # uvloop, as in the edges: Faust runs on the default asyncio loop, whose pure-Python
    # socket transport took a tenth of a worker's CPU under load (py-spy). Set before Faust
    # creates its loop in app.main().
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    sys.argv = [
        sys.argv[0],
        "worker",
        "--loglevel",
        settings.log_level.lower(),
        "--web-port",
        str(settings.worker_web_port),
        "--web-bind",
        settings.metrics_host,
    ]
    app.main()


if __name__ == "__main__":
    main()
