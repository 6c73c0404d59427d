"""The edge node: one process's backends and its lifecycle.

The node owns what lives as long as the process: Redis, the store, the Kafka producer and the
consumer of this edge's ``chat.deliver`` partition (its slot), the liveness lease, and the hub
of live sessions that deliveries are fanned out to. Requests reach it through the application
(``request.app[NODE]``); ``edge/app.py`` starts and stops it with the application.

    client frames ──▶ edge.client ──▶ edge.commands ──▶ Kafka (chat.commands, chat.users)
    Kafka chat.deliver[slot] ──▶ Hub.deliver ──▶ Session queues ──▶ sockets
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Coroutine
from typing import Any

from aiohttp import WSCloseCode, web

from chat.redis_pool import connect_redis
from chat.settings import Settings
from edge.announcer import Announcer
from edge.auth import TokenVerifier
from edge.commands import CommandContext
from edge.connection_limit import ConnectionLimit
from edge.hub import Hub
from edge.kafka_io import KafkaIO
from edge.liveness import Liveness
from edge.media import MediaDirectory
from edge.presence import Watches
from edge.proxies import TrustedProxies
from edge.ratelimit import RateLimiter
from edge.store import Store
from edge.sync import SyncAssembler
from edge.tickets import Tickets

log = logging.getLogger("chat.edge")

TOKEN_EXPIRED = 4003
EXPIRY_SWEEP_S = 1.0


class EdgeNode:
    """Everything one edge process holds: its backends and its live sessions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.edge_id = uuid.uuid4().hex
        self.proxies = TrustedProxies(settings.trusted_proxies)
        self.verifier = TokenVerifier(settings)
        self.redis = connect_redis(settings)
        self.limiter = RateLimiter(self.redis)
        self.store = Store(settings, self.redis)
        self.tickets = Tickets(self.redis, settings.ws_ticket_ttl_s)
        self.connection_limit = ConnectionLimit(
            self.redis, settings.connections_per_user, self.edge_id
        )
        self.liveness = Liveness(settings, self.redis, self.edge_id)
        self.watches = Watches()
        self.hub = Hub(SyncAssembler(self.store).answer, self.watches)
        self.kafka = KafkaIO(settings, self.hub.deliver)
        self.media = MediaDirectory(
            settings, self.redis, self.store, self.kafka, self.verifier, self.limiter
        )
        self.announcer = Announcer(self.kafka.send_user_event)
        self.slot = -1  # leased in start()
        self.ctx: CommandContext | None = None
        self.closing = False
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self.slot = await self.liveness.acquire_slot()
        await self.kafka.start(self.slot)
        await self.media.start()
        await self.liveness.start()
        self._tasks.add(asyncio.create_task(self._close_sessions_with_expired_tokens()))
        self.ctx = CommandContext(
            self.settings, self.kafka, self.redis, self.limiter, self.slot, self.media
        )
        self.watches.ctx = self.ctx
        log.info("edge started", extra={"edge": self.edge_id, "slot": self.slot})

    async def drain(self) -> None:
        """Refuse new sessions and close the live ones; clients reconnect to another node and
        sync. Their handlers then announce the closes, while Kafka is still up."""
        self.closing = True
        await asyncio.gather(
            *(
                s.close(WSCloseCode.GOING_AWAY, "server shutdown")
                for s in list(self.hub.sessions.values())
            ),
            return_exceptions=True,
        )

    async def stop(self) -> None:
        """After :meth:`drain` and once the handlers have ended: let go of the backends."""
        await self.drain()  # nothing to do when the application drained already
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.announcer.close(timeout_s=5.0)
        await self.kafka.stop()
        await self.liveness.stop()
        await self.media.close()
        await self.store.close()
        await self.redis.aclose()

    async def _close_sessions_with_expired_tokens(self) -> None:
        """Close a session with 4003 once its token expires. One sweep a second over every
        session (about a millisecond for 20,000) instead of a timer per session, which costs
        each idle connection ~700 bytes."""
        while True:
            await asyncio.sleep(EXPIRY_SWEEP_S)
            for session in self.hub.expired(time.time()):
                session.closing = True  # acts on nothing more it sends
                self._spawn(session.close(TOKEN_EXPIRED, "token expired"))

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


# The node, as the application's typed state: handlers read it with ``request.app[NODE]``.
NODE = web.AppKey("node", EdgeNode)
