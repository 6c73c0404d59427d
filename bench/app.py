"""Starting and stopping the systems under test: our app (reused, or started like ``make run``
does) and a peer's processes (described by its module in bench/peers/)."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import MongoClient

from chat.kafka_security import aiokafka_kwargs
from chat.settings import load_settings
from ops.supervisor import (
    REPO,
    ProcessSpec,
    Supervisor,
    edge_spec,
    http_ok,
    sink_spec,
    worker_spec,
)
from ops.topics import ensure_topics

STACK = str(REPO / "ops" / "stack" / "stack.sh")
EDGE_PORTS = (8080, 8081)
WORKER_PORTS = (6066, 6067, 6068, 6069)  # the first --workers of them
SINK_PORT = 6070
SERVICE_PORTS = {"kafka": 9092, "redis": 6379, "mongo": 27017}
NOFILE = 262_144

# The app as `make run` starts it, with limits that do not throttle a load test.
BENCH_ENV = {
    "CHAT_ENV": "dev",
    "CHAT_MESSAGES_PER_S": "100000",
    "CHAT_MESSAGES_BURST": "100000",
    "CHAT_UPGRADES_PER_MIN": "1000000",
    "CHAT_CONNECTIONS_PER_USER": "100",
}


def process_ports() -> dict[str, int]:
    """Name -> listening port of every process the bench reports on."""
    ports = {f"edge-{i}": p for i, p in enumerate(EDGE_PORTS)}
    ports |= {f"worker-{i}": p for i, p in enumerate(WORKER_PORTS)}
    ports["sink"] = SINK_PORT
    ports |= SERVICE_PORTS
    return ports


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def raise_nofile(want: int = NOFILE) -> tuple[int, int]:
    """Raise this process's RLIMIT_NOFILE (inherited by everything it starts)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def log_dir() -> Path:
    return Path(os.environ.get("CHAT_DATA_DIR", REPO / ".data")) / "logs" / "bench"


def namespace_env(prefix: str) -> dict[str, str]:
    """Topics, consumer groups and the Mongo database of one bench app, apart from ``make run``'s
    and the tests': the app starts on empty state and leaves the developer's data alone."""
    if prefix == "chat":
        return {}
    return {
        "CHAT_TOPIC_PREFIX": prefix,
        "CHAT_WORKER_APP_ID": f"{prefix}-worker",
        "CHAT_SINK_GROUP": f"{prefix}-sink",
        "CHAT_MONGO_DB": prefix.replace("-", "_"),
    }


class Systems:
    """Starts what is not running; stops only what it started."""

    def __init__(
        self, say: Callable[[str], None], prefix: str, keep_data: bool, workers: int = 2
    ) -> None:
        self.say = say
        self.workers = workers
        self.prefix = prefix
        self.keep_data = keep_data
        self.env = {**BENCH_ENV, **namespace_env(prefix)}
        self.sup = Supervisor(log_dir=log_dir(), base_env={**os.environ, **self.env})
        self.started_stack = False
        self.started_app = False
        self.reused_app = False
        self.created_namespace = False
        self.notes: list[str] = []
        self.peer_names: list[str] = []

    async def ensure_ours(self) -> None:
        raise_nofile()
        if all(http_ok(f"http://127.0.0.1:{p}/readyz") for p in EDGE_PORTS):
            self.reused_app = True
            self.notes.append(
                "reused the app already running on :8080/:8081 (its own settings and limits)"
            )
            self.say("app: reusing the running edges on :8080 and :8081")
            return
        await self.start_app()

    async def start_app(self) -> None:
        await self.ensure_services()
        settings = load_settings({**os.environ, **self.env})
        await ensure_topics(settings)
        self.created_namespace = self.prefix != "chat"
        busy = [p for p in (*EDGE_PORTS, *WORKER_PORTS, SINK_PORT) if port_open(p)]
        if busy:
            raise RuntimeError(
                f"ports {busy} are in use but the edges are not ready; stop that app first"
            )
        self.say(f"app: starting {self.workers} workers, the sink and 2 edges ...")
        for i, port in enumerate(WORKER_PORTS[: self.workers]):
            self.sup.start(worker_spec(i, {}, port))
        self.sup.start(sink_spec({}, SINK_PORT))
        for i, port in enumerate(EDGE_PORTS):
            self.sup.start(edge_spec(i, {}, port, i))
        self.started_app = True
        await asyncio.to_thread(self.sup.wait_ready, None, 180.0)

    async def restart_fresh(self, prefix: str) -> None:
        """Stop the app we started, drop its data, start it again on a new namespace: a run that
        left a backlog the app cannot work off must not bill the next one."""
        for name in sorted(self.sup.running, key=lambda n: (not n.startswith("edge"), n)):
            if name not in self.peer_names:
                self._stop(name)
        if self.created_namespace and not self.keep_data:
            self.created_namespace = False
            await self.drop_namespace()
        self.prefix = prefix
        self.env = {**BENCH_ENV, **namespace_env(prefix)}
        self.sup.base_env = {**os.environ, **self.env}
        await self.start_app()

    async def ensure_services(self) -> None:
        if all(port_open(p) for p in SERVICE_PORTS.values()):
            return
        self.say("services: starting Kafka, Redis and the Mongo server (ops/stack/stack.sh) ...")
        proc = await asyncio.to_thread(
            subprocess.run, [STACK, "start"], capture_output=True, text=True
        )
        if not all(port_open(p) for p in SERVICE_PORTS.values()):
            raise RuntimeError(f"stack.sh start failed:\n{proc.stdout[-2000:]}{proc.stderr}")
        self.started_stack = True

    async def start_peer(self, stages: list[list[ProcessSpec]]) -> list[str]:
        """Start a peer's processes stage by stage, each stage awaited ready; returns their
        names (the services must be up: the peers use them)."""
        await self.ensure_services()
        names: list[str] = []
        for stage in stages:
            for spec in stage:
                self.sup.start(spec)
                names.append(spec.name)
            await asyncio.to_thread(self.sup.wait_ready, [s.name for s in stage], 90.0)
        self.peer_names = names
        return names

    def exited(self) -> dict[str, int]:
        """Processes we started that are gone, with their exit codes (negative: signal)."""
        return {
            name: r.proc.returncode
            for name, r in self.sup.running.items()
            if r.proc.poll() is not None
        }

    def pid(self, name: str) -> int | None:
        r = self.sup.running.get(name)
        return r.proc.pid if r else None

    def _stop(self, name: str) -> None:
        r = self.sup.running.get(name)
        try:
            self.sup.stop(name, timeout=10.0)
        except BaseException:  # interrupted while waiting: make sure it is gone
            if r is not None and r.proc.poll() is None:
                try:
                    os.killpg(r.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
            self.sup.running.pop(name, None)

    def _stop_group(self, names: list[str], timeout: float = 10.0) -> None:
        for name in names:
            r = self.sup.running.get(name)
            if r is not None and r.proc.poll() is None:
                try:
                    os.killpg(r.proc.pid, signal.SIGTERM)
                except OSError:
                    pass
        deadline = time.monotonic() + timeout
        for name in names:
            r = self.sup.running.pop(name, None)
            if r is None:
                continue
            try:
                r.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(r.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                r.proc.wait()

    def stop_peer(self) -> None:
        """Stop the peer's processes, all at once (stages matter only for starting)."""
        self._stop_group([n for n in self.peer_names if n in self.sup.running])
        self.peer_names = []

    def stop_all(self, keep_app: bool) -> None:
        """Idempotent: stops the peer, and (unless kept) the app we started."""
        self.stop_peer()
        if keep_app:
            return
        # Edges first (their sessions close cleanly through Kafka), then sink and workers; each
        # group is stopped in parallel.
        edges = [n for n in self.sup.running if n.startswith("edge")]
        self._stop_group(edges)
        self._stop_group(list(self.sup.running))
        if self.created_namespace and not self.keep_data:
            self.created_namespace = False
            try:
                asyncio.run(self.drop_namespace())
            except Exception as exc:
                self.say(f"could not delete the bench topics/database: {exc}")
        if self.started_stack:
            # Left running: by now other users of the machine (a test suite, `make run`) may
            # rely on them too. `make stack-stop` stops them.
            self.started_stack = False
            self.say("services started by the bench are left running (make stack-stop stops them)")

    async def backlog(self) -> int | None:
        """Records the workers and the sink have not committed yet (None if unknown)."""
        settings = load_settings({**os.environ, **self.env})
        admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings))
        consumer = AIOKafkaConsumer(**aiokafka_kwargs(settings))
        try:
            await admin.start()
            await consumer.start()
            total = 0
            for group in (settings.worker_app_id, settings.sink_group):
                committed = await admin.list_consumer_group_offsets(group)
                mine = {
                    tp: meta.offset
                    for tp, meta in committed.items()
                    if tp.topic.startswith(f"{settings.topic_prefix}.") and meta.offset >= 0
                }
                if not mine:
                    continue
                ends = await consumer.end_offsets(list(mine))
                total += sum(max(0, ends[tp] - off) for tp, off in mine.items())
            return total
        except Exception:
            return None
        finally:
            await consumer.stop()
            await admin.close()

    async def drop_namespace(self) -> None:
        """Delete this run's topics (and Faust's internal ones) and its Mongo database."""
        settings = load_settings({**os.environ, **self.env})
        admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings))
        await admin.start()
        try:
            mine = [
                t
                for t in await admin.list_topics()
                if t.startswith((f"{settings.topic_prefix}.", f"{settings.worker_app_id}-"))
            ]
            if mine:
                await admin.delete_topics(mine)
        finally:
            await admin.close()
        client: MongoClient[Any] = MongoClient(settings.mongo_url, serverSelectionTimeoutMS=3000)
        try:
            client.drop_database(settings.mongo_db)
        finally:
            client.close()
