"""The workers' cache writer (topologies/cache.py) against the real Redis: set writes Redis did
not take are kept and written again later, the newest per member winning. A lost removal from
a membership set would leave two users seeing each other's presence."""

from __future__ import annotations

import redis.asyncio as aioredis

from chat.keys import member_of_key
from chat.redis_pool import connect_redis
from topologies.cache import CacheWriter


async def test_set_writes_redis_did_not_take_are_written_later(app, user_ids) -> None:
    key = member_of_key(user_ids.carol)
    redis = connect_redis(app.settings)
    unreachable = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    writer = CacheWriter(unreachable)
    try:
        await redis.sadd(key, "grp:left")
        taken = await writer.write(
            [], [(key, "grp:left", False), (key, "grp:joined", True), (key, "grp:brief", True)]
        )
        assert not taken
        # The newest intended state of each member is owed, whatever came before it.
        assert not await writer.write([], [(key, "grp:brief", False)])
        assert writer.unwritten == {
            (key, "grp:left"): False,
            (key, "grp:joined"): True,
            (key, "grp:brief"): False,
        }
        assert await redis.smembers(key) == {b"grp:left"}

        writer.redis = redis  # Redis is back
        await writer.flush()
        assert writer.unwritten == {}
        assert await redis.smembers(key) == {b"grp:joined"}
        # A newer write of an owed member wins over the owed one.
        writer.redis = unreachable
        assert not await writer.write([], [(key, "grp:joined", False)])
        writer.redis = redis
        assert await writer.write([], [(key, "grp:joined", True)])
        assert await redis.smembers(key) == {b"grp:joined"}
    finally:
        await redis.delete(key)
        await redis.aclose()
        await unreachable.aclose()
