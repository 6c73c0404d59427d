"""Token-bucket rate limits kept in Redis (one Lua script), with a bounded local fallback.

Every frame a client sends is checked, so the checks are gathered: those that arrive while a
round trip is in flight go to Redis together in one pipeline when it returns (and the first one
on the next turn of the event loop). One connection and one round trip serve many frames; at
saturation the per-frame script calls, each taking a pooled connection, were half of an edge's
CPU.

When Redis cannot be reached the edge does not open the door: it applies the same buckets in
its own memory (per edge node, so a user spread over N nodes gets at most N times the limit)
until Redis answers again. Limits only ever refuse new input; nothing acknowledged is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from chat.keys import rate_key

log = logging.getLogger("chat.edge.ratelimit")

TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local data = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(data[1]) or burst
local ts = tonumber(data[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = math.ceil((cost - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return {allowed, retry}
"""

LOCAL_BUCKETS_MAX = 100_000


@dataclass(frozen=True)
class Limit:
    scope: str
    per_second: float
    burst: int


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_ms: int


class RateLimiter:
    def __init__(self, redis_client: aioredis.Redis) -> None:
        self.redis = redis_client
        self.script = redis_client.register_script(TOKEN_BUCKET_LUA)
        self.local: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.degraded = False
        # Checks waiting for the next pipeline: (key, script args, the caller's future).
        self._queued: list[tuple[str, list[Any], asyncio.Future[Any]]] = []
        self._flush_task: asyncio.Task[None] | None = None

    async def check(self, limit: Limit, subject: str, cost: int = 1) -> Verdict:
        key = rate_key(limit.scope, subject)
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((key, [limit.per_second / 1000.0, limit.burst, cost], answer))
        if self._flush_task is None:
            self._flush_task = asyncio.create_task(self._flush())
        try:
            allowed, retry = await answer
        except (RedisError, OSError) as exc:
            if not self.degraded:
                log.warning("Redis unreachable, rate limits fall back to local buckets: %s", exc)
                self.degraded = True
            return self._check_local(key, limit, cost)
        if self.degraded:
            log.info("Redis is back, rate limits are shared again")
            self.degraded = False
        return Verdict(bool(allowed), int(retry))

    async def _flush(self) -> None:
        """Run the queued checks as pipelines, one in flight at a time, until none is left."""
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                try:
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for key, args, _ in batch:
                            await self.script(keys=[key], args=args, client=pipe)
                        results = await pipe.execute()
                except (RedisError, OSError) as exc:
                    for _, _, answer in batch:
                        if not answer.done():
                            answer.set_exception(exc)
                    continue
                for (_, _, answer), result in zip(batch, results, strict=True):
                    if not answer.done():
                        answer.set_result(result)
        except BaseException:
            # Cancelled (the edge is stopping): nobody may wait for an answer that never comes.
            for _, _, answer in self._queued:
                answer.cancel()
            self._queued = []
            raise
        finally:
            self._flush_task = None

    def _check_local(self, key: str, limit: Limit, cost: int) -> Verdict:
        now = time.monotonic()
        tokens, ts = self.local.pop(key, (float(limit.burst), now))
        tokens = min(limit.burst, tokens + (now - ts) * limit.per_second)
        if tokens >= cost:
            verdict = Verdict(True, 0)
            tokens -= cost
        else:
            verdict = Verdict(False, math.ceil((cost - tokens) / limit.per_second * 1000))
        self.local[key] = (tokens, now)
        while len(self.local) > LOCAL_BUCKETS_MAX:
            self.local.popitem(last=False)
        return verdict
