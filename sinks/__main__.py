"""Run the MongoDB sink: ``python -m sinks`` (health and metrics on CHAT_SINK_METRICS_PORT)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chat.kafka_security import exit_unless_kafka_accepts
from chat.logs import setup_logging
from chat.settings import SettingsError, load_settings
from sinks.mongo_sink import MongoSink

log = logging.getLogger("chat.sink")


async def serve(sink: MongoSink, host: str, port: int) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        try:
            await sink.db.command("ping")
            ok = True
        except Exception:
            ok = False
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
    setup_logging("sink", settings.log_level)
    sink = MongoSink(settings)
    runner = await serve(sink, settings.metrics_host, settings.sink_metrics_port)
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
