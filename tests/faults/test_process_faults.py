"""Break things for real under a steady load, then check that every acknowledged message
arrived exactly once per seq, in order, and is in the store (see tests/faults/load.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time

from tests.conftest import STACK, App
from tests.faults.load import background_load
from tests.integration.helpers import alice_and_bob, create_direct, send_acked, synced

REPORT = os.environ.get("CHAT_FAULT_REPORT", ".data/fault-report.jsonl")


def report(scenario: str, figures: dict[str, object]) -> None:
    line = json.dumps({"scenario": scenario, **figures})
    print("\n" + line)
    with open(REPORT, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


async def in_thread(fn, *args):  # type: ignore[no-untyped-def]
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def stack(action: str, service: str) -> None:
    subprocess.run([STACK, action, service], check=True, capture_output=True)


async def test_kill_a_worker(app: App, clients, user_ids) -> None:
    """kill -9 one of two workers: partitions move, tables recover from the changelogs, no seq
    is handed out twice, nothing is lost."""
    sup = app.supervisor
    try:
        async with background_load(app, user_ids.tag) as load:
            clients += [c for p in load.pairs for c in (p.sender, p.recipient)]
            await asyncio.sleep(3)
            before = load.acked_count()
            os.killpg(sup.running["worker-1"].proc.pid, signal.SIGKILL)
            # Recovery: acks flow again.
            recovered_s = await load.wait_for_acks(before + 20, timeout=120)
            await asyncio.sleep(2)
            await load.stop()
            figures = await load.verify()
    finally:
        await in_thread(sup.restart, "worker-1")
    report("kill -9 worker", {**figures, "lost": 0, "recovered_s": round(recovered_s, 1)})


async def test_kill_an_edge(app: App, clients, user_ids) -> None:
    """kill -9 the edge holding the recipients: they reconnect to the other node and sync, and
    miss nothing. A user who stays away goes offline when the dead node's sessions expire
    (< 30 s), and online again when they come back."""
    sup = app.supervisor
    try:
        async with background_load(app, user_ids.tag) as load:
            clients += [c for p in load.pairs for c in (p.sender, p.recipient)]
            watcher = await app.client(user_ids.watcher, edge=0)
            away = await app.client(user_ids.away, edge=1)
            clients += [watcher, away]
            await synced(away)
            await create_direct(watcher, away.user)  # presence is shown to contacts only
            await watcher.request({"type": "presence.subscribe", "users": [away.user]})
            await asyncio.sleep(2)
            os.killpg(sup.running["edge-1"].proc.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            await load.move_recipients(clients, to_edge=0)
            moved_s = time.monotonic() - killed_at
            offline = await watcher.wait_for(
                lambda f: f["type"] == "presence" and f["status"] == "offline", timeout=40
            )
            expired_s = time.monotonic() - killed_at
            assert offline["user"] == away.user and offline["last_seen"] > 0
            assert expired_s < 30
            back = await app.client(away.user, edge=0)
            clients.append(back)
            online = await watcher.wait_for(
                lambda f: (
                    f["type"] == "presence"
                    and f["status"] == "online"
                    and f["last_seen"] >= offline["last_seen"]
                )
            )
            assert online["user"] == away.user
            await asyncio.sleep(1)
            await load.stop()
            figures = await load.verify()
    finally:
        await in_thread(sup.restart, "edge-1")
    report(
        "kill -9 edge",
        {
            **figures,
            "lost": 0,
            "reconnect_and_sync_s": round(moved_s, 1),
            "dead_sessions_expired_s": round(expired_s, 1),
        },
    )


async def test_restart_kafka(app: App, clients, user_ids) -> None:
    """While the broker is down, sends get `unavailable` (never a false ack); afterwards
    everything resumes without operator action."""
    async with background_load(app, user_ids.tag) as load:
        clients += [c for p in load.pairs for c in (p.sender, p.recipient)]
        await asyncio.sleep(2)
        await in_thread(stack, "stop", "kafka")
        t_down = time.monotonic()
        try:
            await asyncio.sleep(8)
            acked_while_down = load.acked_count()
        finally:
            await in_thread(stack, "start", "kafka")
        down_s = time.monotonic() - t_down
        recovered_s = await load.wait_for_acks(acked_while_down + 20, timeout=120)
        await asyncio.sleep(2)
        await load.stop()
        figures = await load.verify()
        assert figures["unavailable_replies"] + figures["retries"] > 0
    report(
        "restart kafka",
        {**figures, "lost": 0, "down_s": round(down_s, 1), "recovered_s": round(recovered_s, 1)},
    )


async def test_stop_the_store(app: App, clients, user_ids) -> None:
    """MongoDB down for a while: the sink retries without committing past unsaved records and
    catches up; delivery never depended on it."""
    async with background_load(app, user_ids.tag) as load:
        clients += [c for p in load.pairs for c in (p.sender, p.recipient)]
        await asyncio.sleep(2)
        await in_thread(stack, "stop", "mongo")
        try:
            await asyncio.sleep(6)
            acked_during = load.acked_count()
        finally:
            await in_thread(stack, "start", "mongo")
        await asyncio.sleep(2)
        await load.stop()
        figures = await load.verify()
        assert acked_during > 0
    report("stop mongo", {**figures, "lost": 0})


async def test_kill_the_sink(app: App, clients, user_ids) -> None:
    """kill -9 the sink mid-batch: its replacement resumes from the last committed offset."""
    sup = app.supervisor
    async with background_load(app, user_ids.tag) as load:
        clients += [c for p in load.pairs for c in (p.sender, p.recipient)]
        await asyncio.sleep(3)
        os.killpg(sup.running["sink"].proc.pid, signal.SIGKILL)
        try:
            await asyncio.sleep(2)
        finally:
            await in_thread(sup.restart, "sink")
        await asyncio.sleep(2)
        await load.stop()
        figures = await load.verify()
    report("kill -9 sink", {**figures, "lost": 0})


async def test_sync_while_the_store_is_behind(app: App, clients, user_ids) -> None:
    """A sync that needs messages the sink has not stored yet answers ``unavailable`` rather
    than a gap; once the sink catches up, the same sync returns them all, in order."""
    sup = app.supervisor
    alice, bob = await alice_and_bob(app, clients, user_ids)
    cid = (await create_direct(alice, bob.user))["id"]
    await in_thread(sup.stop, "sink")
    try:
        for i in range(3):
            await send_acked(alice, cid, f"m{i}", f"{i}")
        for seq in (1, 2, 3):
            await bob.wait_for(lambda f, seq=seq: f["type"] == "message" and f["seq"] == seq)
        # Confirmed: the inbox lets them go, so a sync from 0 has to read them from the store.
        await bob.send({"type": "message.delivered", "conversation_id": cid, "seq": 3})
        await bob.wait_for(
            lambda f: f["type"] == "receipt" and f["kind"] == "delivered" and f["seq"] == 3
        )
        start = len(bob.frames)
        reply = await synced(bob, {cid: 0})
        assert reply["type"] == "error" and reply["code"] == "unavailable", reply
        assert not [f for f in bob.frames[start:] if f["type"] == "message"]
    finally:
        await in_thread(sup.restart, "sink")
    start = len(bob.frames)
    reply = await synced(bob, {cid: 0})
    assert reply["type"] == "sync.done", reply
    got = [f["seq"] for f in bob.frames[start:] if f["type"] == "message"]
    assert got == [1, 2, 3]
