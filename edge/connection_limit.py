"""Concurrent sessions per user, counted across every edge in Redis.

Each session is a member ``<edge id>|<session id>`` of the sorted set ``chat:conns:<user>``.
Nothing renews them: when a user connects, the members of edges whose liveness key
(``chat:edge-alive:<edge id>``, kept by every live edge) is gone are dropped before counting,
so the sessions of a dead edge stop counting within one liveness TTL. That costs a few
``EXISTS`` per connect instead of renewing every session's lease every few seconds (two Redis
commands per connection per beat: 12,000 a second for an edge holding 20,000). When Redis is
unreachable the edge counts only its own sessions (the limit then holds per node).
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from chat.keys import connections_key, edge_alive_key

log = logging.getLogger("chat.edge.connections")

# A user's set outlives their sessions by at most this long when nobody closes them (an edge
# killed while the user never comes back); each connect pushes it out again.
IDLE_SET_TTL_MS = 24 * 3600 * 1000

ACQUIRE_LUA = """
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local edge = string.match(member, '^(.-)|')
  if edge == nil or redis.call('EXISTS', ARGV[4] .. edge) == 0 then
    redis.call('ZREM', KEYS[1], member)
  end
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], 0, ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""


class ConnectionLimit:
    def __init__(self, redis_client: aioredis.Redis, limit: int, edge_id: str) -> None:
        self.redis = redis_client
        self.limit = limit
        self.edge_id = edge_id
        self.script = redis_client.register_script(ACQUIRE_LUA)

    def _member(self, session: str) -> str:
        return f"{self.edge_id}|{session}"

    async def acquire(self, user: str, session: str, local_count: int) -> bool:
        """Count ``session`` against ``user``'s limit; False when the user is at the limit."""
        try:
            acquired = await self.script(
                keys=[connections_key(user)],
                args=[self._member(session), self.limit, IDLE_SET_TTL_MS, edge_alive_key("")],
            )
            return bool(acquired)
        except (RedisError, OSError) as exc:
            log.warning("connection limit falls back to this node's count: %s", exc)
            return local_count < self.limit

    async def release(self, user: str, session: str) -> None:
        try:
            await self.redis.zrem(connections_key(user), self._member(session))
        except (RedisError, OSError):
            pass  # dropped by the next connect of the user once this edge is gone
