"""Concurrent sessions per user, counted across every edge in Redis.

Each session is a member of the sorted set ``chat:conns:<user>`` scored by when its lease runs
out; the edge renews the leases of its live sessions with its liveness beat, so the sessions of
a dead edge stop counting within one TTL. When Redis is unreachable the edge counts only its
own sessions (the limit then holds per node).
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from chat.keys import connections_key

log = logging.getLogger("chat.edge.connections")

ACQUIRE_LUA = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
"""


class ConnectionLimit:
    def __init__(self, redis_client: aioredis.Redis, limit: int, lease_ms: int) -> None:
        self.redis = redis_client
        self.limit = limit
        self.lease_ms = lease_ms
        self.script = redis_client.register_script(ACQUIRE_LUA)

    async def acquire(self, user: str, session: str, local_count: int) -> bool:
        """Count ``session`` against ``user``'s limit; False when the user is at the limit."""
        now = int(time.time() * 1000)
        try:
            acquired = await self.script(
                keys=[connections_key(user)], args=[now, session, self.limit, self.lease_ms]
            )
            return bool(acquired)
        except (RedisError, OSError) as exc:
            log.warning("connection limit falls back to this node's count: %s", exc)
            return local_count < self.limit

    async def release(self, user: str, session: str) -> None:
        try:
            await self.redis.zrem(connections_key(user), session)
        except (RedisError, OSError):
            pass  # the lease runs out by itself

    async def renew(self, sessions: list[tuple[str, str]]) -> None:
        """Extend the leases of this edge's live sessions (called with the liveness beat)."""
        if not sessions:
            return
        until = int(time.time() * 1000) + self.lease_ms
        async with self.redis.pipeline(transaction=False) as pipe:
            for user, session in sessions:
                pipe.zadd(connections_key(user), {session: until}, xx=True)
                pipe.pexpire(connections_key(user), self.lease_ms)
            await pipe.execute()
