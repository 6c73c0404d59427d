"""Ours: the chat backend through its public WebSocket protocol (docs/protocol.md) only.

The servers (two edges, two workers, the sink) are managed by bench/app.py, which starts them
like ``make run`` or reuses a running app; this module is the client side.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import orjson

from bench.app import EDGE_PORTS
from bench.peers.base import ClientSpec, Hooks, Pending, System, WebSocketClient

log = logging.getLogger("bench.gen")
Frame = dict[str, Any]


class OursClient(WebSocketClient):
    """PROTOCOL.md over one aiohttp WebSocket."""

    def __init__(self, gen: Hooks, index: int, spec: ClientSpec) -> None:
        super().__init__(gen, index, spec)
        self.requests: dict[str, asyncio.Future[Frame]] = {}
        self.pending: dict[int, Pending] = {}
        self.frame_ids = 0

    async def connect(self) -> None:
        await self.open(
            params={"access_token": self.gen.token(self.user)},
            headers={"X-Forwarded-For": self.xff} if self.xff else None,
        )
        self.connected = True

    async def read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        gen = self.gen
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                f = orjson.loads(msg.data)
                t = f.get("type")
                if t == "message":
                    gen.on_message(self, f["conversation_id"], f["seq"], f["body"])
                elif t == "message.ack":
                    p = self.pending.pop(f.get("id"), None)
                    if p is not None:
                        gen.on_ack(self, p, f["seq"])
                elif t == "error":
                    fid = f.get("id")
                    p = self.pending.pop(fid, None) if isinstance(fid, int) else None
                    if p is not None:
                        gen.on_send_error(p, f.get("code", "?"))
                    else:
                        self._answer(str(fid), f)
                elif t in ("ok", "sync.done", "pong"):
                    self._answer(str(f.get("id")), f)
        except Exception as exc:  # a broken socket: the run's counters show the damage
            log.debug("reader of %s ended: %s", self.user, exc)
        finally:
            if self.ws is ws:
                self.connected = False
            for fut in self.requests.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("closed"))
            self.requests.clear()

    def _answer(self, fid: str, frame: Frame) -> None:
        fut = self.requests.pop(fid, None)
        if fut is not None and not fut.done():
            fut.set_result(frame)

    async def request(self, frame: Frame, wait_s: float = 60.0) -> Frame:
        assert self.ws is not None
        self.frame_ids += 1
        fid = f"r{self.frame_ids}"
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self.requests[fid] = fut
        await self.ws.send_str(orjson.dumps({**frame, "id": fid}).decode())
        return await asyncio.wait_for(fut, wait_s)

    async def sync(self, cursors: dict[str, int] | None) -> None:
        frame: Frame = {"type": "sync"}
        if cursors:
            frame["cursors"] = cursors
        reply = await self.request(frame)
        if reply.get("type") != "sync.done":
            raise RuntimeError(f"sync failed: {reply}")

    async def create(self, members: list[str], group: bool) -> str:
        frame: Frame = {"type": "conversation.create", "kind": "group" if group else "direct"}
        frame["members"] = members
        if group:
            frame["title"] = "bench"
        reply = await self.request(frame)
        if reply.get("type") != "ok":
            raise RuntimeError(f"create failed: {reply}")
        return str(reply["conversation"]["id"])

    async def send(self, conv: str, body: str, pending: Pending) -> None:
        ws = self.ws
        if ws is None or ws.closed:
            self.gen.on_send_error(pending, "disconnected")
            return
        self.frame_ids += 1
        fid = self.frame_ids
        self.pending[fid] = pending
        # Text frames (send_str) as a browser would; orjson builds the JSON.
        frame = {
            "type": "message.send",
            "conversation_id": conv,
            "client_msg_id": pending.cmid,
            "body": body,
            "id": fid,
        }
        await ws.send_str(orjson.dumps(frame).decode())

    async def send_delivered(self, conv: str, seq: int) -> None:
        ws = self.ws
        if ws is not None and not ws.closed:
            frame = {"type": "message.delivered", "conversation_id": conv, "seq": seq}
            await ws.send_str(orjson.dumps(frame).decode())

    def unacked(self) -> int:
        return len(self.pending)

    async def close(self) -> None:
        await super().close()
        for p in self.pending.values():
            self.gen.on_send_error(p, "disconnected")
        self.pending.clear()


SYSTEM = System(
    name="ours",
    title="kchat (ours)",
    client=OursClient,
    urls=tuple(f"ws://127.0.0.1:{p}/v1/ws" for p in EDGE_PORTS),
    processes=("edge", "worker", "sink"),
    node0="edge-0",
    shared=("kafka", "redis", "mongo"),
    recovers=True,
    receipts=True,
    summary="acked once sequenced and in Kafka (acks=all); stored in MongoDB; sync by cursor",
)
