"""nginx (ops/nginx/nginx.conf.template, as `make run` starts it) in front of both edges, with
real WebSocket and REST traffic through it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from ops.nginx_local import nginx_binary, nginx_spec
from ops.supervisor import REPO
from tests.client import ChatClient
from tests.conftest import EDGE_PORTS, App
from tests.integration.helpers import (
    create_direct,
    eventually,
    listen_backlog,
    send_acked,
    synced,
)

LB_PORT = 28000


@pytest.fixture(scope="module")
def balancer(app_processes: App) -> Iterator[str]:
    if nginx_binary() is None:
        pytest.fail("nginx is not installed: `make test` installs it (Debian package nginx)")
    sup = app_processes.supervisor
    spec = nginx_spec("nginx", LB_PORT, EDGE_PORTS, REPO / ".data" / "nginx-test")
    sup.start(spec)
    try:
        sup.wait_ready([spec.name], timeout=30)
        yield f"http://127.0.0.1:{LB_PORT}"
    finally:
        sup.stop(spec.name)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def edge_connections(http: aiohttp.ClientSession, port: int) -> int:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    match = re.search(r"^chat_edge_connections (\d+)", text, re.MULTILINE)
    assert match, "chat_edge_connections missing from the edge's metrics"
    return int(float(match.group(1)))


async def test_websockets_through_nginx_reach_both_edges_and_talk(
    app: App, balancer: str, clients, user_ids, http
) -> None:
    before = [await edge_connections(http, port) for port in EDGE_PORTS]
    users = [f"{user_ids.u}-{i}" for i in range(6)]
    opened = [await ChatClient.connect(balancer, app.token(u), u) for u in users]
    clients += opened
    for c in opened:
        await synced(c)
    after = [await edge_connections(http, port) for port in EDGE_PORTS]
    # least_conn spreads new WebSockets over both edges.
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)

    alice, bob = opened[0], opened[1]
    cid = (await create_direct(alice, bob.user))["id"]
    await send_acked(alice, cid, "n1", "via lb")
    got = await bob.wait_for(lambda f: f["type"] == "message" and f["conversation_id"] == cid)
    assert got["body"] == "via lb"

    # REST through the same address.
    headers = {"Authorization": f"Bearer {app.token(bob.user)}"}

    async def stored() -> list[int] | None:
        async with http.get(f"{balancer}/v1/conversations/{cid}/messages", headers=headers) as r:
            if r.status == 404:
                return None  # the sink has not stored the new conversation yet
            assert r.status == 200, await r.text()
            seqs = [m["seq"] for m in (await r.json())["messages"]]
        return seqs if seqs == [1] else None

    assert await eventually(stored) == [1]


def test_nginx_listens_with_a_long_backlog(balancer: str) -> None:
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert listen_backlog(int(balancer.rsplit(":", 1)[1])) == min(4096, somaxconn)


async def test_nginx_hides_metrics_and_answers_its_own_health(balancer: str, http) -> None:
    async with http.get(f"{balancer}/metrics") as response:
        assert response.status == 404
    async with http.get(f"{balancer}/nginx-healthz") as response:
        assert response.status == 200
    async with http.get(f"{balancer}/healthz") as response:
        assert response.status == 200  # an edge's, through nginx
