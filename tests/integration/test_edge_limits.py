"""Edge behaviour at the limits: frame size, abuse, token expiry, dead edges."""

from __future__ import annotations

import asyncio
import os
import signal

from ops.supervisor import edge_spec
from tests.client import ChatClient
from tests.integration.conftest import TEST_ENV, App
from tests.integration.helpers import synced


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
    port = 28082
    sup = app.supervisor
    spec = edge_spec(9, {}, port, 2)
    spec.env.update(TEST_ENV)
    sup.start(spec)
    try:
        await asyncio.get_running_loop().run_in_executor(None, sup.wait_ready, [spec.name], 60)
        watcher = await app.client(user_ids.watcher, edge=0)
        clients.append(watcher)
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
