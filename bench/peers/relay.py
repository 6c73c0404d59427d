"""``relay``: python-socketio with its Redis manager (bench/peers/relay_server.py), two nodes.

A "conversation" here is the directed stream ``<sender>><recipient>``, which the server
numbers with its own in-memory counter; nothing is stored, there is no sync.
"""

from __future__ import annotations

from typing import Any

from bench.peers.base import Client, ClientSpec, Context, Hooks, Pending, System
from ops.supervisor import ProcessSpec

PORTS = (8090, 8091)


class RelayClient(Client):
    """python-socketio's AsyncClient, websocket transport."""

    event = "msg"

    def __init__(self, gen: Hooks, index: int, spec: ClientSpec) -> None:
        super().__init__(gen, index, spec)
        import socketio  # only the Socket.IO peers need it

        self.sio = socketio.AsyncClient(
            reconnection=False, http_session=gen.http_for(index), handle_sigint=False
        )
        self.sio.on(self.event, self.on_event)

    def auth(self) -> dict[str, str]:
        return {"user": self.user}  # the relay checks nothing

    async def on_event(self, data: dict[str, Any]) -> None:
        self.gen.on_message(self, f"{data['from']}>{data['to']}", data["seq"], data["body"])

    async def connect(self) -> None:
        await self.sio.connect(
            self.url, auth=self.auth(), transports=["websocket"], wait_timeout=30
        )
        self.connected = True

    async def send(self, conv: str, body: str, pending: Pending) -> None:
        to = conv.split(">", 1)[1]

        def on_ack(reply: dict[str, Any]) -> None:
            if "seq" in reply:
                self.gen.on_ack(self, pending, int(reply["seq"]))
            else:
                self.gen.on_send_error(pending, str(reply.get("error", "?")))

        try:
            await self.sio.emit(
                "msg", {"to": to, "body": body, "client_msg_id": pending.cmid}, callback=on_ack
            )
        except Exception:
            self.gen.on_send_error(pending, "disconnected")

    async def create(self, members: list[str], group: bool) -> str:
        return f"{self.user}>{members[0]}"  # rooms need no setup

    async def close(self) -> None:
        self.connected = False
        await self.sio.disconnect()


def stages(ctx: Context) -> list[list[ProcessSpec]]:
    return [
        [
            ProcessSpec(
                f"relay-{i}",
                "bench.peers.relay_server",
                {"BENCH_PEER_PORT": str(port)},
                f"http://127.0.0.1:{port}/healthz",
            )
            for i, port in enumerate(PORTS)
        ]
    ]


SYSTEM = System(
    name="relay",
    title="relay (python-socketio + Redis)",
    client=RelayClient,
    urls=tuple(f"http://127.0.0.1:{p}" for p in PORTS),
    processes=("relay",),
    node0="relay-0",
    directed=True,
    shared=("redis",),
    stages=stages,
    summary="no auth, nothing stored, no sync; ack = this node saw it; Redis pub/sub at-most-once",
)
