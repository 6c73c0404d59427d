"""Run the MongoDB sink: ``python -m sinks`` (health and metrics on CHAT_SINK_METRICS_PORT)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from chat.health_server import serve_health
from chat.kafka_security import exit_unless_kafka_accepts
from chat.logs import setup_logging
from chat.settings import SettingsError, load_settings
from sinks.mongo_sink import MongoSink

log = logging.getLogger("chat.sink")


async def mongo_answers(sink: MongoSink) -> bool:
    try:
        await sink.db.command("ping")
        return True
    except Exception:
        return False


async def main_async() -> None:
    settings = load_settings()
    setup_logging("sink", settings.log_level)
    sink = MongoSink(settings)
    runner = await serve_health(
        settings.metrics_host, settings.sink_metrics_port, lambda: mongo_answers(sink)
    )
    try:
        await sink.ensure_indexes()
    except Exception as exc:
        log.warning("could not create indexes yet (will work without): %s", exc)
    task = asyncio.create_task(sink.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    log.info("mongo sink started")
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        await runner.cleanup()
        await sink.mongo.close()


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        setup_logging("sink")
        log.error("sink cannot start: %s", exc)
        sys.exit(2)
    setup_logging("sink", settings.log_level)
    exit_unless_kafka_accepts(settings, "sink")
    try:
        asyncio.run(main_async())
    except Exception as exc:
        logging.getLogger("chat.sink").error("sink cannot start: %s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
