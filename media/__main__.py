"""Run the media processor: ``python -m media`` (health and metrics on
CHAT_MEDIA_PROCESSOR_PORT)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chat.kafka_security import exit_unless_kafka_accepts
from chat.logs import setup_logging
from chat.settings import SettingsError, load_settings
from media.processor import MediaProcessor

log = logging.getLogger("chat.media")
# Verification is background work: on a host shared with edges and workers (make run, compose,
# one small VM) it yields the CPU to the chat path; alone on its own pod it changes nothing.
NICENESS = 10


async def serve(processor: MediaProcessor, host: str, port: int) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ok = await processor.store.ping()
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def main_async() -> None:
    settings = load_settings()
    processor = MediaProcessor(settings)
    await processor.start()
    runner = await serve(processor, settings.metrics_host, settings.media_processor_port)
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
