"""``make run`` (ops/run.py) behaves like the cluster it stands for (#14, item 9): a process
that dies is started again while the others keep serving, and nothing the runner started
outlives it, even when the runner itself is SIGKILLed.

The runner runs here on its own ports, topics and database (never 8080/8081, which `make run`
and the benches use) and without managing the local services (CHAT_RUN_STACK=false).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chat.settings import load_settings
from edge.auth import mint_token
from ops.supervisor import REPO, http_ok, process_start_time
from tests.client import ChatClient
from tests.conftest import LANE, NAMESPACE, PORT_SHIFT
from tests.integration.helpers import create_direct, synced

RUN_NS = f"{NAMESPACE}run"
EDGE_PORT = 29080 + PORT_SHIFT
RUN_ENV = {
    "CHAT_ENV": "dev",
    "CHAT_RUN_STACK": "false",
    "CHAT_TOPIC_PREFIX": RUN_NS,
    "CHAT_WORKER_APP_ID": f"{RUN_NS}-worker",
    "CHAT_SINK_GROUP": f"{RUN_NS}-sink",
    "CHAT_MONGO_DB": RUN_NS,
    "CHAT_EDGE_PORT": str(EDGE_PORT),
    "CHAT_WORKER_WEB_PORT": str(29066 + PORT_SHIFT),
    "CHAT_SINK_METRICS_PORT": str(29070 + PORT_SHIFT),
    "CHAT_LB_PORT": "0",
    "CHAT_MESSAGES_PER_S": "1000",
    "CHAT_MESSAGES_BURST": "2000",
    "CHAT_UPGRADES_PER_MIN": "100000",
}


class Runner:
    def __init__(self, data_dir: Path, name: str = "runner") -> None:
        self.data_dir = data_dir
        self.output = data_dir / f"{name}.out"
        self.state_file = data_dir / "run" / f"processes-{EDGE_PORT}.json"
        env = {
            **os.environ,
            **RUN_ENV,
            "CHAT_DATA_DIR": str(data_dir),
            "CHAT_WORKER_DATA_DIR": str(data_dir / "faust"),
        }
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ops.run"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.settings = load_settings({**os.environ, **RUN_ENV})

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for_output(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            assert self.proc.poll() is None, f"runner exited:\n{self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {needle!r} in:\n{self.text()[-3000:]}"
            time.sleep(0.5)

    def processes(self) -> dict[str, Any]:
        entries: dict[str, Any] = json.loads(self.state_file.read_text())
        return entries


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    run = Runner(tmp_path)
    try:
        yield run
    finally:
        if run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGTERM)
            try:
                run.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(run.proc.pid, signal.SIGKILL)


def edge_url(index: int) -> str:
    return f"http://127.0.0.1:{EDGE_PORT + index}"


@pytest.mark.timeout(600)
async def test_killed_edge_restarts_while_the_other_keeps_serving(runner: Runner) -> None:
    runner.wait_for_output("chat is up", timeout=300)
    token = lambda user: mint_token(runner.settings, user)[0]  # noqa: E731
    suffix = f"{LANE}{int(time.time() * 1000) % 10**8}"
    alice_name, bob_name = f"alice-{suffix}", f"bob-{suffix}"
    alice = await ChatClient.connect(edge_url(0), token(alice_name), alice_name)
    bob = await ChatClient.connect(edge_url(1), token(bob_name), bob_name)
    clients = [alice, bob]
    try:
        cid = (await create_direct(alice, bob_name))["id"]
        for client in (alice, bob):
            await synced(client)
        acks: list[dict[str, Any]] = []
        stop_sending = asyncio.Event()

        async def keep_sending() -> None:
            n = 0
            while not stop_sending.is_set():
                n += 1
                reply = await alice.request(
                    {
                        "type": "message.send",
                        "conversation_id": cid,
                        "client_msg_id": f"m{n}",
                        "body": f"message {n}",
                    }
                )
                # Alice's edge keeps serving: every send is acknowledged, none refused.
                assert reply["type"] == "message.ack", reply
                acks.append(reply)
                await asyncio.sleep(0.05)

        sender = asyncio.create_task(keep_sending())
        await alice.wait_for(lambda f: len(alice.of_type("message.ack")) >= 10)
        await bob.wait_for(lambda f: f.get("type") == "message" and f["seq"] >= 5)

        killed_pid = runner.processes()["edge-1"]["pid"]
        os.kill(killed_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        await bob.wait_closed(timeout=15)
        # Bob's client reconnects to the other edge and syncs from what it has.
        seen = {f["seq"] for f in bob.messages(cid)}
        bob2 = await ChatClient.connect(edge_url(0), token(bob_name), bob_name)
        clients.append(bob2)
        done = await synced(bob2, {cid: max(seen)})
        assert done["type"] == "sync.done", done

        # The killed edge is back within seconds, in a new process, while alice still sends.
        while not http_ok(f"{edge_url(1)}/readyz"):
            assert time.monotonic() - killed_at < 30, runner.text()[-3000:]
            await asyncio.sleep(0.2)
        back_after = time.monotonic() - killed_at
        assert runner.processes()["edge-1"]["pid"] != killed_pid
        sent_during_outage = len(acks)
        await asyncio.sleep(1.0)
        stop_sending.set()
        await sender
        assert len(acks) > sent_during_outage
        assert "edge-1 exited with -9; restarting it in" in runner.text()
        assert "edge-1 restarted" in runner.text()

        # Nothing missing: every acknowledged seq reached bob (old session, sync, live).
        last = acks[-1]["seq"]
        await bob2.wait_for(lambda f: f.get("type") == "message" and f["seq"] == last, 20)
        got = seen | {f["seq"] for f in bob2.messages(cid)}
        assert got >= set(range(1, last + 1)), sorted(set(range(1, last + 1)) - got)
        print(f"edge back after {back_after:.1f}s; {len(acks)} messages acked, none refused")
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

    # The runner dies without a chance to clean up: everything it started goes with it.
    children = runner.processes()
    os.kill(runner.proc.pid, signal.SIGKILL)
    runner.proc.wait()
    deadline = time.monotonic() + 30
    for name, entry in children.items():
        while process_start_time(entry["pid"]) == entry["started"]:
            assert time.monotonic() < deadline, f"{name} outlived the runner"
            await asyncio.sleep(0.2)
    for index in (0, 1):
        assert not http_ok(f"{edge_url(index)}/healthz")


@pytest.mark.timeout(600)
async def test_a_start_stops_what_an_earlier_run_left(tmp_path: Path) -> None:
    """The earlier runner is gone in a way its children did not notice (here: stopped, as a
    hung or a pre-PDEATHSIG runner would be), its processes still hold the ports: the next
    start says so, stops exactly those, and comes up."""
    first = Runner(tmp_path, "first")
    second: Runner | None = None
    try:
        first.wait_for_output("chat is up", timeout=300)
        left = first.processes()
        os.kill(first.proc.pid, signal.SIGSTOP)
        second = Runner(tmp_path, "second")
        second.wait_for_output("an earlier run left", timeout=60)
        assert all(name in second.text() for name in left)
        second.wait_for_output("chat is up", timeout=300)
        for name, entry in left.items():
            assert process_start_time(entry["pid"]) != entry["started"], name
        assert http_ok(f"{edge_url(1)}/readyz")
        assert set(second.processes()) == set(left)
    finally:
        os.kill(first.proc.pid, signal.SIGKILL)
        os.kill(first.proc.pid, signal.SIGCONT)
        first.proc.wait()
        if second is not None and second.proc.poll() is None:
            os.killpg(second.proc.pid, signal.SIGTERM)
            second.proc.wait(60)
