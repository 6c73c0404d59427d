"""The example agent (docs/adding-an-agent.md): per-conversation activity on ``chat.activity``."""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from tests.integration.conftest import App
from tests.integration.helpers import (
    alice_and_bob,
    create_direct,
    eventually,
    send_acked,
    synced,
    topic_records,
)


async def latest_activity(app: App, cid: str) -> dict[str, Any] | None:
    """The last record of ``cid`` on the compacted ``chat.activity`` topic."""
    records = await topic_records(app.settings.kafka_bootstrap, app.settings.topic("activity"))
    mine = [r for r in records if r.key == cid.encode()]
    return orjson.loads(mine[-1].value) if mine else None


async def send(client, cid: str, n: int, prefix: str) -> None:  # type: ignore[no-untyped-def]
    for i in range(n):
        await send_acked(client, cid, f"{prefix}{i}")


async def test_activity_counts_messages_per_sender(app: App, clients, user_ids) -> None:
    alice, bob = await alice_and_bob(app, clients, user_ids)
    cid = (await create_direct(alice, bob.user))["id"]
    await send(alice, cid, 5, "a")
    await send(bob, cid, 3, "b")

    async def counted() -> dict[str, Any] | None:
        latest = await latest_activity(app, cid)
        return latest if latest and latest["last_seq"] == 8 else None

    stats = await eventually(counted, timeout=30)
    assert stats["messages"] == 8 and stats["senders"] == 2
    assert stats["top_senders"] == [
        {"user": alice.user, "messages": 5},
        {"user": bob.user, "messages": 3},
    ]
    assert 0 < stats["first_ts"] <= stats["last_ts"]


async def test_a_repeated_message_record_is_not_counted_twice(app: App, clients, user_ids) -> None:
    """``chat.messages`` is at-least-once: a record written again must not count again."""
    alice = await app.client(user_ids.alice, edge=0)
    clients.append(alice)
    await synced(alice)
    cid = (await create_direct(alice, user_ids.bob))["id"]
    await send(alice, cid, 2, "m")
    first = await eventually(
        lambda: _with_seq(app, cid, 2),
        timeout=30,
    )
    repeat = {
        "conversation_id": cid,
        "seq": 2,
        "sender": alice.user,
        "body": "x",
        "ts": first["last_ts"],
        "client_msg_id": "m1",
    }
    producer = AIOKafkaProducer(bootstrap_servers=app.settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            app.settings.topic("messages"), orjson.dumps(repeat), key=cid.encode()
        )
    finally:
        await producer.stop()
    await send(alice, cid, 1, "n")  # seq 3, behind the repeat in the same partition
    stats = await eventually(lambda: _with_seq(app, cid, 3), timeout=30)
    assert stats["messages"] == 3


async def _with_seq(app: App, cid: str, seq: int) -> dict[str, Any] | None:
    latest = await latest_activity(app, cid)
    return latest if latest and latest["last_seq"] == seq else None
