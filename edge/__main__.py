"""Run one edge node: ``python -m edge`` (CHAT_EDGE_PORT, CHAT_EDGE_SLOT, ...)."""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys

import uvloop
from aiohttp import web

from chat.kafka_security import exit_unless_kafka_accepts
from chat.logs import setup_logging
from chat.settings import SettingsError, load_settings
from edge.app import build_app
from edge.auth import TokenVerifier

log = logging.getLogger("chat.edge")


def main() -> None:
    try:
        settings = load_settings()
        setup_logging("edge", settings.log_level)
        TokenVerifier(settings)  # refuse to start on a bad JWT configuration, before binding
    except SettingsError as exc:
        setup_logging("edge")
        log.error("edge cannot start: %s", exc)
        sys.exit(2)
    exit_unless_kafka_accepts(settings, "edge")
    ssl_context = None
    if settings.tls_cert:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(settings.tls_cert, settings.tls_key)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        web.run_app(
            build_app(settings),
            host=settings.edge_host,
            port=settings.edge_port,
            backlog=settings.edge_listen_backlog,
            ssl_context=ssl_context,
            access_log=None,
            print=None,
            shutdown_timeout=5.0,
        )
    except Exception as exc:  # e.g. Kafka unreachable at start, port in use
        log.error("edge cannot start: %s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
