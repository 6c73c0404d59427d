"""One-time WebSocket tickets (#14, item 5): a way to connect without the long-lived token in
the URL, where proxies and servers log it.

``POST /v1/ws-ticket`` (authenticated with the token in ``Authorization``) answers a random
ticket, redeemable once, within ``CHAT_WS_TICKET_TTL_S``, on any edge: it lives in Redis under
its SHA-256, with the user and the token's expiry (the session still ends at the token's
``exp``). ``GET /v1/ws?ticket=…`` redeems it (GETDEL: a second use finds nothing).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from chat import protocol
from chat.keys import ws_ticket_key
from edge.auth import Identity, TokenVerifier, Unauthorized, authenticate

log = logging.getLogger("chat.edge.tickets")
# 32 random bytes, URL-safe base64 (43 characters).
_TICKET = re.compile(r"[A-Za-z0-9_-]{43}")


class TicketsUnavailable(Exception):
    """Redis did not answer: the client connects with its token instead."""


class Tickets:
    def __init__(self, redis_client: aioredis.Redis, ttl_s: int) -> None:
        self.redis = redis_client
        self.ttl_s = ttl_s

    async def issue(self, identity: Identity) -> tuple[str, int]:
        """A new ticket for ``identity`` and when it lapses (ms since epoch)."""
        ticket = secrets.token_urlsafe(32)
        created = "" if identity.account_created is None else str(identity.account_created)
        value = f"{identity.user}|{identity.expires_at}|{created}"
        try:
            await self.redis.set(ws_ticket_key(_digest(ticket)), value, ex=self.ttl_s, nx=True)
        except (RedisError, OSError) as exc:
            log.warning("ticket not stored: %s", exc)
            raise TicketsUnavailable from None
        return ticket, int((time.time() + self.ttl_s) * 1000)

    async def redeem(self, ticket: str) -> Identity:
        if not _TICKET.fullmatch(ticket):
            raise Unauthorized("malformed ticket")
        try:
            raw = await self.redis.getdel(ws_ticket_key(_digest(ticket)))
        except (RedisError, OSError) as exc:
            log.warning("ticket not redeemed: %s", exc)
            raise Unauthorized("tickets unavailable") from None
        if raw is None:
            raise Unauthorized("unknown, used or expired ticket")
        user, _, rest = (raw.decode() if isinstance(raw, bytes) else str(raw)).partition("|")
        expires, _, created = rest.partition("|")
        if not protocol.is_user_id(user):
            raise Unauthorized("bad ticket record")
        # A ticket carries no roles: the WebSocket needs none (moderation is REST).
        identity = Identity(
            user=user,
            expires_at=float(expires),
            account_created=float(created) if created else None,
        )
        if identity.expires_at <= time.time():
            raise Unauthorized("the token behind the ticket has expired")
        return identity

    async def authenticate_upgrade(self, request: web.Request, verifier: TokenVerifier) -> Identity:
        """A WebSocket upgrade's identity: from ``?ticket=`` when given, else from the token."""
        ticket = request.query.get("ticket")
        if ticket is not None:
            return await self.redeem(ticket)
        return authenticate(request, verifier)


def _digest(ticket: str) -> str:
    # Only the hash is stored: whoever reads Redis cannot connect as anyone.
    return hashlib.sha256(ticket.encode()).hexdigest()
