"""Start and stop the application's processes (workers, sink, edges) and wait until each is
ready. Used by ``make run`` (``python -m ops.run``) and by the test suite's fixtures.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGTERM when the process that started it
    dies, however it dies (SIGKILL too). Each child runs in its own session (so that a stop
    reaches its whole group), which is why the terminal's Ctrl-C alone would not reach them."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # The parent may have died between fork and prctl: then nothing would signal us.
        if os.getppid() == 1:
            os._exit(1)


@dataclass
class ProcessSpec:
    name: str
    module: str  # run as `python -m <module>` ...
    env: dict[str, str]
    ready_url: str
    argv: list[str] | None = None  # ... unless a command line is given (nginx)


@dataclass
class Running:
    spec: ProcessSpec
    proc: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Supervisor:
    log_dir: Path
    base_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    running: dict[str, Running] = field(default_factory=dict)
    specs: dict[str, ProcessSpec] = field(default_factory=dict)
    # Where the pids of the running processes are recorded, for the next start to find any
    # this run left behind (None: not recorded).
    state_file: Path | None = None

    def start(self, spec: ProcessSpec) -> Running:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{spec.name}.log"
        env = {**self.base_env, **spec.env, "PYTHONUNBUFFERED": "1"}
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                spec.argv or [PYTHON, "-m", spec.module],
                cwd=REPO,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        running = Running(spec, proc, log_path)
        self.running[spec.name] = running
        self.specs[spec.name] = spec
        self._record()
        return running

    def _record(self) -> None:
        if self.state_file is None:
            return
        entries = {
            name: {"pid": r.proc.pid, "started": process_start_time(r.proc.pid)}
            for name, r in self.running.items()
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries))
        tmp.replace(self.state_file)

    def wait_ready(self, names: list[str] | None = None, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        pending = list(names or self.running)
        while pending:
            name = pending[0]
            r = self.running[name]
            if r.proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {r.proc.returncode}; log tail:\n" + tail(r.log_path)
                )
            if http_ok(r.spec.ready_url):
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{name} not ready after {timeout:.0f}s; log tail:\n" + tail(r.log_path)
                )
            time.sleep(0.2)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        r = self.running.pop(name)
        if r.proc.poll() is None:
            os.killpg(r.proc.pid, sig)
            r.proc.wait()
        self._record()

    def restart(self, name: str, timeout: float = 120.0) -> None:
        """Start a process again with the spec it had (after a kill or a stop)."""
        spec = self.specs[name]
        if name in self.running:
            self.stop(name)
        self.start(spec)
        self.wait_ready([name], timeout)

    def stop(self, name: str, timeout: float = 15.0) -> None:
        r = self.running.pop(name)
        if r.proc.poll() is None:
            os.killpg(r.proc.pid, signal.SIGTERM)
            try:
                r.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(r.proc.pid, signal.SIGKILL)
                r.proc.wait()
        else:
            # Exited on its own: its group may still hold children (nginx's workers).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(r.proc.pid, signal.SIGKILL)
        self._record()

    def stop_all(self) -> None:
        # Edges first (their sessions close cleanly through Kafka), then sink and workers.
        order = sorted(self.running, key=lambda n: (not n.startswith("edge"), n))
        for name in order:
            self.stop(name)


@dataclass
class RestartPolicy:
    """When to start a process that died again: after ``initial_s``, doubling with each death
    in a row up to ``max_s``, as compose's restart policy and Kubernetes' CrashLoopBackOff do;
    a process that stayed up ``stable_s`` starts the count afresh."""

    initial_s: float = 1.0
    max_s: float = 30.0
    stable_s: float = 60.0
    failures: dict[str, int] = field(default_factory=dict)

    def delay(self, name: str, uptime_s: float) -> float:
        if uptime_s >= self.stable_s:
            self.failures[name] = 0
        count = self.failures.get(name, 0)
        self.failures[name] = count + 1
        return float(min(self.max_s, self.initial_s * 2**count))


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22): with
    the pid, it names one process, so a recycled pid is never taken for ours."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    rest = stat.rsplit(")", 1)[1].split()
    if rest[0] == "Z":
        return None  # dead, waiting to be reaped
    return int(rest[19])


def clean_stale(state_file: Path, timeout: float = 10.0) -> list[str]:
    """Stop the processes an earlier run recorded in ``state_file`` that still run (the same
    pid with the same start time); the names of those found."""
    try:
        entries = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return []
    found = []
    for name, entry in entries.items():
        pid, started = entry.get("pid"), entry.get("started")
        if isinstance(pid, int) and started is not None and process_start_time(pid) == started:
            found.append((name, pid))
    for _, pid in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for _, pid in found:
        while process_start_time(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        # Whatever is left of the group (nginx's workers outlive their master's SIGKILL).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    state_file.unlink(missing_ok=True)
    return [name for name, _ in found]


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def worker_spec(index: int, env: dict[str, str], web_port: int) -> ProcessSpec:
    return ProcessSpec(
        f"worker-{index}",
        "topologies",
        {**env, "CHAT_WORKER_WEB_PORT": str(web_port)},
        f"http://127.0.0.1:{web_port}/readyz",
    )


def sink_spec(env: dict[str, str], port: int) -> ProcessSpec:
    return ProcessSpec(
        "sink",
        "sinks",
        {**env, "CHAT_SINK_METRICS_PORT": str(port)},
        f"http://127.0.0.1:{port}/readyz",
    )


def edge_spec(index: int, env: dict[str, str], port: int, slot: int) -> ProcessSpec:
    return ProcessSpec(
        f"edge-{index}",
        "edge",
        {**env, "CHAT_EDGE_PORT": str(port), "CHAT_EDGE_SLOT": str(slot)},
        f"http://127.0.0.1:{port}/readyz",
    )


def media_spec(env: dict[str, str], port: int) -> ProcessSpec:
    return ProcessSpec(
        "media",
        "media",
        {**env, "CHAT_MEDIA_PROCESSOR_PORT": str(port)},
        f"http://127.0.0.1:{port}/readyz",
    )
