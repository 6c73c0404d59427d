"""What the edge tells browsers (#14, item 4): security headers on every response, and the
edges the web client may send its token to.

The web client takes the WebSocket origin from the page (``?edges=``, remembered); only the
page's own origin and ``CHAT_WEB_EDGES`` are allowed. The edge writes that list into the page
(``<meta name="chat-edges">``) for the client to check against, and into the
Content-Security-Policy's ``connect-src``, so the browser itself refuses any other host.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from chat.settings import Settings
from media.store import public_endpoint

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HSTS = "max-age=31536000; includeSubDomains"


def websocket_forms(origin: str) -> list[str]:
    """An http(s) origin and the ws(s) origin of the same host (older browsers do not let
    'self' or an http source cover WebSockets)."""
    scheme, rest = origin.split("://", 1)
    return [origin, f"{'wss' if scheme == 'https' else 'ws'}://{rest}"]


def store_origin(settings: Settings) -> str:
    """The object store's origin as clients reach it: uploads go there, images come from it."""
    parts = urlsplit(public_endpoint(settings))
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(settings: Settings) -> str:
    store = store_origin(settings)
    connect = ["'self'"] + [form for o in settings.web_edges for form in websocket_forms(o)]
    return "; ".join(
        [
            "default-src 'self'",
            # blob: previews a picture before it is uploaded.
            f"img-src 'self' data: blob: {store}",
            f"connect-src {' '.join([*connect, store])}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "object-src 'none'",
        ]
    )


def security_headers(settings: Settings) -> dict[str, str]:
    headers = {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",  # frame-ancestors for browsers without CSP 2
        "Referrer-Policy": "no-referrer",
    }
    if settings.tls_cert:
        # Only over TLS (RFC 6797 7.2: ignored on plain HTTP); behind a TLS-terminating proxy,
        # the proxy sends it (ops/nginx: when it serves https).
        headers["Strict-Transport-Security"] = HSTS
    return headers


def security_headers_middleware(
    settings: Settings, from_tls_proxy: Callable[[web.Request], bool]
) -> Middleware:
    """Every answer gets :func:`security_headers`; HSTS also when a trusted proxy says the
    client came over TLS (``X-Forwarded-Proto: https``: TLS ends at the balancer)."""
    headers = security_headers(settings)
    with_hsts = {**headers, "Strict-Transport-Security": HSTS}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        chosen = with_hsts if from_tls_proxy(request) else headers
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(chosen)  # refusals (401, 404, 429) carry them too
            raise
        if not response.prepared:  # a WebSocket has sent its headers already
            response.headers.update(chosen)
        return response

    return middleware


def with_allowed_edges(index_html: str, settings: Settings) -> str:
    """The page with ``<meta name="chat-edges">`` listing ``CHAT_WEB_EDGES`` (the origins the
    client may connect to besides the page's own)."""
    meta = f'<meta name="chat-edges" content="{html.escape(",".join(settings.web_edges))}" />'
    return index_html.replace("</head>", f"    {meta}\n  </head>", 1)
