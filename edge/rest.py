"""REST endpoints (PROTOCOL.md, "REST"): conversations, history and receipts from the read
side, and the development sign-in."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from chat import protocol
from chat.settings import Settings
from edge.auth import Identity, TokenVerifier, Unauthorized, authenticate, mint_token
from edge.store import DEFAULT_PAGE, Store

log = logging.getLogger("chat.edge.rest")
MAX_PAGE = 200


def add_routes(
    app: web.Application, store: Store, verifier: TokenVerifier, settings: Settings
) -> None:
    def identify(request: web.Request) -> Identity:
        try:
            return authenticate(request, verifier)
        except Unauthorized:
            raise web.HTTPUnauthorized(
                text='{"error":"unauthorized"}', content_type="application/json"
            ) from None

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
        user = identify(request).user
        return web.json_response({"conversations": await store.conversations_of(user)})

    async def list_messages(request: web.Request) -> web.Response:
        user = identify(request).user
        doc = await member_conversation(request, user)
        before = int_param(request, "before", minimum=0)
        after = int_param(request, "after", minimum=0)
        limit = int_param(request, "limit", minimum=1, maximum=MAX_PAGE)
        messages = await store.history(
            doc["_id"], int(doc.get("last_seq", 0)), before, after, limit or DEFAULT_PAGE
        )
        return web.json_response({"messages": messages})

    async def list_receipts(request: web.Request) -> web.Response:
        user = identify(request).user
        doc = await member_conversation(request, user)
        return web.json_response({"receipts": await store.receipts(doc["_id"])})

    async def dev_token(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        user = body.get("user") if isinstance(body, dict) else None
        if not isinstance(user, str) or not protocol.is_user_id(user):
            return web.json_response(
                {
                    "error": "bad_request",
                    "message": "user must be 1-64 characters of [A-Za-z0-9_.@-]",
                },
                status=400,
            )
        token, expires_at = mint_token(settings, user)
        return web.json_response({"token": token, "user": user, "expires_at": expires_at})

    app.router.add_get("/v1/conversations", list_conversations)
    app.router.add_get("/v1/conversations/{conversation_id}/messages", list_messages)
    app.router.add_get("/v1/conversations/{conversation_id}/receipts", list_receipts)
    if settings.is_dev:
        app.router.add_post("/v1/dev/token", dev_token)


def int_param(
    request: web.Request, name: str, *, minimum: int, maximum: int | None = None
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise bad_param(name) from None
    if value < minimum or (maximum is not None and value > maximum):
        raise bad_param(name)
    return value


def bad_param(name: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(
        text=f'{{"error":"bad_request","message":"invalid {name}"}}',
        content_type="application/json",
    )
