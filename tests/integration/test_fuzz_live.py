"""Live fuzzing: thousands of random and mutated frames thrown at a running edge node.

Afterwards the node must still serve, its memory must not have run away, and every message
acknowledged during the run must be intact in the store.
"""

from __future__ import annotations

import json
import os
import random

import aiohttp
import psutil
from aiohttp import WSMsgType

from tests.client import ChatClient
from tests.integration.conftest import App
from tests.integration.helpers import (
    create_direct,
    eventually,
    send_acked,
    stored_messages,
    synced,
)
from tests.integration.test_security import start_extra_edge

FRAMES = int(os.environ.get("CHAT_FUZZ_FRAMES", "10000"))
PORT = 28094

VALID = [
    {"type": "ping"},
    {"type": "message.send", "conversation_id": "dm:a:b", "client_msg_id": "x", "body": "hi"},
    {"type": "conversation.create", "kind": "group", "members": ["u1"], "title": "t"},
    {"type": "conversation.add_members", "conversation_id": "grp:" + "a" * 32, "members": ["u"]},
    {"type": "receipt.read", "conversation_id": "dm:a:b", "seq": 1},
    {"type": "message.delivered", "conversation_id": "dm:a:b", "seq": 1},
    {"type": "typing", "conversation_id": "dm:a:b", "state": "start"},
    {"type": "sync", "cursors": {"dm:a:b": 0}},
    {"type": "presence.query", "users": ["a", "b"]},
]
WEIRD_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    2**64,
    -(2**80),
    1e308,
    0.5,
    "",
    "x" * 5000,
    [],
    {},
    [[[]]],
    {"a": {"b": {"c": []}}},
    "dm:a:b",
    "grp:" + "f" * 32,
    "\u0000",
    "\ud7ff\ue000",
    "🙂" * 100,
    list(range(2000)),
    {"$where": "1"},
]


def mutate(rng: random.Random) -> str | bytes:
    kind = rng.randrange(10)
    if kind == 0:  # random bytes as a binary frame
        return rng.randbytes(rng.randrange(1, 300))
    if kind == 1:  # random printable garbage as text
        return "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(1, 200)))
    if kind == 2:  # deep nesting
        depth = rng.choice([10, 600, 1500, 5000])
        return (
            "[" * depth + "]" * depth if rng.random() < 0.5 else '{"a":' * depth + "1" + "}" * depth
        )
    if kind == 3:  # huge numbers and odd literals
        return rng.choice(
            [
                '{"type":"ping","id":1e999}',
                '{"type":"receipt.read","seq":' + "9" * 400 + "}",
                "NaN",
                '{"type":"ping","id":-0}',
                "[]",
                "null",
                '"str"',
                "{}",
            ]
        )
    frame = dict(rng.choice(VALID))
    if kind == 4 and frame:  # drop a field
        frame.pop(rng.choice(list(frame)))
    elif kind in (5, 6):  # a field of the wrong type
        frame[rng.choice(list(frame))] = rng.choice(WEIRD_VALUES)
    elif kind == 7:  # unknown fields and ids of all sorts
        frame[f"extra{rng.randrange(5)}"] = rng.choice(WEIRD_VALUES)
        frame["id"] = rng.choice(WEIRD_VALUES)
    elif kind == 8:  # a wrong type name
        frame["type"] = rng.choice(["", "Ping", "message", "message.send ", "x" * 1000, "typing\n"])
    text = json.dumps(frame)
    if kind == 9:  # truncated JSON
        text = text[: rng.randrange(len(text))]
    return text


async def test_live_fuzz_leaves_the_edge_serving_and_data_intact(
    app: App, clients, user_ids
) -> None:
    name = await start_extra_edge(
        app,
        24,
        PORT,
        7,
        CHAT_INVALID_FRAMES_BEFORE_CLOSE="1000000",
        CHAT_MESSAGES_PER_S="100000",
        CHAT_MESSAGES_BURST="100000",
    )
    base = f"http://127.0.0.1:{PORT}"
    edge_proc = psutil.Process(app.supervisor.running[name].proc.pid)
    try:
        alice = await ChatClient.connect(base, app.token(user_ids.alice), user_ids.alice)
        bob = await app.client(user_ids.bob, edge=0)
        clients += [alice, bob]
        await synced(bob)
        cid = (await create_direct(alice, bob.user))["id"]
        rss_before = edge_proc.memory_info().rss

        rng = random.Random(20261129)
        sent = reconnects = 0
        acked: list[dict] = []
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(
                base + "/v1/ws", params={"access_token": app.token(user_ids.fuzzer)}
            )
            while sent < FRAMES:
                frame = mutate(rng)
                try:
                    if isinstance(frame, bytes):
                        await ws.send_bytes(frame)
                    else:
                        await ws.send_str(frame)
                except ConnectionError:
                    pass
                sent += 1
                if sent % 500 == 0:
                    # A real user keeps chatting through the noise.
                    acked.append(await send_acked(alice, cid, f"good{sent}", f"{sent}"))
                    # Drain replies so the edge is never blocked on our socket.
                    while True:
                        try:
                            msg = await ws.receive(timeout=0.01)
                        except TimeoutError:
                            break
                        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
                            break
                if ws.closed:
                    reconnects += 1
                    ws = await http.ws_connect(
                        base + "/v1/ws", params={"access_token": app.token(user_ids.fuzzer)}
                    )
            # Invalid UTF-8 in a text frame: the edge closes that session (1007), nothing else.
            await ws._writer.send_frame(b'{"type":"ping","x":"\xff\xfe"}', WSMsgType.TEXT)
            while (msg := await ws.receive(timeout=10)).type == WSMsgType.TEXT:
                pass  # error replies to earlier frames still on their way
            assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
            assert ws.close_code == 1007
            await ws.close()

        # The node still serves, over the same and new connections.
        assert (await alice.request({"type": "ping"}))["type"] == "pong"
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/healthz") as resp:
                assert resp.status == 200
        assert edge_proc.is_running()
        growth_mib = (edge_proc.memory_info().rss - rss_before) / 2**20
        assert growth_mib < 64, f"edge RSS grew by {growth_mib:.0f} MiB"

        # Every acknowledged message is intact, in order, in the store.
        expected = [(a["seq"], a["client_msg_id"]) for a in acked]

        async def stored() -> list | None:
            docs = await stored_messages(app.settings.mongo_url, app.settings.mongo_db, cid)
            return docs if len(docs) >= len(expected) else None

        docs = await eventually(stored, timeout=30)
        assert [(d["seq"], d["client_msg_id"]) for d in docs] == expected
        assert [d["body"] for d in docs] == [a["client_msg_id"][4:] for a in acked]
        print(
            f"\nfuzz: {sent} frames, {reconnects} reconnects, {len(acked)} acked messages intact,"
            f" edge RSS +{growth_mib:.1f} MiB"
        )
    finally:
        app.supervisor.stop(name)
