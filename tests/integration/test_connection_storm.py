"""Thousands of clients arriving at once (an edge restart, a network blip): the edge queues them
instead of dropping SYNs, and the shared per-user connection count keeps counting in Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path

from chat.keys import connections_key
from chat.redis_pool import connect_redis
from tests.integration.conftest import EDGE_PORTS, App
from tests.integration.helpers import listen_backlog


async def test_the_redis_pool_queues_callers_beyond_its_size(app: App) -> None:
    redis = connect_redis(dataclasses.replace(app.settings, redis_max_connections=2))
    key = f"test:pool:{uuid.uuid4().hex}"
    try:
        # redis-py's default pool raises "Too many connections" here instead of waiting.
        await asyncio.gather(*(redis.incr(key) for _ in range(200)))
        assert int(await redis.get(key)) == 200
    finally:
        await redis.delete(key)
        await redis.aclose()


def test_the_edges_listen_with_a_long_backlog(app: App) -> None:
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    expected = min(app.settings.edge_listen_backlog, somaxconn)
    for port in EDGE_PORTS:
        assert listen_backlog(port) == expected, port


async def test_a_burst_of_upgrades_is_counted_in_redis(app: App, user_ids) -> None:
    users = [f"{user_ids.storm}-{i}" for i in range(400)]
    clients = await asyncio.gather(*(app.client(user) for user in users))
    redis = connect_redis(app.settings)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for user in users:
                pipe.zcard(connections_key(user))
            counted = await pipe.execute()
        # A session the edge failed to count in Redis (and counted only locally) shows as 0.
        assert counted == [1] * len(users)
    finally:
        await redis.aclose()
        await asyncio.gather(*(c.close() for c in clients))
