"""Start and stop the application's processes (workers, sink, edges) and wait until each is
ready. Used by ``make run`` (``python -m ops.run``) and by the test suite's fixtures.
"""

from __future__ import annotations

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
            )
        running = Running(spec, proc, log_path)
        self.running[spec.name] = running
        self.specs[spec.name] = spec
        return running

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

    def stop_all(self) -> None:
        # Edges first (their sessions close cleanly through Kafka), then sink and workers.
        order = sorted(self.running, key=lambda n: (not n.startswith("edge"), n))
        for name in order:
            self.stop(name)


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
