"""Partitions moving between two workers while their rows change: no input record is lost.

Two workers of their own (a fresh topic prefix and application id, so nothing else in the lane
feeds them) take ``chat.users`` partitions from each other: a second worker joins, leaves,
joins again, the first is killed (-9) and comes back. Right after each move every user opens one
more session, and a background producer keeps opening sessions throughout. Each session is a
distinct id, so the final ``sessions`` row of a user must hold every session ever opened for
them: a row that lacks one shows an input record that was committed without being processed,
or a row a worker recovered without what its changelog held.

Without the commit fixes of topologies/faust_fixes.py, moves like these lost a
``session.open`` right after a worker joined (record 13 of a partition committed, 12 and 14
processed) in one run of five. It depends on a fetch racing the rebalance's seek, so a run that
passes does not prove much; tests/unit/test_faust_fixes.py sets each case up directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from chat import records
from chat.keys import edge_alive_key
from chat.redis_pool import connect_redis
from chat.settings import Settings, load_settings
from chat.topics import changelog_name, topic_specs
from ops.supervisor import REPO, Supervisor, worker_spec
from ops.topics import ensure_topics
from tests.conftest import NAMESPACE, TEST_ENV, WORKER_PORT
from tests.faults.test_process_faults import in_thread, report
from tests.integration.helpers import eventually, topic_records

USERS = 48
# Far from the lane's own workers (WORKER_PORT, +1) and the scale-out test's (+2).
PORTS = (WORKER_PORT + 20, WORKER_PORT + 21)


class Handover:
    """Two workers over topics of their own, and the sessions every user was given."""

    def __init__(self, settings: Settings, sup: Supervisor, producer: AIOKafkaProducer) -> None:
        self.settings = settings
        self.sup = sup
        self.producer = producer
        self.edge = f"edge-{settings.topic_prefix}"
        self.users = [f"u{i}-{settings.topic_prefix}" for i in range(USERS)]
        self.opened: dict[str, list[str]] = {user: [] for user in self.users}
        self.users_topic = {s.short: s for s in topic_specs(settings)}["users"]
        self.specs = [worker_spec(i, {}, port) for i, port in enumerate(PORTS)]

    async def open_session(self, user: str, session: str) -> None:
        event = {"op": "session.open", "session": session, "slot": 0, "edge": self.edge}
        await self.producer.send_and_wait(
            self.users_topic.name,
            records.bundle([records.keyed_event(user, event)]),
            partition=records.partition_for(user, self.users_topic.partitions),
        )
        self.opened[user].append(session)

    async def open_for_everyone(self, session: str) -> None:
        for user in self.users:
            await self.open_session(user, session)

    async def rows(self) -> dict[str, Any]:
        changelog = changelog_name(self.settings, "sessions")
        rows: dict[str, Any] = {}
        for record in await topic_records(self.settings.kafka_bootstrap, changelog):
            rows[record.key.decode()] = orjson.loads(record.value) if record.value else None
        return rows

    async def missing(self) -> dict[str, list[str]]:
        """Per user, the sessions opened that the user's latest row lacks."""
        rows = await self.rows()
        out: dict[str, list[str]] = {}
        for user, sessions in self.opened.items():
            held = set(((rows.get(user) or {}).get("sessions")) or {})
            if lacking := [s for s in sessions if s not in held]:
                out[user] = lacking
        return out

    async def settled(self, timeout: float = 90) -> None:
        """Every session opened so far is in its user's row, or fail naming what is not."""

        async def none_missing() -> bool:
            return not await self.missing()

        try:
            await eventually(none_missing, timeout=timeout, interval=1.0)
        except AssertionError:
            lacking = await self.missing()
            where = {
                user: (records.partition_for(user, self.users_topic.partitions), sessions)
                for user, sessions in list(lacking.items())[:5]
            }
            lost = f"rows lack opened sessions (partition, sessions): {where}"
            raise AssertionError(lost) from None

    async def start(self, index: int) -> None:
        self.sup.start(self.specs[index])
        await in_thread(self.sup.wait_ready, [self.specs[index].name], 120)


@contextlib.asynccontextmanager
async def handover_stack() -> AsyncIterator[Handover]:
    prefix = f"{NAMESPACE}-handover-{uuid.uuid4().hex[:8]}"
    env = {
        **TEST_ENV,
        "CHAT_TOPIC_PREFIX": prefix,
        "CHAT_WORKER_APP_ID": f"{prefix}-worker",
        "CHAT_TABLE_STANDBY_REPLICAS": "0",
    }
    settings = load_settings({**os.environ, **env})
    await ensure_topics(settings)
    log_dir = Path(os.environ.get("CHAT_DATA_DIR", REPO / ".data")) / "logs" / "test-handover"
    sup = Supervisor(log_dir=log_dir, base_env={**os.environ, **env})
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    redis = connect_redis(settings)
    await producer.start()
    stack = Handover(settings, sup, producer)
    try:
        # The sessions timer expires the sessions of edges without a liveness key.
        await redis.set(edge_alive_key(stack.edge), "1", ex=3600)
        yield stack
    finally:
        await in_thread(sup.stop_all)
        await producer.stop()
        await redis.delete(edge_alive_key(stack.edge))
        await redis.aclose()
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            ours = [t for t in await admin.list_topics() if t.startswith(prefix)]
            await admin.delete_topics(ours)
        finally:
            await admin.close()


async def test_rows_survive_partitions_moving_between_workers() -> None:
    async with handover_stack() as stack:
        await stack.start(0)
        await stack.open_for_everyone("s0")
        await stack.settled()

        stop_load = asyncio.Event()

        async def background_load() -> None:
            n = 0
            while not stop_load.is_set():
                await stack.open_session(stack.users[n % USERS], f"bg{n}")
                n += 1
                await asyncio.sleep(0.01)

        load = asyncio.create_task(background_load())
        moves = [
            ("worker 1 joins", lambda: stack.start(1)),
            ("worker 1 leaves", lambda: in_thread(stack.sup.stop, "worker-1")),
            ("worker 1 joins again", lambda: stack.start(1)),
            ("worker 0 killed", lambda: in_thread(stack.sup.kill, "worker-0")),
            ("worker 0 back", lambda: stack.start(0)),
        ]
        try:
            for i, (_, move) in enumerate(moves, 1):
                await move()
                # At once: the records meet the rebalance's recovery and seek.
                await stack.open_for_everyone(f"s{i}")
        finally:
            stop_load.set()
            await load
        await stack.settled()
        opened = sum(len(s) for s in stack.opened.values())
        report("table handover", {"moves": len(moves), "sessions opened": opened, "lost": 0})
