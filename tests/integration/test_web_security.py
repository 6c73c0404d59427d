"""What browsers get (#14, items 4 and 5), against the real app: security headers from the
edges and nginx, the edges the web client may use, one-time WebSocket tickets, and no token in
any log."""

from __future__ import annotations

import asyncio
import random
import ssl
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ops.nginx_local import nginx_binary, nginx_spec
from ops.supervisor import REPO
from tests.conftest import EDGE_PORTS, LANE, PORT_SHIFT, App
from tests.integration.helpers import raw_upgrade
from tests.integration.test_security import self_signed, start_extra_edge

PORT = 28101 + PORT_SHIFT
TLS_PORT = 28102 + PORT_SHIFT
LB_PORT = 28110 + PORT_SHIFT
WEB_EDGES = "http://127.0.0.1:28080,https://chat.example"


@pytest.fixture(scope="module")
def web_edge(app_processes: App) -> Iterator[str]:
    name = asyncio.run(
        start_extra_edge(
            app_processes, 41, PORT, 6, CHAT_WEB_EDGES=WEB_EDGES, CHAT_WS_TICKET_TTL_S="2"
        )
    )
    try:
        yield f"http://127.0.0.1:{PORT}"
    finally:
        app_processes.supervisor.stop(name)


def assert_browser_headers(headers: Any) -> None:
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"


async def test_page_names_only_the_configured_edges(web_edge: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{web_edge}/", params={"edges": "https://evil.example"}) as r:
            assert r.status == 200
            page = await r.text()
            csp = r.headers["Content-Security-Policy"]
            assert_browser_headers(r.headers)
            assert "Strict-Transport-Security" not in r.headers  # plain HTTP
        assert f'<meta name="chat-edges" content="{WEB_EDGES}" />' in page
        connect = next(d for d in csp.split("; ") if d.startswith("connect-src "))
        assert connect.split()[1:] == [
            "'self'",
            "http://127.0.0.1:28080",
            "ws://127.0.0.1:28080",
            "https://chat.example",
            "wss://chat.example",
            "http://127.0.0.1:8333",  # the object store: uploads (docs/media.md)
        ]
        assert "evil" not in csp and "evil" not in page
        # Every answer carries them: REST refusals, health, static files.
        for path in ("/v1/conversations", "/healthz", "/nope"):
            async with http.get(f"{web_edge}{path}") as r:
                assert_browser_headers(r.headers)


async def test_hsts_when_a_trusted_proxy_terminated_tls(web_edge: str) -> None:
    async with aiohttp.ClientSession() as http:
        # The suite's edges trust 127.0.0.1 (CHAT_TRUSTED_PROXIES' default), as nginx is.
        headers = {"X-Forwarded-Proto": "https"}
        async with http.get(f"{web_edge}/healthz", headers=headers) as r:
            assert r.headers["Strict-Transport-Security"].startswith("max-age=")
        async with http.get(f"{web_edge}/healthz", headers={"X-Forwarded-Proto": "http"}) as r:
            assert "Strict-Transport-Security" not in r.headers


async def test_hsts_when_the_edge_serves_tls(app: App, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    name = await start_extra_edge(app, 42, TLS_PORT, 7, CHAT_TLS_CERT=cert, CHAT_TLS_KEY=key)
    try:
        ctx = ssl.create_default_context(cafile=cert)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"https://127.0.0.1:{TLS_PORT}/healthz", ssl=ctx) as r:
                assert r.headers["Strict-Transport-Security"].startswith("max-age=31536000")
                assert_browser_headers(r.headers)
    finally:
        app.supervisor.stop(name)


async def ticket_for(http: aiohttp.ClientSession, base: str, token: str) -> dict[str, Any]:
    async with http.post(f"{base}/v1/ws-ticket", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        return body


async def test_one_time_ticket_instead_of_the_token_in_the_url(
    app: App, web_edge: str, user_ids: Any
) -> None:
    token = app.token(user_ids.alice)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{web_edge}/v1/ws-ticket") as r:
            assert r.status == 401
        issued = await ticket_for(http, web_edge, token)
        ticket = issued["ticket"]
        assert len(ticket) == 43 and token not in ticket
        # Redeemed on another edge (tickets live in Redis), once.
        ws = await http.ws_connect(f"{app.edges[0]}/v1/ws", params={"ticket": ticket})
        await ws.send_json(
            {"type": "conversation.create", "kind": "direct", "members": ["x"], "id": "c"}
        )
        reply = await ws.receive_json(timeout=15)
        while reply.get("id") != "c":  # the "created" event may come first
            reply = await ws.receive_json(timeout=15)
        assert reply["type"] == "ok" and user_ids.alice in reply["conversation"]["members"]
        await ws.close()
        status, body = await raw_upgrade(http, f"{app.edges[0]}/v1/ws", {"ticket": ticket})
        assert (status, body) == (401, {"error": "unauthorized"})
        # A ticket not redeemed within CHAT_WS_TICKET_TTL_S (2 s on this edge) lapses.
        late = (await ticket_for(http, web_edge, token))["ticket"]
        await asyncio.sleep(2.5)
        status, _ = await raw_upgrade(http, f"{web_edge}/v1/ws", {"ticket": late})
        assert status == 401


async def test_bad_tickets_are_401_never_5xx(app: App, web_edge: str, user_ids: Any) -> None:
    rng = random.Random(5)
    real = "A" * 43
    bad = [
        "",
        "x",
        real[:-1],
        real + "A",
        "=" * 43,
        "%00" * 20,
        "\u00e9" * 43,
        "A" * 5_000,
        app.token(user_ids.alice),  # a token is not a ticket
        "../../etc/passwd",
    ]
    alphabet = string.printable + "\u00e9\u4e2d"
    bad += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(200)]
    bad += ["".join(rng.choice(string.ascii_letters) for _ in range(43)) for _ in range(50)]
    async with aiohttp.ClientSession() as http:
        for ticket in bad:
            status, _ = await raw_upgrade(http, f"{web_edge}/v1/ws", {"ticket": ticket})
            assert status == 401, (ticket, status)
        # A request line past aiohttp's 8 KiB is refused before any handler: 400, no crash.
        status, _ = await raw_upgrade(http, f"{web_edge}/v1/ws", {"ticket": "A" * 10_000})
        assert status == 400
        # The upgrade limit (per IP, 100,000/min in the suite) is what throttles guessing.
    print(f"{len(bad)} bad tickets tried, all 401")


@pytest.fixture(scope="module")
def balancer(app_processes: App) -> Iterator[tuple[str, Path]]:
    if nginx_binary() is None:
        pytest.fail("nginx is not installed: `make test` installs it (Debian package nginx)")
    sup = app_processes.supervisor
    spec = nginx_spec(
        f"nginx-hard{LANE}", LB_PORT, EDGE_PORTS, REPO / ".data" / f"nginx-hard{LANE}"
    )
    running = sup.start(spec)
    try:
        sup.wait_ready([spec.name], timeout=30)
        yield f"http://127.0.0.1:{LB_PORT}", running.log_path
    finally:
        sup.stop(spec.name)


async def test_nginx_headers_and_no_token_in_its_log(
    app: App, balancer: tuple[str, Path], user_ids: Any
) -> None:
    url, log_path = balancer
    token = app.token(user_ids.alice)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{url}/v1/ws", params={"access_token": token})
        await ws.send_json({"type": "ping", "id": 1})
        assert (await ws.receive_json(timeout=10))["type"] == "pong"
        await ws.close()
        async with http.get(f"{url}/v1/conversations", params={"access_token": token}) as r:
            assert r.status == 200
            assert_browser_headers(r.headers)
            # The edge's policy passes through, once (not doubled by nginx).
            assert len(r.headers.getall("Content-Security-Policy")) == 1
            assert "connect-src 'self'" in r.headers["Content-Security-Policy"]
        for path, status in (("/nginx-healthz", 200), ("/metrics", 404)):
            async with http.get(f"{url}{path}") as r:
                assert r.status == status
                assert_browser_headers(r.headers)
                assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
    await asyncio.sleep(0.5)  # nginx writes its access log line after the response
    logged = log_path.read_text(errors="replace")
    assert "/v1/ws" in logged and "/v1/conversations" in logged
    assert token not in logged and "access_token" not in logged
    # Nor does any edge log it (no access log; every line passes the redaction).
    for running in app.supervisor.running.values():
        assert token not in running.log_path.read_text(errors="replace"), running.spec.name
