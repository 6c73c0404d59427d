"""Rebuild every worker table from the input topics: ``chatctl replay tables``.

A worker is started under a NEW application id (so a new consumer group and new, empty
changelog topics) in rebuild mode (``CHAT_WORKER_REBUILD``): its agents read ``chat.commands``,
``chat.users`` and ``chat.messages`` from the beginning and write table rows only (no messages,
fan-out, deliveries or timer commands), so the live system sees nothing of it. The agents are
deterministic (times come from record timestamps), so the rows equal the live ones. Once the
group has consumed everything up to the end offsets seen at the start, the worker is stopped;
the operator then points the workers at the new application id (``CHAT_WORKER_APP_ID``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from chat.kafka_security import aiokafka_kwargs
from chat.settings import Settings
from chat.topics import topic_specs
from ops.supervisor import REPO, Supervisor, worker_spec
from ops.topics import ensure_topics
from topologies.topology import input_topics

Progress = Callable[[int, int], None]


@dataclass
class RebuildResult:
    app_id: str
    records: int  # input records consumed by the rebuild
    seconds: float


class RebuildRefused(Exception):
    """The target application id is the live one, or has been used before."""


async def input_end_offsets(settings: Settings) -> dict[TopicPartition, int]:
    """End offsets of the agents' input topics (what the rebuild must consume)."""
    consumer = AIOKafkaConsumer(**aiokafka_kwargs(settings), group_id=None)
    await consumer.start()
    try:
        specs = {spec.short: spec for spec in topic_specs(settings)}
        tps = [
            TopicPartition(specs[name].name, p)
            for name in input_topics()
            for p in range(specs[name].partitions)
        ]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def committed_offsets(settings: Settings, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
    finally:
        await admin.close()


def rebuild_tables(
    settings: Settings,
    app_id: str,
    web_port: int,
    progress: Progress | None = None,
    timeout_s: float = 3600.0,
) -> RebuildResult:
    if app_id == settings.worker_app_id:
        raise RebuildRefused(f"{app_id!r} is the live application id; choose a new one")
    if asyncio.run(committed_offsets(settings, app_id)):
        raise RebuildRefused(f"the consumer group {app_id!r} exists already; choose a new id")
    target = replace(settings, worker_app_id=app_id)
    asyncio.run(ensure_topics(target))
    ends = asyncio.run(input_end_offsets(target))
    total = sum(ends.values())
    log_dir = Path(REPO / ".data" / "logs" / "rebuild")
    sup = Supervisor(log_dir=log_dir)
    spec = worker_spec(
        0,
        {
            "CHAT_WORKER_APP_ID": app_id,
            "CHAT_WORKER_REBUILD": "true",
            "CHAT_TABLE_STANDBY_REPLICAS": "0",
        },
        web_port,
    )
    started = time.monotonic()
    sup.start(spec)
    try:
        while True:
            done = asyncio.run(committed_offsets(target, app_id))
            consumed = sum(min(done.get(tp, 0), end) for tp, end in ends.items())
            if progress:
                progress(consumed, total)
            if consumed >= total:
                break
            if sup.running[spec.name].proc.poll() is not None:
                raise RuntimeError(f"the rebuild worker exited; see {log_dir}")
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"the rebuild did not finish in {timeout_s:.0f}s")
            time.sleep(0.5)
    finally:
        sup.stop_all()
    return RebuildResult(app_id, total, time.monotonic() - started)
