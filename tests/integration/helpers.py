"""Small helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer
from pymongo import AsyncMongoClient

from chat.topics import changelog_name
from tests.client import ChatClient

T = TypeVar("T")


async def synced(client: ChatClient, cursors: dict[str, int] | None = None) -> dict[str, Any]:
    """Send ``sync`` and return ``sync.done``. Once it is back, the session is registered with
    the sessions agent, so everything sent to the user afterwards reaches it live."""
    frame: dict[str, Any] = {"type": "sync"}
    if cursors is not None:
        frame["cursors"] = cursors
    return await client.request(frame, timeout=30)


async def eventually(
    probe: Callable[[], Awaitable[T | None]], timeout: float = 20.0, interval: float = 0.1
) -> T:
    """Poll ``probe`` until it returns something truthy (for state that settles asynchronously,
    like the MongoDB sink); fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not reached in {timeout}s (last: {last!r})")


async def stored_messages(mongo_url: str, db: str, conversation_id: str) -> list[dict[str, Any]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        cursor = client[db].messages.find({"conversation_id": conversation_id}).sort("seq", 1)
        return [m async for m in cursor]
    finally:
        await client.close()


async def create_direct(client: ChatClient, other: str) -> dict[str, Any]:
    reply = await client.request(
        {"type": "conversation.create", "kind": "direct", "members": [other]}
    )
    assert reply["type"] == "ok", reply
    conversation: dict[str, Any] = reply["conversation"]
    return conversation


# The headers of a WebSocket upgrade made by hand (RFC 6455's sample key).
UPGRADE_HEADERS = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


async def raw_upgrade(
    http: aiohttp.ClientSession,
    url: str,
    params: dict[str, str],
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """A WebSocket upgrade made by hand, to read the HTTP status and JSON body of a refusal
    (``ws_connect`` only raises)."""
    async with http.get(url, params=params, headers={**UPGRADE_HEADERS, **(headers or {})}) as r:
        try:
            body = await r.json(content_type=None)
        except ValueError:
            body = None
        return r.status, body


async def topic_records(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` from its beginning, read until nothing more arrives; in order
    within each partition, so the last record of a key is its latest."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: list[Any] = []
    try:
        while batch := await consumer.getmany(timeout_ms=1500):
            for records in batch.values():
                found.extend(records)
    finally:
        await consumer.stop()
    return found


async def live_session_of(app: Any, user: str) -> tuple[str, int]:
    """The session id and edge slot of the user's one live session, from the sessions table's
    changelog (the latest row of the user)."""
    changelog = changelog_name(app.settings, "sessions")
    rows = [
        r
        for r in await topic_records(app.settings.kafka_bootstrap, changelog)
        if r.key == user.encode()
    ]
    row = orjson.loads(rows[-1].value) if rows and rows[-1].value else None
    assert row and len(row["sessions"]) == 1, row
    ((session_id, live),) = row["sessions"].items()
    return session_id, int(live["slot"])


async def alice_and_bob(app: Any, clients: list[ChatClient], names: Any) -> list[ChatClient]:
    """``names.alice`` on edge 0 and ``names.bob`` on edge 1, both synced (so everything sent to
    them from now on arrives live), and closed with the test's other clients."""
    pair = [await app.client(names.alice, edge=0), await app.client(names.bob, edge=1)]
    clients += pair
    for client in pair:
        await synced(client)
    return pair


async def send_acked(
    client: ChatClient, conversation_id: str, client_msg_id: str, body: str = "x"
) -> dict[str, Any]:
    """``message.send``, asserting that the answer is its ``message.ack``."""
    ack = await client.request(
        {
            "type": "message.send",
            "conversation_id": conversation_id,
            "client_msg_id": client_msg_id,
            "body": body,
        }
    )
    assert ack["type"] == "message.ack", ack
    return ack


def listen_backlog(port: int) -> int:
    """The accept-queue capacity of the socket listening on ``port`` (``ss`` shows it as a
    listening socket's Send-Q)."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out, f"nothing listens on {port}"
    return int(out[2])
