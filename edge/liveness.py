"""Edge slot and liveness, kept in Redis.

The slot is the ``chat.deliver`` partition this edge reads: fixed by CHAT_EDGE_SLOT (e.g. a
StatefulSet ordinal) or leased from Redis. The liveness key tells the stream workers that this
edge's sessions are still held; when it expires they close those sessions (presence goes
offline within ~30 s of an edge dying).
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from chat.keys import edge_alive_key, edge_slot_key
from chat.settings import Settings

log = logging.getLogger("chat.edge.liveness")

RENEW_LEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') and 1 or 0
"""


class NoFreeSlot(Exception):
    pass


class Liveness:
    def __init__(
        self,
        settings: Settings,
        redis_client: aioredis.Redis,
        edge_id: str,
    ) -> None:
        self.settings = settings
        self.redis = redis_client
        self.edge_id = edge_id
        self.ttl_ms = settings.edge_liveness_ttl_s * 1000
        self.slot = settings.edge_slot
        self.leased = settings.edge_slot < 0
        self._task: asyncio.Task[None] | None = None
        self.redis_ok = False

    async def acquire_slot(self) -> int:
        if not self.leased:
            return self.slot
        for slot in range(self.settings.deliver_partitions):
            if await self.redis.set(edge_slot_key(slot), self.edge_id, px=self.ttl_ms, nx=True):
                self.slot = slot
                return slot
        raise NoFreeSlot(
            f"all {self.settings.deliver_partitions} edge slots are taken; raise "
            "CHAT_DELIVER_PARTITIONS (and the partitions of chat.deliver) to run more edges"
        )

    async def start(self) -> None:
        await self._beat()
        self._task = asyncio.create_task(self._loop(), name="liveness")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self.redis.delete(edge_alive_key(self.edge_id))
            if self.leased:
                await self.redis.eval(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                    "return redis.call('DEL', KEYS[1]) end return 0",
                    1,
                    edge_slot_key(self.slot),
                    self.edge_id,
                )
        except Exception as exc:
            log.warning("could not clear liveness keys: %s", exc)

    async def _beat(self) -> None:
        await self.redis.set(edge_alive_key(self.edge_id), str(self.slot), px=self.ttl_ms)
        if self.leased:
            renewed = await self.redis.eval(
                RENEW_LEASE_LUA, 1, edge_slot_key(self.slot), self.edge_id, self.ttl_ms
            )
            if not renewed:
                log.error("edge slot lease lost to another node", extra={"slot": self.slot})

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            try:
                await self._beat()
                self.redis_ok = True
            except Exception as exc:
                self.redis_ok = False
                log.warning("liveness beat failed: %s", exc)
