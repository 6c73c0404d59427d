"""What a timer of an agent may use: the rows this worker holds, input events, and Redis.

Timers never change a table: they only produce input events (``typing.expire``,
``session.expire``), which the agent owning the row applies like any other event, so every
state change still happens in the partition's owner and is replayable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis

from chat.settings import Settings


class Worker(Protocol):
    settings: Settings
    redis: Redis

    def rows(self, table: str) -> list[tuple[str, Any]]:
        """Every row of ``table`` this worker holds (active and standby partitions)."""
        ...

    async def send(self, topic: str, key: str, event: dict[str, Any]) -> None:
        """Produce one input event (a bundle of one) to an internal topic, by its key."""
        ...

    async def set_cache(self, writes: list[tuple[str, dict[str, Any]]]) -> None:
        """Set Redis hashes; a Redis outage is logged, never raised (caches only)."""
        ...

    async def add_to_sets(self, writes: list[tuple[str, str]]) -> None:
        """Add members to Redis sets, as (key, member); logged, never raised, like set_cache."""
        ...

    async def flush_cache(self) -> None:
        """Write again the batches' set writes Redis did not take (topologies/cache.py)."""
        ...


@dataclass(frozen=True)
class Timer:
    interval_s: float
    # Called with the worker and the wall clock in ms (timers are the only users of it).
    run: Callable[[Worker, int], Awaitable[None]]
