"""The in-memory token bucket the edge falls back to when Redis is unreachable
(edge/ratelimit.py, ``RateLimiter._check_local``). Time is faked; nothing sleeps."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.exceptions import ConnectionError as RedisConnectionError

from edge import ratelimit
from edge.ratelimit import Limit, RateLimiter, Verdict


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.queued = 0

    async def __aenter__(self) -> FakePipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def execute(self) -> list[Any]:
        self.redis.pipelines += 1
        if isinstance(self.redis.result, Exception):
            raise self.redis.result
        return [self.redis.result] * self.queued


class FakeRedis:
    """Just enough of a Redis client for RateLimiter: the script queued on a pipeline."""

    def __init__(self) -> None:
        self.result: Any = RedisConnectionError("redis is down")
        self.calls = 0
        self.pipelines = 0

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)

    def register_script(self, source: str) -> Any:
        assert "HMGET" in source

        async def script(keys: list[str], args: list[Any], client: FakePipeline) -> None:
            self.calls += 1
            client.queued += 1

        return script


class Clock:
    def __init__(self, start: float = 1024.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(time, "monotonic", fake)
    return fake


def limiter() -> RateLimiter:
    return RateLimiter(FakeRedis())  # type: ignore[arg-type]


MSG = Limit("msg", 16.0, 40)  # 16/s: one token every 1/16 s, exact in binary floating point


def drain(rl: RateLimiter, limit: Limit, key: str = "k", tries: int = 1000) -> int:
    allowed = 0
    for _ in range(tries):
        if not rl._check_local(key, limit, 1).allowed:
            break
        allowed += 1
    return allowed


def test_burst_then_refusal(clock: Clock) -> None:
    rl = limiter()
    for _ in range(40):
        verdict = rl._check_local("k", MSG, 1)
        assert verdict == Verdict(True, 0)
    verdict = rl._check_local("k", MSG, 1)
    assert not verdict.allowed
    assert verdict.retry_after_ms > 0
    assert isinstance(verdict.retry_after_ms, int)
    assert verdict.retry_after_ms == 63  # ceil(1000 / 16)
    # Refusals do not consume anything and keep telling the same wait.
    assert rl._check_local("k", MSG, 1) == verdict


def test_refill_over_time(clock: Clock) -> None:
    rl = limiter()
    assert drain(rl, MSG) == 40
    clock.advance(1 / 32)  # half a token
    verdict = rl._check_local("k", MSG, 1)
    assert not verdict.allowed
    assert 0 < verdict.retry_after_ms <= 32
    clock.advance(1 / 32)  # a whole token now
    assert rl._check_local("k", MSG, 1).allowed
    assert not rl._check_local("k", MSG, 1).allowed
    clock.advance(1.0)  # 16 tokens
    assert drain(rl, MSG) == 16


def test_refill_is_capped_at_burst(clock: Clock) -> None:
    rl = limiter()
    assert drain(rl, MSG) == 40
    clock.advance(3600.0)
    assert drain(rl, MSG) == 40


def test_retry_after_covers_the_wait(clock: Clock) -> None:
    rl = limiter()
    limit = Limit("msg", 3.0, 2)
    assert drain(rl, limit) == 2
    verdict = rl._check_local("k", limit, 1)
    assert not verdict.allowed
    clock.advance(verdict.retry_after_ms / 1000)
    assert rl._check_local("k", limit, 1).allowed


def test_cost_above_one(clock: Clock) -> None:
    rl = limiter()
    limit = Limit("typing", 16.0, 10)
    assert rl._check_local("k", limit, 4).allowed
    assert rl._check_local("k", limit, 4).allowed
    verdict = rl._check_local("k", limit, 4)
    assert not verdict.allowed
    assert verdict.retry_after_ms == 125  # 2 tokens missing at 16/s
    assert rl._check_local("k", limit, 2).allowed


def test_buckets_are_per_key(clock: Clock) -> None:
    rl = limiter()
    assert drain(rl, MSG, "alice") == 40
    assert rl._check_local("bob", MSG, 1).allowed
    assert not rl._check_local("alice", MSG, 1).allowed


def test_local_buckets_are_bounded_lru(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "LOCAL_BUCKETS_MAX", 3)
    rl = limiter()
    limit = Limit("msg", 1.0, 1)
    for key in ("a", "b", "c"):
        assert rl._check_local(key, limit, 1).allowed
    assert not rl._check_local("a", limit, 1).allowed  # "a" becomes the most recent
    assert rl._check_local("d", limit, 1).allowed  # evicts "b", the least recent
    assert list(rl.local) == ["c", "a", "d"]
    assert not rl._check_local("a", limit, 1).allowed
    assert rl._check_local("b", limit, 1).allowed  # forgotten, so a fresh bucket


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(st.tuples(st.integers(0, 200), st.integers(1, 3)), min_size=1, max_size=60),
    st.sampled_from([1.0, 4.0, 16.0, 20.0]),
    st.integers(1, 20),
)
def test_never_more_than_burst_plus_refill(
    steps: list[tuple[int, int]], per_second: float, burst: int
) -> None:
    fake = Clock()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(time, "monotonic", fake)
        rl = limiter()
        limit = Limit("p", per_second, burst)
        spent = 0
        elapsed = 0.0
        for ms, cost in steps:
            fake.advance(ms / 1000)
            elapsed += ms / 1000
            verdict = rl._check_local("k", limit, cost)
            if verdict.allowed:
                spent += cost
                assert verdict.retry_after_ms == 0
            else:
                assert verdict.retry_after_ms > 0
            assert spent <= burst + elapsed * per_second + 1e-6


async def test_check_falls_back_to_local_buckets_when_redis_is_down() -> None:
    fake = FakeRedis()
    rl = RateLimiter(fake)  # type: ignore[arg-type]
    limit = Limit("msg", 0.001, 2)
    assert (await rl.check(limit, "alice")).allowed
    assert rl.degraded
    assert (await rl.check(limit, "alice")).allowed
    verdict = await rl.check(limit, "alice")
    assert not verdict.allowed and verdict.retry_after_ms > 0
    assert (await rl.check(limit, "bob")).allowed
    assert fake.calls == 4
    fake.result = OSError("connection reset")
    assert not (await rl.check(limit, "alice")).allowed
    # Redis answers again: its verdict is used and the limiter is no longer degraded.
    fake.result = [1, 0]
    assert await rl.check(limit, "alice") == Verdict(True, 0)
    assert not rl.degraded
    fake.result = [0, 1234]
    assert await rl.check(limit, "alice") == Verdict(False, 1234)


async def test_checks_that_arrive_together_share_one_pipeline() -> None:
    fake = FakeRedis()
    fake.result = [1, 0]
    rl = RateLimiter(fake)  # type: ignore[arg-type]
    limit = Limit("msg", 10.0, 20)
    verdicts = await asyncio.gather(*(rl.check(limit, f"user-{i}") for i in range(50)))
    assert verdicts == [Verdict(True, 0)] * 50
    assert fake.calls == 50
    assert fake.pipelines == 1
