"""The edge's HTTP routes: the WebSocket endpoint, health, readiness, metrics, REST and the web
client's files. Handlers find the node as ``request.app[NODE]``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chat.settings import Settings
from edge import client, media, rest
from edge.node import NODE, EdgeNode
from edge.web_security import with_allowed_edges

log = logging.getLogger("chat.edge")
CHECK_TIMEOUT_S = 2.0


def add_routes(app: web.Application, node: EdgeNode) -> None:
    app.router.add_get("/v1/ws", client.websocket)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    rest.add_routes(
        app, node.store, node.verifier, node.settings, node.limiter, node.tickets, node.kafka
    )
    media.add_routes(app, node.media)
    add_web_client(app, node.settings)


async def healthz(request: web.Request) -> web.Response:
    """The process is up (whatever its backends say: that is /readyz)."""
    node = request.app[NODE]
    return web.json_response(
        {"status": "ok", "edge": node.edge_id, "slot": node.slot, "sessions": len(node.hub)}
    )


async def readyz(request: web.Request) -> web.Response:
    """Ready when Redis, Kafka and the store answer, and the node is not shutting down."""
    node = request.app[NODE]
    checks: dict[str, bool] = {}
    try:
        checks["redis"] = bool(await asyncio.wait_for(node.redis.ping(), CHECK_TIMEOUT_S))
    except Exception:
        checks["redis"] = False
    try:
        await asyncio.wait_for(node.kafka.producer.client.fetch_all_metadata(), CHECK_TIMEOUT_S)
        checks["kafka"] = True
    except Exception:
        checks["kafka"] = False
    checks["mongo"] = await node.store.ping()
    ready = all(checks.values()) and not node.closing
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


def add_web_client(app: web.Application, settings: Settings) -> None:
    """The built web client at ``/``: its page (with the edges it may connect to), its
    ``assets/`` and the other files of ``CHAT_WEB_DIST``."""
    dist = (
        Path(settings.web_dist)
        if settings.web_dist
        else Path(__file__).parent.parent / "web" / "dist"
    )
    index = dist / "index.html"
    if not index.exists():
        log.warning("web client not built; / serves nothing", extra={"dist": str(dist)})
        return

    async def serve_index(request: web.Request) -> web.Response:
        page = with_allowed_edges(index.read_text(encoding="utf-8"), settings)
        return web.Response(text=page, content_type="text/html")

    app.router.add_get("/", serve_index)
    if (dist / "assets").is_dir():
        app.router.add_static("/assets", dist / "assets")
    for item in dist.iterdir():
        if item.is_file() and item.name != "index.html":
            app.router.add_get(f"/{item.name}", file_handler(item))


def file_handler(path: Path) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def serve(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(path)

    return serve
