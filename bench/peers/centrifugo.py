"""``centrifugo``: Centrifugo v6, two nodes with the Redis engine.

Each user subscribes to its personal channel ``personal:#<user>`` (a user-limited channel:
only that user may subscribe), with history and recovery on (``history_size``,
``history_ttl``, ``force_recovery``). Connection tokens are HS256 JWTs with the same secret
and claims (``sub``) as ours, so the generator's tokens serve both.

Publishing goes through the **server publish API** (``POST /api/publish`` on the node the
sender is connected to), the way a Centrifugo chat is built: the sender's request reaches the
application backend, which validates and persists it and then publishes; here the bench client
plays that backend and calls the API itself. Client-side publish would need
``allow_publish_for_client`` on the namespace (any client may then write to any user's
channel, with no validation) and its reply carries no offset. The API's answer carries the
publication's offset in the recipient's channel: that is the message's ``seq`` (one sender per
channel in the bench's 1:1 pairs, so the conversation ``<sender>><recipient>`` is the channel).

The client speaks Centrifugo's JSON protocol over a plain aiohttp WebSocket: ``connect``,
``subscribe`` (with ``recover``, ``offset`` and ``epoch`` when catching up), pushes of
publications, and the empty ``{}`` ping answered with ``{}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.peers.base import ClientSpec, Context, Hooks, Pending, System, WebSocketClient
from bench.peers.install import centrifugo_bin, install_centrifugo
from ops.supervisor import ProcessSpec

log = logging.getLogger("bench.gen")

PORTS = (8096, 8097)
API_KEY = "kchat-bench"  # the nodes listen on 127.0.0.1 only
NAMESPACE = "personal"
REDIS_DB = 2
HISTORY_SIZE = 1000  # per channel; a user gets ~1 message/s in the default run
HISTORY_TTL = "600s"  # the recovery window: longer than any bench run


def channel_of(user: str) -> str:
    return f"{NAMESPACE}:#{user}"


class CentrifugoClient(WebSocketClient):
    def __init__(self, gen: Hooks, index: int, spec: ClientSpec) -> None:
        super().__init__(gen, index, spec)
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.ids = 0
        self.epoch = ""
        self.pending = 0
        self.publishing: set[asyncio.Task[None]] = set()
        # ws://host:port/connection/websocket -> http://host:port/api/publish
        self.api = spec.url.replace("ws://", "http://").split("/connection/")[0] + "/api/publish"

    async def connect(self) -> None:
        await self.open()
        reply = await self.command({"connect": {"token": self.gen.token(self.user)}})
        if "connect" not in reply:
            raise RuntimeError(f"connect refused: {reply}")
        self.connected = True

    async def command(self, body: dict[str, Any], wait_s: float = 60.0) -> dict[str, Any]:
        assert self.ws is not None
        self.ids += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[self.ids] = fut
        await self.ws.send_str(orjson.dumps({"id": self.ids, **body}).decode())
        return await asyncio.wait_for(fut, wait_s)

    async def read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                # One frame may carry several replies, one JSON object a line.
                for line in msg.data.split("\n"):
                    if not line:
                        continue
                    f = orjson.loads(line)
                    if not f:  # the server's ping: answer with a pong
                        await ws.send_str("{}")
                    elif "push" in f:
                        pub = f["push"].get("pub")
                        if pub is not None:
                            self._publication(pub)
                    elif "id" in f:
                        fut = self.replies.pop(f["id"], None)
                        if fut is not None and not fut.done():
                            fut.set_result(f)
        except Exception as exc:  # a broken socket: the run's counters show the damage
            log.debug("reader of %s ended: %s", self.user, exc)
        finally:
            if self.ws is ws:
                self.connected = False
            for fut in self.replies.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("closed"))
            self.replies.clear()

    def _publication(self, pub: dict[str, Any]) -> None:
        data = pub.get("data") or {}
        self.gen.on_message(self, f"{data['from']}>{self.user}", int(pub["offset"]), data["body"])

    async def sync(self, cursors: dict[str, int] | None) -> None:
        """Subscribe to the personal channel; with a cursor (and the stream's epoch from the
        last subscription) Centrifugo recovers what was published since, from its history."""
        sub: dict[str, Any] = {"channel": channel_of(self.user)}
        if cursors and self.epoch:
            sub.update(recover=True, offset=max(cursors.values()), epoch=self.epoch)
        reply = await self.command({"subscribe": sub})
        result = reply.get("subscribe")
        if result is None:
            raise RuntimeError(f"subscribe failed: {reply}")
        self.epoch = result.get("epoch", self.epoch)
        if cursors and not result.get("recovered", False):
            raise RuntimeError(f"not recovered: {result}")
        for pub in result.get("publications", []):
            self._publication(pub)

    async def create(self, members: list[str], group: bool) -> str:
        return f"{self.user}>{members[0]}"  # channels need no setup

    async def send(self, conv: str, body: str, pending: Pending) -> None:
        if not self.connected:
            self.gen.on_send_error(pending, "disconnected")
            return
        to = conv.split(">", 1)[1]
        payload = {"channel": channel_of(to), "data": {"from": self.user, "body": body}}
        # Not awaited by the send loop: the generator is open-loop, like a WebSocket send. The
        # set holds the task until it is done (the loop keeps only a weak reference).
        self.pending += 1
        task = asyncio.create_task(self._publish(payload, pending))
        self.publishing.add(task)
        task.add_done_callback(self.publishing.discard)

    async def _publish(self, payload: dict[str, Any], pending: Pending) -> None:
        try:
            async with self.gen.http_for(self.index).post(
                self.api,
                data=orjson.dumps(payload),
                headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
            ) as resp:
                reply = orjson.loads(await resp.read())
            result = reply.get("result")
            if resp.status == 200 and result is not None and "offset" in result:
                self.gen.on_ack(self, pending, int(result["offset"]))
            else:
                self.gen.on_send_error(pending, str(reply.get("error", resp.status)))
        except Exception as exc:
            self.gen.on_send_error(pending, type(exc).__name__)
        finally:
            self.pending -= 1

    def unacked(self) -> int:
        return self.pending


def config(ctx: Context, port: int) -> dict[str, Any]:
    return {
        "http_server": {"address": "127.0.0.1", "port": port},
        "log": {"level": "warn"},
        "engine": {
            "type": "redis",
            "redis": {
                "address": ["redis://127.0.0.1:6379"],
                "db": REDIS_DB,
                "prefix": f"kcb{ctx.run_id}",
            },
        },
        "client": {
            "token": {"hmac_secret_key": ctx.jwt_secret},
            "allowed_origins": ["*"],
        },
        "channel": {
            "namespaces": [
                {
                    "name": NAMESPACE,
                    "history_size": HISTORY_SIZE,
                    "history_ttl": HISTORY_TTL,
                    "force_recovery": True,
                    "allow_user_limited_channels": True,
                }
            ]
        },
        "http_api": {"key": API_KEY},
        "health": {"enabled": True},
        "usage_stats": {"disabled": True},
    }


def stages(ctx: Context) -> list[list[ProcessSpec]]:
    conf_dir = Path(tempfile.mkdtemp(prefix="kchat-bench-centrifugo-"))
    specs = []
    for i, port in enumerate(PORTS):
        path = conf_dir / f"node-{i}.json"
        path.write_text(json.dumps(config(ctx, port), indent=1))
        specs.append(
            ProcessSpec(
                f"centrifugo-{i}",
                "",
                {},
                f"http://127.0.0.1:{port}/health",
                argv=[str(centrifugo_bin()), "--config", str(path)],
            )
        )
    return [specs]


async def cleanup(ctx: Context) -> None:
    """Delete the run's history streams and metadata from Redis."""
    import redis.asyncio

    client = redis.asyncio.Redis(port=6379, db=REDIS_DB)
    try:
        keys = [k async for k in client.scan_iter(match=f"kcb{ctx.run_id}*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
    finally:
        await client.aclose()


SYSTEM = System(
    name="centrifugo",
    title="Centrifugo v6 (Redis engine)",
    client=CentrifugoClient,
    urls=tuple(f"ws://127.0.0.1:{p}/connection/websocket" for p in PORTS),
    processes=("centrifugo",),
    node0="centrifugo-0",
    directed=True,
    shared=("redis",),
    recovers=True,
    idle_sync=True,
    stages=stages,
    install=install_centrifugo,
    cleanup=cleanup,
    summary="acked once in the Redis history stream (not fsynced); recovery by offset within"
    f" the history window ({HISTORY_SIZE} messages, {HISTORY_TTL}); no store of its own",
)
