"""REST: conversations with last_seq/read_seq, history paging, 404 for non-members."""

from __future__ import annotations

import aiohttp

from tests.integration.conftest import App
from tests.integration.helpers import create_direct, eventually, synced


async def get(app: App, user: str, path: str, edge: int = 0) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            app.edges[edge] + path, headers={"Authorization": f"Bearer {app.token(user)}"}
        ) as resp:
            return resp.status, await resp.json()


async def test_history_and_conversations(app: App, clients, user_ids) -> None:
    alice = await app.client(user_ids.alice)
    clients.append(alice)
    cid = (await create_direct(alice, user_ids.bob))["id"]
    for i in range(1, 121):
        await alice.send(
            {
                "type": "message.send",
                "conversation_id": cid,
                "client_msg_id": f"h{i}",
                "body": f"body {i}",
                "id": f"h{i}",
            }
        )
    await alice.wait_for(lambda f: f.get("id") == "h120", timeout=30)
    await alice.send({"type": "receipt.read", "conversation_id": cid, "seq": 120})

    async def all_stored() -> dict | None:
        _, body = await get(app, alice.user, "/v1/conversations")
        conv = next((c for c in body["conversations"] if c["id"] == cid), None)
        return conv if conv and conv["last_seq"] == 120 and conv["read_seq"] == 120 else None

    conv = await eventually(all_stored)
    assert conv["kind"] == "direct" and sorted(conv["members"]) == sorted(
        [alice.user, user_ids.bob]
    )

    status, latest = await get(app, alice.user, f"/v1/conversations/{cid}/messages", edge=1)
    assert status == 200
    assert [m["seq"] for m in latest["messages"]] == list(range(71, 121))  # default 50, latest
    first = latest["messages"][0]
    assert set(first) == {"conversation_id", "seq", "sender", "body", "ts", "client_msg_id"}
    # Cached page served again identically.
    assert (await get(app, alice.user, f"/v1/conversations/{cid}/messages"))[1] == latest

    _, before = await get(app, alice.user, f"/v1/conversations/{cid}/messages?before=71&limit=30")
    assert [m["seq"] for m in before["messages"]] == list(range(41, 71))
    _, after = await get(app, alice.user, f"/v1/conversations/{cid}/messages?after=100&limit=200")
    assert [m["seq"] for m in after["messages"]] == list(range(101, 121))
    _, both = await get(app, alice.user, f"/v1/conversations/{cid}/messages?after=10&before=15")
    assert [m["seq"] for m in both["messages"]] == [11, 12, 13, 14]

    for bad in ("limit=0", "limit=201", "before=abc", "after=-1"):
        status, body = await get(app, alice.user, f"/v1/conversations/{cid}/messages?{bad}")
        assert status == 400 and body["error"] == "bad_request"


async def test_non_members_and_unknown_ids_get_the_same_404(app: App, clients, user_ids) -> None:
    alice = await app.client(user_ids.alice)
    clients.append(alice)
    await synced(alice)
    cid = (await create_direct(alice, user_ids.bob))["id"]
    await alice.request(
        {"type": "message.send", "conversation_id": cid, "client_msg_id": "s", "body": "secret"}
    )

    async def visible() -> bool:
        return (await get(app, alice.user, f"/v1/conversations/{cid}/messages"))[0] == 200

    await eventually(visible)
    for path in (
        f"/v1/conversations/{cid}/messages",
        f"/v1/conversations/{cid}/receipts",
        "/v1/conversations/grp:" + "f" * 32 + "/messages",
        "/v1/conversations/nonsense/messages",
    ):
        status, body = await get(app, user_ids.mallory, path)
        assert (status, body) == (404, {"error": "not_found"})
    status, body = await get(app, user_ids.mallory, "/v1/conversations")
    assert status == 200 and body == {"conversations": [], "next": None}

    async with aiohttp.ClientSession() as http:
        async with http.get(app.edges[0] + "/v1/conversations") as resp:
            assert resp.status == 401 and await resp.json() == {"error": "unauthorized"}
