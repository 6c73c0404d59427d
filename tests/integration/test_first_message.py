"""The first message end to end: two real WebSocket clients on the two edge nodes, through real
Kafka, the router and sessions agents, into the MongoDB-protocol store."""

from __future__ import annotations

import aiohttp

from chat import protocol
from tests.integration.conftest import App
from tests.integration.helpers import (
    create_direct,
    eventually,
    raw_upgrade,
    stored_messages,
    synced,
)


async def test_message_crosses_both_edges_and_lands_in_store(app: App, clients, user_ids) -> None:
    alice = await app.client(user_ids.alice, edge=0)
    bob = await app.client(user_ids.bob, edge=1)
    clients += [alice, bob]
    await synced(alice)
    await synced(bob)

    conversation = await create_direct(alice, bob.user)
    assert conversation["id"] == protocol.direct_conversation_id(alice.user, bob.user)
    assert sorted(conversation["members"]) == sorted([alice.user, bob.user])
    assert conversation["kind"] == "direct"
    created = await bob.wait_for(lambda f: f["type"] == "conversation")
    assert created["event"] == "created"
    assert created["conversation"]["id"] == conversation["id"]

    ack = await alice.request(
        {
            "type": "message.send",
            "conversation_id": conversation["id"],
            "client_msg_id": "m1",
            "body": "hello bob",
        }
    )
    assert ack["type"] == "message.ack"
    assert ack["seq"] == 1 and ack["client_msg_id"] == "m1"
    assert isinstance(ack["ts"], int)

    message = await bob.wait_for(lambda f: f["type"] == "message")
    assert message == {
        "type": "message",
        "conversation_id": conversation["id"],
        "seq": 1,
        "sender": alice.user,
        "body": "hello bob",
        "ts": ack["ts"],
        "client_msg_id": "m1",
    }
    # The sending session does not get its own message back.
    assert alice.messages(conversation["id"]) == []

    async def in_store() -> list[dict[str, object]]:
        return await stored_messages(
            app.settings.mongo_url, app.settings.mongo_db, conversation["id"]
        )

    stored = await eventually(in_store)
    assert [(m["_id"], m["seq"], m["body"], m["sender"]) for m in stored] == [
        (f"{conversation['id']}:1", 1, "hello bob", alice.user)
    ]


async def test_create_direct_is_idempotent(app: App, clients, user_ids) -> None:
    alice = await app.client(user_ids.alice)
    clients.append(alice)
    first = await create_direct(alice, user_ids.bob)
    second = await create_direct(alice, user_ids.bob)
    assert first["id"] == second["id"]
    assert first["members"] == second["members"]


async def test_bad_input_gets_errors_and_connection_stays_usable(
    app: App, clients, user_ids
) -> None:
    alice = await app.client(user_ids.alice, edge=1)
    clients.append(alice)

    await alice.send_raw("this is not json")
    error = await alice.wait_for(lambda f: f["type"] == "error")
    assert error["code"] == "bad_request"

    unknown = await alice.request({"type": "no.such.thing"})
    assert unknown["type"] == "error" and unknown["code"] == "unknown_type"

    missing = await alice.request({"type": "message.send", "conversation_id": "dm:a:b"})
    assert missing["type"] == "error" and missing["code"] == "bad_request"

    await alice.send_raw("[1, 2, 3]")
    await alice.wait_for(lambda f: f["type"] == "error" and "object" in f["message"])

    pong = await alice.request({"type": "ping"})
    assert pong["type"] == "pong"


async def test_upgrade_without_valid_token_is_refused(app: App) -> None:
    async with aiohttp.ClientSession() as http:
        for params in ({}, {"access_token": "not-a-jwt"}):
            status, body = await raw_upgrade(http, app.edges[0] + "/v1/ws", params)
            assert status == 401
            assert body == {"error": "unauthorized"}


async def test_health_endpoints(app: App) -> None:
    async with aiohttp.ClientSession() as http:
        for edge in app.edges:
            async with http.get(edge + "/healthz") as resp:
                assert resp.status == 200
            async with http.get(edge + "/readyz") as resp:
                assert resp.status == 200
                assert (await resp.json())["checks"] == {
                    "redis": True,
                    "kafka": True,
                    "mongo": True,
                }
            async with http.get(edge + "/metrics") as resp:
                assert resp.status == 200
                assert "chat_edge_connections" in await resp.text()
