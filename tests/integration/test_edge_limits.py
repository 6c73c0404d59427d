"""Edge behaviour at the limits: frame size, abuse, token expiry, dead edges."""

from __future__ import annotations

import asyncio
import os
import signal
import socket

from aiokafka import AIOKafkaProducer

from chat.records import deliveries, frame_delivery
from ops.supervisor import edge_spec
from tests.client import ChatClient
from tests.integration.conftest import EDGE_PORTS, TEST_ENV, App
from tests.integration.helpers import (
    UPGRADE_HEADERS,
    create_direct,
    eventually,
    live_session_of,
    synced,
)


async def test_frame_over_64k_closes_with_1009(app: App, clients, user_ids) -> None:
    alice = await app.client(user_ids.alice)
    clients.append(alice)
    await alice.send_raw('{"type":"ping","pad":"' + "x" * (64 * 1024) + '"}')
    assert await alice.wait_closed() == 1009
    # The node still serves others.
    bob = await app.client(user_ids.bob)
    clients.append(bob)
    assert (await bob.request({"type": "ping"}))["type"] == "pong"


async def test_flood_of_invalid_frames_closes_with_1008(app: App, clients, user_ids) -> None:
    alice = await app.client(user_ids.alice)
    clients.append(alice)
    for _ in range(60):
        await alice.send_raw("{broken")
    assert await alice.wait_closed() == 1008
    errors = alice.of_type("error")
    assert errors and all(e["code"] == "bad_request" for e in errors)


async def test_binary_frames_are_refused_with_an_error(app: App, clients, user_ids) -> None:
    alice = await app.client(user_ids.alice)
    clients.append(alice)
    await alice.send_raw(b"\x00\x01binary")
    err = await alice.wait_for(lambda f: f["type"] == "error")
    assert err["code"] == "bad_request"
    assert (await alice.request({"type": "ping"}))["type"] == "pong"


async def test_session_closes_with_4003_when_token_expires(app: App, user_ids) -> None:
    token = app.token(user_ids.alice, ttl=2)
    client = await ChatClient.connect(app.edges[0], token, user_ids.alice)
    try:
        # Leeway is added to exp, so allow for it.
        code = await client.wait_closed(timeout=app.settings.jwt_leeway_s + 15)
        assert code == 4003
    finally:
        await client.close()


async def test_dead_edge_sessions_expire_and_users_go_offline(app: App, clients, user_ids) -> None:
    """kill -9 an edge: its sessions are expired by the workers (liveness key in Redis) and
    their users go offline within 30 s."""
    port = EDGE_PORTS[1] + 1
    sup = app.supervisor
    spec = edge_spec(9, {}, port, 2)
    spec.env.update(TEST_ENV)
    sup.start(spec)
    try:
        await asyncio.get_running_loop().run_in_executor(None, sup.wait_ready, [spec.name], 60)
        watcher = await app.client(user_ids.watcher, edge=0)
        clients.append(watcher)
        await create_direct(watcher, user_ids.doomed)  # presence is shown to contacts only
        await watcher.request({"type": "presence.subscribe", "users": [user_ids.doomed]})
        doomed = await ChatClient.connect(
            f"http://127.0.0.1:{port}", app.token(user_ids.doomed), user_ids.doomed
        )
        clients.append(doomed)
        await synced(doomed)
        await watcher.wait_for(lambda f: f["type"] == "presence" and f["status"] == "online")

        os.killpg(sup.running[spec.name].proc.pid, signal.SIGKILL)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        offline = await watcher.wait_for(
            lambda f: f["type"] == "presence" and f["status"] == "offline", timeout=30
        )
        assert offline["user"] == user_ids.doomed
        assert loop.time() - t0 < 30
    finally:
        sup.kill(spec.name)


async def test_a_client_that_stops_reading_is_closed_not_buffered(
    app: App, clients, user_ids
) -> None:
    """A session whose client does not read its socket may queue up to 10,000 frames on the
    edge; beyond that the edge closes it (1013) instead of buffering without end, and the node
    goes on serving everyone else."""
    port = int(app.edges[0].rsplit(":", 1)[1])
    # A hand-made client with a tiny receive window that never reads after the upgrade.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    token = app.token(user_ids.slow)
    writer.write(
        (
            f"GET /v1/ws?access_token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in UPGRADE_HEADERS.items())
            + "\r\n"
        ).encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    session_id, slot = await eventually(lambda: _session_or_none(app, user_ids.slow))

    def frame(seq: int) -> dict[str, object]:
        return {
            "type": "message",
            "conversation_id": f"dm:{user_ids.alice}:{user_ids.slow}",
            "seq": seq,
            "sender": user_ids.alice,
            "body": "x" * 2000,
            "ts": 1,
            "client_msg_id": f"c{seq}",
        }

    producer = AIOKafkaProducer(bootstrap_servers=app.settings.kafka_bootstrap, linger_ms=20)
    await producer.start()
    try:
        sends = [
            await producer.send(
                app.settings.topic("deliver"),
                deliveries([frame_delivery([session_id], frame(seq))]),
                partition=slot,
            )
            for seq in range(1, 12_001)
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()

    # The edge gives up on the session: its socket reaches EOF once the little that was
    # written is read (12,000 frames of 2 KB would be 24 MB).
    received = 0
    async with asyncio.timeout(60):
        while chunk := await reader.read(65536):
            received += len(chunk)
    writer.close()
    assert received < 12_000 * 2000 // 2, received
    # The node still serves others.
    bob = await app.client(user_ids.bob, edge=0)
    clients.append(bob)
    assert (await bob.request({"type": "ping"}))["type"] == "pong"


async def _session_or_none(app: App, user: str) -> tuple[str, int] | None:
    try:
        return await live_session_of(app, user)
    except AssertionError:
        return None
