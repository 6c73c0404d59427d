"""Offline inbox and sync: nothing lost while offline, cursors, truncation, store fallback."""

from __future__ import annotations

from tests.integration.conftest import App
from tests.integration.helpers import create_direct, synced


async def send_many(client, cid: str, n: int, prefix: str) -> list[int]:
    for i in range(n):
        await client.send(
            {
                "type": "message.send",
                "conversation_id": cid,
                "client_msg_id": f"{prefix}{i}",
                "body": f"{prefix} {i}",
                "id": f"{prefix}{i}",
            }
        )
    seqs = []
    for i in range(n):
        ack = await client.wait_for(lambda f, i=i: f.get("id") == f"{prefix}{i}", timeout=30)
        assert ack["type"] == "message.ack", ack
        seqs.append(ack["seq"])
    return seqs


async def test_offline_user_gets_everything_on_sync(app: App, clients, user_ids) -> None:
    alice = await app.client(user_ids.alice, edge=0)
    clients.append(alice)
    cid = (await create_direct(alice, user_ids.bob))["id"]
    seqs = await send_many(alice, cid, 5, "off")

    # Bob was never connected. Without cursors, sync uses his delivered cursor (0).
    bob = await app.client(user_ids.bob, edge=1)
    clients.append(bob)
    done = await synced(bob)
    assert done["type"] == "sync.done"
    assert done["conversations"] == {cid: 5}
    assert done["truncated"] is False
    got = bob.messages(cid)
    assert [m["seq"] for m in got] == seqs == [1, 2, 3, 4, 5]
    assert [m["body"] for m in got] == [f"off {i}" for i in range(5)]

    # Confirm delivery of 1..3: a later cursorless sync starts after 3.
    await bob.send({"type": "message.delivered", "conversation_id": cid, "seq": 3})
    await alice.wait_for(
        lambda f: f["type"] == "receipt" and f["kind"] == "delivered" and f["seq"] == 3
    )
    await bob.close()
    bob2 = await app.client(user_ids.bob, edge=0)
    clients.append(bob2)
    await synced(bob2)
    assert [m["seq"] for m in bob2.messages(cid)] == [4, 5]

    # With explicit cursors: everything after them.
    bob3 = await app.client(user_ids.bob, edge=1)
    clients.append(bob3)
    await synced(bob3, {cid: 1})
    assert [m["seq"] for m in bob3.messages(cid)] == [2, 3, 4, 5]


async def test_sync_truncates_at_500_and_reads_old_messages_from_store(
    app: App, clients, user_ids
) -> None:
    alice = await app.client(user_ids.alice, edge=0)
    clients.append(alice)
    cid = (await create_direct(alice, user_ids.bob))["id"]
    # More than the inbox keeps (200 per conversation) and more than one sync page (500).
    await send_many(alice, cid, 520, "t")

    bob = await app.client(user_ids.bob, edge=1)
    clients.append(bob)
    done = await synced(bob)
    assert done["truncated"] is True
    assert done["conversations"][cid] == 520
    seqs = [m["seq"] for m in bob.messages(cid)]
    # 1..300 came from the store (older than the inbox keeps), 301..500 from the inbox.
    assert seqs == list(range(1, 501))

    # The client pages on: a sync from its cursor returns the rest, not truncated.
    more = await app.client(user_ids.bob, edge=0)
    clients.append(more)
    done2 = await synced(more, {cid: 500})
    assert done2["truncated"] is False
    assert [m["seq"] for m in more.messages(cid)] == list(range(501, 521))


async def test_sync_without_conversations(app: App, clients, user_ids) -> None:
    loner = await app.client(user_ids.loner)
    clients.append(loner)
    done = await synced(loner)
    assert done == {"type": "sync.done", "id": done["id"], "conversations": {}, "truncated": False}
