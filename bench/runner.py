"""The coordinator: starts each system and the generators, runs the scenarios, merges results.

Systems run one after the other, each alone on the machine (with the shared Kafka, Redis and
Mongo server): the peers first, each started and stopped in turn, then ours (when the bench
starts it). Per system, in order: the main run, the rate sweep, the group runs (ours), the
reconnect storm (systems that recover) and the capacity run (idle connections on one node).
The scenarios themselves are in bench/scenarios.py.
"""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench import report
from bench.app import Systems, log_dir, process_ports
from bench.config import TARGETS, Config
from bench.genproc import GenProc
from bench.peers import load
from bench.peers.base import Context, System
from bench.procstats import ProcStats, find_by_ports
from bench.scenarios import Scenarios
from chat.settings import load_settings
from ops.supervisor import REPO


class Bench:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.run_id = uuid.uuid4().hex[:6]
        self.out_dir = Path(cfg.out_dir)
        if not self.out_dir.is_absolute():
            self.out_dir = REPO / self.out_dir
        self.tmp = Path(tempfile.mkdtemp(prefix="kchat-bench-"))
        self.systems = Systems(
            self.say, cfg.topic_prefix or f"bench{self.run_id}", cfg.keep_data, cfg.workers
        )
        self.stats = ProcStats()
        self.gens: list[GenProc] = []
        self.results: dict[str, Any] = {"systems": {}}
        self.samples: dict[str, dict[str, np.ndarray]] = {}
        self.notes: list[str] = []
        self.completed = False
        self.tty = sys.stdout.isatty()
        self.t0 = time.monotonic()
        self._last_line = 0.0

    # ------------------------------------------------------------------ output

    def say(self, text: str) -> None:
        if self.tty:
            sys.stdout.write("\r\033[K")
        print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", flush=True)

    def progress(self, text: str) -> None:
        if self.tty:
            sys.stdout.write("\r\033[K" + text[:160])
            sys.stdout.flush()
        elif time.monotonic() - self._last_line > 5:
            self._last_line = time.monotonic()
            print("  " + text, flush=True)

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        started = time.time()
        ok = False
        peers = [] if cfg.skip_peer else [load(name) for name in cfg.peers]
        try:
            self.stats.start()
            self.track_services()
            for system in peers:
                if system.install is not None:
                    self.say(await asyncio.to_thread(system.install))
            await self.start_gens()
            for system in peers:
                await self.run_peer(system)
            if not cfg.skip_ours:
                await self.run_ours()
            ok = True
        finally:
            if self.tty:
                print()
            await asyncio.gather(
                *(g.stop(20.0 if ok else 2.0) for g in self.gens), return_exceptions=True
            )
            self.stats.stop()
            # The caller stops the systems (python -m bench: after the loop has closed).
            self.completed = ok
        self.results["meta"] = self.meta(started)
        self.results["config"] = {
            k: v for k, v in asdict(cfg).items() if k not in ("extra",) and v is not None
        }
        self.results["targets"] = TARGETS
        self.results["ratios"] = report.ratios(self.results)
        self.results["notes"] = self.systems.notes + self.notes
        return self.results

    async def run_ours(self) -> None:
        cfg = self.cfg
        t = time.monotonic()
        await self.systems.ensure_ours()
        self.results["app_start_s"] = round(time.monotonic() - t, 1)
        if self.systems.reused_app and self.cfg.peers and not self.cfg.skip_peer:
            self.notes.append(
                "the reused app was running (idle) during the peers' runs: its background use"
                " of Kafka, Redis and Mongo was billed to them"
            )
        self.track_app()
        sc = Scenarios(self, load("ours"))
        sc.idle_cores = await sc.busy_cores(2.0)
        self.results["idle_app_cores"] = round(sc.idle_cores, 2)
        self.say(f"app idles at {sc.idle_cores:.2f} cores")
        out = self.results["systems"]["ours"] = sc.describe()
        if not cfg.skip_main:
            out["main"] = await sc.main()
        if not cfg.skip_sweep and cfg.sweep_rates:
            out["sweep"] = await sc.sweep()
        if not cfg.skip_groups and cfg.groups:
            out["groups"] = await sc.groups()
        await sc.drop_population()
        if not cfg.skip_reconnect and cfg.reconnect > 0:
            await sc.clean()
            out["reconnect"] = await sc.reconnect(cfg.reconnect)
        # Last: 20,000 sessions closing leave the workers a long tail of work.
        if not cfg.skip_capacity and cfg.capacity > 0:
            await sc.clean()
            await self.fresh_edge()
            out["capacity"] = await sc.capacity(cfg.capacity)

    async def run_peer(self, system: System) -> None:
        cfg = self.cfg
        ctx = Context(self.run_id, self.jwt_secret(), self.say)
        self.say(f"{system.name}: starting {system.title} ...")
        t = time.monotonic()
        try:
            await self.start_peer(system, ctx)
            sc = Scenarios(self, system)
            sc.idle_cores = await sc.busy_cores(2.0)
            out = self.results["systems"][system.name] = sc.describe()
            out["start_s"] = round(time.monotonic() - t, 1)
            out["idle_cores"] = round(sc.idle_cores, 2)
            if not cfg.skip_main:
                out["main"] = await sc.main()
            if not cfg.skip_sweep and cfg.sweep_rates:
                out["sweep"] = await sc.sweep()
            await sc.drop_population()
            if system.recovers and not cfg.skip_reconnect and cfg.reconnect > 0:
                await sc.clean()
                out["reconnect"] = await sc.reconnect(cfg.reconnect)
            if not cfg.skip_capacity and cfg.peer_capacity > 0:
                # On fresh processes, as for ours (see capacity()): memory the earlier runs
                # left free would otherwise be reused and the growth per connection understated.
                self.say(f"{system.name}: restarting it for the capacity run ...")
                self.stop_peer(system)
                await self.start_peer(system, ctx)
                await sc.clean()
                out["capacity"] = await sc.capacity(cfg.peer_capacity)
        finally:
            self.stop_peer(system)
            if system.cleanup is not None and not cfg.keep_data:
                try:
                    await system.cleanup(ctx)
                except Exception as exc:
                    self.notes.append(f"{system.name}: clean-up failed: {exc}")

    async def start_peer(self, system: System, ctx: Context) -> None:
        assert system.stages is not None
        for name in await self.systems.start_peer(system.stages(ctx)):
            pid = self.systems.pid(name)
            if pid:
                self.stats.track(name, pid)

    def stop_peer(self, system: System) -> None:
        self.systems.stop_peer()
        for name in list(self.stats.tracked):
            if name.startswith(system.processes):
                self.stats.untrack(name)

    async def fresh_edge(self) -> bool:
        """Restart edge-0 (when the bench started the app) so that the capacity run measures
        a fresh process, like the peers' nodes."""
        if not self.systems.started_app:
            self.notes.append("ours capacity: measured on the reused app's edge as it was")
            return False
        self.say("ours: restarting edge-0 for the capacity run ...")
        await asyncio.to_thread(self.systems.sup.restart, "edge-0", 60.0)
        self.track_app()
        return True

    def jwt_secret(self) -> str:
        """The secret ours signs with; the peers that check tokens get the same one."""
        return load_settings({**os.environ, "CHAT_ENV": "dev"}).jwt_secret

    async def start_gens(self) -> None:
        self.gens = [GenProc(i, log_dir() / f"gen-{i}.log") for i in range(self.cfg.generators)]
        await asyncio.gather(*(g.start() for g in self.gens))
        for g in self.gens:
            self.stats.track(f"gen-{g.index}", g.pid)

    def track_services(self) -> None:
        """Kafka, Redis and the Mongo server, from the start: every system's runs bill them."""
        self.track_app()

    def track_app(self) -> None:
        for name in process_ports():
            self.stats.untrack(name)
        for name, proc in find_by_ports(process_ports()).items():
            self.stats.track(name, proc)

    def meta(self, started: float) -> dict[str, Any]:
        model = "?"
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        try:
            commit = subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
            ).stdout.strip()
        except OSError:
            commit = "?"
        return {
            "run_id": self.run_id,
            "profile": self.cfg.profile,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "wall_s": round(time.time() - started, 1),
            "machine": {
                "cpu_model": model,
                "cores": os.cpu_count(),
                "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                "kernel": platform.release(),
                "python": platform.python_version(),
            },
            "commit": commit,
            "reused_app": self.systems.reused_app,
        }
