"""The workers' Redis writes: look-up caches the edges read (presence hashes, the conversation
sets of ``chat.keys.member_of_key``), written before the outputs that announce them.

Redis holds only what the tables can rebuild, so a write Redis does not take is logged, never
raised: an agent must not stall while Redis is away. A lost hash is rewritten by the next change
or the rebuild timers. A lost set write is worse: a removal that never lands would let two users
go on seeing each other's presence. So set writes that failed are kept (the latest intended value
per key and member) and written again with the next write, or by a timer's :meth:`flush`, until
Redis takes them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

log = logging.getLogger("chat.cache")

WRITE_TIMEOUT_S = 2.0
# Set writes kept while Redis is away. A minute of outage at 1,000 membership changes a second
# fits; past it the oldest are dropped (and logged): what they held is then stale until the
# tables rebuild the cache after a Redis restart.
MAX_UNWRITTEN = 100_000

HashWrite = tuple[str, dict[str, Any]]
SetWrite = tuple[str, str, bool]  # key, member, present


class CacheWriter:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        # (key, member) -> present: set writes Redis has not taken yet, oldest first.
        self.unwritten: dict[tuple[str, str], bool] = {}

    async def write(self, hashes: Sequence[HashWrite], sets: Sequence[SetWrite] = ()) -> bool:
        """Write the hashes and set members (and the set writes still owed); False when Redis
        did not take them."""
        owed = [(k, m, p) for (k, m), p in self.unwritten.items()]
        if not hashes and not sets and not owed:
            return True
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, fields in hashes:
                    pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
                # Owed writes first: a newer write of the same member in ``sets`` wins.
                for key, member, present in owed + list(sets):
                    if present:
                        pipe.sadd(key, member)
                    else:
                        pipe.srem(key, member)
                await asyncio.wait_for(pipe.execute(), WRITE_TIMEOUT_S)
        except Exception as exc:  # Redis down: look-ups go stale, nothing is lost.
            log.warning("cache write failed: %s", exc)
            self._owe(sets)
            return False
        self.unwritten.clear()
        return True

    async def flush(self) -> None:
        """Write the set writes still owed (a timer calls it: no batch may come for a while)."""
        if self.unwritten:
            await self.write([])

    def _owe(self, sets: Sequence[SetWrite]) -> None:
        for key, member, present in sets:
            self.unwritten.pop((key, member), None)  # re-inserted last: newest
            self.unwritten[(key, member)] = present
        dropped = len(self.unwritten) - MAX_UNWRITTEN
        if dropped > 0:
            for pair in list(self.unwritten)[:dropped]:
                del self.unwritten[pair]
            log.error("cache writes dropped: Redis away too long", extra={"dropped": dropped})
