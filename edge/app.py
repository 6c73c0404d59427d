"""The edge's aiohttp application: the node as typed state, its lifecycle, middlewares, routes.

The modules, one concern each:

- ``edge/node.py``     the node: backends, slot, Kafka in and out, start and stop;
- ``edge/hub.py``      who is connected here, and the fan-out of ``chat.deliver`` entries;
- ``edge/client.py``   one WebSocket session: admission and the frame loop;
- ``edge/commands.py`` what a client frame becomes (a command, a user event, a local answer);
- ``edge/sync.py``     sync answers completed from the store;
- ``edge/session.py``  a session's ordered outbound queue;
- ``edge/routes.py``   HTTP routes: health, readiness, metrics, the web client; ``edge/rest.py``
  the REST API;
- ``edge/proxies.py``  the client's address and scheme behind trusted proxies;
- ``edge/web_security.py`` the security headers every answer carries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from chat.settings import Settings
from edge import rest, routes
from edge.node import NODE, EdgeNode
from edge.proxies import client_ip as client_ip  # re-exported: tests check the parsing here
from edge.web_security import security_headers_middleware


async def build_app(settings: Settings) -> web.Application:
    """An async factory: the Kafka clients must be created inside the running event loop."""
    app = make_app(EdgeNode(settings))
    app.cleanup_ctx.append(node_lifecycle)
    app.on_shutdown.append(drain)
    return app


def make_app(node: EdgeNode) -> web.Application:
    """The application around a node, without starting or stopping it (the in-process tests
    serve it with no Kafka at all)."""
    settings = node.settings
    app = web.Application(
        client_max_size=settings.max_frame_bytes,
        middlewares=[
            security_headers_middleware(settings, node.proxies.via_tls),
            rest.rest_ip_limit_middleware(settings, node.limiter, node.proxies.client_address),
        ],
    )
    app[NODE] = node
    routes.add_routes(app, node)
    return app


async def node_lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Start the node before the first request; let go of its backends after the last
    handler has ended (so that the sessions' close announcements still reach Kafka)."""
    node = app[NODE]
    await node.start()
    yield
    await node.stop()


async def drain(app: web.Application) -> None:
    """On shutdown, before aiohttp waits for the handlers: close every session (a WebSocket
    handler ends only when its socket does)."""
    await app[NODE].drain()
