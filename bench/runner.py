"""The coordinator: starts the systems and the generators, runs every scenario, merges results.

Scenarios, in order: ours (main run), the peer (same clients and rate), group runs, the rate
sweep, the capacity run (idle connections on one edge) and the reconnect storm.
"""

from __future__ import annotations

import asyncio
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench import analysis, internals
from bench.app import (
    EDGE_PORTS,
    PEER_PORTS,
    SINK_PORT,
    WORKER_PORTS,
    Systems,
    log_dir,
    process_ports,
)
from bench.config import TARGETS, Config
from bench.genproc import GenProc, call_all
from bench.procstats import ProcStats, find_by_ports
from ops.supervisor import REPO

APP_PROCS = ["edge", "worker", "sink", "kafka", "redis", "mongo"]
SETTLED_LAG = 200  # records; the workers commit once a second
PEER_PROCS = ["peer", "redis"]


@dataclass
class Population:
    """Users of one scenario, spread over edges (client i -> edge i % 2) and generators."""

    prefix: str
    users: list[str]
    urls: list[str]
    gen_of: list[int]
    members: dict[str, list[str]] = field(default_factory=dict)  # conversation -> members
    sends: dict[str, list[list[Any]]] = field(default_factory=dict)  # user -> [[conv, fanout]]


class Bench:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.run_id = uuid.uuid4().hex[:6]
        self.out_dir = Path(cfg.out_dir)
        if not self.out_dir.is_absolute():
            self.out_dir = REPO / self.out_dir
        self.tmp = Path(tempfile.mkdtemp(prefix="kchat-bench-"))
        self.systems = Systems(self.say, cfg.topic_prefix or f"bench{self.run_id}", cfg.keep_data)
        self.stats = ProcStats()
        self.gens: list[GenProc] = []
        self.results: dict[str, Any] = {}
        self.samples: dict[str, dict[str, np.ndarray]] = {}
        self.notes: list[str] = []
        self.xff = 0
        self.idle_cores = 0.0
        self.completed = False
        self.pop: Population | None = None
        self.populations = 0
        self.restarts = 0
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
        try:
            self.stats.start()
            t = time.monotonic()
            await self.systems.ensure_ours()
            self.results["app_start_s"] = round(time.monotonic() - t, 1)
            self.track_app()
            self.idle_cores = await self.app_cpu(2.0)
            self.results["idle_app_cores"] = round(self.idle_cores, 2)
            self.say(f"app idles at {self.idle_cores:.2f} cores")
            await self.start_gens()
            if not cfg.skip_main:
                await self.scenario_main()
            if not cfg.skip_peer:
                await self.clean_app()
                await self.scenario_peer()
            if not cfg.skip_sweep and cfg.sweep_rates:
                await self.scenario_sweep()
            if not cfg.skip_groups and cfg.groups:
                await self.scenario_groups()
            await self.drop_population()
            if not cfg.skip_reconnect and cfg.reconnect > 0:
                await self.clean_app()
                await self.scenario_reconnect()
            # Last: 20,000 sessions closing leave the workers a long tail of work.
            if not cfg.skip_capacity and cfg.capacity > 0:
                await self.clean_app()
                await self.scenario_capacity()
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
        self.results["notes"] = self.systems.notes + self.notes
        return self.results

    async def start_gens(self) -> None:
        self.gens = [GenProc(i, log_dir() / f"gen-{i}.log") for i in range(self.cfg.generators)]
        await asyncio.gather(*(g.start() for g in self.gens))
        for g in self.gens:
            self.stats.track(f"gen-{g.index}", g.pid)

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

    # ------------------------------------------------------------------ helpers

    def population(self, prefix: str, n: int, urls: list[str], spread: bool = True) -> Population:
        p = len(self.gens)
        users = [f"{prefix}{i}" for i in range(n)]
        # Pairs (2k, 2k+1) land on different edges and, with 2 generators, different processes.
        gen_of = [((i // 2) + (i % 2)) % p if spread else i % p for i in range(n)]
        return Population(prefix, users, urls, gen_of)

    def url_of(self, pop: Population, i: int) -> str:
        return pop.urls[i % len(pop.urls)]

    def next_xff(self) -> str:
        # Distinct addresses of the benchmarking range 198.18.0.0/15, as if behind a proxy:
        # an app started with default limits (30 upgrades/min per IP) then admits the bench.
        i = self.xff
        self.xff += 1
        return f"198.{18 + ((i >> 16) & 1)}.{(i >> 8) & 255}.{i & 255}"

    async def setup(self, pop: Population, system: str, sync: bool = True) -> None:
        per_gen: list[dict[str, Any]] = [{"clients": []} for _ in self.gens]
        for i, user in enumerate(pop.users):
            per_gen[pop.gen_of[i]]["clients"].append(
                {"user": user, "url": self.url_of(pop, i), "xff": self.next_xff()}
            )
        replies = await call_all(
            self.gens,
            "setup",
            per_gen,
            system=system,
            sync=sync,
            concurrency=self.cfg.connect_concurrency,
            delivered_interval=self.cfg.delivered_interval,
        )
        failed = sum(r["failed"] for r in replies)
        if failed:
            errors = [e for r in replies for e in r["errors"]]
            raise RuntimeError(f"{failed} of {len(pop.users)} clients did not connect: {errors}")
        secs = max(r["seconds"] for r in replies)
        self.say(f"{len(pop.users)} {system} clients connected in {secs:.1f}s")

    async def create_conversations(self, pop: Population, group_size: int) -> dict[str, list[str]]:
        """Direct pairs (group_size 0) or groups of consecutive users; returns id -> members."""
        items_per_gen: list[list[dict[str, Any]]] = [[] for _ in self.gens]
        blocks: dict[str, list[str]] = {}
        size = group_size or 2
        for b in range(len(pop.users) // size):
            members = pop.users[b * size : (b + 1) * size]
            key = f"k{b}"
            blocks[key] = members
            creator_index = b * size
            item = {
                "key": key,
                "creator": members[0],
                "kind": "group" if group_size else "direct",
                "members": members[1:],
                "title": f"bench {key}",
            }
            items_per_gen[pop.gen_of[creator_index]].append(item)
        replies = await call_all(
            self.gens, "create", [{"items": items} for items in items_per_gen], concurrency=100
        )
        errors = [e for r in replies for e in r["errors"]]
        if errors:
            raise RuntimeError(f"{len(errors)} conversations not created: {errors[:3]}")
        out: dict[str, list[str]] = {}
        for r in replies:
            for key, cid in r["created"].items():
                out[cid] = blocks[key]
        return out

    async def assign(self, sends: dict[str, list[list[Any]]]) -> int:
        replies = await call_all(self.gens, "assign", convs=sends)
        return sum(r["senders"] for r in replies)

    def gen_rates(
        self, pop: Population, sends: dict[str, list[list[Any]]], rate: float
    ) -> list[float]:
        per_gen = [0] * len(self.gens)
        for i, user in enumerate(pop.users):
            if sends.get(user):
                per_gen[pop.gen_of[i]] += 1
        total = max(1, sum(per_gen))
        return [rate * n / total for n in per_gen]

    async def load_run(
        self,
        label: str,
        tag: str,
        pop: Population,
        rate: float,
        warmup: float,
        duration: float,
        procs: list[str],
    ) -> dict[str, Any]:
        """Offer ``rate`` msg/s for warmup + duration, wait for the stragglers, merge."""
        cfg = self.cfg
        rates = self.gen_rates(pop, pop.sends, rate)
        start_at = time.time() + 1.0
        metric_urls = self.metric_urls() if procs is APP_PROCS else {}
        metrics_before = internals.scrape_all(metric_urls)
        self.stats.mark(label)
        tasks = [
            asyncio.create_task(
                g.call(
                    "run",
                    tag=tag,
                    rate=r,
                    size=cfg.size,
                    start_at=start_at,
                    warmup=warmup,
                    duration=duration,
                )
            )
            for g, r in zip(self.gens, rates, strict=True)
        ]
        while not all(t.done() for t in tasks):
            await asyncio.sleep(0.5)
            ps = [g.progress for g in self.gens if g.progress]
            if ps:
                left = max(p["remaining_s"] for p in ps)
                phase = "warm-up" if left > duration else "measuring"
                self.progress(
                    f"[{label}] {phase} {left:5.1f}s left | sent {sum(p['sent'] for p in ps)}"
                    f" acked {sum(p['acked'] for p in ps)} recv {sum(p['received'] for p in ps)}"
                    f" err {sum(p['errors'] for p in ps)} | p99 now"
                    f" {max(p['p99_ms'] for p in ps):.1f} ms"
                )
        for t in tasks:
            t.result()
        await self.drain([tag, tag + "/w"], label)
        window = self.stats.report(label)
        metrics_after = internals.scrape_all(metric_urls)
        collected = await call_all(
            self.gens,
            "collect",
            [{"out": str(self.tmp / f"{label}-gen{g.index}")} for g in self.gens],
            tags=[tag, tag + "/w"],
        )
        res = self.summarize(tag, collected, pop.members, rate, warmup, duration)
        res["processes"] = {k: v for k, v in window.items() if any(k.startswith(p) for p in procs)}
        res["rss_mib"] = {k: v["rss_mib"] for k, v in res["processes"].items()}
        res["cpu_s"] = {k: v["cpu_s"] for k, v in res["processes"].items()}
        res["generator"] = {k: v for k, v in window.items() if k.startswith(("gen", "bench"))}
        if metric_urls:
            res["internals"] = internals.deltas(metrics_before, metrics_after)
        self.samples[label] = {
            "lat_us": analysis.load_samples(collected, tag, "lat_us"),
            "recv_ms": analysis.load_samples(collected, tag, "recv_ms"),
        }
        return res

    async def drain(self, tags: list[str], label: str) -> None:
        deadline = time.monotonic() + self.cfg.drain
        while True:
            stats = await call_all(self.gens, "stats")
            sent = acked = errors = expected = received = 0
            for s in stats:
                for tag in tags:
                    t = s["tallies"].get(tag)
                    if t:
                        sent += t["sent"]
                        acked += t["acked"]
                        errors += t["errors"]
                        expected += t["expected"]
                        received += t["received"]
            if acked + errors >= sent and received >= expected:
                return
            if time.monotonic() > deadline:
                self.notes.append(
                    f"{label}: drain timed out after {self.cfg.drain:.0f}s with"
                    f" {sent - acked - errors} sends unanswered and"
                    f" {expected - received} deliveries outstanding"
                )
                return
            self.progress(
                f"[{label}] draining: {sent - acked - errors} acks and"
                f" {expected - received} deliveries outstanding"
            )
            await asyncio.sleep(0.2)

    def summarize(
        self,
        tag: str,
        collected: list[dict[str, Any]],
        members: dict[str, list[str]],
        rate: float,
        warmup: float,
        duration: float,
    ) -> dict[str, Any]:
        main = analysis.merged_counts(collected, tag)
        warm = analysis.merged_counts(collected, tag + "/w")
        lat = analysis.load_samples(collected, tag, "lat_us")
        ack = analysis.load_samples(collected, tag, "ack_us")
        check = analysis.check_delivery(collected, members, {tag, tag + "/w"})
        codes = dict(main["error_codes"])
        for k, v in warm["error_codes"].items():
            codes[k] = codes.get(k, 0) + v
        return {
            "offered_rate": rate,
            "warmup_s": warmup,
            "duration_s": duration,
            "sent": main["sent"],
            "achieved_send_rate": round(main["sent"] / duration, 1) if duration else 0.0,
            "acked": main["acked"],
            "send_errors": main["errors"] + warm["errors"],
            "error_codes": codes,
            "expected": main["expected"],
            "delivered": main["received"],
            "throughput_msgs_per_s": round(main["received"] / duration, 1) if duration else 0.0,
            "lost": check["lost"],
            "lost_examples": check["examples"],
            "anomaly_examples": [a for c in collected for a in c.get("anomalies", [])][:10],
            "duplicated": main["duplicated"] + warm["duplicated"],
            "reordered": main["reordered"] + warm["reordered"],
            "deliveries_checked": check["checked"],
            "latency_ms": analysis.summary_ms(lat, main["expected"] - main["received"]),
            "ack_latency_ms": analysis.summary_ms(
                ack, main["sent"] - main["acked"] - main["errors"]
            ),
        }

    async def app_cpu(self, seconds: float = 1.0) -> float:
        """Cores the app's processes used over the next ``seconds``."""
        names = [n for n in self.stats.tracked if n.startswith(tuple(APP_PROCS))]
        self.stats.mark("settle")
        await asyncio.sleep(seconds)
        used = self.stats.report("settle", names)
        return sum(v["cpu_cores"] for v in used.values())

    async def clean_app(self) -> None:
        """Settle; if the app still works off a backlog, start it afresh (when it is ours)."""
        if await self.settle():
            return
        if not self.systems.started_app or not self.cfg.restart_on_backlog:
            self.notes.append("the app was still working off a backlog when the next run started")
            return
        self.say("the app still works off the last run's backlog: restarting it afresh ...")
        await self.drop_population()
        self.restarts += 1
        await self.systems.restart_fresh(f"bench{self.run_id}r{self.restarts}")
        self.track_app()
        self.notes.append(
            "the app was restarted on empty state after a run it could not drain"
            f" ({self.restarts} time(s))"
        )

    def track_app(self) -> None:
        for name in process_ports():
            self.stats.untrack(name)
        for name, proc in find_by_ports(process_ports()).items():
            self.stats.track(name, proc)

    async def drop_population(self) -> None:
        if self.pop is not None:
            await call_all(self.gens, "close", prefix=self.pop.prefix)
            self.pop = None

    async def ours_population(self) -> Population:
        """The main run's clients and 1:1 conversations (set up again after a restart)."""
        if self.pop is None:
            cfg = self.cfg
            self.populations += 1
            pop = self.population(
                f"b{self.run_id}-{self.populations}-u", cfg.clients, self.edge_urls()
            )
            await self.setup(pop, "ours")
            pop.members = await self.create_conversations(pop, 0)
            pop.sends = self.sends_of(pop.members)
            self.pop = pop
        return self.pop

    @staticmethod
    def sends_of(members: dict[str, list[str]]) -> dict[str, list[list[Any]]]:
        sends: dict[str, list[list[Any]]] = {}
        for cid, ms in members.items():
            for m in ms:
                sends.setdefault(m, []).append([cid, len(ms) - 1])
        return sends

    async def settle(self, limit_s: float | None = None) -> bool:
        """Wait until the app's processes are back near their idle use (e.g. the sink
        catching up after a run), so that one run's backlog does not bill the next."""
        limit_s = self.cfg.settle if limit_s is None else limit_s
        deadline = time.monotonic() + limit_s
        threshold = max(0.3, self.idle_cores * 1.25 + 0.1)
        while time.monotonic() < deadline:
            busy = await self.app_cpu()
            # The workers can work off a backlog at low CPU (they wait on Kafka round trips),
            # so the consumer lag decides too: commits trail by up to a second.
            lag = await self.systems.backlog()
            if busy < threshold and (lag is None or lag <= SETTLED_LAG):
                return True
            self.progress(
                f"waiting for the app to go idle: {busy:.2f} cores busy (< {threshold:.2f}),"
                f" {lag} records not yet consumed"
            )
        return False

    # ------------------------------------------------------------------ scenarios

    @staticmethod
    def metric_urls() -> dict[str, str]:
        urls = {f"edge-{i}": f"http://127.0.0.1:{p}/metrics" for i, p in enumerate(EDGE_PORTS)}
        urls |= {f"worker-{i}": f"http://127.0.0.1:{p}/metrics" for i, p in enumerate(WORKER_PORTS)}
        urls["sink"] = f"http://127.0.0.1:{SINK_PORT}/metrics"
        return urls

    def edge_urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{p}/v1/ws" for p in EDGE_PORTS]

    async def scenario_main(self) -> None:
        cfg = self.cfg
        if cfg.group_size:
            self.populations += 1
            pop = self.population(f"b{self.run_id}-0-u", cfg.clients, self.edge_urls())
            await self.setup(pop, "ours")
            pop.members = await self.create_conversations(pop, cfg.group_size)
            pop.sends = self.sends_of(pop.members)
            self.pop = pop
        else:
            pop = await self.ours_population()
        await self.assign(pop.sends)
        kind = f"groups of {cfg.group_size}" if cfg.group_size else "1:1"
        self.say(
            f"ours: {cfg.clients} clients, {len(pop.members)} conversations ({kind}),"
            f" {cfg.rate:.0f} msg/s, {cfg.warmup:.0f}s warm-up + {cfg.duration:.0f}s"
        )
        res = await self.load_run(
            "ours", "main", pop, cfg.rate, cfg.warmup, cfg.duration, APP_PROCS
        )
        res.update(clients=cfg.clients, conversations=len(pop.members), group_size=cfg.group_size)
        self.results["ours"] = res
        self.say(self.one_line("ours", res))
        if cfg.group_size:
            await self.drop_population()  # later runs use 1:1 pairs

    async def scenario_peer(self) -> None:
        cfg = self.cfg
        self.say("peer: starting python-socketio (AsyncRedisManager) on :8090 and :8091 ...")
        await self.systems.start_peer()
        for i in range(len(PEER_PORTS)):
            pid = self.systems.pid(f"peer-{i}")
            if pid:
                self.stats.track(f"peer-{i}", pid)
        try:
            urls = [f"http://127.0.0.1:{p}" for p in PEER_PORTS]
            pop = self.population(f"p{self.run_id}-u", cfg.clients, urls)
            await self.setup(pop, "peer", sync=False)
            for k in range(len(pop.users) // 2):
                a, b = pop.users[2 * k], pop.users[2 * k + 1]
                pop.members[f"{a}>{b}"] = [a, b]
                pop.members[f"{b}>{a}"] = [a, b]
                pop.sends[a] = [[f"{a}>{b}", 1]]
                pop.sends[b] = [[f"{b}>{a}", 1]]
            await self.assign(pop.sends)
            self.say(f"peer: {cfg.clients} clients, 1:1, {cfg.rate:.0f} msg/s")
            res = await self.load_run(
                "peer", "peer", pop, cfg.rate, cfg.warmup, cfg.duration, PEER_PROCS
            )
            res.update(clients=cfg.clients, conversations=len(pop.users) // 2, group_size=0)
            self.results["peer"] = res
            self.say(self.one_line("peer", res))
            await call_all(self.gens, "close", prefix=pop.prefix)
        finally:
            self.systems.stop_peer()
            for i in range(len(PEER_PORTS)):
                self.stats.untrack(f"peer-{i}")

    async def scenario_groups(self) -> None:
        out = []
        for g in self.cfg.groups:
            if g.size > self.cfg.clients:
                continue
            await self.clean_app()
            pop = await self.ours_population()
            members = await self.create_conversations(pop, g.size)
            sends = self.sends_of(members)
            gpop = Population(pop.prefix, pop.users, pop.urls, pop.gen_of, members, sends)
            await self.assign(sends)
            self.say(
                f"ours, groups of {g.size}: {len(members)} groups, {g.rate:.0f} msg/s"
                f" ({g.rate * (g.size - 1):.0f} deliveries/s), {g.duration:.0f}s"
            )
            res = await self.load_run(
                f"groups-{g.size}", f"g{g.size}", gpop, g.rate, 2.0, g.duration, APP_PROCS
            )
            res.update(group_size=g.size, groups=len(members), clients=len(pop.users))
            out.append(res)
            self.say(self.one_line(f"groups of {g.size}", res))
        self.results["groups"] = out

    async def scenario_sweep(self) -> None:
        cfg = self.cfg
        steps = []
        best = 0.0
        for rate in cfg.sweep_rates:
            await self.clean_app()
            pop = await self.ours_population()
            await self.assign(pop.sends)
            self.say(f"sweep: {rate:.0f} msg/s for {cfg.sweep_step:.0f}s")
            res = await self.load_run(
                f"sweep-{rate:.0f}",
                f"s{rate:.0f}",
                pop,
                rate,
                cfg.sweep_warmup,
                cfg.sweep_step,
                APP_PROCS,
            )
            p99 = res["latency_ms"]["p99"]
            faults = res["lost"] + res["duplicated"] + res["reordered"] + res["send_errors"]
            kept_up = res["achieved_send_rate"] >= 0.9 * rate
            passed = (
                p99 is not None
                and p99 <= 100.0
                and faults == 0
                and kept_up
                and res["delivered"] > 0
            )
            steps.append(
                {
                    "rate": rate,
                    "achieved_send_rate": res["achieved_send_rate"],
                    "throughput_msgs_per_s": res["throughput_msgs_per_s"],
                    "latency_ms": res["latency_ms"],
                    "ack_latency_ms": res["ack_latency_ms"],
                    "lost": res["lost"],
                    "duplicated": res["duplicated"],
                    "reordered": res["reordered"],
                    "send_errors": res["send_errors"],
                    "cpu_cores": {k: v["cpu_cores"] for k, v in res["processes"].items()},
                    "generator_cpu_cores": {k: v["cpu_cores"] for k, v in res["generator"].items()},
                    "passed": passed,
                }
            )
            self.say(
                f"sweep {rate:.0f} msg/s: p99 {fmt_ms(p99)},"
                f" sent {res['achieved_send_rate']:.0f}/s,"
                f" faults {faults} -> {'pass' if passed else 'FAIL'}"
            )
            if not passed:
                break
            best = rate
        self.results["sweep"] = {"steps": steps, "max_rate_under_100ms_p99": best}

    async def scenario_capacity(self) -> None:
        cfg = self.cfg
        edge = self.stats.tracked.get("edge-0")
        if edge is None:
            self.notes.append("capacity: edge-0 not found")
            return
        n = cfg.capacity
        soft, _hard = edge.proc.rlimit(psutil.RLIMIT_NOFILE)
        if soft != psutil.RLIM_INFINITY and soft < n + 300:
            n = max(0, soft - 300)
            self.notes.append(
                f"capacity: the edge's open-file limit is {soft} (this machine's hard limit"
                f" when the bench cannot raise it): tested {n} connections"
            )
        self.say(f"capacity: {n} idle connections to one edge (:8080) ...")
        await asyncio.sleep(1.0)
        rss_before = self.stats.rss("edge-0")
        ips = [f"127.0.0.{2 + k}" for k in range(max(1, math.ceil(n / 15000)))]
        per_gen: list[dict[str, Any]] = [{"clients": []} for _ in self.gens]
        url = f"ws://127.0.0.1:{EDGE_PORTS[0]}/v1/ws"
        prefix = f"c{self.run_id}-u"
        for i in range(n):
            per_gen[i % len(self.gens)]["clients"].append({"user": f"{prefix}{i}", "url": url})
        self.stats.mark("capacity")
        t0 = time.monotonic()
        task = asyncio.create_task(
            call_all(self.gens, "idle", per_gen, source_ips=ips, concurrency=100)
        )
        while not task.done():
            await asyncio.sleep(0.5)
            self.progress(
                f"[capacity] {time.monotonic() - t0:5.1f}s, edge RSS"
                f" {self.stats.rss('edge-0') / 2**20:.0f} MiB"
            )
        replies = task.result()
        opened = sum(r["opened"] for r in replies)
        failed = sum(r["failed"] for r in replies)
        connect_s = time.monotonic() - t0
        await asyncio.sleep(3.0)
        rss_after = self.stats.rss("edge-0")
        window = self.stats.report("capacity")
        if rss_after == 0 or not edge.proc.is_running():
            self.notes.append("capacity: edge-0 exited during the run; no figure")
            self.say("capacity: edge-0 is gone (see its log); skipping the figure")
            await call_all(self.gens, "close", prefix=f"c{self.run_id}-u")
            return
        per_conn = (rss_after - rss_before) / 1024 / max(1, opened)
        gen_rss = sum(v["rss_mib"] for k, v in window.items() if k.startswith("gen"))
        self.results["capacity"] = {
            "idle_connections": opened,
            "attempted": n,
            "failed": failed,
            "errors": [e for r in replies for e in r["errors"]][:5],
            "connect_seconds": round(connect_s, 1),
            "connects_per_s": round(opened / connect_s, 1) if connect_s else 0.0,
            "edge_rss_before_mib": round(rss_before / 2**20, 1),
            "edge_rss_after_mib": round(rss_after / 2**20, 1),
            "rss_per_connection_kib": round(per_conn, 1),
            "edge_nofile_limit": soft,
            "processes": window,
            "generator_rss_mib": gen_rss,
        }
        self.say(
            f"capacity: {opened} idle connections ({failed} failed) in {connect_s:.1f}s,"
            f" edge RSS {rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MiB ="
            f" {per_conn:.1f} KiB per connection"
        )
        self.say("capacity: closing ...")
        await call_all(self.gens, "close", prefix=prefix, abort=True)

    async def scenario_reconnect(self) -> None:
        cfg = self.cfg
        n = cfg.reconnect
        k = cfg.reconnect_messages
        per_partner = 10
        a_url, b_url = self.edge_urls()
        storm = self.population(f"r{self.run_id}-u", n, [a_url], spread=False)
        partners = self.population(
            f"r{self.run_id}-p", max(1, math.ceil(n / per_partner)), [b_url], spread=False
        )
        await self.setup(storm, "ours")
        await self.setup(partners, "ours")
        items_per_gen: list[list[dict[str, Any]]] = [[] for _ in self.gens]
        for i, user in enumerate(storm.users):
            j = i // per_partner
            items_per_gen[partners.gen_of[j]].append(
                {
                    "key": user,
                    "creator": partners.users[j],
                    "kind": "direct",
                    "members": [user],
                }
            )
        replies = await call_all(
            self.gens, "create", [{"items": it} for it in items_per_gen], concurrency=100
        )
        errors = [e for r in replies for e in r["errors"]]
        if errors:
            raise RuntimeError(f"reconnect: conversations not created: {errors[:3]}")
        created = {key: cid for r in replies for key, cid in r["created"].items()}
        members: dict[str, list[str]] = {}
        sends: dict[str, list[list[Any]]] = {}
        convs_of: dict[str, list[str]] = {}
        for i, user in enumerate(storm.users):
            cid = created[user]
            partner = partners.users[i // per_partner]
            members[cid] = [partner, user]
            sends.setdefault(partner, []).append([cid, 1])
            convs_of[user] = [cid]
        await asyncio.sleep(1.0)
        self.say(f"reconnect: {n} clients leave edge :8080; {k} messages wait for each ...")
        await call_all(self.gens, "disconnect", prefix=storm.prefix)
        await self.assign(sends)
        burst = await call_all(self.gens, "burst", count=k, tag="rc", size=cfg.size)
        burst_failed = sum(r["failed"] for r in burst)
        await self.assign({})
        await asyncio.sleep(1.0)
        self.say(f"reconnect: {n} clients reconnect to :8081 and sync ...")
        for g in self.gens:
            g.progress = {}
        self.stats.mark("reconnect")
        start_at = time.time() + 0.5
        expected = {u: k for u in storm.users}
        task = asyncio.create_task(
            call_all(
                self.gens,
                "reconnect",
                url=b_url,
                prefix=storm.prefix,
                start_at=start_at,
                expected=expected,
                convs=convs_of,
                timeout=max(10.0, n / 40),
            )
        )
        while not task.done():
            await asyncio.sleep(0.5)
            ps = [g.progress for g in self.gens if "synced" in g.progress]
            self.progress(
                f"[reconnect] {time.time() - start_at:5.1f}s: synced"
                f" {sum(p['synced'] for p in ps)}, complete {sum(p['done'] for p in ps)}"
                f" of {n}, messages {sum(p['received'] for p in ps)} of {n * k}"
            )
        replies = task.result()
        window = self.stats.report("reconnect")
        complete_s = percentiles_s([t for r in replies for t in r["times"]])
        done = sum(r["done"] for r in replies)
        collected = await call_all(
            self.gens,
            "collect",
            [{"out": str(self.tmp / f"reconnect-gen{g.index}")} for g in self.gens],
            tags=["rc"],
        )
        check = analysis.check_delivery(collected, members, {"rc"})
        counts = analysis.merged_counts(collected, "rc")
        all_done = done == n
        self.results["reconnect"] = {
            "clients": n,
            "messages_waiting": n * k,
            "messages_not_acked": burst_failed,
            "synced": done,
            "failed": sum(r["failed"] for r in replies),
            "errors": [e for r in replies for e in r["errors"]][:5],
            "seconds": complete_s["max"] if all_done and complete_s else None,
            "p50_s": complete_s["p50"] if complete_s else None,
            "p99_s": complete_s["p99"] if complete_s else None,
            # The phases, to tell a slow upgrade from a slow sync answer.
            "connected_s": percentiles_s([t for r in replies for t in r["connected_times"]]),
            "sync_done_s": percentiles_s([t for r in replies for t in r["synced_times"]]),
            "lost": check["lost"],
            "lost_examples": check["examples"],
            "duplicated": counts["duplicated"],
            "reordered": counts["reordered"],
            "processes": window,
        }
        r = self.results["reconnect"]
        self.say(
            f"reconnect: {done}/{n} clients had everything after"
            f" {r['seconds'] if r['seconds'] is not None else 'n/a'} s"
            f" (p50 {r['p50_s']} s), lost {r['lost']}"
        )
        await call_all(self.gens, "close", prefix=storm.prefix)
        await call_all(self.gens, "close", prefix=partners.prefix)

    @staticmethod
    def one_line(label: str, r: dict[str, Any]) -> str:
        lat = r["latency_ms"]
        return (
            f"{label}: p50 {fmt_ms(lat['p50'])} p99 {fmt_ms(lat['p99'])}"
            f" max {fmt_ms(lat['max'])},"
            f" {r['throughput_msgs_per_s']:.0f} deliveries/s, sent {r['sent']},"
            f" delivered {r['delivered']}/{r['expected']}, lost {r['lost']},"
            f" dup {r['duplicated']}, reordered {r['reordered']}, errors {r['send_errors']}"
        )


def percentiles_s(values: list[float]) -> dict[str, float] | None:
    """p50/p99/max of seconds since the storm started, or None when nothing got that far."""
    if not values:
        return None
    a = np.array(values, dtype=float)
    return {
        "p50": round(float(np.percentile(a, 50)), 2),
        "p99": round(float(np.percentile(a, 99)), 2),
        "max": round(float(a.max()), 2),
    }


def fmt_ms(v: float | None) -> str:
    return "undelivered" if v is None else f"{v:.1f} ms"
