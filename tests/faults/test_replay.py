"""Replay: the read side rebuilt from the topics into an empty database equals the original."""

from __future__ import annotations

import time
from typing import Any

from pymongo import AsyncMongoClient

from sinks.replay import replay_store
from tests.conftest import App
from tests.faults.test_process_faults import report
from tests.integration.helpers import create_direct, eventually, synced


async def snapshot(app: App, db: str, cids: list[str]) -> dict[str, Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(app.settings.mongo_url)
    try:
        d = client[db]
        query = {"conversation_id": {"$in": cids}}
        messages = [
            m async for m in d.messages.find(query).sort([("conversation_id", 1), ("seq", 1)])
        ]
        conversations = [
            c async for c in d.conversations.find({"_id": {"$in": cids}}).sort("_id", 1)
        ]
        receipts = [r async for r in d.receipts.find(query).sort("_id", 1)]
        return {"messages": messages, "conversations": conversations, "receipts": receipts}
    finally:
        await client.close()


async def test_replay_store_rebuilds_an_identical_read_side(app: App, clients, user_ids) -> None:
    alice = await app.client(user_ids.alice, edge=0)
    bob = await app.client(user_ids.bob, edge=1)
    clients += [alice, bob]
    await synced(bob)
    direct = (await create_direct(alice, bob.user))["id"]
    group = (
        await alice.request(
            {
                "type": "conversation.create",
                "kind": "group",
                "members": [bob.user],
                "title": "replay",
            }
        )
    )["conversation"]["id"]
    for i in range(30):
        for cid in (direct, group):
            await alice.send(
                {
                    "type": "message.send",
                    "conversation_id": cid,
                    "client_msg_id": f"{i}",
                    "body": f"{cid} {i}",
                }
            )
    await bob.wait_for(lambda f: len(bob.messages(direct)) == 30 and len(bob.messages(group)) == 30)
    await bob.send({"type": "receipt.read", "conversation_id": direct, "seq": 17})
    await alice.wait_for(lambda f: f["type"] == "receipt" and f["kind"] == "read")
    cids = [direct, group]

    async def original_complete() -> dict[str, Any] | None:
        snap = await snapshot(app, app.settings.mongo_db, cids)
        return snap if len(snap["messages"]) == 60 and len(snap["receipts"]) >= 1 else None

    original = await eventually(original_complete, timeout=30)
    target = f"{app.settings.mongo_db}_replay"
    t0 = time.monotonic()
    replayed = await replay_store(app.settings, target, drop=True)
    seconds = time.monotonic() - t0
    rebuilt = await snapshot(app, target, cids)
    assert rebuilt["messages"] == original["messages"]
    assert rebuilt["conversations"] == original["conversations"]
    assert rebuilt["receipts"] == original["receipts"]
    assert [m["seq"] for m in rebuilt["messages"] if m["conversation_id"] == direct] == list(
        range(1, 31)
    )
    report("replay store", {"records": replayed, "seconds": round(seconds, 1)})
