"""REST endpoints (PROTOCOL.md, "REST"): conversations, history and receipts from the read
side, and the development sign-in."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from chat import protocol
from chat.settings import Settings
from edge import metrics, moderation_api
from edge.auth import Identity, TokenVerifier, Unauthorized, authenticate, mint_token
from edge.kafka_io import KafkaIO
from edge.ratelimit import Limit, RateLimiter
from edge.store import DEFAULT_CONVERSATIONS_PAGE, DEFAULT_PAGE, Store
from edge.tickets import Tickets, TicketsUnavailable

log = logging.getLogger("chat.edge.rest")
MAX_PAGE = 200
MAX_CONVERSATIONS_PAGE = 500
# Seqs are below 2**53 (JSON numbers clients can hold exactly); a cursor is plain ASCII
# digits (int() would also take "1_000", " 7" and other scripts' digits).
MAX_CURSOR = 2**53
_DIGITS = re.compile(r"[0-9]{1,16}")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def rate_limited(retry_after_ms: int) -> web.HTTPTooManyRequests:
    retry_after_ms = max(1, retry_after_ms)
    return web.HTTPTooManyRequests(
        text=f'{{"error":"rate_limited","retry_after_ms":{retry_after_ms}}}',
        content_type="application/json",
        headers={"Retry-After": str(-(-retry_after_ms // 1000))},
    )


def rest_ip_limit_middleware(
    settings: Settings, limiter: RateLimiter, client_ip: Callable[[web.Request], str]
) -> Middleware:
    """REST calls per client IP, authenticated or not (token guessing, the dev sign-in). The
    WebSocket upgrade has its own per-IP limit; health, metrics and the web client's files are
    not counted."""
    limit = Limit("rest-ip", settings.rest_ip_per_s, settings.rest_ip_burst)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/v1/") and request.path != "/v1/ws":
            verdict = await limiter.check(limit, client_ip(request))
            if not verdict.allowed:
                metrics.rate_limited.labels(limit.scope).inc()
                raise rate_limited(verdict.retry_after_ms)
        return await handler(request)

    return middleware


def add_routes(
    app: web.Application,
    store: Store,
    verifier: TokenVerifier,
    settings: Settings,
    limiter: RateLimiter,
    tickets: Tickets,
    kafka: KafkaIO,
) -> None:
    user_limit = Limit("rest", settings.rest_per_s, settings.rest_burst)

    async def identify(request: web.Request) -> Identity:
        try:
            identity = authenticate(request, verifier)
        except Unauthorized:
            raise web.HTTPUnauthorized(
                text='{"error":"unauthorized"}', content_type="application/json"
            ) from None
        verdict = await limiter.check(user_limit, identity.user)
        if not verdict.allowed:
            metrics.rate_limited.labels(user_limit.scope).inc()
            raise rate_limited(verdict.retry_after_ms)
        return identity

    async def member_conversation(request: web.Request, user: str) -> dict[str, Any]:
        cid = request.match_info["conversation_id"]
        doc = (
            await store.member_conversation(cid, user) if protocol.is_conversation_id(cid) else None
        )
        if doc is None:
            # Non-members and unknown ids get the same answer.
            raise web.HTTPNotFound(text='{"error":"not_found"}', content_type="application/json")
        return doc

    async def list_conversations(request: web.Request) -> web.Response:
        user = (await identify(request)).user
        limit = int_param(request, "limit", minimum=1, maximum=MAX_CONVERSATIONS_PAGE)
        after = request.query.get("after") or None
        if after is not None and not protocol.is_conversation_id(after):
            raise bad_param("after")
        page = await store.conversations_of(user, after, limit or DEFAULT_CONVERSATIONS_PAGE)
        full = len(page) == (limit or DEFAULT_CONVERSATIONS_PAGE)
        # The next page starts after the last id of this one; null when this one was the last.
        return web.json_response(
            {"conversations": page, "next": page[-1]["id"] if full and page else None}
        )

    async def list_messages(request: web.Request) -> web.Response:
        user = (await identify(request)).user
        doc = await member_conversation(request, user)
        before = int_param(request, "before", minimum=0, maximum=MAX_CURSOR)
        after = int_param(request, "after", minimum=0, maximum=MAX_CURSOR)
        limit = int_param(request, "limit", minimum=1, maximum=MAX_PAGE)
        messages = await store.history(
            doc["_id"],
            int(doc.get("last_seq", 0)),
            before,
            after,
            limit or DEFAULT_PAGE,
            moderated_at=int(doc.get("moderated_at", 0)),
        )
        return web.json_response({"messages": messages})

    async def list_receipts(request: web.Request) -> web.Response:
        user = (await identify(request)).user
        doc = await member_conversation(request, user)
        return web.json_response({"receipts": await store.receipts(doc["_id"])})

    async def ws_ticket(request: web.Request) -> web.Response:
        identity = await identify(request)
        try:
            ticket, expires_at = await tickets.issue(identity)
        except TicketsUnavailable:
            return web.json_response({"error": "unavailable"}, status=503)
        return web.json_response({"ticket": ticket, "expires_at": expires_at})

    async def dev_token(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        user = body.get("user")
        if not isinstance(user, str) or not protocol.is_user_id(user):
            return web.json_response(
                {
                    "error": "bad_request",
                    "message": "user must be 1-64 characters of [A-Za-z0-9_.@-]",
                },
                status=400,
            )
        # Development only: any claim a real identity provider would set.
        roles = body.get("roles")
        created = body.get("account_created")
        if not (
            roles is None or (isinstance(roles, list) and all(r in ("moderator",) for r in roles))
        ):
            return web.json_response(
                {"error": "bad_request", "message": 'roles may only hold "moderator"'}, status=400
            )
        if not (created is None or (isinstance(created, int) and not isinstance(created, bool))):
            return web.json_response(
                {"error": "bad_request", "message": "account_created is epoch seconds"},
                status=400,
            )
        token, expires_at = mint_token(settings, user, roles=roles, account_created=created)
        return web.json_response({"token": token, "user": user, "expires_at": expires_at})

    app.router.add_post("/v1/ws-ticket", ws_ticket)
    app.router.add_get("/v1/conversations", list_conversations)
    app.router.add_get("/v1/conversations/{conversation_id}/messages", list_messages)
    app.router.add_get("/v1/conversations/{conversation_id}/receipts", list_receipts)
    if settings.is_dev:
        app.router.add_post("/v1/dev/token", dev_token)
    moderation_api.add_routes(app, store, kafka, settings, identify)


def int_param(
    request: web.Request, name: str, *, minimum: int, maximum: int | None = None
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if not _DIGITS.fullmatch(raw):
        raise bad_param(name)
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        raise bad_param(name)
    return value


def bad_param(name: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(
        text=f'{{"error":"bad_request","message":"invalid {name}"}}',
        content_type="application/json",
    )
