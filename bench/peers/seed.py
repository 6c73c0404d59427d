"""``seed``: the reference architecture this project replaces, in its own Node.js stack.

Two Socket.IO 4 nodes (bench/peers/seed/node.js, Redis adapter, JWT in a middleware, kafkajs
producer with acks=all) and one consumer-group process (consumer.js: sequence per
conversation, MongoDB, publish through Redis with the Socket.IO emitter), on the same Kafka,
Redis and MongoDB-wire server as ours, with its own topic, group and database per run.

The client is python-socketio's AsyncClient, like the relay's. A conversation is the direct
conversation ``dm:<a>:<b>`` (both directions, one sequence, as ours). The ack comes once Kafka
has the message, before it has a seq; the consumer publishes each message to both members'
rooms, so the sender learns the seq from its own copy (``on_sequenced``).
"""

from __future__ import annotations

import os
from typing import Any

from bench.peers.base import ClientSpec, Context, Hooks, Pending, System
from bench.peers.install import SEED_SRC, install_seed, seed_dir
from bench.peers.relay import RelayClient
from ops.supervisor import ProcessSpec

PORTS = (8094, 8095)
CONSUMER_PORT = 8098


class SeedClient(RelayClient):
    def __init__(self, gen: Hooks, index: int, spec: ClientSpec) -> None:
        super().__init__(gen, index, spec)
        # client_msg_id -> the message, until both its ack and its own copy (with its seq) are
        # back. Either may come first: the consumer can sequence and publish a message before
        # the node's ack, which waits for Kafka's, reaches the sender.
        self.acked: dict[str, Pending] = {}
        self.early_seq: dict[str, int] = {}

    def auth(self) -> dict[str, str]:
        return {"token": self.gen.token(self.user)}

    async def on_event(self, data: dict[str, Any]) -> None:
        conv = data["conversation_id"]
        if data["from"] == self.user:
            cmid, seq = data["client_msg_id"], int(data["seq"])
            p = self.acked.pop(cmid, None)
            if p is not None:
                self.gen.on_sequenced(self, p, seq)
            else:
                self.early_seq[cmid] = seq
            return
        self.gen.on_message(self, conv, int(data["seq"]), data["body"])

    async def create(self, members: list[str], group: bool) -> str:
        a, b = sorted((self.user, members[0]))
        return f"dm:{a}:{b}"  # conversations are implicit in the seed

    async def send(self, conv: str, body: str, pending: Pending) -> None:
        def on_ack(reply: dict[str, Any]) -> None:
            if reply.get("ok"):
                seq = self.early_seq.pop(pending.cmid, None)
                if seq is None:
                    self.acked[pending.cmid] = pending
                self.gen.on_ack(self, pending, seq)
            else:
                self.gen.on_send_error(pending, str(reply.get("error", "?")))

        try:
            await self.sio.emit(
                "send",
                {"conversation_id": conv, "body": body, "client_msg_id": pending.cmid},
                callback=on_ack,
            )
        except Exception:
            self.gen.on_send_error(pending, "disconnected")

    async def sync(self, cursors: dict[str, int] | None) -> None:
        reply = await self.sio.call("sync", {"cursors": cursors or {}}, timeout=60)
        if not isinstance(reply, dict) or not reply.get("ok"):
            raise RuntimeError(f"sync failed: {reply}")


def _env(ctx: Context) -> dict[str, str]:
    return {
        "NODE_PATH": str(seed_dir() / "node_modules"),
        "SEED_JWT_SECRET": ctx.jwt_secret,
        "SEED_TOPIC": f"seed{ctx.run_id}.messages",
        "SEED_GROUP": f"seed{ctx.run_id}-consumer",
        "SEED_DB": f"seed_{ctx.run_id}",
        "SEED_CHANNEL": f"seed{ctx.run_id}-socket.io",
        "SEED_HEALTH_PORT": str(CONSUMER_PORT),
        # kafkajs warns at every start that its default partitioner changed in 2.0 (murmur2,
        # as the Java client: keys land on the same partitions as ours).
        "KAFKAJS_NO_PARTITIONER_WARNING": "1",
    }


def stages(ctx: Context) -> list[list[ProcessSpec]]:
    node = os.environ.get("BENCH_NODE", "node")
    env = _env(ctx)
    # The consumer first: it creates the topic the nodes produce to, and reports ready once it
    # has joined its group.
    consumer = ProcessSpec(
        "seed-consumer",
        "",
        env,
        f"http://127.0.0.1:{CONSUMER_PORT}/",
        argv=[node, str(SEED_SRC / "consumer.js")],
    )
    nodes = [
        ProcessSpec(
            f"seed-node-{i}",
            "",
            {**env, "SEED_PORT": str(port)},
            f"http://127.0.0.1:{port}/healthz",
            argv=[node, str(SEED_SRC / "node.js")],
        )
        for i, port in enumerate(PORTS)
    ]
    return [[consumer], nodes]


async def cleanup(ctx: Context) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from pymongo import AsyncMongoClient

    env = _env(ctx)
    admin = AIOKafkaAdminClient(bootstrap_servers="127.0.0.1:9092")
    await admin.start()
    try:
        if env["SEED_TOPIC"] in await admin.list_topics():
            await admin.delete_topics([env["SEED_TOPIC"]])
    finally:
        await admin.close()
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient("mongodb://127.0.0.1:27017/")
    try:
        await mongo.drop_database(env["SEED_DB"])
    finally:
        await mongo.close()


SYSTEM = System(
    name="seed",
    title="seed (Node.js: Socket.IO + kafkajs + MongoDB)",
    client=SeedClient,
    urls=tuple(f"http://127.0.0.1:{p}" for p in PORTS),
    processes=("seed",),
    node0="seed-node-0",
    shared=("kafka", "redis", "mongo"),
    recovers=True,
    stages=stages,
    install=install_seed,
    cleanup=cleanup,
    summary="acked once in Kafka (acks=all), sequenced and stored by one consumer; sync from"
    " MongoDB by last seq; delivery through Redis pub/sub (at-most-once while online)",
)
