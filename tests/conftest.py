"""Fixtures for the integration and fault suites: the real stack (Kafka, Redis, a
MongoDB-wire server) and the real app processes.

The app runs with its own topic prefix, consumer groups and ports, so a `make run` on the same
machine does not interfere. Users are unique per test (``user_ids``), so tests share the stack.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from chat.settings import Settings, load_settings
from edge.auth import mint_token
from ops.supervisor import REPO, Supervisor, edge_spec, media_spec, sink_spec, worker_spec
from ops.topics import ensure_topics
from tests.client import ChatClient

STACK = str(REPO / "ops" / "stack" / "stack.sh")
# Two suites can share one stack (e.g. two developers' checkouts on one machine): each takes a
# lane, CHAT_TEST_LANE=0..9, which names its topics, groups and database and shifts its ports.
LANE = int(os.environ.get("CHAT_TEST_LANE", "0"))
NAMESPACE = "chattest" if LANE == 0 else f"chattest{LANE}"
PORT_SHIFT = 100 * LANE
TEST_ENV = {
    "CHAT_ENV": "dev",
    "CHAT_TOPIC_PREFIX": NAMESPACE,
    "CHAT_WORKER_APP_ID": f"{NAMESPACE}-worker",
    "CHAT_SINK_GROUP": f"{NAMESPACE}-sink",
    "CHAT_MONGO_DB": NAMESPACE,
    "CHAT_SINK_METRICS_PORT": str(26070 + PORT_SHIFT),
    "CHAT_MEDIA_PROCESSOR_GROUP": f"{NAMESPACE}-media",
    "CHAT_MEDIA_PROCESSOR_PORT": str(26072 + PORT_SHIFT),
    "CHAT_MEDIA_BUCKET": f"{NAMESPACE}-media",
    # Generous limits: the suite sends fast on purpose; rate-limit tests set their own.
    "CHAT_MESSAGES_PER_S": "1000",
    "CHAT_MESSAGES_BURST": "2000",
    "CHAT_UPGRADES_PER_MIN": "100000",
    # Likewise for every other per-user and per-IP bucket (tests/integration/test_limits.py
    # starts an edge with strict ones).
    "CHAT_CONVERSATION_OPS_PER_S": "1000",
    "CHAT_CONVERSATION_OPS_BURST": "2000",
    "CHAT_RECEIPTS_PER_S": "1000",
    "CHAT_RECEIPTS_BURST": "2000",
    "CHAT_SYNCS_PER_S": "1000",
    "CHAT_SYNCS_BURST": "2000",
    "CHAT_PRESENCE_USERS_PER_S": "10000",
    "CHAT_PRESENCE_USERS_BURST": "20000",
    "CHAT_PINGS_PER_S": "1000",
    "CHAT_PINGS_BURST": "2000",
    "CHAT_REST_PER_S": "1000",
    "CHAT_REST_BURST": "2000",
    "CHAT_REST_IP_PER_S": "10000",
    "CHAT_REST_IP_BURST": "20000",
}
EDGE_PORTS = (28080 + PORT_SHIFT, 28081 + PORT_SHIFT)
WORKER_PORT = 26066 + PORT_SHIFT


@dataclass
class App:
    settings: Settings
    supervisor: Supervisor
    edges: list[str]

    def token(self, user: str, ttl: int | None = None) -> str:
        return mint_token(self.settings, user, ttl)[0]

    async def client(self, user: str, edge: int = 0) -> ChatClient:
        return await ChatClient.connect(self.edges[edge], self.token(user), user)


@pytest.fixture(scope="session")
def app_processes() -> Iterator[App]:
    subprocess.run([STACK, "start"], check=True)
    settings = load_settings({**os.environ, **TEST_ENV})
    asyncio.run(ensure_topics(settings))
    log_dir = Path(os.environ.get("CHAT_DATA_DIR", REPO / ".data")) / "logs" / f"test-app{LANE}"
    sup = Supervisor(log_dir=log_dir, base_env={**os.environ, **TEST_ENV})
    try:
        for i in range(2):
            sup.start(worker_spec(i, {}, WORKER_PORT + i))
        sup.start(sink_spec({}, 26070 + PORT_SHIFT))
        sup.start(media_spec({}, 26072 + PORT_SHIFT))
        for i, port in enumerate(EDGE_PORTS):
            sup.start(edge_spec(i, {}, port, i))
        sup.wait_ready(timeout=180)
        yield App(settings, sup, [f"http://127.0.0.1:{p}" for p in EDGE_PORTS])
    finally:
        sup.stop_all()


@pytest.fixture
def user_ids() -> Iterator[object]:
    suffix = uuid.uuid4().hex[:8]

    class Names:
        def __getattr__(self, name: str) -> str:
            return f"{name}-{suffix}"

    yield Names()


@pytest_asyncio.fixture
async def app(app_processes: App) -> AsyncIterator[App]:
    yield app_processes


@pytest_asyncio.fixture
async def clients(app: App) -> AsyncIterator[list[ChatClient]]:
    """Clients opened in a test; all closed at its end."""
    opened: list[ChatClient] = []
    yield opened
    await asyncio.gather(*(c.close() for c in opened), return_exceptions=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Unit tests first (fast feedback), then integration, then the fault tests that break
    # services on purpose.
    def rank(item: pytest.Item) -> int:
        path = str(item.fspath)
        return 2 if "/faults/" in path else 1 if "/integration/" in path else 0

    items.sort(key=rank)
    for item in items:
        if rank(item):
            item.add_marker(pytest.mark.integration)
