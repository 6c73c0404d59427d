"""One client's WebSocket session: admission, then its frame loop until the socket closes.

upgrade ──▶ admit (token or ticket, Origin, upgrades per IP, connections per user)
        ──▶ session.open on chat.users ──▶ frame loop: decode/validate (chat.protocol)
        ──▶ edge.commands ──▶ Kafka ... until the close, announced on chat.users
"""

from __future__ import annotations

import logging
import uuid

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from chat import protocol, records
from chat.protocol import ProtocolError
from edge import metrics
from edge.auth import Identity, Unauthorized
from edge.commands import RateLimited, handle_frame
from edge.kafka_io import KafkaUnavailable
from edge.node import NODE, EdgeNode
from edge.ratelimit import Limit
from edge.session import Session

log = logging.getLogger("chat.edge.client")

WS_CLOSED = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)


async def websocket(request: web.Request) -> web.StreamResponse:
    """One WebSocket session, from the upgrade to the close. This coroutine lives as long as
    the connection, so the session is served here and not in nested coroutines: each level of
    them would cost every idle connection about 300 bytes."""
    node = request.app[NODE]
    admission = await admit(node, request)
    if isinstance(admission, web.Response):
        return admission
    identity, session_id = admission
    try:
        ws = web.WebSocketResponse(
            heartbeat=node.settings.ping_interval_s,
            max_msg_size=node.settings.max_frame_bytes,
            compress=False,
        )
        await ws.prepare(request)
        session = Session(
            session_id,
            identity.user,
            ws,
            identity.expires_at,
            max_queued_bytes=node.settings.max_queued_bytes,
            account_created_ms=identity.account_created_ms,
        )
        node.hub.add(session)
        try:
            await node.kafka.send_user_event(
                session.user, records.session_open(session.id, node.slot, node.edge_id)
            )
        except KafkaUnavailable:
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"backend unavailable")
            node.hub.remove(session)
            await session.stop()
            return ws
        try:
            while True:
                msg = await ws.receive()
                if msg.type in WS_CLOSED or not await on_message(node, session, msg):
                    break
        finally:
            node.hub.remove(session)
            await session.stop()
            await announce_close(node, session)
        return ws
    finally:
        await node.connection_limit.release(identity.user, session_id)


async def admit(node: EdgeNode, request: web.Request) -> web.Response | tuple[Identity, str]:
    """Authenticate and apply the upgrade limits: the refusal to answer, or the identity and
    the new session's id (counted against the user's connection limit)."""
    if node.closing:
        return json_error(503, "unavailable")
    try:
        identity = await node.tickets.authenticate_upgrade(request, node.verifier)
    except Unauthorized:
        metrics.upgrades_refused.labels("unauthorized").inc()
        return json_error(401, "unauthorized")
    if not origin_allowed(node.settings.allowed_origins, request):
        metrics.upgrades_refused.labels("origin").inc()
        return json_error(403, "forbidden")
    settings = node.settings
    verdict = await node.limiter.check(
        Limit("upgrade", settings.upgrades_per_min / 60.0, settings.upgrades_per_min),
        node.proxies.client_address(request),
    )
    if not verdict.allowed:
        metrics.upgrades_refused.labels("rate_limited").inc()
        return web.json_response(
            {"error": "rate_limited", "retry_after_ms": verdict.retry_after_ms}, status=429
        )
    session_id = uuid.uuid4().hex
    local_count = node.hub.count_for(identity.user)
    if not await node.connection_limit.acquire(identity.user, session_id, local_count):
        metrics.upgrades_refused.labels("too_many_connections").inc()
        return web.json_response({"error": "too_many_connections"}, status=429)
    return identity, session_id


def origin_allowed(allowed: tuple[str, ...], request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if not allowed or origin is None:
        return True
    return origin in allowed or "*" in allowed


async def on_message(node: EdgeNode, session: Session, msg: WSMessage) -> bool:
    """Act on one WebSocket message; False when the session should end."""
    if session.closing:
        return True  # closing (abuse, expired token): read what is in flight, act on nothing
    if msg.type == WSMsgType.TEXT:
        await on_text(node, session, msg.data)
    elif msg.type == WSMsgType.BINARY:
        reply_error(session, ProtocolError(protocol.BAD_REQUEST, "binary frames are not supported"))
        count_invalid(node, session)
    elif msg.type == WSMsgType.ERROR:
        log.info(
            "websocket error",
            extra={"session": session.id, "error": str(session.ws.exception())},
        )
        return False
    return not session.ws.closed


async def on_text(node: EdgeNode, session: Session, data: str) -> None:
    assert node.ctx is not None  # set by start(), before the application serves requests
    try:
        frame = protocol.decode_frame(data)
    except ProtocolError as exc:
        metrics.frames_in.labels("invalid").inc()
        reply_error(session, exc)
        count_invalid(node, session)
        return
    metrics.frames_in.labels(frame.type).inc()
    try:
        await handle_frame(node.ctx, session, frame)
    except RateLimited as exc:
        reply_error(session, exc, exc.retry_after_ms)
    except ProtocolError as exc:
        reply_error(session, exc)
    except Exception:
        log.exception("frame handling failed", extra={"type": frame.type})
        reply_error(session, ProtocolError(protocol.INTERNAL, "internal error", frame.id))


def reply_error(session: Session, exc: ProtocolError, retry_after_ms: int | None = None) -> None:
    metrics.errors.labels(exc.code).inc()
    session.send(protocol.error_frame(exc.code, exc.message, exc.frame_id, retry_after_ms))


def count_invalid(node: EdgeNode, session: Session) -> None:
    session.invalid_frames += 1
    if session.invalid_frames >= node.settings.invalid_frames_before_close:
        session.close_after_pending(WSCloseCode.POLICY_VIOLATION, "too many invalid frames")


async def announce_close(node: EdgeNode, session: Session) -> None:
    events: list[tuple[str, records.EdgeUserEvent]] = [
        (session.user, records.session_close(session.id, node.edge_id))
    ]
    for watched, held in (session.watching or {}).items():
        if held:  # only visible watches reached the sessions agent
            events.append((watched, records.presence_unsubscribe(session.id)))
    # Retried through a Kafka blip: the dead-session sweep cannot see this session (the edge
    # is alive), so a dropped record would leave the user online for good.
    await node.announcer.announce(events)


def json_error(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status)
