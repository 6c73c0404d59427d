"""Redis outage: the documented degradation holds, nothing acknowledged is lost, and the system
recovers on its own when Redis returns (docs/security.md, "When Redis is unreachable")."""

from __future__ import annotations

import subprocess

import aiohttp

from tests.conftest import STACK, App
from tests.integration.helpers import (
    alice_and_bob,
    create_direct,
    eventually,
    send_acked,
    stored_messages,
)


def redis(action: str) -> None:
    subprocess.run([STACK, action, "redis"], check=True, capture_output=True)


async def test_redis_outage_degrades_without_losing_messages(app: App, clients, user_ids) -> None:
    alice, bob = await alice_and_bob(app, clients, user_ids)
    cid = (await create_direct(alice, bob.user))["id"]
    watch = await alice.request({"type": "presence.subscribe", "users": [bob.user]})
    assert watch["presence"][0]["status"] == "online"

    redis("stop")
    try:
        # Sending and delivery do not need Redis; rate limits fall back to local buckets.
        acks = []
        for i in range(20):
            acks.append((await send_acked(alice, cid, f"o{i}", f"during {i}"))["seq"])
        await bob.wait_for(lambda f: len(bob.messages(cid)) == 20, timeout=30)
        assert [m["seq"] for m in bob.messages(cid)] == acks
        # Presence look-ups say so plainly.
        q = await alice.request({"type": "presence.query", "users": [bob.user]})
        assert q["type"] == "error" and q["code"] == "unavailable"
        async with aiohttp.ClientSession() as http:
            async with http.get(app.edges[0] + "/readyz") as resp:
                assert resp.status == 503
                assert (await resp.json())["checks"]["redis"] is False
        # A new connection still works (local connection count, local upgrade buckets).
        carol = await app.client(user_ids.carol, edge=1)
        clients.append(carol)
        assert (await carol.request({"type": "ping"}))["type"] == "pong"
    finally:
        redis("start")

    # Back to normal: the presence cache is rebuilt by the workers (Redis came back empty).
    async def presence_back() -> dict | None:
        q = await alice.request({"type": "presence.query", "users": [bob.user]})
        return q if q["type"] == "ok" and q["presence"][0]["status"] == "online" else None

    await eventually(presence_back, timeout=30)
    async with aiohttp.ClientSession() as http:

        async def ready() -> bool:
            async with http.get(app.edges[0] + "/readyz") as resp:
                return resp.status == 200

        await eventually(ready, timeout=30)
    # Bob's sessions were not expired by the outage: he still gets messages live.
    ack = await alice.request(
        {"type": "message.send", "conversation_id": cid, "client_msg_id": "after", "body": "after"}
    )
    got = await bob.wait_for(lambda f: f.get("client_msg_id") == "after")
    assert got["seq"] == ack["seq"] == 21

    async def all_stored() -> list | None:
        docs = await stored_messages(app.settings.mongo_url, app.settings.mongo_db, cid)
        return docs if len(docs) == 21 else None

    docs = await eventually(all_stored)
    assert [d["seq"] for d in docs] == list(range(1, 22))
