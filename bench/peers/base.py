"""What every system under test provides: a client adapter and a description of its servers.

A system is one module in this package (``ours``, ``relay``, ``seed``, ``centrifugo``) with a
``SYSTEM`` object. The load generators (bench/gen.py) only use its ``client`` class; the
coordinator (bench/runner.py) uses the rest to start and stop it and to attribute CPU and RSS.
Adding a peer is one module: a :class:`Client` subclass and a :class:`System`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp

if TYPE_CHECKING:
    from ops.supervisor import ProcessSpec

SHARED_SERVICES = ("kafka", "redis", "mongo")


@dataclass
class Pending:
    """One message sent and not yet acknowledged."""

    conv: str
    tag: str
    send_ns: int
    fanout: int
    cmid: str = ""
    future: asyncio.Future[int] | None = None


class Hooks(Protocol):
    """What a client reports to its generator (bench/gen.py: Generator)."""

    def on_message(self, client: Client, conv: str, seq: int, body: str) -> None: ...

    def on_ack(self, client: Client, p: Pending, seq: int | None) -> None: ...

    def on_sequenced(self, client: Client, p: Pending, seq: int) -> None: ...

    def on_send_error(self, p: Pending, code: str) -> None: ...

    def http_for(self, index: int) -> aiohttp.ClientSession: ...

    def token(self, user: str) -> str: ...


@dataclass
class ClientSpec:
    user: str
    url: str  # the node this client connects to
    xff: str = ""  # X-Forwarded-For, for a system that limits upgrades per IP


class Client:
    """One simulated user's connection to one system.

    A conversation is a string the system's messages carry; each message in it has a ``seq``
    that rises by one per message (the generator checks order, gaps and duplicates on it).
    """

    # Systems whose ack comes before the message has its seq (the seed: Kafka acks, a consumer
    # sequences later) tell the generator the seq later through ``on_sequenced``.
    def __init__(self, gen: Hooks, index: int, spec: ClientSpec) -> None:
        self.gen = gen
        self.index = index
        self.user = spec.user
        self.url = spec.url
        self.xff = spec.xff
        self.convs: list[tuple[str, int]] = []  # (conversation, fanout) this client sends to
        self.next_conv = 0
        self.connected = False
        self.received_since_mark = 0

    def pick_conv(self) -> tuple[str, int]:
        conv = self.convs[self.next_conv % len(self.convs)]
        self.next_conv += 1
        return conv

    async def connect(self) -> None:
        raise NotImplementedError

    async def create(self, members: list[str], group: bool) -> str:
        """Open a conversation with ``members`` (without this user); returns its id."""
        raise NotImplementedError

    async def send(self, conv: str, body: str, pending: Pending) -> None:
        """Send without waiting: the ack (or error) comes back through the hooks."""
        raise NotImplementedError

    async def sync(self, cursors: dict[str, int] | None) -> None:
        """Catch up after (re)connecting; ``cursors`` = last seq seen per conversation."""
        return None

    async def send_delivered(self, conv: str, seq: int) -> None:
        """Confirm delivery up to ``seq`` (systems with receipts)."""
        return None

    def unacked(self) -> int:
        return 0

    def abort(self) -> None:
        """Drop the connection without a close handshake (the capacity run's clean-up)."""
        return None

    async def close(self) -> None:
        raise NotImplementedError


class WebSocketClient(Client):
    """A client on one plain aiohttp WebSocket, read by a task of its own (ours, Centrifugo)."""

    def __init__(self, gen: Hooks, index: int, spec: ClientSpec) -> None:
        super().__init__(gen, index, spec)
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None

    async def open(
        self, params: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> aiohttp.ClientWebSocketResponse:
        ws = await self.gen.http_for(self.index).ws_connect(
            self.url,
            params=params,
            headers=headers,
            autoping=True,
            heartbeat=None,
            max_msg_size=0,
            compress=0,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
        )
        self.ws = ws
        self.reader = asyncio.create_task(self.read(ws))
        return ws

    async def read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Handle every frame until the socket closes."""
        raise NotImplementedError

    def abort(self) -> None:
        ws = self.ws
        if ws is not None:
            conn = ws._response.connection
            if conn is not None and conn.transport is not None:
                conn.transport.abort()

    async def close(self) -> None:
        ws, self.ws = self.ws, None
        self.connected = False
        if ws is not None:
            await ws.close()
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)


@dataclass
class Context:
    """What a system's coordinator-side hooks get: the run's id, secret and log directory."""

    run_id: str
    jwt_secret: str
    say: Callable[[str], None]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class System:
    """A system under test, as the coordinator sees it."""

    name: str
    title: str  # for tables and plots
    client: type[Client]
    # The nodes clients connect to, alternately (first one: the capacity run's node).
    urls: tuple[str, ...]
    # Process name prefixes whose CPU and RSS are this system's (as tracked by the bench).
    processes: tuple[str, ...]
    # The process behind urls[0], whose RSS the capacity run reads.
    node0: str
    # Shared services this system uses: their CPU during its runs is billed to it.
    shared: tuple[str, ...]
    # Clients sync (catch up) on connect, and the reconnect storm applies.
    recovers: bool = False
    # A conversation is one direction of a pair (each sender's own stream, numbered on its
    # own), not a shared conversation both members send to.
    directed: bool = False
    # Receipts (message.delivered) sent by clients about once a second.
    receipts: bool = False
    # The capacity run's idle clients sync once after connecting: for a system whose clients
    # must subscribe to receive anything (Centrifugo), as the Socket.IO peers' join their room
    # on connecting. Ours' idle sessions do not sync (a sync registers them with the workers).
    idle_sync: bool = False
    # Start stages: each a list of processes started together and awaited ready; None = ours
    # (the coordinator's app management in bench/app.py).
    stages: Callable[[Context], list[list[ProcessSpec]]] | None = None
    # Install what is missing (npm, go install); idempotent. Returns what it did, for the log.
    install: Callable[[], str] | None = None
    # Drop the run's data (topics, database, Redis keys) after the system stopped.
    cleanup: Callable[[Context], Awaitable[None]] | None = None
    # What it guarantees, in a line, for the report's notes.
    summary: str = ""
