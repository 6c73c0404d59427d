"""``make run``: the local stack plus the whole app in the foreground; Ctrl-C stops it all.

Starts (if not running) Kafka, Redis and FerretDB through ops/stack/stack.sh, creates the
topics, then two stream workers, the MongoDB sink and two edge nodes (127.0.0.1:8080, :8081).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from chat.settings import load_settings
from ops.nginx_local import nginx_spec
from ops.supervisor import (
    REPO,
    RestartPolicy,
    Supervisor,
    clean_stale,
    edge_spec,
    media_spec,
    sink_spec,
    worker_spec,
)
from ops.topics import ensure_topics

STACK = str(REPO / "ops" / "stack" / "stack.sh")


def stack_running() -> bool:
    return subprocess.run([STACK, "status"], capture_output=True).returncode == 0


def main() -> None:
    settings = load_settings()
    data_dir = os.environ.get("CHAT_DATA_DIR", str(REPO / ".data"))
    # One state file per set of ports: two runners on other ports do not take each other's
    # processes for leftovers.
    state_file = Path(data_dir) / "run" / f"processes-{settings.edge_port}.json"
    stale = clean_stale(state_file)
    if stale:
        print(
            f"an earlier run left {', '.join(stale)} running (its runner was killed); stopped them",
            flush=True,
        )
    started_stack = settings.run_stack and not stack_running()
    t0 = time.monotonic()
    if settings.run_stack:
        subprocess.run([STACK, "start"], check=True)
    asyncio.run(ensure_topics(settings))
    # The page on nginx (or one edge) may alternate between both edges: the web client
    # connects only to its own origin and these (CHAT_WEB_EDGES), so list them.
    local_edges = [f"http://127.0.0.1:{settings.edge_port + i}" for i in range(2)]
    env = {"CHAT_ENV": settings.env, "CHAT_WEB_EDGES": ",".join(settings.web_edges or local_edges)}
    sup = Supervisor(log_dir=Path(data_dir) / "logs" / "app", state_file=state_file)
    stopping = False
    started = False

    class Interrupted(Exception):
        pass

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if not started:
            raise Interrupted  # out of the (blocking) wait for readiness; `finally` stops all

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for i in range(2):
            sup.start(worker_spec(i, env, settings.worker_web_port + i))
        sup.start(sink_spec(env, settings.sink_metrics_port))
        sup.start(media_spec(env, settings.media_processor_port))
        # Two edges on CHAT_EDGE_PORT and the next port (8080, 8081 by default).
        for i in range(2):
            sup.start(edge_spec(i, env, settings.edge_port + i, i))
        entry = f"http://127.0.0.1:{settings.edge_port}"
        if settings.lb_port:
            # One address for every client, balanced like the compose file's nginx.
            edges = (settings.edge_port, settings.edge_port + 1)
            sup.start(nginx_spec("nginx", settings.lb_port, edges, Path(data_dir) / "nginx"))
            entry = f"http://127.0.0.1:{settings.lb_port}"
        # Workers recover their tables from the changelogs before they are ready: with a long
        # history that takes minutes (docs/operations.md), so wait generously.
        print("waiting for the edges, the sink and the workers (table recovery) ...", flush=True)
        sup.wait_ready(timeout=900)
        started = True
        print(
            f"\nchat is up in {time.monotonic() - t0:.1f}s:\n"
            f"  web client   {entry}/   (edges: http://127.0.0.1:{settings.edge_port}/ "
            f"http://127.0.0.1:{settings.edge_port + 1}/)\n"
            "  token        TOKEN=$(.venv/bin/chatctl token alice)\n"
            f"  websocket    {entry.replace('http', 'ws')}/v1/ws?access_token=$TOKEN\n"
            f"  metrics      http://127.0.0.1:{settings.edge_port}/metrics  workers "
            f":{settings.worker_web_port} :{settings.worker_web_port + 1}  "
            f"sink :{settings.sink_metrics_port}  media :{settings.media_processor_port}\n"
            f"  logs         {sup.log_dir}\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        keep_running(sup, lambda: stopping)
    except Interrupted:
        pass
    finally:
        print("stopping ...", flush=True)
        sup.stop_all()
        state_file.unlink(missing_ok=True)
        if started_stack:
            subprocess.run([STACK, "stop"])


def keep_running(sup: Supervisor, stopping: Callable[[], bool]) -> None:
    """Start again, with backoff, every process that dies, while the others keep serving (as
    compose's restart policy and Kubernetes do), until ``stopping``."""
    policy = RestartPolicy()
    started_at = {name: time.monotonic() for name in sup.running}
    due: dict[str, float] = {}  # name -> when to start it again
    while not stopping():
        now = time.monotonic()
        for name, r in list(sup.running.items()):
            if r.proc.poll() is None:
                continue
            sup.stop(name)  # forget it (and whatever is left of its process group)
            delay = policy.delay(name, now - started_at.get(name, now))
            due[name] = now + delay
            print(
                f"{name} exited with {r.proc.returncode}; restarting it in {delay:.0f}s "
                f"(see {r.log_path})",
                file=sys.stderr,
                flush=True,
            )
        for name, when in list(due.items()):
            if now >= when:
                del due[name]
                sup.start(sup.specs[name])
                started_at[name] = now
                print(f"{name} restarted", file=sys.stderr, flush=True)
        time.sleep(0.2)


if __name__ == "__main__":
    main()
