"""The relay peer: a python-socketio ``AsyncServer`` on aiohttp with ``AsyncRedisManager``.

``python -m bench.peers.relay_server --port 8090`` (the bench runs two: 8090 and 8091). What
it does, and all it does:

- a client connects with ``auth={"user": "<id>"}`` (no token: the peer checks nothing) and
  joins the room ``user:<id>``;
- a ``msg`` event ``{to, body, client_msg_id}`` is emitted to the room ``user:<to>`` through
  Redis pub/sub (so it reaches the recipient on either node) as
  ``{from, to, seq, body, client_msg_id, ts}``, and the sender's ack carries ``seq``: a counter
  per (sender, recipient) kept in this process's memory.

What it does not guarantee: nothing is stored (a recipient that is offline, or reconnecting,
never gets the message, and there is no ``sync``), the ack only means "this node saw it" (not
"delivered" nor "durable"), the counter dies with the process, and Redis pub/sub is
at-most-once (a node that is slow to read or briefly disconnected from Redis loses messages).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from typing import Any

import redis.asyncio
import socketio
import uvloop
from aiohttp import web

CHANNEL = "kchat-bench-peer"
POOL_SIZE = 32


class BoundedRedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """AsyncRedisManager with a bounded, blocking connection pool, as one would deploy it.

    With the default pool every concurrent ``emit`` opens another Redis connection; under load
    that runs into Redis's ``maxclients`` and the manager then reconnects with a fresh pool on
    every failed publish, leaking connections until publishes give up. A bounded pool makes
    publishes wait for a connection instead."""

    def _redis_connect(self) -> None:
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            self.redis_url, max_connections=POOL_SIZE, timeout=30
        )
        self.redis = redis.asyncio.Redis(connection_pool=pool)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.connected = True


class _WithRedisError(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        detail = getattr(record, "redis_exception", None)
        return f"{text} ({detail})" if detail else text


def manager_logger() -> logging.Logger:
    handler = logging.StreamHandler()
    handler.setFormatter(_WithRedisError("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("bench.peer.manager")
    logger.addHandler(handler)
    logger.propagate = False
    return logger


def build(redis_url: str) -> web.Application:
    manager = BoundedRedisManager(redis_url, channel=CHANNEL, logger=manager_logger())
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        cors_allowed_origins="*",
        ping_interval=20,
        ping_timeout=10,
        max_http_buffer_size=64 * 1024,
    )
    users: dict[str, str] = {}
    counters: dict[tuple[str, str], int] = {}

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        user = auth.get("user") if isinstance(auth, dict) else None
        if not isinstance(user, str) or not user:
            raise socketio.exceptions.ConnectionRefusedError("unauthorized")
        users[sid] = user
        await sio.enter_room(sid, f"user:{user}")

    @sio.event
    async def disconnect(sid: str, *args: Any) -> None:
        users.pop(sid, None)

    @sio.on("msg")
    async def msg(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        sender = users.get(sid)
        if sender is None:  # an event that raced its client's disconnect
            return {"error": "disconnected"}
        to = str(data["to"])
        key = (sender, to)
        seq = counters.get(key, 0) + 1
        counters[key] = seq
        ts = int(time.time() * 1000)
        await sio.emit(
            "msg",
            {
                "from": sender,
                "to": to,
                "seq": seq,
                "body": data["body"],
                "client_msg_id": data.get("client_msg_id"),
                "ts": ts,
            },
            room=f"user:{to}",
        )
        return {"seq": seq, "ts": ts}

    app = web.Application()
    sio.attach(app)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "sessions": len(users)})

    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("BENCH_PEER_PORT", "8090")))
    parser.add_argument(
        "--redis", default=os.environ.get("BENCH_PEER_REDIS", "redis://127.0.0.1:6379/1")
    )
    args = parser.parse_args()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(build(args.redis), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
