"""Security controls against the real stack: rate limits, connection limits, Origin, TLS."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ops.supervisor import edge_spec
from tests.client import ChatClient
from tests.integration.conftest import TEST_ENV, App
from tests.integration.helpers import (
    create_direct,
    eventually,
    raw_upgrade,
    stored_messages,
    synced,
)


async def start_extra_edge(app: App, index: int, port: int, slot: int, **env: str) -> str:
    spec = edge_spec(index, {}, port, slot)
    spec.env.update({**TEST_ENV, **env})
    scheme = "https" if "CHAT_TLS_CERT" in env else "http"
    spec.ready_url = f"{scheme}://127.0.0.1:{port}/healthz" if scheme == "https" else spec.ready_url
    app.supervisor.start(spec)
    if scheme == "https":
        ctx = ssl.create_default_context(cafile=env["CHAT_TLS_CERT"])

        async def up() -> bool:
            try:
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"https://127.0.0.1:{port}/readyz", ssl=ctx) as r:
                        return r.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(up, timeout=60, interval=0.3)
    else:
        await asyncio.get_running_loop().run_in_executor(
            None, app.supervisor.wait_ready, [spec.name], 60
        )
    return spec.name


async def connect_unless_refused(app: App, url: str, user: str) -> ChatClient | None:
    """A session for ``user`` on the edge at ``url``, or None while it refuses with 429 (the user
    is at the connection limit)."""
    try:
        return await ChatClient.connect(url, app.token(user), user)
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 429
        return None


async def test_message_rate_limit_refuses_with_retry_after_and_loses_nothing(
    app: App, clients, user_ids
) -> None:
    name = await start_extra_edge(
        app, 20, 28090, 3, CHAT_MESSAGES_PER_S="5", CHAT_MESSAGES_BURST="10"
    )
    try:
        alice = await ChatClient.connect(
            "http://127.0.0.1:28090", app.token(user_ids.alice), user_ids.alice
        )
        clients.append(alice)
        bob = await app.client(user_ids.bob, edge=0)
        clients.append(bob)
        await synced(bob)
        cid = (await create_direct(alice, bob.user))["id"]
        for i in range(30):
            await alice.send(
                {
                    "type": "message.send",
                    "conversation_id": cid,
                    "client_msg_id": f"x{i}",
                    "body": f"{i}",
                    "id": i,
                }
            )
        replies = [await alice.wait_for(lambda f, i=i: f.get("id") == i) for i in range(30)]
        acked = [r for r in replies if r["type"] == "message.ack"]
        limited = [r for r in replies if r["type"] == "error"]
        assert 10 <= len(acked) < 30 and limited
        assert all(r["code"] == "rate_limited" for r in limited)
        assert all(
            isinstance(r["retry_after_ms"], int) and r["retry_after_ms"] > 0 for r in limited
        )
        # Every acknowledged message reached bob and the store; nothing refused did.
        await bob.wait_for(lambda f: len(bob.messages(cid)) >= len(acked))
        got = {(m["client_msg_id"], m["seq"]) for m in bob.messages(cid)}
        assert got == {(r["client_msg_id"], r["seq"]) for r in acked}

        async def stored() -> list | None:
            docs = await stored_messages(app.settings.mongo_url, app.settings.mongo_db, cid)
            return docs if len(docs) == len(acked) else None

        docs = await eventually(stored)
        assert [d["seq"] for d in docs] == sorted(r["seq"] for r in acked)
        # After waiting as told, sending works again.
        await asyncio.sleep(max(r["retry_after_ms"] for r in limited) / 1000)
        again = await alice.request(
            {"type": "message.send", "conversation_id": cid, "client_msg_id": "after", "body": "ok"}
        )
        assert again["type"] == "message.ack"
    finally:
        app.supervisor.stop(name)


async def test_connections_per_user_are_limited_across_edges(app: App, clients, user_ids) -> None:
    name = await start_extra_edge(app, 21, 28091, 4, CHAT_CONNECTIONS_PER_USER="3")
    try:
        # Two sessions on the shared edges count too (the limit lives in Redis).
        for edge in (0, 1):
            clients.append(await app.client(user_ids.alice, edge=edge))
        third = await ChatClient.connect(
            "http://127.0.0.1:28091", app.token(user_ids.alice), user_ids.alice
        )
        clients.append(third)
        async with aiohttp.ClientSession() as http:
            status, body = await raw_upgrade(
                http, "http://127.0.0.1:28091/v1/ws", {"access_token": app.token(user_ids.alice)}
            )
            assert status == 429
            assert body == {"error": "too_many_connections"}
        # Closing one frees a place (once the edge has seen the close).
        await third.close()

        fourth = await eventually(
            lambda: connect_unless_refused(app, "http://127.0.0.1:28091", user_ids.alice),
            timeout=10,
        )
        clients.append(fourth)
        assert (await fourth.request({"type": "ping"}))["type"] == "pong"
    finally:
        app.supervisor.stop(name)


async def test_sessions_of_a_killed_edge_stop_counting(app: App, clients, user_ids) -> None:
    """Nothing renews a session's place in the count: a connect drops the places held by edges
    whose liveness key has expired, so a user whose edge was killed can connect again within
    one liveness TTL (10 s) even with a limit of one."""
    doomed = await start_extra_edge(app, 22, 28092, 5, CHAT_CONNECTIONS_PER_USER="1")
    other = await start_extra_edge(app, 23, 28093, 6, CHAT_CONNECTIONS_PER_USER="1")
    try:
        clients.append(
            await ChatClient.connect(
                "http://127.0.0.1:28092", app.token(user_ids.alice), user_ids.alice
            )
        )
        async with aiohttp.ClientSession() as http:
            status, _ = await raw_upgrade(
                http, "http://127.0.0.1:28093/v1/ws", {"access_token": app.token(user_ids.alice)}
            )
        assert status == 429  # the session on the other edge counts
        app.supervisor.kill(doomed)

        survivor = await eventually(
            lambda: connect_unless_refused(app, "http://127.0.0.1:28093", user_ids.alice),
            timeout=30,
            interval=0.5,
        )
        clients.append(survivor)
        assert (await survivor.request({"type": "ping"}))["type"] == "pong"
    finally:
        app.supervisor.stop(other)
        if doomed in app.supervisor.running:
            app.supervisor.stop(doomed)


async def test_origin_allowlist(app: App, user_ids) -> None:
    name = await start_extra_edge(
        app, 22, 28092, 5, CHAT_ALLOWED_ORIGINS="https://chat.example.com"
    )
    try:
        url = "http://127.0.0.1:28092/v1/ws"
        params = {"access_token": app.token(user_ids.alice)}
        async with aiohttp.ClientSession() as http:
            status, _ = await raw_upgrade(http, url, params, {"Origin": "https://evil.example.net"})
            assert status == 403
            ws = await http.ws_connect(url, params=params, origin="https://chat.example.com")
            await ws.send_json({"type": "ping", "id": 1})
            assert (await ws.receive_json(timeout=10)) == {"type": "pong", "id": 1}
            await ws.close()
    finally:
        app.supervisor.stop(name)


def self_signed(tmp: Path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


async def test_tls_wss(app: App, user_ids, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    name = await start_extra_edge(app, 23, 28093, 6, CHAT_TLS_CERT=cert, CHAT_TLS_KEY=key)
    try:
        ctx = ssl.create_default_context(cafile=cert)
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(
                "wss://127.0.0.1:28093/v1/ws",
                params={"access_token": app.token(user_ids.alice)},
                ssl=ctx,
            )
            await ws.send_json({"type": "ping", "id": "tls"})
            assert (await ws.receive_json(timeout=10)) == {"type": "pong", "id": "tls"}
            await ws.close()
            # A client that does not trust the certificate cannot connect.
            try:
                await http.ws_connect(
                    "wss://127.0.0.1:28093/v1/ws",
                    params={"access_token": app.token(user_ids.alice)},
                )
                raise AssertionError("untrusted certificate accepted")
            except aiohttp.ClientConnectorCertificateError:
                pass
    finally:
        app.supervisor.stop(name)


async def test_websocket_upgrades_are_limited_per_ip(app: App, user_ids) -> None:
    name = await start_extra_edge(app, 25, 28096, 2, CHAT_UPGRADES_PER_MIN="3")
    try:
        url = "http://127.0.0.1:28096/v1/ws"
        async with aiohttp.ClientSession() as http:
            sockets = []
            for _ in range(3):
                sockets.append(
                    await http.ws_connect(url, params={"access_token": app.token(user_ids.a)})
                )
            status, body = await raw_upgrade(http, url, {"access_token": app.token(user_ids.a)})
            assert status == 429
            assert body["error"] == "rate_limited"
            assert isinstance(body["retry_after_ms"], int) and body["retry_after_ms"] > 0
            # The sessions already open are not affected.
            await sockets[0].send_json({"type": "ping", "id": 1})
            assert (await sockets[0].receive_json(timeout=10)) == {"type": "pong", "id": 1}
            for ws in sockets:
                await ws.close()
    finally:
        app.supervisor.stop(name)
