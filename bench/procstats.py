"""CPU seconds and peak RSS of every process of both systems, sampled every 0.5 s (psutil)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import psutil


@dataclass
class Sample:
    cpu_s: float
    rss: int


@dataclass
class Tracked:
    name: str
    proc: psutil.Process
    first: Sample | None = None
    last: Sample | None = None
    peak_rss: int = 0


@dataclass
class Window:
    """What each process used between :meth:`ProcStats.mark` and :meth:`ProcStats.report`."""

    start_cpu: dict[str, float] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=dict)
    t0: float = 0.0


def listeners() -> dict[int, int]:
    """Listening TCP port -> pid."""
    out: dict[int, int] = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid and conn.laddr:
            out.setdefault(conn.laddr.port, conn.pid)
    return out


def find_by_ports(ports: dict[str, int]) -> dict[str, psutil.Process]:
    """Name -> process listening on that port (edges, workers, sink, Kafka, Redis, Mongo)."""
    by_port = listeners()
    found: dict[str, psutil.Process] = {}
    for name, port in ports.items():
        pid = by_port.get(port)
        if pid is not None:
            try:
                found[name] = psutil.Process(pid)
            except psutil.Error:
                pass
    return found


def describe(proc: psutil.Process) -> str:
    try:
        cmd = proc.cmdline()
    except psutil.Error:
        return "?"
    for marker in ("kafka.Kafka", "KchatMongoServer", "ferretdb", "redis-server"):
        if any(marker in part for part in cmd):
            return marker
    return " ".join(cmd[-3:])[:60]


class ProcStats:
    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.tracked: dict[str, Tracked] = {}
        self.windows: dict[str, Window] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="procstats", daemon=True)

    def track(self, name: str, proc: psutil.Process | int) -> None:
        p = proc if isinstance(proc, psutil.Process) else psutil.Process(proc)
        with self._lock:
            self.tracked[name] = Tracked(name, p)
        self._sample_one(self.tracked[name])

    def untrack(self, name: str) -> None:
        with self._lock:
            self.tracked.pop(name, None)

    def start(self) -> None:
        self.track("bench", os.getpid())
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def _sample_one(self, t: Tracked) -> None:
        try:
            with t.proc.oneshot():
                ct = t.proc.cpu_times()
                cpu = ct.user + ct.system
                rss = t.proc.memory_info().rss
        except psutil.Error:
            return
        s = Sample(cpu, rss)
        if t.first is None:
            t.first = s
        t.last = s
        t.peak_rss = max(t.peak_rss, rss)
        for w in self.windows.values():
            w.peak_rss[t.name] = max(w.peak_rss.get(t.name, 0), rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        with self._lock:
            for t in list(self.tracked.values()):
                self._sample_one(t)

    def rss(self, name: str) -> int:
        t = self.tracked[name]
        try:
            return int(t.proc.memory_info().rss)
        except psutil.Error:
            return 0

    def mark(self, window: str) -> None:
        self.sample()
        with self._lock:
            w = Window(t0=time.monotonic())
            for name, t in self.tracked.items():
                if t.last is not None:
                    w.start_cpu[name] = t.last.cpu_s
                    w.peak_rss[name] = t.last.rss
            self.windows[window] = w

    def report(self, window: str, names: list[str] | None = None) -> dict[str, dict[str, float]]:
        """Per process: CPU seconds used in the window, peak RSS (MiB), CPU share (cores)."""
        self.sample()
        with self._lock:
            w = self.windows.pop(window)
            elapsed = max(1e-9, time.monotonic() - w.t0)
            out: dict[str, dict[str, float]] = {}
            for name, t in self.tracked.items():
                if names is not None and not any(name.startswith(n) for n in names):
                    continue
                if t.last is None or name not in w.start_cpu:
                    continue
                cpu = t.last.cpu_s - w.start_cpu[name]
                out[name] = {
                    "cpu_s": round(cpu, 2),
                    "cpu_cores": round(cpu / elapsed, 3),
                    "rss_mib": round(w.peak_rss.get(name, 0) / 2**20, 1),
                }
            return out
