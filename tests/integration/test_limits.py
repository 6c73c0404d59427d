"""Every frame type and REST are rate-limited, history cursors and pages are bounded (#14,
item 2), against the real stack: one edge with strict limits, fuzzed at and past each."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio

from tests.client import ChatClient
from tests.conftest import PORT_SHIFT
from tests.integration.conftest import App
from tests.integration.helpers import create_direct, eventually, synced
from tests.integration.test_security import start_extra_edge

PORT = 28100 + PORT_SHIFT
STRICT = {
    "CHAT_CONVERSATION_OPS_PER_S": "0.1",
    "CHAT_CONVERSATION_OPS_BURST": "8",
    "CHAT_RECEIPTS_PER_S": "0.1",
    "CHAT_RECEIPTS_BURST": "5",
    "CHAT_SYNCS_PER_S": "0.1",
    "CHAT_SYNCS_BURST": "3",
    "CHAT_PRESENCE_USERS_PER_S": "0.1",
    "CHAT_PRESENCE_USERS_BURST": "10",
    "CHAT_PINGS_PER_S": "0.1",
    "CHAT_PINGS_BURST": "5",
    "CHAT_REST_PER_S": "0.1",
    "CHAT_REST_BURST": "40",
    "CHAT_REST_IP_PER_S": "0.1",
    "CHAT_REST_IP_BURST": "300",
    "CHAT_MAX_QUEUED_BYTES": "65536",
}
URL = f"http://127.0.0.1:{PORT}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def strict_edge(app_processes: App) -> AsyncIterator[str]:
    name = await start_extra_edge(app_processes, 40, PORT, 5, **STRICT)
    try:
        yield URL
    finally:
        app_processes.supervisor.stop(name)


async def burst(client: ChatClient, frame: dict[str, Any], count: int) -> list[dict[str, Any]]:
    replies = []
    for _ in range(count):
        replies.append(await client.request(frame))
    return replies


def limited(replies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = [r for r in replies if r["type"] == "error" and r["code"] == "rate_limited"]
    assert all(isinstance(r["retry_after_ms"], int) and r["retry_after_ms"] > 0 for r in out)
    return out


async def test_every_frame_type_is_limited_per_user(
    app: App, strict_edge: str, clients: list[ChatClient], user_ids: Any
) -> None:
    alice = await ChatClient.connect(strict_edge, app.token(user_ids.alice), user_ids.alice)
    clients.append(alice)
    cid = (await create_direct(alice, user_ids.bob))["id"]  # 1 of 8 conversation ops
    # At the burst: accepted; one past it: rate_limited (the refill is 1 per 10 s).
    creates = await burst(
        alice, {"type": "conversation.create", "kind": "group", "members": [], "title": "g"}, 8
    )
    assert sum(r["type"] == "ok" for r in creates) == 7 and len(limited(creates)) == 1
    group = next(r for r in creates if r["type"] == "ok")["conversation"]["id"]
    adds = await burst(
        alice,
        {"type": "conversation.add_members", "conversation_id": group, "members": ["x"]},
        2,
    )
    assert len(limited(adds)) == 2  # the same bucket as create
    removes = await burst(
        alice,
        {"type": "conversation.remove_members", "conversation_id": group, "members": ["x"]},
        1,
    )
    assert len(limited(removes)) == 1

    # Receipts answer nothing on success: the 6th and later answer rate_limited.
    for i in range(8):
        await alice.send({"type": "receipt.read", "conversation_id": cid, "seq": 0, "id": f"rr{i}"})
    await alice.wait_for(lambda f: f.get("id") == "rr7")
    errors = {f["id"] for f in alice.of_type("error") if str(f.get("id")).startswith("rr")}
    assert errors == {"rr5", "rr6", "rr7"}
    delivered = await alice.request({"type": "message.delivered", "conversation_id": cid, "seq": 0})
    assert limited([delivered])

    syncs = await burst(alice, {"type": "sync"}, 5)
    assert [r["type"] for r in syncs[:3]] == ["sync.done"] * 3 and len(limited(syncs)) == 2

    # Presence costs one token per user named: 10 in the bucket.
    nine = await alice.request({"type": "presence.query", "users": [f"u{i}" for i in range(9)]})
    assert nine["type"] == "ok"
    two = await alice.request({"type": "presence.subscribe", "users": ["a", "b"]})
    assert limited([two])
    one = await alice.request({"type": "presence.subscribe", "users": ["a"]})
    assert one["type"] == "ok"

    pings = await burst(alice, {"type": "ping"}, 7)
    assert sum(r["type"] == "pong" for r in pings) == 5 and len(limited(pings)) == 2

    # Per user, not per session: a second session of alice shares the buckets; bob does not.
    alice2 = await ChatClient.connect(strict_edge, app.token(user_ids.alice), user_ids.alice)
    bob = await ChatClient.connect(strict_edge, app.token(user_ids.bob), user_ids.bob)
    clients += [alice2, bob]
    assert limited([await alice2.request({"type": "ping"})])
    assert (await bob.request({"type": "ping"}))["type"] == "pong"
    # Refused frames count as neither invalid nor fatal: the session is still open.
    assert alice.close_code is None and not alice.ws.closed


async def test_rest_limited_per_user(app: App, strict_edge: str, user_ids: Any) -> None:
    headers = {"Authorization": f"Bearer {app.token(user_ids.carol)}"}
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(42):
            async with http.get(f"{strict_edge}/v1/conversations", headers=headers) as r:
                statuses.append(r.status)
                if r.status == 429:
                    body = await r.json()
                    assert body["error"] == "rate_limited" and body["retry_after_ms"] > 0
                    assert int(r.headers["Retry-After"]) >= 1
        assert statuses[:40] == [200] * 40 and statuses[40:] == [429, 429]
        # Another user is not affected.
        other = {"Authorization": f"Bearer {app.token(user_ids.dave)}"}
        async with http.get(f"{strict_edge}/v1/conversations", headers=other) as r:
            assert r.status == 200


async def test_conversations_are_paginated(
    app: App, clients: list[ChatClient], user_ids: Any
) -> None:
    alice = await app.client(user_ids.alice)
    clients.append(alice)
    ids = set()
    for i in range(5):
        reply = await alice.request(
            {"type": "conversation.create", "kind": "group", "members": [], "title": f"g{i}"}
        )
        ids.add(reply["conversation"]["id"])
    headers = {"Authorization": f"Bearer {app.token(user_ids.alice)}"}
    async with aiohttp.ClientSession() as http:

        async def everything_stored() -> bool:
            async with http.get(f"{app.edges[0]}/v1/conversations", headers=headers) as r:
                body = await r.json()
                return len(body["conversations"]) == 5 and body["next"] is None

        await eventually(everything_stored)
        pages: list[list[str]] = []
        after: str | None = None
        while True:
            params = {"limit": "2", **({"after": after} if after else {})}
            async with http.get(
                f"{app.edges[0]}/v1/conversations", headers=headers, params=params
            ) as r:
                assert r.status == 200
                body = await r.json()
            pages.append([c["id"] for c in body["conversations"]])
            after = body["next"]
            if after is None:
                break
        assert [len(p) for p in pages] == [2, 2, 1]
        flat = [cid for page in pages for cid in page]
        assert flat == sorted(ids)


BAD_CURSORS = [
    str(10**30),
    str(2**53 + 1),
    "9" * 17,
    "9" * 5000,  # int() of this raises its own ValueError (digit limit)
    "-1",
    "+5",
    " 5",
    "5 ",
    "1_000",
    "١٢",  # Arabic-Indic digits: int() takes them
    "0x10",
    "1e3",
    "1.5",
    "nan",
    "inf",
    "\x00",
    "%00",
    "[]",
    "true",
]
BAD_LIMITS = ["0", "201", str(10**30), "-5", "abc", "1.0", "٣"]
BAD_CONVERSATION_PAGES = [
    {"limit": "0"},
    {"limit": "501"},
    {"limit": str(10**30)},
    {"after": "nope"},
    {"after": "dm:a:a"},
    {"after": "grp:" + "g" * 32},
    {"after": "x" * 5000},
    {"limit": "2", "after": "\x00"},
]


async def test_bad_cursors_answer_400_never_500(
    app: App, clients: list[ChatClient], user_ids: Any
) -> None:
    alice = await app.client(user_ids.alice)
    clients.append(alice)
    await synced(alice)
    cid = (await create_direct(alice, user_ids.bob))["id"]
    headers = {"Authorization": f"Bearer {app.token(user_ids.alice)}"}
    url = f"{app.edges[0]}/v1/conversations/{cid}/messages"
    async with aiohttp.ClientSession() as http:

        async def stored() -> bool:
            async with http.get(url, headers=headers) as r:
                return r.status == 200

        await eventually(stored)
        tried = 0
        for name in ("before", "after"):
            for value in BAD_CURSORS:
                async with http.get(url, headers=headers, params={name: value}) as r:
                    assert r.status == 400, (name, value, r.status)
                    assert (await r.json())["error"] == "bad_request"
                tried += 1
        for value in BAD_LIMITS:
            async with http.get(url, headers=headers, params={"limit": value}) as r:
                assert r.status == 400, (value, r.status)
            tried += 1
        for params in BAD_CONVERSATION_PAGES:
            async with http.get(
                f"{app.edges[0]}/v1/conversations", headers=headers, params=params
            ) as r:
                assert r.status == 400, (params, r.status)
            tried += 1
        # At the bounds: accepted.
        for params in ({"before": str(2**53)}, {"after": "0"}, {"limit": "200"}, {"limit": "1"}):
            async with http.get(url, headers=headers, params=params) as r:
                assert r.status == 200, params
        # Random mutations of every parameter: 400 or 200, never a 5xx.
        rng = random.Random(14)
        alphabet = "0123456789-+_ .eE\x00\u0663x%"
        for _ in range(300):
            params = {
                rng.choice(["before", "after", "limit"]): "".join(
                    rng.choice(alphabet) for _ in range(rng.randint(0, 40))
                )
            }
            async with http.get(url, headers=headers, params=params) as r:
                assert r.status in (200, 400), (params, r.status)
            tried += 1
        print(f"{tried} bad REST parameters tried, no 5xx")


async def silent_session(
    port: int, token: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket session whose client never reads (a tiny receive buffer, so the edge's
    socket fills quickly)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=2**24)
    writer.write(
        f"GET /v1/ws?access_token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def close_code_of(stream: bytes) -> int | None:
    """The code of the close frame in a server's (unmasked) frame stream, if any."""
    i = 0
    while i + 2 <= len(stream):
        opcode, length = stream[i] & 0x0F, stream[i + 1] & 0x7F
        i += 2
        if length == 126:
            (length,) = struct.unpack(">H", stream[i : i + 2])
            i += 2
        elif length == 127:
            (length,) = struct.unpack(">Q", stream[i : i + 8])
            i += 8
        if opcode == 0x8:
            return int(struct.unpack(">H", stream[i : i + 2])[0])
        i += length
    return None


async def test_queue_bounded_in_bytes_closes_a_reader_that_does_not_read(
    app: App, strict_edge: str, clients: list[ChatClient], user_ids: Any
) -> None:
    """64 KiB of queued frame text on this edge (CHAT_MAX_QUEUED_BYTES): 1,500 messages of
    4,000 characters are far fewer than the 10,000-frame bound, but far more bytes."""
    reader, writer = await silent_session(PORT, app.token(user_ids.victim))
    try:
        sender = await app.client(user_ids.sender)
        clients.append(sender)
        cid = (await create_direct(sender, user_ids.victim))["id"]
        await asyncio.sleep(1.0)  # the victim's session.open reaches the sessions agent
        body = "x" * 4000
        for i in range(1500):
            await sender.send(
                {
                    "type": "message.send",
                    "conversation_id": cid,
                    "client_msg_id": f"q{i}",
                    "body": body,
                    "id": f"q{i}",
                }
            )
        await sender.wait_for(lambda f: f.get("id") == "q1499", timeout=60)
        acks = sender.of_type("message.ack")
        assert len(acks) == 1500  # the sender is not affected
        await asyncio.sleep(2.0)
        # Now read what the edge wrote: messages, then its close frame with 1013.
        received = bytearray()
        while chunk := await asyncio.wait_for(reader.read(1 << 20), 30):
            received += chunk
        assert close_code_of(bytes(received)) == 1013
        # Far fewer than the 1,500 messages (6 MB) reached it: the rest was not queued.
        assert len(received) < 1500 * 4000 / 2
    finally:
        writer.close()


async def test_fuzz_new_rest_endpoints(app: App, user_ids: Any) -> None:
    """Random `after`/`limit` on the conversation pages and random credentials on the ticket
    endpoint: 200, 400 or 401, never a 5xx."""
    rng = random.Random(2)
    token = app.token(user_ids.alice)
    alphabet = "grpdm:0123456789abcdef-_.@%\x00\u00e9 "
    tried = 0
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            params = {
                "after": "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))),
                "limit": str(rng.choice([0, 1, 499, 500, 501, -1, 10**20])),
            }
            async with http.get(
                f"{app.edges[0]}/v1/conversations",
                headers={"Authorization": f"Bearer {token}"},
                params=params,
            ) as r:
                assert r.status in (200, 400), (params, r.status)
            tried += 1
        credentials = [
            "",
            "Bearer",
            "Bearer ",
            "Basic abc",
            f"Bearer {token}x",
            token,
        ]
        credentials += [
            "Bearer " + "".join(rng.choice("abcXYZ0129.-_") for _ in range(rng.randint(1, 300)))
            for _ in range(100)
        ]
        for auth in credentials:
            async with http.post(
                f"{app.edges[0]}/v1/ws-ticket",
                headers={"Authorization": auth},
                data=rng.randbytes(rng.randint(0, 2000)),
            ) as r:
                assert r.status == 401, (auth, r.status)
            tried += 1
        # With a good token, whatever the body: a ticket.
        for _ in range(20):
            async with http.post(
                f"{app.edges[0]}/v1/ws-ticket",
                headers={"Authorization": f"Bearer {token}"},
                data=rng.randbytes(rng.randint(0, 2000)),
            ) as r:
                assert r.status == 200
            tried += 1
    print(f"{tried} fuzzed calls of the new REST endpoints, no 5xx")


async def test_rest_limited_per_client_ip_before_authentication(strict_edge: str) -> None:
    """300 calls per client IP at once on this edge, authenticated or not; the client IP is
    the X-Forwarded-For hop nginx (a trusted 127.0.0.1 here) adds."""
    rng = random.Random()
    client = f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    other = f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    async with aiohttp.ClientSession() as http:

        async def call(ip: str, path: str = "/v1/conversations") -> int:
            async with http.get(f"{strict_edge}{path}", headers={"X-Forwarded-For": ip}) as r:
                return r.status

        statuses = [await call(client) for _ in range(300)]
        assert statuses == [401] * 300  # at the burst: answered (unauthenticated)
        assert await call(client) == 429  # one past it
        assert await call(client, "/v1/dev/token") == 429  # every /v1/ call counts
        assert await call(other) == 401  # another client is not affected
        # Health, metrics and the web client's files are not counted.
        assert await call(client, "/healthz") == 200
