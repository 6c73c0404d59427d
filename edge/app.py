"""The edge node's aiohttp application: WebSocket sessions, REST, health and metrics.

client ──WS frame──▶ decode/validate (chat.protocol) ──▶ edge.commands ──▶ Kafka
Kafka chat.deliver[slot] ──▶ on_delivery ──▶ Session.send ──▶ client
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chat import protocol, records
from chat.protocol import ProtocolError
from chat.redis_pool import connect_redis
from chat.settings import IPNetwork, Settings, trusted_networks
from edge import metrics, rest
from edge.announcer import Announcer
from edge.auth import Identity, TokenVerifier, Unauthorized
from edge.commands import CommandContext, RateLimited, handle_frame
from edge.connection_limit import ConnectionLimit
from edge.kafka_io import KafkaIO, KafkaUnavailable
from edge.liveness import Liveness
from edge.ratelimit import Limit, RateLimiter
from edge.session import Session, SessionRegistry
from edge.store import Store
from edge.tickets import Tickets
from edge.web_security import security_headers_middleware, with_allowed_edges

log = logging.getLogger("chat.edge")

TOKEN_EXPIRED = 4003
EXPIRY_SWEEP_S = 1.0
WS_CLOSED = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)
SYNC_STORE_WAIT_S = 10.0


class Edge:
    """Everything one edge process holds: its backends and its live sessions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.trusted_proxies = trusted_networks(settings.trusted_proxies)
        self.edge_id = uuid.uuid4().hex
        self.verifier = TokenVerifier(settings)
        self.registry = SessionRegistry()
        self.redis = connect_redis(settings)
        self.limiter = RateLimiter(self.redis)
        self.kafka = KafkaIO(settings, self.on_delivery)
        self.announcer = Announcer(self.kafka.send_user_event)
        self.store = Store(settings, self.redis)
        self.tickets = Tickets(self.redis, settings.ws_ticket_ttl_s)
        self.connection_limit = ConnectionLimit(
            self.redis, settings.connections_per_user, self.edge_id
        )
        self.liveness = Liveness(settings, self.redis, self.edge_id)
        self.slot = -1
        self.ctx: CommandContext | None = None
        self.closing = False
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.slot = await self.liveness.acquire_slot()
        await self.kafka.start(self.slot)
        await self.liveness.start()
        self._tasks.add(asyncio.create_task(self._close_sessions_with_expired_tokens()))
        self.ctx = CommandContext(self.settings, self.kafka, self.redis, self.limiter, self.slot)
        log.info("edge started", extra={"edge": self.edge_id, "slot": self.slot})

    async def stop(self) -> None:
        self.closing = True
        # Clients reconnect to another node and sync.
        sessions = list(self.registry.sessions.values())
        await asyncio.gather(
            *(s.close(WSCloseCode.GOING_AWAY, "server shutdown") for s in sessions),
            return_exceptions=True,
        )
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.announcer.close(timeout_s=5.0)
        await self.kafka.stop()
        await self.liveness.stop()
        await self.store.close()
        await self.redis.aclose()

    async def _close_sessions_with_expired_tokens(self) -> None:
        """Close a session with 4003 once its token expires. One sweep a second over every
        session (about a millisecond for 20,000) instead of a timer per session, which costs
        each idle connection ~700 bytes."""
        while True:
            await asyncio.sleep(EXPIRY_SWEEP_S)
            now = time.time()
            for session in self.registry.sessions.values():
                if session.expires_at <= now and not session.closing:
                    session.closing = True  # acts on nothing more it sends
                    self._spawn(session.close(TOKEN_EXPIRED, "token expired"))

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ deliveries

    def on_delivery(self, delivery: records.Delivery) -> None:
        """One ``chat.deliver`` entry: a frame (or a sync answer) for some of our sessions."""
        if isinstance(delivery, records.FrameDelivery):
            frame = delivery.frame
            text = protocol.encode(frame)
            frame_type = frame.get("type", "?")
            for sid in delivery.sessions:
                session = self.registry.get(sid)
                if session is None:
                    continue
                if frame_type == "message":
                    session.send_message_encoded(text, frame["conversation_id"], frame["seq"])
                else:
                    session.send_encoded(text, frame_type)
                observe_latency(session, frame)
            return
        for sid in delivery.sessions:
            session = self.registry.get(sid)
            if session is not None:
                self._answer_sync(session, delivery.sync)

    def _answer_sync(self, session: Session, sync: records.SyncAnswer) -> None:
        """The sync answer, written in the session's order: live messages that arrive while the
        store is read wait behind it, so that a session sees every conversation in seq order."""

        async def job() -> None:
            messages: list[Any] = list(sync["messages"])
            missing: set[str] = set()  # conversations whose older messages the store lacks
            for cid, first, last in sync["fetch"]:
                found = [] if missing else await self._fetch_from_store(cid, first, last)
                if len(found) < last - first + 1:
                    missing.add(cid)
                else:
                    messages.extend(found)
            complete = not missing
            # Never a gap: a conversation without its older messages is not sent at all, and
            # the client is told to sync again (its cursor for it has not moved).
            messages = [m for m in messages if m["conversation_id"] not in missing]
            messages.sort(key=lambda m: (m["conversation_id"], m["seq"]))
            for message in messages:
                await session.write_now({"type": "message", **message})
            if complete:
                reply: dict[str, Any] = {
                    "type": "sync.done",
                    "conversations": sync["conversations"],
                    "truncated": sync["truncated"],
                }
                if sync.get("id") is not None:
                    reply["id"] = sync["id"]
            else:
                reply = protocol.error_frame(
                    protocol.UNAVAILABLE, "the message store is behind, sync again", sync.get("id")
                )
            await session.write_now(reply)

        session.run_in_order(job)

    async def _fetch_from_store(self, cid: str, first: int, last: int) -> list[dict[str, Any]]:
        """Messages older than the inbox keeps. The sink may be behind the inbox (it catches up
        after an outage, or under load), so wait, bounded, until the store holds the range."""
        found: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + SYNC_STORE_WAIT_S
        delay = 0.05
        while True:
            try:
                found = await self.store.messages_range(cid, first, last)
            except Exception as exc:
                log.warning("store read failed during sync: %s", exc)
            if len(found) >= last - first + 1:
                return found
            if asyncio.get_running_loop().time() + delay > deadline:
                metrics.sync_store_behind.inc()
                return found
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    # ------------------------------------------------------------------ websocket

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """One WebSocket session, from the upgrade to the close. This coroutine lives as long
        as the connection, so the session is served here and not in nested coroutines: each
        level of them would cost every idle connection about 300 bytes."""
        admission = await self._admit(request)
        if isinstance(admission, web.Response):
            return admission
        identity, session_id = admission
        try:
            ws = web.WebSocketResponse(
                heartbeat=self.settings.ping_interval_s,
                max_msg_size=self.settings.max_frame_bytes,
                compress=False,
            )
            await ws.prepare(request)
            session = Session(
                session_id,
                identity.user,
                ws,
                identity.expires_at,
                max_queued_bytes=self.settings.max_queued_bytes,
            )
            self.registry.add(session)
            try:
                await self.kafka.send_user_event(
                    session.user, records.session_open(session.id, self.slot, self.edge_id)
                )
            except KafkaUnavailable:
                await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"backend unavailable")
                self.registry.remove(session)
                await session.stop()
                return ws
            try:
                while True:
                    msg = await ws.receive()
                    if msg.type in WS_CLOSED or not await self._on_ws_message(session, msg):
                        break
            finally:
                self.registry.remove(session)
                await session.stop()
                await self._announce_close(session)
            return ws
        finally:
            await self.connection_limit.release(identity.user, session_id)

    async def _admit(self, request: web.Request) -> web.Response | tuple[Identity, str]:
        """Authenticate and apply the upgrade limits: the refusal to answer, or the identity
        and the new session's id (counted against the user's connection limit)."""
        if self.closing:
            return json_error(503, "unavailable")
        try:
            identity = await self.tickets.authenticate_upgrade(request, self.verifier)
        except Unauthorized:
            metrics.upgrades_refused.labels("unauthorized").inc()
            return json_error(401, "unauthorized")
        if not self._origin_allowed(request):
            metrics.upgrades_refused.labels("origin").inc()
            return json_error(403, "forbidden")
        ip = client_address(request, self.trusted_proxies)
        verdict = await self.limiter.check(
            Limit("upgrade", self.settings.upgrades_per_min / 60.0, self.settings.upgrades_per_min),
            ip,
        )
        if not verdict.allowed:
            metrics.upgrades_refused.labels("rate_limited").inc()
            return web.json_response(
                {"error": "rate_limited", "retry_after_ms": verdict.retry_after_ms}, status=429
            )
        session_id = uuid.uuid4().hex
        local_count = self.registry.count_for(identity.user)
        if not await self.connection_limit.acquire(identity.user, session_id, local_count):
            metrics.upgrades_refused.labels("too_many_connections").inc()
            return web.json_response({"error": "too_many_connections"}, status=429)
        return identity, session_id

    def behind_tls_proxy(self, request: web.Request) -> bool:
        """The client reached a trusted proxy over TLS (the proxy says so)."""
        proto = request.headers.get("X-Forwarded-Proto", "")
        return (
            proto.split(",")[-1].strip().lower() == "https"
            and request.remote is not None
            and is_trusted(request.remote, self.trusted_proxies)
        )

    def _origin_allowed(self, request: web.Request) -> bool:
        allowed = self.settings.allowed_origins
        origin = request.headers.get("Origin")
        if not allowed or origin is None:
            return True
        return origin in allowed or "*" in allowed

    async def _on_ws_message(self, session: Session, msg: WSMessage) -> bool:
        """Act on one WebSocket message; False when the session should end."""
        if session.closing:
            return True  # closing (abuse, expired token): read what is in flight, act on nothing
        if msg.type == WSMsgType.TEXT:
            await self._on_text(session, msg.data)
        elif msg.type == WSMsgType.BINARY:
            self._reply_error(
                session, ProtocolError(protocol.BAD_REQUEST, "binary frames are not supported")
            )
            await self._count_invalid(session)
        elif msg.type == WSMsgType.ERROR:
            log.info(
                "websocket error",
                extra={"session": session.id, "error": str(session.ws.exception())},
            )
            return False
        return not session.ws.closed

    async def _on_text(self, session: Session, data: str) -> None:
        assert self.ctx is not None
        try:
            frame = protocol.decode_frame(data)
        except ProtocolError as exc:
            metrics.frames_in.labels("invalid").inc()
            self._reply_error(session, exc)
            await self._count_invalid(session)
            return
        metrics.frames_in.labels(frame.type).inc()
        try:
            await handle_frame(self.ctx, session, frame)
        except RateLimited as exc:
            self._reply_error(session, exc, exc.retry_after_ms)
        except ProtocolError as exc:
            self._reply_error(session, exc)
        except Exception:
            log.exception("frame handling failed", extra={"type": frame.type})
            self._reply_error(session, ProtocolError(protocol.INTERNAL, "internal error", frame.id))

    def _reply_error(
        self, session: Session, exc: ProtocolError, retry_after_ms: int | None = None
    ) -> None:
        metrics.errors.labels(exc.code).inc()
        session.send(protocol.error_frame(exc.code, exc.message, exc.frame_id, retry_after_ms))

    async def _count_invalid(self, session: Session) -> None:
        session.invalid_frames += 1
        if session.invalid_frames >= self.settings.invalid_frames_before_close:
            session.close_after_pending(WSCloseCode.POLICY_VIOLATION, "too many invalid frames")

    async def _announce_close(self, session: Session) -> None:
        events: list[tuple[str, records.EdgeUserEvent]] = [
            (session.user, records.session_close(session.id, self.edge_id))
        ]
        for watched in session.watching or ():
            events.append((watched, records.presence_unsubscribe(session.id)))
        # Retried through a Kafka blip: the dead-session sweep cannot see this session (the
        # edge is alive), so a dropped record would leave the user online for good.
        await self.announcer.announce(events)

    # ------------------------------------------------------------------ health

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "edge": self.edge_id,
                "slot": self.slot,
                "sessions": len(self.registry.sessions),
            }
        )

    async def readyz(self, request: web.Request) -> web.Response:
        checks: dict[str, bool] = {}
        try:
            checks["redis"] = bool(await asyncio.wait_for(self.redis.ping(), 2.0))
        except Exception:
            checks["redis"] = False
        try:
            await asyncio.wait_for(self.kafka.producer.client.fetch_all_metadata(), 2.0)
            checks["kafka"] = True
        except Exception:
            checks["kafka"] = False
        checks["mongo"] = await self.store.ping()
        ready = all(checks.values()) and not self.closing
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


def observe_latency(session: Session, frame: dict[str, Any]) -> None:
    frame_type = frame.get("type")
    if frame_type == "message":
        metrics.delivery_seconds.observe(max(0.0, time.time() - frame["ts"] / 1000))
    elif frame_type == "message.ack":
        started = session.pending_sends.pop(frame["client_msg_id"], None)
        if started is not None:
            metrics.ack_seconds.observe(time.monotonic() - started)


def client_address(request: web.Request, trusted: list[IPNetwork]) -> str:
    return client_ip(request.remote, request.headers.get("X-Forwarded-For"), trusted)


def client_ip(peer: str | None, forwarded: str | None, trusted: list[IPNetwork]) -> str:
    """The client's IP: the peer, or the last X-Forwarded-For hop when the peer is a trusted
    proxy (nginx appends the address it saw; earlier hops are client-controlled)."""
    if not peer:
        return "?"
    if forwarded and is_trusted(peer, trusted):
        return forwarded.split(",")[-1].strip() or peer
    return peer


def is_trusted(peer: str, trusted: list[IPNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False  # not an IP (a unix socket): never a trusted proxy
    return any(address in network for network in trusted)


def json_error(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status)


async def build_app(settings: Settings) -> web.Application:
    """An async factory: the Kafka clients must be created inside the running event loop."""
    edge = Edge(settings)
    app = web.Application(
        client_max_size=settings.max_frame_bytes,
        middlewares=[
            security_headers_middleware(settings, edge.behind_tls_proxy),
            rest.rest_ip_limit_middleware(
                settings, edge.limiter, lambda r: client_address(r, edge.trusted_proxies)
            ),
        ],
    )
    app["edge"] = edge

    async def on_startup(_: web.Application) -> None:
        await edge.start()

    async def on_shutdown(_: web.Application) -> None:
        await edge.stop()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/v1/ws", edge.websocket)
    app.router.add_get("/healthz", edge.healthz)
    app.router.add_get("/readyz", edge.readyz)
    app.router.add_get("/metrics", edge.metrics)
    rest.add_routes(app, edge.store, edge.verifier, settings, edge.limiter, edge.tickets)
    add_web_client(app, settings)
    return app


def add_web_client(app: web.Application, settings: Settings) -> None:
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
