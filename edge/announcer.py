"""Session-close announcements that survive a Kafka blip.

A session that ends tells the sessions agent (``session.close``) and every user it watched
(``presence.unsubscribe``). If Kafka does not take one of those records, the worker's
dead-session sweep cannot help (the edge is alive, its liveness key fresh), so the user would
stay online and the watches would stay forever. Such records are kept and retried, with
backoff, until Kafka takes them. When the edge stops for good, its liveness key expires and the
workers expire its sessions, so what is left then is covered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from chat.records import EdgeUserEvent
from edge import metrics
from edge.kafka_io import KafkaUnavailable

log = logging.getLogger("chat.edge.announcer")

UserEvent = tuple[str, EdgeUserEvent]
Send = Callable[[str, EdgeUserEvent], Awaitable[None]]


class Announcer:
    def __init__(
        self,
        send: Send,
        *,
        initial_delay_s: float = 0.1,
        max_delay_s: float = 5.0,
        max_pending: int = 1_000_000,
    ) -> None:
        self._send = send
        self.initial_delay_s = initial_delay_s
        self.max_delay_s = max_delay_s
        # Two records per closed session, ~100 bytes each: a million is ~200 MB at most, far
        # beyond what a blip of minutes leaves; beyond it the oldest go (logged, counted).
        self.max_pending = max_pending
        self.pending: deque[UserEvent] = deque()
        self._retrier: asyncio.Task[None] | None = None

    async def announce(self, events: list[UserEvent]) -> None:
        """Send each event; one Kafka did not take waits for the retrier (in order, behind any
        already waiting, so one user's records keep their order)."""
        for user, event in events:
            if not self.pending:
                try:
                    await self._send(user, event)
                    continue
                except KafkaUnavailable:
                    log.warning("session close not announced, retrying", extra={"user": user})
            self._keep(user, event)

    def _keep(self, user: str, event: EdgeUserEvent) -> None:
        if len(self.pending) >= self.max_pending:
            dropped_user, dropped = self.pending.popleft()
            metrics.announcements_dropped.inc()
            log.error(
                "too many unannounced session closes, dropping the oldest",
                extra={"user": dropped_user, "op": dropped.get("op")},
            )
        self.pending.append((user, event))
        metrics.announcements_pending.set(len(self.pending))
        if self._retrier is None or self._retrier.done():
            self._retrier = asyncio.create_task(self._retry())

    async def _retry(self) -> None:
        delay = self.initial_delay_s
        while self.pending:
            await asyncio.sleep(delay)
            while self.pending:
                user, event = self.pending[0]
                try:
                    await self._send(user, event)
                except KafkaUnavailable:
                    delay = min(delay * 2, self.max_delay_s)
                    break
                self.pending.popleft()
                metrics.announcements_pending.set(len(self.pending))
                delay = self.initial_delay_s
        log.info("pending session closes announced")

    async def close(self, timeout_s: float) -> None:
        """On shutdown: give the retrier up to ``timeout_s`` to empty the queue."""
        if self._retrier is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._retrier), timeout_s)
        except TimeoutError:
            log.error(
                "stopping with unannounced session closes (the workers expire them once this "
                "edge's liveness key lapses)",
                extra={"pending": len(self.pending)},
            )
            self._retrier.cancel()
