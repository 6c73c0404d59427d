"""The coordinator's handle on one load-generator process (JSON lines over its stdin/stdout)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson

from ops.supervisor import REPO


class GenError(RuntimeError):
    pass


class GenProc:
    def __init__(self, index: int, log_path: Path) -> None:
        self.index = index
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.pid = 0
        self.progress: dict[str, Any] = {}
        self._seq = 0
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: ASYNC230 (a local file, once)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.gen",
            str(self.index),
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            limit=1 << 28,
        )
        log.close()
        assert self.proc.stdout is not None
        first = orjson.loads(await asyncio.wait_for(self.proc.stdout.readline(), 60))
        self.pid = int(first["ready"])
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            msg = orjson.loads(line)
            if "progress" in msg:
                self.progress = msg["progress"]
            elif "reply" in msg:
                fut = self._replies.pop(msg["reply"], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        for fut in self._replies.values():
            if not fut.done():
                fut.set_exception(GenError(f"generator {self.index} exited; see {self.log_path}"))

    async def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self._seq += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[self._seq] = fut
        self.proc.stdin.write(orjson.dumps({"cmd": cmd, "seq": self._seq, **fields}) + b"\n")
        await self.proc.stdin.drain()
        msg = await fut
        if "error" in msg:
            raise GenError(f"generator {self.index}: {cmd}: {msg['error']} (log {self.log_path})")
        result: dict[str, Any] = msg["result"]
        return result

    async def stop(self, grace_s: float = 20.0) -> None:
        """Ask it to exit (it closes its clients); kill it if it is busy for ``grace_s``."""
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b'{"cmd":"exit"}\n')
            await self.proc.stdin.drain()
            await asyncio.wait_for(self.proc.wait(), grace_s)
        except (TimeoutError, ConnectionError, BrokenPipeError, asyncio.CancelledError):
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


async def call_all(
    gens: list[GenProc], cmd: str, per_gen: list[dict[str, Any]] | None = None, **fields: Any
) -> list[dict[str, Any]]:
    """The same command to every generator (``per_gen`` adds fields per generator)."""
    extra = per_gen or [{} for _ in gens]
    calls = (g.call(cmd, **fields, **e) for g, e in zip(gens, extra, strict=True))
    return list(await asyncio.gather(*calls))
