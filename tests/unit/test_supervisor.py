"""The local runner's process handling (#14, item 9): restart backoff, children that die with
the runner, and a start that cleans up what an earlier (killed) run left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ops.supervisor import (
    ProcessSpec,
    RestartPolicy,
    Supervisor,
    clean_stale,
    process_start_time,
)


def test_backoff_doubles_up_to_the_cap_and_resets_after_a_stable_run() -> None:
    policy = RestartPolicy(initial_s=1.0, max_s=30.0, stable_s=60.0)
    assert [policy.delay("edge-1", 0.5) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert policy.delay("edge-0", 0.5) == 1  # counted per process
    assert policy.delay("edge-1", 61.0) == 1  # it ran a minute: a fresh start


def sleeper(tmp_path: Path, name: str) -> ProcessSpec:
    return ProcessSpec(name, "", {}, "http://127.0.0.1:1/", argv=["sleep", "300"])


def test_state_file_lists_the_running_processes(tmp_path: Path) -> None:
    state = tmp_path / "run" / "processes.json"
    sup = Supervisor(log_dir=tmp_path, state_file=state)
    sup.start(sleeper(tmp_path, "a"))
    sup.start(sleeper(tmp_path, "b"))
    try:
        entries = json.loads(state.read_text())
        assert set(entries) == {"a", "b"}
        for name, entry in entries.items():
            assert entry["pid"] == sup.running[name].proc.pid
            assert entry["started"] == process_start_time(entry["pid"])
        sup.stop("a")
        assert set(json.loads(state.read_text())) == {"b"}
    finally:
        sup.stop_all()


def test_a_start_cleans_up_an_earlier_runs_processes(tmp_path: Path) -> None:
    """An earlier runner killed before it could stop its children: the state file it left
    names them, and the next start stops exactly those (not a recycled pid)."""
    state = tmp_path / "processes.json"
    left = subprocess.Popen(["sleep", "300"], start_new_session=True)
    entries = {
        "edge-0": {"pid": left.pid, "started": process_start_time(left.pid)},
        # A pid that was recycled: same number, another start time.
        "edge-1": {"pid": os.getpid(), "started": 1},
        "gone": {"pid": 2**22 + 12345, "started": 5},
    }
    state.write_text(json.dumps(entries))
    assert clean_stale(state, timeout=5) == ["edge-0"]
    assert left.wait(5) == -signal.SIGTERM
    assert not state.exists()
    assert clean_stale(state) == []  # nothing recorded: nothing to do


def test_children_die_with_a_sigkilled_parent(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: a child of a parent that is SIGKILLed gets SIGTERM from the kernel."""
    pid_file = tmp_path / "child.pid"
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from ops.supervisor import ProcessSpec, Supervisor\n"
        f"sup = Supervisor(log_dir=Path({str(tmp_path)!r}))\n"
        "r = sup.start(ProcessSpec('c', '', {}, '', argv=['sleep', '300']))\n"
        f"Path({str(pid_file)!r}).write_text(str(r.proc.pid))\n"
        "time.sleep(300)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    deadline = time.monotonic() + 20
    while not pid_file.exists():
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.05)
    child = int(pid_file.read_text())
    started = process_start_time(child)
    assert started is not None
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while process_start_time(child) == started:
        assert time.monotonic() < deadline, "the child outlived its SIGKILLed parent"
        time.sleep(0.05)
