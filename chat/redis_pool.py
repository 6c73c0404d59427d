"""The one way a process connects to Redis: a bounded pool whose callers queue for a connection.

redis-py's default pool (100 connections) raises "Too many connections" the moment a burst
needs more, and every caller here treats a Redis error as "Redis is down" and falls back
(local rate limits, local connection counts). A reconnect storm of thousands of upgrades
is such a burst; with a blocking pool it waits a few milliseconds instead of failing.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from chat.settings import Settings

TIMEOUT_S = 2.0


def connect_redis(settings: Settings) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=TIMEOUT_S,  # waiting for a free connection counts as Redis being slow
        socket_timeout=TIMEOUT_S,
        socket_connect_timeout=TIMEOUT_S,
    )
    return aioredis.Redis(connection_pool=pool)
