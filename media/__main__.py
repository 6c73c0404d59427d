"""Run the media processor: ``python -m media`` (health and metrics on
CHAT_MEDIA_PROCESSOR_PORT)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from chat.health_server import serve_health
from chat.kafka_security import exit_unless_kafka_accepts
from chat.logs import setup_logging
from chat.settings import SettingsError, load_settings
from media.processor import MediaProcessor

log = logging.getLogger("chat.media")
# Verification is background work: on a host shared with edges and workers (make run, compose,
# one small VM) it yields the CPU to the chat path; alone on its own pod it changes nothing.
NICENESS = 10


async def main_async() -> None:
    settings = load_settings()
    processor = MediaProcessor(settings)
    await processor.start()
    runner = await serve_health(
        settings.metrics_host, settings.media_processor_port, processor.store.ping
    )
    task = asyncio.create_task(processor.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    log.info("media processor started")
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        await runner.cleanup()
        await processor.stop()


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        setup_logging("media")
        log.error("media processor cannot start: %s", exc)
        sys.exit(2)
    setup_logging("media", settings.log_level)
    exit_unless_kafka_accepts(settings, "media processor")
    os.nice(NICENESS)
    try:
        asyncio.run(main_async())
    except Exception as exc:
        log.error("media processor cannot start: %s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
