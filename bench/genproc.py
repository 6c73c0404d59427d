"""The coordinator's handle on one load-generator process (:mod:`multiprocessing`, spawned).

Commands are dicts sent over a ``multiprocessing`` pipe; the process answers each with a reply
carrying the command's ``seq`` and may send ``progress`` dicts at any time. A thread reads the
pipe (a Connection has no asyncio interface) and hands what it reads to the event loop.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from bench import gen

# Spawned, not forked: the coordinator runs an event loop and a sampling thread, which a fork
# would copy in an undefined state.
MP = multiprocessing.get_context("spawn")


class GenError(RuntimeError):
    pass


class GenProc:
    def __init__(self, index: int, log_path: Path) -> None:
        self.index = index
        self.log_path = log_path
        self.proc: BaseProcess | None = None
        self.conn: Connection | None = None
        self.pid = 0
        self.progress: dict[str, Any] = {}
        self._seq = 0
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ready: asyncio.Future[int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._ready = self._loop.create_future()
        parent, child = MP.Pipe()
        self.proc = MP.Process(
            target=gen.process_main,
            args=(self.index, child, str(self.log_path)),
            name=f"bench-gen-{self.index}",
            daemon=True,
        )
        self.proc.start()
        child.close()
        self.conn = parent
        threading.Thread(target=self._read, name=f"gen-{self.index}", daemon=True).start()
        self.pid = await asyncio.wait_for(self._ready, 60)

    def _read(self) -> None:
        assert self.conn is not None and self._loop is not None
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                break
            self._loop.call_soon_threadsafe(self._dispatch, msg)
        self._loop.call_soon_threadsafe(self._exited)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if "progress" in msg:
            self.progress = msg["progress"]
        elif "ready" in msg:
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(int(msg["ready"]))
        elif "reply" in msg:
            fut = self._replies.pop(msg["reply"], None)
            if fut is not None and not fut.done():
                fut.set_result(msg)

    def _exited(self) -> None:
        err = GenError(f"generator {self.index} exited; see {self.log_path}")
        for fut in [*self._replies.values(), self._ready]:
            if fut is not None and not fut.done():
                fut.set_exception(err)
        self._replies.clear()

    async def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        assert self.conn is not None
        self._seq += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[self._seq] = fut
        self.conn.send({"cmd": cmd, "seq": self._seq, **fields})
        msg = await fut
        if "error" in msg:
            raise GenError(f"generator {self.index}: {cmd}: {msg['error']} (log {self.log_path})")
        result: dict[str, Any] = msg["result"]
        return result

    async def stop(self, grace_s: float = 20.0) -> None:
        """Ask it to exit (it closes its clients); kill it if it is busy for ``grace_s``."""
        proc = self.proc
        if proc is None or proc.exitcode is not None:
            return
        try:
            assert self.conn is not None
            self.conn.send({"cmd": "exit"})
        except (OSError, ValueError):
            pass
        await asyncio.to_thread(proc.join, grace_s)
        if proc.exitcode is None:
            proc.kill()
            await asyncio.to_thread(proc.join, 5)


async def call_all(
    gens: list[GenProc], cmd: str, per_gen: list[dict[str, Any]] | None = None, **fields: Any
) -> list[dict[str, Any]]:
    """The same command to every generator (``per_gen`` adds fields per generator)."""
    extra = per_gen or [{} for _ in gens]
    calls = (g.call(cmd, **fields, **e) for g, e in zip(gens, extra, strict=True))
    return list(await asyncio.gather(*calls))
