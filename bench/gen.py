"""One load-generator process, started by the coordinator through :mod:`multiprocessing`
(bench/genproc.py).

It holds many clients of one system (an adapter from bench/peers/) on one asyncio loop
(uvloop) and runs the coordinator's commands, received as dicts over a ``multiprocessing``
pipe; replies and progress go back over the same pipe. Logs go to its log file.

Every message body starts with ``<send time ns> <tag> `` (``time.time_ns()``, CLOCK_REALTIME,
one clock for every process on this machine), so each recipient measures the end-to-end latency
on receipt. Per recipient and conversation it keeps the highest seq seen and the gaps below it:
a seq that fills a gap is *reordered*, a seq seen before is *duplicated*; what was acknowledged
but never arrived is *lost* (the coordinator compares with the senders' acks at the end).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import resource
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson
import uvloop

from bench.peers import load
from bench.peers.base import Client, ClientSpec, Pending
from bench.tally import RecvState, Tally

log = logging.getLogger("bench.gen")

CONNECT_ATTEMPTS = 5


def raise_nofile(want: int = 262_144) -> int:
    """Raise RLIMIT_NOFILE as far as allowed (root may raise the hard limit too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (want, hard):
        try:
            new_hard = max(hard, target) if hard != resource.RLIM_INFINITY else hard
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, new_hard))
            return target
        except (ValueError, OSError):
            continue
    return soft


def body_of(send_ns: int, tag: str, size: int) -> str:
    head = f"{send_ns} {tag} "
    return head + "x" * max(1, size - len(head))


class Generator:
    def __init__(self, index: int, out: Callable[[dict[str, Any]], None]) -> None:
        self.index = index
        self.out = out
        self.clients: list[Client] = []
        self.tallies: dict[str, Tally] = {}
        self.states: dict[tuple[str, str], RecvState] = {}
        self.acks: dict[str, dict[int, tuple[str, str]]] = {}
        self.awaiting_seq: dict[int, Pending] = {}  # acked, seq not known yet (by id())
        self.sessions: list[aiohttp.ClientSession] = []
        self.delivered_dirty: dict[tuple[int, str], int] = {}
        self.delivered_interval = 1.0
        self.delivered_task: asyncio.Task[None] | None = None
        self.msg_counter = 0
        self.jwt_settings: Any = None
        self.anomalies: list[str] = []  # first duplicated / reordered deliveries seen

    # ---------------------------------------------------------------- what clients use

    def http_for(self, index: int) -> aiohttp.ClientSession:
        return self.sessions[index % len(self.sessions)]

    def make_sessions(self, source_ips: list[str]) -> None:
        for ip in source_ips or [""]:
            connector = aiohttp.TCPConnector(
                limit=0, local_addr=(ip, 0) if ip else None, force_close=False
            )
            self.sessions.append(aiohttp.ClientSession(connector=connector))

    def tally(self, tag: str) -> Tally:
        t = self.tallies.get(tag)
        if t is None:
            t = self.tallies[tag] = Tally()
        return t

    def token(self, user: str) -> str:
        """A dev HS256 token (``sub`` = user): ours, the seed and Centrifugo all accept it."""
        if self.jwt_settings is None:
            from chat.settings import load_settings

            self.jwt_settings = load_settings({**os.environ, "CHAT_ENV": "dev"})
        from edge.auth import mint_token

        return str(mint_token(self.jwt_settings, user, 6 * 3600)[0])

    def on_message(self, client: Client, conv: str, seq: int, body: str) -> None:
        now = time.time_ns()
        parts = body.split(" ", 2)
        try:
            send_ns = int(parts[0])
            tag = parts[1]
        except (ValueError, IndexError):
            return  # not a bench message
        key = (client.user, conv)
        st = self.states.get(key)
        if st is None:
            st = self.states[key] = RecvState()
        before = st.max_seq
        outcome = st.see(seq)
        t = self.tally(tag)
        if outcome != "new" and len(self.anomalies) < 10:
            self.anomalies.append(f"{client.user} got {conv} seq {seq} after {before}: {outcome}")
        if outcome == "dup":
            t.duplicated += 1
            return
        if outcome == "reordered":
            t.reordered += 1
        t.received += 1
        client.received_since_mark += 1
        t.lat_us.append((now - send_ns) // 1000)
        t.recv_ms.append(now // 1_000_000)
        self.delivered_dirty[(client.index, conv)] = st.contiguous()

    def on_ack(self, client: Client, p: Pending, seq: int | None) -> None:
        """The system accepted the message; ``seq`` when the ack carries it."""
        now = time.time_ns()
        t = self.tally(p.tag)
        t.acked += 1
        t.expected += p.fanout
        t.ack_us.append((now - p.send_ns) // 1000)
        if seq is None:
            self.awaiting_seq[id(p)] = p
        else:
            self.on_sequenced(client, p, seq)
        if p.future is not None and not p.future.done():
            p.future.set_result(seq or 0)

    def on_sequenced(self, client: Client, p: Pending, seq: int) -> None:
        """The message's seq, for the per-recipient check (with or after its ack)."""
        self.awaiting_seq.pop(id(p), None)
        conv_acks = self.acks.get(p.conv)
        if conv_acks is None:
            conv_acks = self.acks[p.conv] = {}
        conv_acks[seq] = (client.user, p.tag)
        key = (client.user, p.conv)
        st = self.states.get(key)
        if st is None:
            st = self.states[key] = RecvState()
        st.mark_own(seq)

    def on_send_error(self, p: Pending, code: str) -> None:
        t = self.tally(p.tag)
        t.errors += 1
        t.error_codes[code] = t.error_codes.get(code, 0) + 1
        if p.future is not None and not p.future.done():
            p.future.set_exception(RuntimeError(code))

    async def _delivered_loop(self) -> None:
        """Cumulative ``message.delivered`` per conversation every interval, spread evenly."""
        slices = 20
        tick = 0
        while True:
            await asyncio.sleep(self.delivered_interval / slices)
            tick += 1
            due = [k for k in self.delivered_dirty if k[0] % slices == tick % slices]
            for key in due:
                seq = self.delivered_dirty.pop(key)
                if seq <= 0:
                    continue
                client = self.clients[key[0]]
                try:
                    await client.send_delivered(key[1], seq)
                except Exception:
                    pass

    # ---------------------------------------------------------------- commands

    async def cmd_setup(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Create and connect clients of ``system``; ``sync`` catches each one up as a real
        client would after connecting (systems that have it)."""
        raise_nofile()
        self.delivered_interval = float(cmd.get("delivered_interval", 1.0))
        if not self.sessions:
            self.make_sessions(cmd.get("source_ips", []))
        system = load(cmd["system"])
        offset = len(self.clients)
        new = [
            system.client(self, offset + i, ClientSpec(**spec))
            for i, spec in enumerate(cmd["clients"])
        ]
        self.clients.extend(new)
        t0 = time.monotonic()
        failed = await self._connect_all(
            new, int(cmd.get("concurrency", 200)), bool(cmd.get("sync", True))
        )
        if system.receipts and cmd.get("sync", True) and self.delivered_task is None:
            self.delivered_task = asyncio.create_task(self._delivered_loop())
        return {
            "connected": len(new) - len(failed),
            "failed": len(failed),
            "errors": failed[:5],
            "seconds": time.monotonic() - t0,
        }

    async def _connect_all(
        self,
        clients: list[Client],
        concurrency: int,
        sync: bool,
        cursors: Callable[[Client], dict[str, int] | None] | None = None,
        done_at: dict[int, float] | None = None,
        connected_at: dict[int, float] | None = None,
    ) -> list[str]:
        sem = asyncio.Semaphore(concurrency)
        failed: list[str] = []

        async def one(c: Client) -> None:
            async with sem:
                err = ""
                for attempt in range(CONNECT_ATTEMPTS):
                    try:
                        await c.connect()
                        if connected_at is not None:
                            connected_at[c.index] = time.time()
                        if sync:
                            await c.sync(cursors(c) if cursors else None)
                        if done_at is not None:
                            done_at[c.index] = time.time()
                        return
                    except Exception as exc:
                        err = f"{type(exc).__name__}: {exc}"[:200]
                        log.info("connect of %s failed (attempt %d): %s", c.user, attempt, err)
                        try:
                            await c.close()
                        except Exception:
                            pass
                        await asyncio.sleep(0.2 * (attempt + 1) + random.random() * 0.3)
                failed.append(f"{c.user}: {err}")

        await asyncio.gather(*(one(c) for c in clients))
        return failed

    async def cmd_create(self, cmd: dict[str, Any]) -> dict[str, Any]:
        by_user = {c.user: c for c in self.clients}
        sem = asyncio.Semaphore(int(cmd.get("concurrency", 100)))
        created: dict[str, str] = {}
        errors: list[str] = []

        async def one(item: dict[str, Any]) -> None:
            async with sem:
                try:
                    created[item["key"]] = await by_user[item["creator"]].create(
                        item["members"], item["kind"] == "group"
                    )
                except Exception as exc:
                    errors.append(f"{item['key']}: {exc}"[:200])

        await asyncio.gather(*(one(item) for item in cmd["items"]))
        return {"created": created, "errors": errors}

    def cmd_assign(self, cmd: dict[str, Any]) -> dict[str, Any]:
        convs: dict[str, list[list[Any]]] = cmd["convs"]
        n = 0
        for c in self.clients:
            c.convs = [(str(cid), int(fan)) for cid, fan in convs.get(c.user, [])]
            c.next_conv = random.randrange(len(c.convs)) if c.convs else 0
            n += bool(c.convs)
        return {"senders": n}

    async def cmd_run(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Send at ``rate`` msg/s (this process's share) from ``start_at`` (wall clock) for
        ``warmup`` + ``duration`` s; warm-up messages carry the tag ``<tag>/w``."""
        tag: str = cmd["tag"]
        rate = float(cmd["rate"])
        size = int(cmd["size"])
        start = float(cmd["start_at"])
        warm_end = start + float(cmd.get("warmup", 0.0))
        end = warm_end + float(cmd["duration"])
        senders = [c for c in self.clients if c.convs]
        random.shuffle(senders)
        progress = asyncio.create_task(self._progress_loop(tag, end))
        await asyncio.sleep(max(0.0, start - time.time()))
        n = 0
        t_main = self.tally(tag)
        t_warm = self.tally(tag + "/w")
        loop_start = time.time()
        try:
            while senders:
                now = time.time()
                if now >= end:
                    break
                due = int((now - start) * rate)
                while n < due:
                    c = senders[n % len(senders)]
                    n += 1
                    if not c.connected:
                        continue
                    conv, fanout = c.pick_conv()
                    t, name = (t_main, tag) if now >= warm_end else (t_warm, tag + "/w")
                    send_ns = time.time_ns()
                    self.msg_counter += 1
                    cmid = f"{self.index}-{self.msg_counter}"
                    pending = Pending(conv, name, send_ns, fanout, cmid)
                    if t.first_send_ns == 0:
                        t.first_send_ns = send_ns
                    t.last_send_ns = send_ns
                    t.sent += 1
                    await c.send(conv, body_of(send_ns, name, size), pending)
                await asyncio.sleep(0.001)
        finally:
            progress.cancel()
            await asyncio.gather(progress, return_exceptions=True)
        return {"sent": n, "late_start_s": max(0.0, loop_start - start)}

    async def _progress_loop(self, tag: str, end: float) -> None:
        last_idx = 0
        while True:
            await asyncio.sleep(0.5)
            t = self.tally(tag)
            w = self.tally(tag + "/w")
            recent = t.lat_us[last_idx:] if len(t.lat_us) > last_idx else w.lat_us[-500:]
            last_idx = len(t.lat_us)
            p99 = (
                float(np.percentile(np.frombuffer(recent, dtype=np.int64), 99)) / 1000
                if len(recent)
                else 0.0
            )
            self.out(
                {
                    "progress": {
                        "sent": t.sent + w.sent,
                        "acked": t.acked + w.acked,
                        "received": t.received + w.received,
                        "errors": t.errors + w.errors,
                        "p99_ms": p99,
                        "remaining_s": max(0.0, end - time.time()),
                    }
                }
            )

    async def cmd_burst(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Every client with conversations sends ``count`` messages to each, one after the
        other, waiting for each ack (the messages the reconnect storm has to fetch)."""
        count = int(cmd["count"])
        tag = cmd["tag"]
        size = int(cmd["size"])
        errors: list[str] = []

        async def one(c: Client) -> None:
            for conv, fanout in c.convs:
                for _ in range(count):
                    send_ns = time.time_ns()
                    self.msg_counter += 1
                    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                    cmid = f"{self.index}-b{self.msg_counter}"
                    p = Pending(conv, tag, send_ns, fanout, cmid, fut)
                    self.tally(tag).sent += 1
                    try:
                        await c.send(conv, body_of(send_ns, tag, size), p)
                        await asyncio.wait_for(fut, 30)
                    except Exception as exc:
                        errors.append(f"{c.user}: {exc}"[:200])

        t0 = time.monotonic()
        await asyncio.gather(*(one(c) for c in self.clients if c.convs))
        return {"seconds": time.monotonic() - t0, "errors": errors[:5], "failed": len(errors)}

    def matching(self, cmd: dict[str, Any]) -> list[Client]:
        prefix = str(cmd.get("prefix", ""))
        return [c for c in self.clients if c.user.startswith(prefix)]

    async def cmd_disconnect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        clients = self.matching(cmd)
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        return {"closed": len(clients)}

    async def cmd_reconnect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Reconnect every client to ``url`` at ``start_at`` and ``sync`` with its cursors; a
        client is done when it has ``sync.done`` and ``expected`` new messages."""
        url = cmd["url"]
        expected: dict[str, int] = cmd["expected"]
        start = float(cmd["start_at"])
        clients = self.matching(cmd)
        for c in clients:
            c.url = url
            c.received_since_mark = 0
        convs_by_user: dict[str, list[str]] = cmd.get("convs", {})

        def cursors(c: Client) -> dict[str, int]:
            out: dict[str, int] = {}
            for conv in convs_by_user.get(c.user, []):
                st = self.states.get((c.user, conv))
                out[conv] = st.max_seq if st is not None else 0
            return out

        await asyncio.sleep(max(0.0, start - time.time()))
        synced: dict[int, float] = {}
        connected: dict[int, float] = {}
        connecting = asyncio.create_task(
            self._connect_all(
                clients, int(cmd.get("concurrency", 10_000)), True, cursors, synced, connected
            )
        )
        failed: list[str] = []
        done: dict[int, float] = {}
        deadline = time.time() + float(cmd.get("timeout", 60.0))
        last_report = 0.0
        while time.time() < deadline:
            now = time.time()
            if now - last_report > 0.5:
                last_report = now
                self.out(
                    {
                        "progress": {
                            "synced": len(synced),
                            "done": len(done),
                            "received": sum(c.received_since_mark for c in clients),
                        }
                    }
                )
            for c in clients:
                if c.index in synced and c.index not in done:
                    if c.received_since_mark >= expected.get(c.user, 0):
                        done[c.index] = now
            if connecting.done():
                failed = connecting.result()
                if len(done) + len(failed) >= len(clients):
                    break
            await asyncio.sleep(0.01)
        if not connecting.done():
            connecting.cancel()
        times = [max(synced[i], done[i]) - start for i in done]
        return {
            "done": len(done),
            "failed": len(failed),
            "errors": failed[:5],
            "times": times,
            "connected_times": [t - start for t in connected.values()],
            "synced_times": [t - start for t in synced.values()],
            "received": sum(c.received_since_mark for c in clients),
        }

    def cmd_stats(self, cmd: dict[str, Any]) -> dict[str, Any]:
        pending = sum(c.unacked() for c in self.clients)
        return {
            "tallies": {tag: t.counts() for tag, t in self.tallies.items()},
            "pending_acks": pending,
            "awaiting_seq": len(self.awaiting_seq),
            "connected": sum(c.connected for c in self.clients),
        }

    def cmd_collect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Write the samples of ``tags`` (numpy files) and the cumulative per-recipient state
        and acks (JSON) to ``out`` (a path prefix)."""
        for p in self.awaiting_seq.values():
            self.tally(p.tag).unsequenced += 1
        self.awaiting_seq.clear()
        prefix = Path(cmd["out"])
        prefix.parent.mkdir(parents=True, exist_ok=True)
        files: dict[str, dict[str, str]] = {}
        for tag in cmd["tags"]:
            t = self.tallies.get(tag)
            if t is None:
                continue
            safe = tag.replace("/", "_")
            entry = {}
            for name in ("lat_us", "recv_ms", "ack_us"):
                path = f"{prefix}-{safe}-{name}.npy"
                np.save(path, np.frombuffer(getattr(t, name), dtype=np.int64))
                entry[name] = path
            files[tag] = entry
        state_path = f"{prefix}-state.json"
        states = {
            f"{user}\t{conv}": [st.max_seq, sorted(st.gaps), st.dup, st.reordered]
            for (user, conv), st in self.states.items()
        }
        acks = {conv: [[s, u, t] for s, (u, t) in a.items()] for conv, a in self.acks.items()}
        Path(state_path).write_bytes(orjson.dumps({"states": states, "acks": acks}))
        return {
            "anomalies": self.anomalies,
            "files": files,
            "state": state_path,
            "tallies": {tag: t.counts() for tag, t in self.tallies.items()},
        }

    async def cmd_close(self, cmd: dict[str, Any]) -> dict[str, Any]:
        sem = asyncio.Semaphore(500)

        abort = bool(cmd.get("abort", False))

        async def one(c: Client) -> None:
            async with sem:
                try:
                    if abort:  # drop the TCP connection without a close handshake
                        c.abort()
                    await asyncio.wait_for(c.close(), 10)
                except Exception:
                    pass

        # Closed clients stay in the list (indexes are keys elsewhere) but send nothing.
        clients = [c for c in self.matching(cmd) if c.connected]
        await asyncio.gather(*(one(c) for c in clients))
        return {"closed": len(clients)}


async def serve(index: int, conn: Connection) -> None:
    """Run the coordinator's commands one at a time until ``exit`` or the pipe closes."""
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    # The pipe is read by a thread (a Connection has no asyncio interface); commands reach the
    # loop through a queue.
    def read() -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                msg = None
            loop.call_soon_threadsafe(commands.put_nowait, msg)
            if msg is None or msg.get("cmd") == "exit":
                return

    threading.Thread(target=read, name="commands", daemon=True).start()

    def out(obj: dict[str, Any]) -> None:
        conn.send(obj)

    gen = Generator(index, out)
    handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
        "setup": gen.cmd_setup,
        "create": gen.cmd_create,
        "assign": gen.cmd_assign,
        "run": gen.cmd_run,
        "burst": gen.cmd_burst,
        "disconnect": gen.cmd_disconnect,
        "reconnect": gen.cmd_reconnect,
        "stats": gen.cmd_stats,
        "collect": gen.cmd_collect,
        "close": gen.cmd_close,
    }
    out({"ready": os.getpid()})
    while True:
        cmd = await commands.get()
        if cmd is None or cmd.get("cmd") == "exit":
            break
        name = cmd["cmd"]
        try:
            result = handlers[name](cmd)
            if isinstance(result, Awaitable):
                result = await result
            out({"reply": cmd.get("seq"), "result": result})
        except Exception as exc:
            log.exception("command %s failed", name)
            out({"reply": cmd.get("seq"), "error": f"{type(exc).__name__}: {exc}"})
    await asyncio.gather(*(c.close() for c in gen.clients), return_exceptions=True)
    for s in gen.sessions:
        await s.close()


def process_main(index: int, conn: Connection, log_path: str) -> None:
    """The generator process's entry point (``multiprocessing`` target)."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "a", buffering=1)  # the process's stderr from now on
    sys.stderr = log_file
    logging.basicConfig(
        level=logging.INFO, stream=log_file, format="%(asctime)s gen %(levelname)s %(message)s"
    )
    try:
        uvloop.run(serve(index, conn))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the coordinator
        pass  # stops what it started
