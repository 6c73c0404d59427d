"""One load-generator process: ``python -m bench.gen`` (started by ``python -m bench``).

It holds many WebSocket clients on one asyncio loop (uvloop) and takes commands from the
coordinator as JSON lines on stdin; replies and progress go back as JSON lines on stdout.
Logs go to stderr.

Every message body starts with ``<send time ns> <tag> `` (``time.time_ns()``, CLOCK_REALTIME,
one clock for every process on this machine), so each recipient measures the end-to-end latency
on receipt. Per recipient and conversation it keeps the highest seq seen and the gaps below it:
a seq that fills a gap is *reordered*, a seq seen before is *duplicated*; what was acknowledged
but never arrived is *lost* (the coordinator compares with the senders' acks at the end).

Two client kinds speak to two systems: ``ours`` (PROTOCOL.md over aiohttp WebSockets) and
``peer`` (Socket.IO through python-socketio's AsyncClient; a "conversation" there is the
directed stream ``<sender>><recipient>``, which the peer numbers with its own counter).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import resource
import sys
import time
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson
import uvloop

log = logging.getLogger("bench.gen")

Frame = dict[str, Any]
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


# --------------------------------------------------------------------------- bookkeeping


@dataclass
class Tally:
    """Counters and samples of one tag (a run, its warm-up, a sweep step ...)."""

    sent: int = 0
    acked: int = 0
    errors: int = 0
    expected: int = 0  # deliveries owed for what was acked: sum of (members - 1)
    received: int = 0  # unique deliveries
    duplicated: int = 0
    reordered: int = 0
    first_send_ns: int = 0
    last_send_ns: int = 0
    lat_us: array = field(default_factory=lambda: array("q"))  # type: ignore[type-arg]
    recv_ms: array = field(default_factory=lambda: array("q"))  # type: ignore[type-arg]
    ack_us: array = field(default_factory=lambda: array("q"))  # type: ignore[type-arg]
    error_codes: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "acked": self.acked,
            "errors": self.errors,
            "expected": self.expected,
            "received": self.received,
            "duplicated": self.duplicated,
            "reordered": self.reordered,
            "first_send_ns": self.first_send_ns,
            "last_send_ns": self.last_send_ns,
            "error_codes": self.error_codes,
        }


class RecvState:
    """What one recipient saw of one conversation. Its own messages never come back to it (the
    sending session is excluded), so their seqs, known from its acks, are not gaps."""

    __slots__ = ("count", "dup", "gaps", "max_seq", "own", "reordered")

    def __init__(self) -> None:
        self.max_seq = 0
        self.gaps: set[int] = set()
        self.own: set[int] = set()
        self.dup = 0
        self.reordered = 0
        self.count = 0

    def mark_own(self, seq: int) -> None:
        self.own.add(seq)
        self.gaps.discard(seq)

    def contiguous(self) -> int:
        """The highest seq up to which everything reached this user (what a client confirms
        with ``message.delivered``): below the first gap."""
        return min(self.gaps) - 1 if self.gaps else self.max_seq

    def see(self, seq: int) -> str:
        if seq == self.max_seq + 1:
            self.max_seq = seq
        elif seq > self.max_seq:
            self.gaps.update(s for s in range(self.max_seq + 1, seq) if s not in self.own)
            self.max_seq = seq
        elif seq in self.gaps:
            self.gaps.discard(seq)
            self.reordered += 1
            self.count += 1
            return "reordered"
        else:
            self.dup += 1
            return "dup"
        self.count += 1
        return "new"


@dataclass
class Pending:
    conv: str
    tag: str
    send_ns: int
    fanout: int
    future: asyncio.Future[int] | None = None


# --------------------------------------------------------------------------- clients


class BaseClient:
    def __init__(self, gen: Generator, index: int, user: str, url: str) -> None:
        self.gen = gen
        self.index = index
        self.user = user
        self.url = url
        self.convs: list[tuple[str, int]] = []  # (conversation, fanout) this client sends to
        self.next_conv = 0
        self.connected = False
        self.received_since_mark = 0

    def pick_conv(self) -> tuple[str, int]:
        conv = self.convs[self.next_conv % len(self.convs)]
        self.next_conv += 1
        return conv

    async def connect(self) -> None:
        raise NotImplementedError

    async def send_message(self, conv: str, body: str, cmid: str, pending: Pending) -> None:
        raise NotImplementedError

    async def create(self, item: dict[str, Any]) -> str:
        raise NotImplementedError

    async def sync(self, cursors: dict[str, int] | None) -> None:
        return None

    async def send_delivered(self, conv: str, seq: int) -> None:
        return None

    async def close(self) -> None:
        raise NotImplementedError


class OursClient(BaseClient):
    """PROTOCOL.md over one aiohttp WebSocket."""

    def __init__(
        self, gen: Generator, index: int, user: str, url: str, token: str, xff: str
    ) -> None:
        super().__init__(gen, index, user, url)
        self.token = token
        self.xff = xff
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None
        self.requests: dict[str, asyncio.Future[Frame]] = {}
        self.pending: dict[int, Pending] = {}
        self.frame_ids = 0

    async def connect(self) -> None:
        session = self.gen.http_for(self.index)
        ws = await session.ws_connect(
            self.url,
            params={"access_token": self.token},
            headers={"X-Forwarded-For": self.xff} if self.xff else None,
            autoping=True,
            heartbeat=None,
            max_msg_size=0,
            compress=0,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
        )
        self.ws = ws
        self.connected = True
        self.reader = asyncio.create_task(self._read(ws))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
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
                        fut = self.requests.pop(str(fid), None)
                        if fut is not None and not fut.done():
                            fut.set_result(f)
                elif t in ("ok", "sync.done", "pong"):
                    fut = self.requests.pop(str(f.get("id")), None)
                    if fut is not None and not fut.done():
                        fut.set_result(f)
        except Exception as exc:  # a broken socket: the run's counters show the damage
            log.debug("reader of %s ended: %s", self.user, exc)
        finally:
            if self.ws is ws:
                self.connected = False
            for fut in self.requests.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("closed"))
            self.requests.clear()

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

    async def create(self, item: dict[str, Any]) -> str:
        frame: Frame = {"type": "conversation.create", "kind": item["kind"]}
        frame["members"] = item["members"]
        if item["kind"] == "group":
            frame["title"] = item.get("title", "bench")
        reply = await self.request(frame)
        if reply.get("type") != "ok":
            raise RuntimeError(f"create failed: {reply}")
        return str(reply["conversation"]["id"])

    async def send_message(self, conv: str, body: str, cmid: str, pending: Pending) -> None:
        ws = self.ws
        if ws is None or ws.closed:
            self.gen.on_send_error(pending, "disconnected")
            return
        self.frame_ids += 1
        fid = self.frame_ids
        self.pending[fid] = pending
        # Text frames (send_str) as a browser would; orjson builds the JSON.
        await ws.send_str(
            orjson.dumps(
                {
                    "type": "message.send",
                    "conversation_id": conv,
                    "client_msg_id": cmid,
                    "body": body,
                    "id": fid,
                }
            ).decode()
        )

    async def send_delivered(self, conv: str, seq: int) -> None:
        ws = self.ws
        if ws is not None and not ws.closed:
            await ws.send_str(
                orjson.dumps(
                    {"type": "message.delivered", "conversation_id": conv, "seq": seq}
                ).decode()
            )

    async def close(self) -> None:
        ws, self.ws = self.ws, None
        self.connected = False
        if ws is not None:
            await ws.close()
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)
        for p in self.pending.values():
            self.gen.on_send_error(p, "disconnected")
        self.pending.clear()


class PeerClient(BaseClient):
    """The same client over Socket.IO (python-socketio's AsyncClient), for the peer server."""

    def __init__(self, gen: Generator, index: int, user: str, url: str) -> None:
        super().__init__(gen, index, user, url)
        import socketio  # only the peer run needs it

        self.sio = socketio.AsyncClient(
            reconnection=False, http_session=gen.http_for(index), handle_sigint=False
        )
        self.sio.on("msg", self._on_msg)

    async def _on_msg(self, data: dict[str, Any]) -> None:
        self.gen.on_message(self, f"{data['from']}>{data['to']}", data["seq"], data["body"])

    async def connect(self) -> None:
        await self.sio.connect(
            self.url, auth={"user": self.user}, transports=["websocket"], wait_timeout=30
        )
        self.connected = True

    async def send_message(self, conv: str, body: str, cmid: str, pending: Pending) -> None:
        to = conv.split(">", 1)[1]

        def on_ack(reply: dict[str, Any]) -> None:
            if "seq" in reply:
                self.gen.on_ack(self, pending, int(reply["seq"]))
            else:
                self.gen.on_send_error(pending, str(reply.get("error", "?")))

        try:
            await self.sio.emit(
                "msg", {"to": to, "body": body, "client_msg_id": cmid}, callback=on_ack
            )
        except Exception:
            self.gen.on_send_error(pending, "disconnected")

    async def create(self, item: dict[str, Any]) -> str:
        return f"{self.user}>{item['members'][0]}"  # rooms need no setup

    async def close(self) -> None:
        self.connected = False
        await self.sio.disconnect()


# --------------------------------------------------------------------------- the generator


class Generator:
    def __init__(self, index: int, out: Callable[[dict[str, Any]], None]) -> None:
        self.index = index
        self.out = out
        self.clients: list[BaseClient] = []
        self.tallies: dict[str, Tally] = {}
        self.states: dict[tuple[str, str], RecvState] = {}
        self.acks: dict[str, dict[int, tuple[str, str]]] = {}
        self.sessions: list[aiohttp.ClientSession] = []
        self.delivered_dirty: dict[tuple[int, str], int] = {}
        self.delivered_interval = 1.0
        self.delivered_task: asyncio.Task[None] | None = None
        self.msg_counter = 0
        self.settings: Any = None
        self.anomalies: list[str] = []  # first duplicated / reordered deliveries seen

    # ---------------------------------------------------------------- plumbing

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
        if self.settings is None:
            from chat.settings import load_settings

            self.settings = load_settings({**os.environ, "CHAT_ENV": "dev"})
        from edge.auth import mint_token

        return str(mint_token(self.settings, user, 6 * 3600)[0])

    # ---------------------------------------------------------------- events

    def on_message(self, client: BaseClient, conv: str, seq: int, body: str) -> None:
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

    def on_ack(self, client: BaseClient, p: Pending, seq: int) -> None:
        now = time.time_ns()
        t = self.tally(p.tag)
        t.acked += 1
        t.expected += p.fanout
        t.ack_us.append((now - p.send_ns) // 1000)
        conv_acks = self.acks.get(p.conv)
        if conv_acks is None:
            conv_acks = self.acks[p.conv] = {}
        conv_acks[seq] = (client.user, p.tag)
        key = (client.user, p.conv)
        st = self.states.get(key)
        if st is None:
            st = self.states[key] = RecvState()
        st.mark_own(seq)
        if p.future is not None and not p.future.done():
            p.future.set_result(seq)

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
        raise_nofile()
        self.delivered_interval = float(cmd.get("delivered_interval", 1.0))
        if not self.sessions:
            self.make_sessions(cmd.get("source_ips", []))
        system = cmd["system"]
        offset = len(self.clients)
        for i, spec in enumerate(cmd["clients"]):
            if system == "ours":
                client: BaseClient = OursClient(
                    self,
                    offset + i,
                    spec["user"],
                    spec["url"],
                    self.token(spec["user"]),
                    spec.get("xff", ""),
                )
            else:
                client = PeerClient(self, offset + i, spec["user"], spec["url"])
            self.clients.append(client)
        new = self.clients[offset:]
        t0 = time.monotonic()
        failed = await self._connect_all(
            new, int(cmd.get("concurrency", 200)), bool(cmd.get("sync", True))
        )
        if system == "ours" and self.delivered_task is None:
            self.delivered_task = asyncio.create_task(self._delivered_loop())
        return {
            "connected": len(new) - len(failed),
            "failed": len(failed),
            "errors": failed[:5],
            "seconds": time.monotonic() - t0,
        }

    async def _connect_all(
        self,
        clients: list[BaseClient],
        concurrency: int,
        sync: bool,
        cursors: Callable[[BaseClient], dict[str, int] | None] | None = None,
        done_at: dict[int, float] | None = None,
        connected_at: dict[int, float] | None = None,
    ) -> list[str]:
        sem = asyncio.Semaphore(concurrency)
        failed: list[str] = []

        async def one(c: BaseClient) -> None:
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
                    created[item["key"]] = await by_user[item["creator"]].create(item)
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

    def _body(self, send_ns: int, tag: str, size: int) -> str:
        head = f"{send_ns} {tag} "
        return head + "x" * max(1, size - len(head))

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
                    pending = Pending(conv, name, send_ns, fanout)
                    if t.first_send_ns == 0:
                        t.first_send_ns = send_ns
                    t.last_send_ns = send_ns
                    t.sent += 1
                    await c.send_message(conv, self._body(send_ns, name, size), cmid, pending)
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

        async def one(c: BaseClient) -> None:
            for conv, fanout in c.convs:
                for _ in range(count):
                    send_ns = time.time_ns()
                    self.msg_counter += 1
                    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                    p = Pending(conv, tag, send_ns, fanout, fut)
                    self.tally(tag).sent += 1
                    try:
                        await c.send_message(
                            conv, self._body(send_ns, tag, size), f"b{self.msg_counter}", p
                        )
                        await asyncio.wait_for(fut, 30)
                    except Exception as exc:
                        errors.append(f"{c.user}: {exc}"[:200])

        t0 = time.monotonic()
        await asyncio.gather(*(one(c) for c in self.clients if c.convs))
        return {"seconds": time.monotonic() - t0, "errors": errors[:5], "failed": len(errors)}

    def matching(self, cmd: dict[str, Any]) -> list[BaseClient]:
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

        def cursors(c: BaseClient) -> dict[str, int]:
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
        pending = sum(len(getattr(c, "pending", {})) for c in self.clients)
        return {
            "tallies": {tag: t.counts() for tag, t in self.tallies.items()},
            "pending_acks": pending,
            "connected": sum(c.connected for c in self.clients),
        }

    def cmd_collect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Write the samples of ``tags`` (numpy files) and the cumulative per-recipient state
        and acks (JSON) to ``out`` (a path prefix)."""
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

    async def cmd_idle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Open idle, authenticated WebSockets for ``clients`` (no sync)."""
        if not self.sessions:
            self.make_sessions(cmd.get("source_ips", []))
        offset = len(self.clients)
        new: list[BaseClient] = [
            OursClient(self, offset + i, spec["user"], spec["url"], self.token(spec["user"]), "")
            for i, spec in enumerate(cmd["clients"])
        ]
        self.clients.extend(new)
        t0 = time.monotonic()
        failed = await self._connect_all(new, int(cmd.get("concurrency", 100)), False)
        return {
            "opened": len(new) - len(failed),
            "failed": len(failed),
            "errors": failed[:5],
            "seconds": time.monotonic() - t0,
        }

    async def cmd_close(self, cmd: dict[str, Any]) -> dict[str, Any]:
        sem = asyncio.Semaphore(500)

        abort = bool(cmd.get("abort", False))

        async def one(c: BaseClient) -> None:
            async with sem:
                try:
                    if abort and isinstance(c, OursClient) and c.ws is not None:
                        # Drop the TCP connection without a close handshake (idle clients).
                        conn = c.ws._response.connection
                        if conn is not None and conn.transport is not None:
                            conn.transport.abort()
                    await asyncio.wait_for(c.close(), 10)
                except Exception:
                    pass

        # Closed clients stay in the list (indexes are keys elsewhere) but send nothing.
        clients = [c for c in self.matching(cmd) if c.connected]
        await asyncio.gather(*(one(c) for c in clients))
        return {"closed": len(clients)}


async def amain(index: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def out(obj: dict[str, Any]) -> None:
        sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")
        sys.stdout.buffer.flush()

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
        "idle": gen.cmd_idle,
        "close": gen.cmd_close,
    }
    out({"ready": os.getpid()})
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = orjson.loads(line)
        name = cmd.get("cmd")
        if name == "exit":
            break
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


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s gen %(levelname)s %(message)s"
    )
    index = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    uvloop.run(amain(index))


if __name__ == "__main__":
    main()
