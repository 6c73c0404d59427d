"""``python -m bench.moderation``: the moderation scenario of issue #17, with the detector agents
on and off (docs/performance.md#moderation).

Each mode starts its own app (one stream worker, two edges; no sink: nothing here reads
history) in a fresh topic namespace and drives it with WebSocket clients:

1. **normal traffic** for ``--normal-s`` seconds at ``--rate`` msg/s over 1:1 and group
   conversations, sentences generated from a small grammar (some with a link): the CPU of the
   worker and the edges per message, and the send → ack latency, on vs off;
2. **the same traffic plus an attack**: ``--spammers`` accounts each sending one link (with
   one text) to their share of ``--victims`` users, as fast as the edge lets them, and a set of
   offensive messages sent by ordinary users in their conversations.

Then it reads every ``moderation.decision`` on ``chat.commands`` and reports: the time from the
first spam message to the first decision and to the campaign being stopped (every spammer muted
by the router's escalation), the spam sequenced before that and how much of it was redacted,
decisions on normal messages (false positives: must be 0 for the spam rules; reported for the
classifier), the offensive messages caught and the classifier's lag. Takes the bench lock
(/tmp/kchat-bench.lock) for the whole run, as ``python -m bench`` does; writes JSON under
bench-results/.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import itertools
import json
import os
import random
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.app import BENCH_ENV, namespace_env
from chat.kafka_security import aiokafka_kwargs
from chat.settings import Settings, load_settings
from edge.auth import mint_token
from ops.supervisor import REPO, Supervisor, edge_spec, worker_spec
from ops.topics import ensure_topics

LOCK = "/tmp/kchat-bench.lock"
# Ports of the first app; with --together the second one's are 100 higher.
EDGE_PORTS = (38080, 38081)
WORKER_PORT = 36066
OUT_DIR = REPO / "bench-results"
REPLY_TIMEOUT_S = 30.0

# Ordinary chat, generated: enough variety that two messages rarely share more than a few words.
OPENERS = ["hey", "ok so", "btw", "hi all", "quick one", "fyi", "sorry", "lol", "hmm", "so"]
SUBJECTS = ["I", "we", "the team", "my sister", "Sam", "the landlord", "our manager", "the kids"]
VERBS = [
    "will bring",
    "forgot",
    "just found",
    "need to fix",
    "can't find",
    "finally got",
    "might move",
    "are reviewing",
    "booked",
    "cleaned",
]
OBJECTS = [
    "the tickets",
    "the blue car",
    "two pizzas",
    "the report draft",
    "a new flat",
    "the garden shed",
    "our photos",
    "the train times",
    "the spare keys",
    "the budget",
]
WHEN = [
    "tonight",
    "tomorrow morning",
    "on friday",
    "after lunch",
    "next week",
    "at 7",
    "before the meeting",
    "this weekend",
    "in an hour",
    "later",
]
TAILS = ["", "!", "?", " :)", ", ok?", " - thoughts?", ", will call you", " (finally)"]
# Offensive messages the classifier should catch (English insults and slurs-free profanity).
OFFENSIVE = [
    "you are a fucking idiot",
    "shut the fuck up, moron",
    "what a piece of shit you are",
    "go to hell you stupid bitch",
    "this is bullshit and you know it, asshole",
    "fuck off and never text me again",
    "you dumb fuck, read the message",
    "stop being such a dick",
    "your idea is fucking stupid",
    "kiss my ass",
]


def sentence(rng: random.Random) -> str:
    text = (
        f"{rng.choice(OPENERS)} {rng.choice(SUBJECTS)} {rng.choice(VERBS)} "
        f"{rng.choice(OBJECTS)} {rng.choice(WHEN)}{rng.choice(TAILS)}"
    )
    if rng.random() < 0.05:
        text += f" https://docs.example.com/d/{rng.randrange(100_000)}"
    return text


@contextmanager
def bench_lock() -> Iterator[None]:
    with open(LOCK, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- the client


@dataclass
class Sent:
    kind: str  # normal, offensive, spam
    cid: str
    seq: int
    ts: int  # the message's ts (from its ack)
    sent_at: float  # wall clock, s
    acked_at: float


class Client:
    """One user's WebSocket: requests with an id resolve with their reply."""

    _ids = itertools.count(1)

    def __init__(self, user: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.user = user
        self.ws = ws
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.redacted = 0
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = orjson.loads(msg.data)
            future = self.waiting.pop(str(frame.get("id")), None)
            if future is not None and not future.done():
                future.set_result(frame)
            elif frame.get("type") == "message.redacted":
                self.redacted += 1

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        frame_id = f"b{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[frame_id] = future
        await self.ws.send_str(orjson.dumps({**frame, "id": frame_id}).decode())
        return await asyncio.wait_for(future, REPLY_TIMEOUT_S)

    async def send(self, cid: str, body: str) -> tuple[dict[str, Any], float, float]:
        sent_at = time.time()
        reply = await self.request(
            {
                "type": "message.send",
                "conversation_id": cid,
                "client_msg_id": uuid.uuid4().hex,
                "body": body,
            }
        )
        return reply, sent_at, time.time()


async def connect(http: aiohttp.ClientSession, settings: Settings, user: str, port: int) -> Client:
    token = mint_token(settings, user)[0]
    ws = await http.ws_connect(
        f"ws://127.0.0.1:{port}/v1/ws", params={"access_token": token}, max_msg_size=0
    )
    return Client(user, ws)


# --------------------------------------------------------------------------- one mode


@dataclass
class Run:
    mode: str
    settings: Settings
    sup: Supervisor
    rng: random.Random
    edge_ports: tuple[int, ...]
    sent: list[Sent] = field(default_factory=list)
    refusals: list[tuple[str, float, str]] = field(default_factory=list)  # user, at, reason
    spam_attempts: int = 0

    def pids(self) -> list[int]:
        return [r.proc.pid for r in self.sup.running.values()]

    def cpu_s(self) -> dict[str, float]:
        out = {}
        for name, r in self.sup.running.items():
            times = psutil.Process(r.proc.pid).cpu_times()
            out[name] = times.user + times.system
        return out


async def normal_traffic(
    run: Run,
    users: dict[str, Client],
    conversations: list[tuple[str, list[str]]],
    rate: float,
    seconds: float,
) -> None:
    """Sends at ``rate`` msg/s for ``seconds`` from random members of random conversations."""
    interval = 1.0 / rate
    start = time.monotonic()
    tasks: set[asyncio.Task[None]] = set()

    async def one(cid: str, sender: str) -> None:
        reply, sent_at, acked_at = await users[sender].send(cid, sentence(run.rng))
        if reply.get("type") == "message.ack":
            run.sent.append(Sent("normal", cid, reply["seq"], reply["ts"], sent_at, acked_at))

    for i in itertools.count():
        at = start + i * interval
        if at - start >= seconds:
            break
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        cid, members = run.rng.choice(conversations)
        task = asyncio.create_task(one(cid, run.rng.choice(members)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)


async def offensive_messages(
    run: Run, users: dict[str, Client], conversations: list[tuple[str, list[str]]], seconds: float
) -> None:
    for body in OFFENSIVE:
        await asyncio.sleep(seconds / (len(OFFENSIVE) + 1))
        cid, members = run.rng.choice(conversations)
        reply, sent_at, acked_at = await users[run.rng.choice(members)].send(cid, body)
        if reply.get("type") == "message.ack":
            run.sent.append(Sent("offensive", cid, reply["seq"], reply["ts"], sent_at, acked_at))


async def spammer(run: Run, client: Client, victims: list[str], body: str, per_s: float) -> None:
    """One account sending ``body`` to each victim in a new 1:1 conversation until refused."""
    for victim in victims:
        started = time.monotonic()
        created = await client.request(
            {"type": "conversation.create", "kind": "direct", "members": [victim]}
        )
        if created.get("type") != "ok":
            run.refusals.append((client.user, time.time(), str(created.get("code"))))
            return
        cid = created["conversation"]["id"]
        run.spam_attempts += 1
        reply, sent_at, acked_at = await client.send(cid, body)
        if reply.get("type") != "message.ack":
            run.refusals.append((client.user, time.time(), str(reply.get("reason"))))
            return
        run.sent.append(Sent("spam", cid, reply["seq"], reply["ts"], sent_at, acked_at))
        await asyncio.sleep(max(0.0, 1.0 / per_s - (time.monotonic() - started)))


async def read_decisions(settings: Settings) -> list[tuple[int, dict[str, Any]]]:
    """Every moderation.decision on chat.commands, with its record's timestamp (ms)."""
    topic = settings.topic("commands")
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **aiokafka_kwargs(settings))
    await consumer.start()
    out: list[tuple[int, dict[str, Any]]] = []
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.conversation_partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)

        async def behind() -> bool:
            return any([await consumer.position(p) < ends[p] for p in parts])

        while await behind():
            for records in (await consumer.getmany(*parts, timeout_ms=1000)).values():
                for record in records:
                    value = orjson.loads(record.value)
                    if isinstance(value, dict) and value.get("op") == "moderation.decision":
                        out.append((record.timestamp, value))
    finally:
        await consumer.stop()
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_mode(mode: str, args: argparse.Namespace, shift: int = 0) -> dict[str, Any]:
    on = mode == "on"
    prefix = f"chatbenchmod-{mode}-{uuid.uuid4().hex[:6]}"
    env = {
        **BENCH_ENV,
        **namespace_env(prefix),
        "CHAT_MODERATION_AGENTS": "true" if on else "false",
        "CHAT_CONVERSATION_OPS_PER_S": "1000",
        "CHAT_CONVERSATION_OPS_BURST": "2000",
    }
    settings = load_settings({**os.environ, **env})
    await ensure_topics(settings)
    log_dir = Path(os.environ.get("CHAT_DATA_DIR", REPO / ".data")) / "logs" / "bench-moderation"
    sup = Supervisor(log_dir=log_dir, base_env={**os.environ, **env})
    edge_ports = tuple(port + shift for port in EDGE_PORTS)
    run = Run(mode, settings, sup, random.Random(args.seed), edge_ports)
    try:
        sup.start(worker_spec(0, {}, WORKER_PORT + shift))
        for i, port in enumerate(edge_ports):
            sup.start(edge_spec(i, {}, port, i))
        await asyncio.to_thread(sup.wait_ready, None, 240)
        return await drive(run, args)
    finally:
        sup.stop_all()


async def drive(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    rng, settings = run.rng, run.settings
    names = [f"user{i}" for i in range(args.users)]
    # No pool limit: every user holds a WebSocket, and aiohttp's default pool of 100 would keep
    # the 101st connection waiting for ever.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        ports = run.edge_ports
        users = {u: await connect(http, settings, u, ports[i % 2]) for i, u in enumerate(names)}
        spammers = [
            await connect(http, settings, f"spammer{i}", ports[i % 2]) for i in range(args.spammers)
        ]
        conversations: list[tuple[str, list[str]]] = []
        # 1:1: each user with two others; groups of 3-12.
        for i, user in enumerate(names):
            for other in (names[(i + 1) % len(names)], names[(i + 7) % len(names)]):
                reply = await users[user].request(
                    {"type": "conversation.create", "kind": "direct", "members": [other]}
                )
                conversations.append((reply["conversation"]["id"], [user, other]))
        for g in range(args.users // 4):
            members = rng.sample(names, rng.randrange(3, 13))
            reply = await users[members[0]].request(
                {
                    "type": "conversation.create",
                    "kind": "group",
                    "members": members[1:],
                    "title": f"group {g}",
                }
            )
            conversations.append((reply["conversation"]["id"], members))
        # Warm-up (the classifier's model loads on its first batch; Faust settles).
        await normal_traffic(run, users, conversations, args.rate, 5)
        run.sent.clear()

        before, t0 = run.cpu_s(), time.time()
        await normal_traffic(run, users, conversations, args.rate, args.normal_s)
        after, t1 = run.cpu_s(), time.time()
        normal_sent = len(run.sent)
        normal_acks = [s.acked_at - s.sent_at for s in run.sent]

        victims = [f"victim{i}" for i in range(args.victims)]
        share = [victims[i :: args.spammers] for i in range(args.spammers)]
        spam_body = f"Congratulations! You have been selected for a free gift card, claim it at https://gift-{uuid.uuid4().hex[:6]}.example.shop/claim"
        attack_start = time.time()
        await asyncio.gather(
            normal_traffic(run, users, conversations, args.rate, args.attack_s),
            offensive_messages(run, users, conversations, args.attack_s),
            *(
                spammer(run, c, share[i], spam_body, args.spam_per_s)
                for i, c in enumerate(spammers)
            ),
        )
        # The detectors run behind: wait until no new decision arrived for a while.
        last_count, quiet_since = -1, time.monotonic()
        while time.monotonic() - quiet_since < 10:
            await asyncio.sleep(2)
            count = len(await read_decisions(settings))
            if count != last_count:
                last_count, quiet_since = count, time.monotonic()
        decisions = await read_decisions(settings)
        redacted_seen = sum(c.redacted for c in users.values())
        for c in [*users.values(), *spammers]:
            await c.ws.close()

    by_message: dict[tuple[str, int], list[tuple[int, dict[str, Any]]]] = {}
    for at, d in decisions:
        by_message.setdefault((d["conversation_id"], d["seq"]), []).append((at, d))
    kinds = {(s.cid, s.seq): s for s in run.sent}
    spam = [s for s in run.sent if s.kind == "spam"]
    offensive = [s for s in run.sent if s.kind == "offensive"]
    normal = [s for s in run.sent if s.kind == "normal"]

    def decided(s: Sent, source: str, action: str | None = None) -> bool:
        return any(
            d["source"] == source and (action is None or d["action"] == action)
            for _, d in by_message.get((s.cid, s.seq), [])
        )

    first_spam = min((s.sent_at for s in spam), default=attack_start)
    spam_decision_times = [
        at / 1000
        for s in spam
        for at, d in by_message.get((s.cid, s.seq), [])
        if d["source"] == "spam"
    ]
    muted = [at for _, at, reason in run.refusals if reason == "muted"]
    lags = [
        at / 1000 - s.ts / 1000
        for s in offensive
        for at, d in by_message.get((s.cid, s.seq), [])
        if d["source"] == "classifier"
    ]
    cpu_ms = {name: (after[name] - before[name]) * 1000 / max(normal_sent, 1) for name in after}
    return {
        "mode": run.mode,
        "normal_phase": {
            "seconds": round(t1 - t0, 1),
            "messages": normal_sent,
            "cpu_ms_per_message": {k: round(v, 3) for k, v in cpu_ms.items()},
            "cpu_ms_per_message_total": round(sum(cpu_ms.values()), 3),
            "ack_p50_ms": round(pct(normal_acks, 0.5) * 1000, 1),
            "ack_p99_ms": round(pct(normal_acks, 0.99) * 1000, 1),
        },
        "attack": {
            "spam_attempted": run.spam_attempts,
            "spam_sequenced": len(spam),
            "spam_redacted": sum(decided(s, "spam", "redact") for s in spam),
            "first_decision_after_s": round(min(spam_decision_times) - first_spam, 2)
            if spam_decision_times
            else None,
            "spammers_muted": len(muted),
            "stopped_after_s": round(max(muted) - first_spam, 2)
            if len(muted) == args.spammers
            else None,
            "spam_sequenced_after_first_decision": sum(
                s.sent_at > min(spam_decision_times) for s in spam
            )
            if spam_decision_times
            else None,
            "redacted_frames_seen_by_normal_users": redacted_seen,
        },
        "offensive": {
            "sent": len(offensive),
            "redacted": sum(decided(s, "classifier", "redact") for s in offensive),
            "flagged": sum(decided(s, "classifier", "flag") for s in offensive),
            "lag_p50_s": round(statistics.median(lags), 3) if lags else None,
            "lag_max_s": round(max(lags), 3) if lags else None,
        },
        "false_positives": {
            "normal_messages": len(normal),
            "spam_rules": sum(
                1
                for s in normal
                if any(d["source"] == "spam" for _, d in by_message.get((s.cid, s.seq), []))
            ),
            "classifier": sum(decided(s, "classifier") for s in normal),
        },
        "decisions": len(decisions),
        "decisions_on_unknown_messages": sum(1 for key in by_message if key not in kinds),
    }


async def together(modes: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    return list(
        await asyncio.gather(*(run_mode(mode, args, 100 * i) for i, mode in enumerate(modes)))
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.moderation", description=__doc__)
    p.add_argument("--modes", default="on,off", help="on, off or both (on,off)")
    p.add_argument("--users", type=int, default=120)
    p.add_argument("--rate", type=float, default=50.0, help="normal messages per second")
    p.add_argument("--normal-s", type=float, default=60.0)
    p.add_argument("--attack-s", type=float, default=40.0)
    p.add_argument("--spammers", type=int, default=5)
    p.add_argument("--victims", type=int, default=500)
    p.add_argument("--spam-per-s", type=float, default=5.0, help="per spammer")
    p.add_argument("--seed", type=int, default=17)
    p.add_argument(
        "--together",
        action="store_true",
        help="run the modes at the same time, each its own app, driven alike: on a shared"
        " machine both then see the same contention (CPU per message is comparable)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = []
    with bench_lock():
        modes = [mode.strip() for mode in args.modes.split(",")]
        if args.together:
            print(f"moderation bench: detectors {' and '.join(modes)} at once ...", flush=True)
            results = asyncio.run(together(modes, args))
            print(json.dumps(results, indent=2), flush=True)
        for mode in [] if args.together else modes:
            print(f"moderation bench: detectors {mode} ...", flush=True)
            results.append(asyncio.run(run_mode(mode, args)))
            print(json.dumps(results[-1], indent=2), flush=True)
    OUT_DIR.mkdir(exist_ok=True)
    path = OUT_DIR / f"moderation-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
