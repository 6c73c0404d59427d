"""The edge's HTTP side in process, with aiohttp's test client: what needs no Kafka.

Every backend address points at a closed port, so these tests also show what the edge does
while Kafka, Redis and MongoDB are unreachable: it stays up, says so on /readyz, and rate
limits fall back to local buckets. The node is not started (no slot, no Kafka consumer).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from chat.settings import Settings, load_settings
from edge.app import make_app
from edge.auth import mint_token
from edge.node import NODE, EdgeNode

UNREACHABLE = {
    "CHAT_ENV": "dev",
    "CHAT_KAFKA_BOOTSTRAP": "127.0.0.1:1",
    "CHAT_REDIS_URL": "redis://127.0.0.1:1/0",
    "CHAT_MONGO_URL": "mongodb://127.0.0.1:1/",
}
ClientFactory = Callable[..., Any]


@pytest.fixture
def web_dist(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<html><head><title>chat</title></head></html>")
    (tmp_path / "assets" / "app.js").write_text("console.log('chat')")
    (tmp_path / "favicon.svg").write_text("<svg/>")
    return tmp_path


@pytest.fixture
async def edge_client(web_dist: Path) -> AsyncIterator[ClientFactory]:
    """Makes a test client for an edge with ``CHAT_*`` overrides; closes them all after."""
    opened: list[tuple[TestClient[web.Request, web.Application], EdgeNode]] = []

    async def make(**env: str) -> TestClient[web.Request, web.Application]:
        settings = load_settings({**UNREACHABLE, "CHAT_WEB_DIST": str(web_dist), **env})
        node = EdgeNode(settings)
        client = TestClient(TestServer(make_app(node)))
        await client.start_server()
        opened.append((client, node))
        return client

    yield make
    for client, node in opened:
        await client.close()
        await node.kafka.producer.stop()
        await node.store.close()
        await node.redis.aclose()


def token(settings: Settings, user: str = "alice") -> str:
    return mint_token(settings, user)[0]


def settings_of(client: TestClient[web.Request, web.Application]) -> Settings:
    return client.app[NODE].settings


# --------------------------------------------------------------------------- health


async def test_health_is_ok_while_every_backend_is_down(edge_client: ClientFactory) -> None:
    client = await edge_client()
    response = await client.get("/healthz")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ok"
    assert body["sessions"] == 0
    assert body["edge"] == client.app[NODE].edge_id


async def test_readiness_names_the_backends_that_do_not_answer(edge_client: ClientFactory) -> None:
    client = await edge_client()
    response = await client.get("/readyz")
    assert response.status == 503
    assert await response.json() == {
        "ready": False,
        "checks": {"redis": False, "kafka": False, "mongo": False},
    }


async def test_a_draining_edge_refuses_upgrades(edge_client: ClientFactory) -> None:
    client = await edge_client()
    await client.app[NODE].drain()
    response = await client.get("/v1/ws", params={"access_token": token(settings_of(client))})
    assert response.status == 503
    assert await response.json() == {"error": "unavailable"}


async def test_metrics_are_served(edge_client: ClientFactory) -> None:
    client = await edge_client()
    response = await client.get("/metrics")
    assert response.status == 200
    assert "chat_edge_connections" in await response.text()


# --------------------------------------------------------------------------- headers


async def test_every_answer_carries_the_security_headers(edge_client: ClientFactory) -> None:
    client = await edge_client()
    for path, status in (("/healthz", 200), ("/nowhere", 404), ("/v1/conversations", 401)):
        response = await client.get(path)
        assert response.status == status, path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert response.headers["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"], path
        assert "Strict-Transport-Security" not in response.headers, path


async def test_hsts_only_when_a_trusted_proxy_says_https(edge_client: ClientFactory) -> None:
    trusting = await edge_client()
    https = {"X-Forwarded-Proto": "https"}
    response = await trusting.get("/healthz", headers=https)
    assert "max-age=" in response.headers["Strict-Transport-Security"]
    # The test client connects from 127.0.0.1; an edge that does not trust it ignores the
    # header (anyone could send it).
    distrusting = await edge_client(CHAT_TRUSTED_PROXIES="10.0.0.0/8")
    response = await distrusting.get("/healthz", headers=https)
    assert "Strict-Transport-Security" not in response.headers


async def test_web_edges_are_in_the_connect_policy(edge_client: ClientFactory) -> None:
    client = await edge_client(CHAT_WEB_EDGES="https://edge-b.example")
    response = await client.get("/healthz")
    csp = response.headers["Content-Security-Policy"]
    assert "https://edge-b.example" in csp and "wss://edge-b.example" in csp


# --------------------------------------------------------------------------- REST


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=501", "limit=abc", "limit=1_0", "limit=%207", "limit=-1", "after=a b"],
)
async def test_conversation_list_parameters_are_validated(
    edge_client: ClientFactory, query: str
) -> None:
    """Refused with 400 before the store is asked (it is unreachable here)."""
    client = await edge_client()
    auth = {"Authorization": f"Bearer {token(settings_of(client))}"}
    response = await client.get(f"/v1/conversations?{query}", headers=auth)
    assert response.status == 400, query
    body = await response.json()
    assert body["error"] == "bad_request"
    assert body["message"].startswith("invalid "), body


async def test_rest_without_a_valid_token_is_unauthorized(edge_client: ClientFactory) -> None:
    client = await edge_client()
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = await client.get("/v1/conversations", headers=headers)
        assert response.status == 401
        assert await response.json() == {"error": "unauthorized"}


async def test_dev_sign_in_checks_the_user_id(edge_client: ClientFactory) -> None:
    client = await edge_client()
    response = await client.post("/v1/dev/token", json={"user": "alice"})
    assert response.status == 200
    assert (await response.json())["user"] == "alice"
    for body in ({"user": "bad user"}, {"user": ""}, {}, ["alice"]):
        response = await client.post("/v1/dev/token", json=body)
        assert response.status == 400, body
    response = await client.post("/v1/dev/token", data=b"{not json")
    assert response.status == 400


async def test_no_dev_sign_in_outside_dev(edge_client: ClientFactory) -> None:
    client = await edge_client(CHAT_ENV="production", CHAT_JWT_SECRET="s" * 40)
    response = await client.post("/v1/dev/token", json={"user": "alice"})
    assert response.status in (404, 405)


async def test_upgrade_without_a_token_is_refused(edge_client: ClientFactory) -> None:
    client = await edge_client()
    response = await client.get("/v1/ws")
    assert response.status == 401
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_upgrade_from_a_foreign_origin_is_refused(edge_client: ClientFactory) -> None:
    client = await edge_client(CHAT_ALLOWED_ORIGINS="https://chat.example")
    params = {"access_token": token(settings_of(client))}
    response = await client.get("/v1/ws", params=params, headers={"Origin": "https://evil.test"})
    assert response.status == 403


# --------------------------------------------------------------------------- X-Forwarded-For


async def test_rest_limit_counts_the_client_a_trusted_proxy_names(
    edge_client: ClientFactory,
) -> None:
    """With Redis down the per-IP buckets are local: two calls per client address here."""
    client = await edge_client(CHAT_REST_IP_PER_S="0.001", CHAT_REST_IP_BURST="2")

    async def sign_in(forwarded_for: str) -> int:
        response = await client.post(
            "/v1/dev/token", json={"user": "alice"}, headers={"X-Forwarded-For": forwarded_for}
        )
        return response.status

    # The last hop is the one the proxy appended; earlier ones are the client's own claims.
    assert [await sign_in(f"6.6.6.{i}, 203.0.113.7") for i in range(3)] == [200, 200, 429]
    assert await sign_in("203.0.113.8") == 200


async def test_rest_limit_ignores_forwarded_for_from_an_untrusted_peer(
    edge_client: ClientFactory,
) -> None:
    client = await edge_client(
        CHAT_REST_IP_PER_S="0.001", CHAT_REST_IP_BURST="2", CHAT_TRUSTED_PROXIES="10.0.0.0/8"
    )
    statuses = []
    for i in range(3):
        response = await client.post(
            "/v1/dev/token", json={"user": "alice"}, headers={"X-Forwarded-For": f"203.0.113.{i}"}
        )
        statuses.append(response.status)
    assert statuses == [200, 200, 429]  # all counted against the peer, 127.0.0.1
    response = await client.get("/healthz")  # health is not a REST call: never counted
    assert response.status == 200
    limited = await client.post("/v1/dev/token", json={"user": "alice"})
    assert limited.status == 429
    assert limited.headers["Retry-After"]


# --------------------------------------------------------------------------- static files


async def test_the_web_client_is_served(edge_client: ClientFactory) -> None:
    client = await edge_client(CHAT_WEB_EDGES="https://edge-b.example")
    page = await client.get("/")
    assert page.status == 200
    assert page.content_type == "text/html"
    html = await page.text()
    assert '<meta name="chat-edges" content="https://edge-b.example" />' in html
    asset = await client.get("/assets/app.js")
    assert asset.status == 200
    assert await asset.text() == "console.log('chat')"
    icon = await client.get("/favicon.svg")
    assert icon.status == 200
    assert icon.headers["X-Content-Type-Options"] == "nosniff"
    assert (await client.get("/assets/../index.html")).status in (403, 404)
    assert (await client.get("/assets/missing.js")).status == 404


async def test_without_a_built_client_nothing_is_served_at_the_root(
    edge_client: ClientFactory, tmp_path: Path
) -> None:
    client = await edge_client(CHAT_WEB_DIST=str(tmp_path / "empty"))
    assert (await client.get("/")).status == 404
    assert (await client.get("/healthz")).status == 200
