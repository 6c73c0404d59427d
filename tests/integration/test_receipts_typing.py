"""Receipts (cumulative, monotonic, broadcast, stored) and typing (throttle and expiry)."""

from __future__ import annotations

import time

import aiohttp

from tests.integration.conftest import App
from tests.integration.helpers import create_direct, eventually, synced


async def test_receipts_are_monotonic_broadcast_and_served(app: App, clients, user_ids) -> None:
    alice = await app.client(user_ids.alice, edge=0)
    bob = await app.client(user_ids.bob, edge=1)
    bob_tablet = await app.client(user_ids.bob, edge=0)
    clients += [alice, bob, bob_tablet]
    for c in clients:
        await synced(c)
    cid = (await create_direct(alice, bob.user))["id"]
    for i in range(3):
        await alice.request(
            {"type": "message.send", "conversation_id": cid, "client_msg_id": f"r{i}", "body": "x"}
        )
    await bob.wait_for(lambda f: len(bob.messages(cid)) == 3)

    await bob.send({"type": "receipt.read", "conversation_id": cid, "seq": 2})
    for watcher in (alice, bob_tablet, bob):  # the reader's other devices included
        read = await watcher.wait_for(lambda f: f["type"] == "receipt" and f["kind"] == "read")
        assert read == {
            "type": "receipt",
            "conversation_id": cid,
            "user": bob.user,
            "kind": "read",
            "seq": 2,
        }
        # Reading implies delivery.
        await watcher.wait_for(
            lambda f: f["type"] == "receipt" and f["kind"] == "delivered" and f["seq"] == 2
        )

    # Lower than the current cursor: ignored. Beyond last_seq: capped.
    await bob.send({"type": "receipt.read", "conversation_id": cid, "seq": 1})
    await bob.send({"type": "receipt.read", "conversation_id": cid, "seq": 99})
    capped = await alice.wait_for(
        lambda f: f["type"] == "receipt" and f["kind"] == "read" and f["seq"] != 2
    )
    assert capped["seq"] == 3
    reads = [f["seq"] for f in alice.of_type("receipt") if f["kind"] == "read"]
    assert reads == [2, 3]

    async def served() -> dict | None:
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{app.edges[1]}/v1/conversations/{cid}/receipts",
                headers={"Authorization": f"Bearer {app.token(alice.user)}"},
            ) as r:
                if r.status == 404:
                    return None  # the sink has not stored the new conversation yet
                assert r.status == 200
                body = await r.json()
        got = body["receipts"].get(bob.user)
        return body if got == {"read": 3, "delivered": 3} else None

    body = await eventually(served)
    assert body["receipts"][bob.user] == {"read": 3, "delivered": 3}


async def test_typing_relay_throttle_and_expiry(app: App, clients, user_ids) -> None:
    alice = await app.client(user_ids.alice, edge=0)
    bob = await app.client(user_ids.bob, edge=1)
    clients += [alice, bob]
    for c in clients:
        await synced(c)
    cid = (await create_direct(alice, bob.user))["id"]

    started = time.monotonic()
    for _ in range(5):  # within 3 s: one relayed start
        await alice.send({"type": "typing", "conversation_id": cid, "state": "start"})
    first = await bob.wait_for(lambda f: f["type"] == "typing")
    assert first == {"type": "typing", "conversation_id": cid, "user": alice.user, "state": "start"}
    # Not refreshed: the server ends it by itself after 6 s.
    stop = await bob.wait_for(lambda f: f["type"] == "typing" and f["state"] == "stop", timeout=15)
    assert stop["user"] == alice.user
    assert time.monotonic() - started >= 5.0
    starts = [f for f in bob.of_type("typing") if f["state"] == "start"]
    assert len(starts) == 1
    assert alice.of_type("typing") == []  # not echoed to the typer

    # A message from the typer ends the indicator at once.
    mark = len(bob.frames)
    await alice.send({"type": "typing", "conversation_id": cid, "state": "start"})
    await bob.wait_for(lambda f: f["type"] == "typing" and f["state"] == "start", after=mark)
    await alice.request(
        {
            "type": "message.send",
            "conversation_id": cid,
            "client_msg_id": "t",
            "body": "done typing",
        }
    )
    await bob.wait_for(
        lambda f: f["type"] == "typing" and f["state"] == "stop", after=mark, timeout=3
    )
