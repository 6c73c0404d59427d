"""Table changelogs are co-partitioned with their source topics.

A worker that takes over partition p of ``chat.commands`` recovers its conversation rows from
partition p of each changelog, so the row of a conversation must be written to the partition its
commands are in. (Faust's own table writes JSON-encode a ``str`` key, which hashes differently:
a new owner then recovered other rows and answered ``not_found`` for existing conversations.)
"""

from __future__ import annotations

import orjson
from aiokafka import AIOKafkaConsumer

from chat.topics import changelog_name
from tests.integration.conftest import App
from tests.integration.helpers import (
    create_direct,
    eventually,
    send_acked,
    synced,
    topic_records,
)


async def partitions_of_keys(bootstrap: str, topic: str, keys: set[str]) -> dict[str, set[int]]:
    """Every partition in which a record with one of ``keys`` (raw bytes) was found."""
    found: dict[str, set[int]] = {}
    for record in await topic_records(bootstrap, topic):
        key = (record.key or b"").decode()
        if key in keys:
            found.setdefault(key, set()).add(record.partition)
    return found


async def partitions_of_bundled_keys(
    bootstrap: str, topic: str, keys: set[str]
) -> dict[str, set[int]]:
    """Like :func:`partitions_of_keys`, for a topic of bundles (``[[key, event], ...]``; a
    keyed single event, as these topics held before bundles, counts too)."""
    found: dict[str, set[int]] = {}
    for record in await topic_records(bootstrap, topic):
        value = orjson.loads(record.value)
        entries = value if isinstance(value, list) else [(record.key.decode(), value)]
        for key, _ in entries:
            if key in keys:
                found.setdefault(key, set()).add(record.partition)
    return found


async def test_table_rows_live_in_the_partition_of_their_source(
    app: App, clients, user_ids
) -> None:
    settings = app.settings
    alice = await app.client(user_ids.alice, edge=0)
    clients.append(alice)
    await synced(alice)
    conversation_ids = set()
    for i in range(12):
        conversation = await create_direct(alice, f"{user_ids.peer}-{i}")
        conversation_ids.add(conversation["id"])
        await send_acked(alice, conversation["id"], f"m{i}", "hi")

    commands = await partitions_of_bundled_keys(
        settings.kafka_bootstrap, settings.topic("commands"), conversation_ids
    )
    assert set(commands) == conversation_ids
    for table in ("conversations", "sequences"):
        rows = await eventually(
            lambda table=table: _all_found(
                settings.kafka_bootstrap, table, settings, conversation_ids
            )
        )
        for cid in conversation_ids:
            assert rows[cid] == commands[cid], (table, cid, rows[cid], commands[cid])

    # The user-keyed tables likewise, against chat.users.
    users = {alice.user} | {f"{user_ids.peer}-{i}" for i in range(12)}
    user_events = await partitions_of_bundled_keys(
        settings.kafka_bootstrap, settings.topic("users"), users
    )
    inbox_rows = await eventually(
        lambda: _all_found(settings.kafka_bootstrap, "inbox", settings, users)
    )
    for user in users:
        assert inbox_rows[user] == user_events[user], (user, inbox_rows[user], user_events[user])


async def _all_found(
    bootstrap: str, table: str, settings, keys: set[str]
) -> dict[str, set[int]] | None:
    found = await partitions_of_keys(bootstrap, changelog_name(settings, table), keys)
    return found if set(found) == keys else None


async def test_changelog_values_are_the_rows_as_json(app: App, clients, user_ids) -> None:
    alice = await app.client(user_ids.alice, edge=1)
    clients.append(alice)
    await synced(alice)
    conversation = await create_direct(alice, user_ids.bob)
    consumer = AIOKafkaConsumer(
        changelog_name(app.settings, "conversations"),
        bootstrap_servers=app.settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        row = None
        while row is None:
            batch = await consumer.getmany(timeout_ms=3000)
            assert batch, "the conversation row never reached its changelog"
            for records in batch.values():
                for record in records:
                    if record.key == conversation["id"].encode():
                        row = orjson.loads(record.value)
    finally:
        await consumer.stop()
    assert row["id"] == conversation["id"]
    assert sorted(row["members"]) == sorted([user_ids.alice, user_ids.bob])
