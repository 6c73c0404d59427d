"""The scenarios, the same for every system: main run, sweep, groups, reconnect storm, capacity.

A :class:`Scenarios` drives one system (bench/peers/<name>.py) through the generators; what
differs between systems is in their module (client adapter, processes, shared services).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil

from bench import analysis, internals
from bench.app import EDGE_PORTS, SINK_PORT, WORKER_PORTS
from bench.genproc import call_all
from bench.peers.base import System

if TYPE_CHECKING:
    from bench.runner import Bench

SETTLED_LAG = 200  # records; the workers commit once a second
FAULT_KEYS = ("lost", "duplicated", "reordered", "send_errors")


@dataclass
class Population:
    """Users of one scenario, spread over nodes (client i -> node i % 2) and generators."""

    prefix: str
    users: list[str]
    urls: list[str]
    gen_of: list[int]
    members: dict[str, list[str]] = field(default_factory=dict)  # conversation -> members
    sends: dict[str, list[list[Any]]] = field(default_factory=dict)  # user -> [[conv, fanout]]


class Scenarios:
    def __init__(self, bench: Bench, system: System) -> None:
        self.bench = bench
        self.cfg = bench.cfg
        self.system = system
        self.gens = bench.gens
        self.stats = bench.stats
        self.say = bench.say
        self.progress = bench.progress
        self.notes = bench.notes
        self.idle_cores = 0.0
        self.pop: Population | None = None
        self.populations = 0
        self.restarts = 0
        self.xff = 0
        # Whose CPU and RSS a run bills: the system's processes and the shared services it
        # uses (runs are sequential: while this system runs, the services work for it).
        self.procs = (*system.processes, *system.shared)

    def describe(self) -> dict[str, Any]:
        s = self.system
        return {"title": s.title, "summary": s.summary, "shared": list(s.shared)}

    # ------------------------------------------------------------------ helpers

    @property
    def name(self) -> str:
        return self.system.name

    def population(self, prefix: str, n: int, urls: list[str], spread: bool = True) -> Population:
        p = len(self.gens)
        users = [f"{prefix}{i}" for i in range(n)]
        # Pairs (2k, 2k+1) land on different nodes and, with 2 generators, different processes.
        gen_of = [((i // 2) + (i % 2)) % p if spread else i % p for i in range(n)]
        return Population(prefix, users, urls, gen_of)

    def next_xff(self) -> str:
        # Distinct addresses of the benchmarking range 198.18.0.0/15, as if behind a proxy:
        # an app started with default limits (30 upgrades/min per IP) then admits the bench.
        i = self.xff
        self.xff += 1
        return f"198.{18 + ((i >> 16) & 1)}.{(i >> 8) & 255}.{i & 255}"

    async def setup(
        self, pop: Population, sync: bool | None = None, source_ips: list[str] | None = None
    ) -> dict[str, Any]:
        """Connect the population's clients (and sync them, for systems that recover).
        ``source_ips`` (the capacity run) also means: failures are counted, not fatal."""
        per_gen: list[dict[str, Any]] = [{"clients": []} for _ in self.gens]
        for i, user in enumerate(pop.users):
            per_gen[pop.gen_of[i]]["clients"].append(
                {"user": user, "url": pop.urls[i % len(pop.urls)], "xff": self.next_xff()}
            )
        replies = await call_all(
            self.gens,
            "setup",
            per_gen,
            system=self.name,
            sync=self.system.recovers if sync is None else sync,
            concurrency=self.cfg.connect_concurrency,
            delivered_interval=self.cfg.delivered_interval,
            source_ips=source_ips or [],
        )
        failed = sum(r["failed"] for r in replies)
        if failed and source_ips is None:
            errors = [e for r in replies for e in r["errors"]]
            raise RuntimeError(f"{failed} of {len(pop.users)} clients did not connect: {errors}")
        secs = max(r["seconds"] for r in replies)
        if source_ips is None:
            self.say(f"{len(pop.users)} {self.name} clients connected in {secs:.1f}s")
        return {
            "connected": sum(r["connected"] for r in replies),
            "failed": failed,
            "errors": [e for r in replies for e in r["errors"]][:5],
            "seconds": secs,
        }

    async def create_conversations(
        self, pop: Population, group_size: int, creators: dict[int, int] | None = None
    ) -> None:
        """Direct pairs (group_size 0) or groups of consecutive users. Sets the population's
        members and sends. In a directed system each member of a pair opens its own stream."""
        directed = self.system.directed and not group_size
        items_per_gen: list[list[dict[str, Any]]] = [[] for _ in self.gens]
        blocks: dict[str, tuple[list[str], list[str]]] = {}  # key -> (members, senders)
        size = group_size or 2
        for b in range(len(pop.users) // size):
            members = pop.users[b * size : (b + 1) * size]
            for k, creator in enumerate(members if directed else members[:1]):
                key = f"k{b}.{k}"
                others = [m for m in members if m != creator]
                blocks[key] = (members, [creator] if directed else members)
                item = {
                    "key": key,
                    "creator": creator,
                    "kind": "group" if group_size else "direct",
                    "members": others,
                }
                items_per_gen[pop.gen_of[b * size + k]].append(item)
        replies = await call_all(
            self.gens, "create", [{"items": items} for items in items_per_gen], concurrency=100
        )
        errors = [e for r in replies for e in r["errors"]]
        if errors:
            raise RuntimeError(f"{len(errors)} conversations not created: {errors[:3]}")
        pop.members, pop.sends = {}, {}
        for r in replies:
            for key, cid in r["created"].items():
                members, senders = blocks[key]
                pop.members[cid] = members
                for m in senders:
                    pop.sends.setdefault(m, []).append([cid, len(members) - 1])

    async def assign(self, sends: dict[str, list[list[Any]]]) -> int:
        replies = await call_all(self.gens, "assign", convs=sends)
        return sum(r["senders"] for r in replies)

    def gen_rates(self, pop: Population, rate: float) -> list[float]:
        per_gen = [0] * len(self.gens)
        for i, user in enumerate(pop.users):
            if pop.sends.get(user):
                per_gen[pop.gen_of[i]] += 1
        total = max(1, sum(per_gen))
        return [rate * n / total for n in per_gen]

    def metric_urls(self) -> dict[str, str]:
        """Our app's own Prometheus metrics (the peers' internals are not read)."""
        if self.name != "ours":
            return {}
        urls = {f"edge-{i}": f"http://127.0.0.1:{p}/metrics" for i, p in enumerate(EDGE_PORTS)}
        urls |= {f"worker-{i}": f"http://127.0.0.1:{p}/metrics" for i, p in enumerate(WORKER_PORTS)}
        urls["sink"] = f"http://127.0.0.1:{SINK_PORT}/metrics"
        return urls

    # ------------------------------------------------------------------ settling

    async def busy_cores(self, seconds: float = 1.0) -> float:
        """Cores this system's processes and the shared services it uses spent over the next
        ``seconds`` (a consumer waiting on a busy store is idle, the store is not)."""
        names = [n for n in self.stats.tracked if n.startswith(self.procs)]
        self.stats.mark("settle")
        await asyncio.sleep(seconds)
        used = self.stats.report("settle", names)
        return sum(v["cpu_cores"] for v in used.values())

    async def settle(self) -> bool:
        """Wait until the system's processes are back near their idle use (e.g. a consumer
        catching up after a run), so that one run's backlog does not bill the next."""
        deadline = time.monotonic() + self.cfg.settle
        threshold = max(0.3, self.idle_cores * 1.25 + 0.15)
        while time.monotonic() < deadline:
            busy = await self.busy_cores()
            # Our workers can work off a backlog at low CPU (they wait on Kafka round trips),
            # so the consumer lag decides too: commits trail by up to a second.
            lag = await self.bench.systems.backlog() if self.name == "ours" else None
            if busy < threshold and (lag is None or lag <= SETTLED_LAG):
                return True
            self.progress(
                f"waiting for {self.name} to go idle: {busy:.2f} cores busy (< {threshold:.2f})"
                + (f", {lag} records not yet consumed" if lag is not None else "")
            )
        return False

    async def clean(self) -> None:
        """Settle; if our app still works off a backlog, start it afresh (when the bench
        started it). A peer that does not settle is noted, not restarted."""
        if await self.settle():
            return
        systems = self.bench.systems
        if self.name != "ours" or not systems.started_app or not self.cfg.restart_on_backlog:
            self.notes.append(
                f"{self.name} was still working off a backlog when its next run started"
            )
            return
        self.say("the app still works off the last run's backlog: restarting it afresh ...")
        await self.drop_population()
        self.restarts += 1
        await systems.restart_fresh(f"bench{self.bench.run_id}r{self.restarts}")
        self.bench.track_app()
        self.notes.append(
            "the app was restarted on empty state after a run it could not drain"
            f" ({self.restarts} time(s))"
        )

    async def drop_population(self) -> None:
        if self.pop is not None:
            await call_all(self.gens, "close", prefix=self.pop.prefix)
            self.pop = None

    async def pairs(self, group_size: int = 0) -> Population:
        """The main run's clients and conversations (set up again after a restart)."""
        if self.pop is None:
            self.populations += 1
            prefix = f"{self.name[0]}{self.bench.run_id}-{self.populations}-u"
            pop = self.population(prefix, self.cfg.clients, list(self.system.urls))
            await self.setup(pop)
            await self.create_conversations(pop, group_size)
            self.pop = pop
        return self.pop

    # ------------------------------------------------------------------ one load run

    async def load_run(
        self, label: str, tag: str, pop: Population, rate: float, warmup: float, duration: float
    ) -> dict[str, Any]:
        """Offer ``rate`` msg/s for warmup + duration, wait for the stragglers, merge."""
        cfg = self.cfg
        # Tags are per system: the generators keep their tallies for the whole bench.
        tag = f"{self.name}.{tag}"
        await self.assign(pop.sends)
        rates = self.gen_rates(pop, rate)
        start_at = time.time() + 1.0
        metric_urls = self.metric_urls()
        metrics_before = internals.scrape_all(metric_urls)
        window = f"{self.name}/{label}"
        self.stats.mark(window)
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
            ps = [g.progress for g in self.gens if "remaining_s" in g.progress]
            if ps:
                left = max(p["remaining_s"] for p in ps)
                phase = "warm-up" if left > duration else "measuring"
                self.progress(
                    f"[{self.name} {label}] {phase} {left:5.1f}s left"
                    f" | sent {sum(p['sent'] for p in ps)} acked {sum(p['acked'] for p in ps)}"
                    f" recv {sum(p['received'] for p in ps)} err {sum(p['errors'] for p in ps)}"
                    f" | p99 now {max(p['p99_ms'] for p in ps):.1f} ms"
                )
        for t in tasks:
            t.result()
        await self.drain([tag, tag + "/w"], label)
        used = self.stats.report(window)
        metrics_after = internals.scrape_all(metric_urls)
        collected = await call_all(
            self.gens,
            "collect",
            [{"out": str(self.bench.tmp / f"{self.name}-{label}-gen{g.index}")} for g in self.gens],
            tags=[tag, tag + "/w"],
        )
        res = summarize(tag, collected, pop.members, rate, warmup, duration)
        res["processes"] = {k: v for k, v in used.items() if k.startswith(self.procs)}
        res["rss_mib"] = {k: v["rss_mib"] for k, v in res["processes"].items()}
        res["cpu_s"] = {k: v["cpu_s"] for k, v in res["processes"].items()}
        res["generator"] = {k: v for k, v in used.items() if k.startswith(("gen", "bench"))}
        own = [k for k in res["processes"] if k.startswith(self.system.processes)]
        res["server_cpu_s"] = round(sum(res["cpu_s"].values()), 2)
        res["own_cpu_s"] = round(sum(res["cpu_s"][k] for k in own), 2)
        res["own_peak_rss_mib"] = round(sum(res["rss_mib"][k] for k in own), 1)
        # Per delivery of the whole window (warm-up included: the CPU window includes it too).
        deliveries = res["delivered"] + res["warmup_delivered"]
        res["cpu_ms_per_delivered"] = (
            round(res["server_cpu_s"] * 1000 / deliveries, 3) if deliveries else None
        )
        if metric_urls:
            res["internals"] = internals.deltas(metrics_before, metrics_after)
        self.bench.samples[f"{self.name}/{label}"] = {
            "lat_us": analysis.load_samples(collected, tag, "lat_us"),
            "recv_ms": analysis.load_samples(collected, tag, "recv_ms"),
        }
        return res

    async def drain(self, tags: list[str], label: str) -> None:
        deadline = time.monotonic() + self.cfg.drain
        while True:
            stats = await call_all(self.gens, "stats")
            sent = acked = errors = expected = received = 0
            # Acked messages whose seq the sender has not learnt yet (the seed's own copies).
            awaiting = sum(s["awaiting_seq"] for s in stats)
            for s in stats:
                for tag in tags:
                    t = s["tallies"].get(tag)
                    if t:
                        sent += t["sent"]
                        acked += t["acked"]
                        errors += t["errors"]
                        expected += t["expected"]
                        received += t["received"]
            if acked + errors >= sent and received >= expected and not awaiting:
                return
            if time.monotonic() > deadline:
                self.notes.append(
                    f"{self.name} {label}: drain timed out after {self.cfg.drain:.0f}s with"
                    f" {sent - acked - errors} sends unanswered and"
                    f" {expected - received} deliveries outstanding"
                )
                return
            self.progress(
                f"[{self.name} {label}] draining: {sent - acked - errors} acks and"
                f" {expected - received} deliveries outstanding"
            )
            await asyncio.sleep(0.2)

    # ------------------------------------------------------------------ scenarios

    async def main(self) -> dict[str, Any]:
        cfg = self.cfg
        group_size = cfg.group_size if self.name == "ours" else 0
        pop = await self.pairs(group_size)
        kind = f"groups of {group_size}" if group_size else "1:1"
        self.say(
            f"{self.name}: {cfg.clients} clients, {len(pop.members)} conversations ({kind}),"
            f" {cfg.rate:.0f} msg/s, {cfg.warmup:.0f}s warm-up + {cfg.duration:.0f}s"
        )
        res = await self.load_run("main", "main", pop, cfg.rate, cfg.warmup, cfg.duration)
        res.update(clients=cfg.clients, conversations=len(pop.members), group_size=group_size)
        self.say(one_line(self.name, res))
        if group_size:
            await self.drop_population()  # later runs use 1:1 pairs
        return res

    async def sweep(self) -> dict[str, Any]:
        cfg = self.cfg
        steps = []
        best = 0.0
        for rate in cfg.sweep_rates:
            await self.clean()
            pop = await self.pairs()
            self.say(f"{self.name} sweep: {rate:.0f} msg/s for {cfg.sweep_step:.0f}s")
            res = await self.load_run(
                f"sweep-{rate:.0f}", f"s{rate:.0f}", pop, rate, cfg.sweep_warmup, cfg.sweep_step
            )
            p99 = res["latency_ms"]["p99"]
            faults = sum(res[k] for k in FAULT_KEYS)
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
                    "passed": passed,
                    "generators_kept_up": kept_up,
                    **{
                        k: res[k]
                        for k in (
                            "achieved_send_rate",
                            "throughput_msgs_per_s",
                            "latency_ms",
                            "ack_latency_ms",
                            *FAULT_KEYS,
                            "server_cpu_s",
                            "cpu_ms_per_delivered",
                        )
                    },
                    "cpu_cores": {k: v["cpu_cores"] for k, v in res["processes"].items()},
                    "generator_cpu_cores": {k: v["cpu_cores"] for k, v in res["generator"].items()},
                }
            )
            self.say(
                f"{self.name} sweep {rate:.0f} msg/s: p99 {fmt_ms(p99)},"
                f" sent {res['achieved_send_rate']:.0f}/s, faults {faults}"
                f" -> {'pass' if passed else 'FAIL'}"
            )
            if not passed:
                if not kept_up:
                    self.notes.append(
                        f"{self.name} sweep stopped at {rate:.0f} msg/s because the generators"
                        f" offered only {res['achieved_send_rate']:.0f}/s: the bench, not the"
                        " system, was the limit"
                    )
                break
            best = rate
        return {"steps": steps, "max_rate_under_100ms_p99": best}

    async def groups(self) -> list[dict[str, Any]]:
        out = []
        for g in self.cfg.groups:
            if g.size > self.cfg.clients:
                continue
            await self.clean()
            await self.drop_population()
            pop = await self.pairs(g.size)
            self.say(
                f"ours, groups of {g.size}: {len(pop.members)} groups, {g.rate:.0f} msg/s"
                f" ({g.rate * (g.size - 1):.0f} deliveries/s), {g.duration:.0f}s"
            )
            res = await self.load_run(
                f"groups-{g.size}", f"g{g.size}", pop, g.rate, 2.0, g.duration
            )
            res.update(group_size=g.size, groups=len(pop.members), clients=len(pop.users))
            out.append(res)
            self.say(one_line(f"groups of {g.size}", res))
            await self.drop_population()
        return out

    async def capacity(self, n: int) -> dict[str, Any] | None:
        """Idle authenticated connections to one node (no sync, except where a client must
        subscribe to receive anything: ``System.idle_sync``); its RSS before and after."""
        node = self.system.node0
        tracked = self.stats.tracked.get(node)
        if tracked is None:
            self.notes.append(f"{self.name} capacity: {node} not found")
            return None
        soft, _hard = tracked.proc.rlimit(psutil.RLIMIT_NOFILE)
        if soft != psutil.RLIM_INFINITY and soft < n + 300:
            n = max(0, soft - 300)
            self.notes.append(
                f"{self.name} capacity: {node}'s open-file limit is {soft} (this machine's hard"
                f" limit when the bench cannot raise it): tested {n} connections"
            )
        self.say(f"{self.name} capacity: {n} idle connections to one node ({node}) ...")
        await asyncio.sleep(1.0)
        rss_before = self.stats.rss(node)
        # Clients bind to 127.0.0.2, .3, ... so that ephemeral ports never run out.
        ips = [f"127.0.0.{2 + k}" for k in range(max(1, math.ceil(n / 15000)))]
        prefix = f"c{self.name[0]}{self.bench.run_id}-u"
        pop = self.population(prefix, n, [self.system.urls[0]], spread=False)
        window = f"{self.name}/capacity"
        self.stats.mark(window)
        t0 = time.monotonic()
        task = asyncio.create_task(self.setup(pop, sync=self.system.idle_sync, source_ips=ips))
        while not task.done():
            await asyncio.sleep(0.5)
            self.progress(
                f"[{self.name} capacity] {time.monotonic() - t0:5.1f}s, {node} RSS"
                f" {self.stats.rss(node) / 2**20:.0f} MiB"
            )
        setup = task.result()
        opened = setup["connected"]
        connect_s = time.monotonic() - t0
        await asyncio.sleep(3.0)
        rss_after = self.stats.rss(node)
        used = self.stats.report(window)
        try:
            if rss_after == 0 or not tracked.proc.is_running():
                self.notes.append(f"{self.name} capacity: {node} exited during the run")
                return None
            per_conn = (rss_after - rss_before) / 1024 / max(1, opened)
            res = {
                "node": node,
                "idle_connections": opened,
                "attempted": n,
                "failed": setup["failed"],
                "errors": setup["errors"],
                "connect_seconds": round(connect_s, 1),
                "connects_per_s": round(opened / connect_s, 1) if connect_s else 0.0,
                "node_rss_before_mib": round(rss_before / 2**20, 1),
                "node_rss_after_mib": round(rss_after / 2**20, 1),
                "rss_per_connection_kib": round(per_conn, 1),
                "node_nofile_limit": soft,
                "processes": {k: v for k, v in used.items() if k.startswith(self.procs)},
            }
            self.say(
                f"{self.name} capacity: {opened} idle connections in {connect_s:.1f}s, {node}"
                f" RSS {rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MiB ="
                f" {per_conn:.1f} KiB per connection"
            )
            return res
        finally:
            self.say(f"{self.name} capacity: closing ...")
            await call_all(self.gens, "close", prefix=prefix, abort=True)

    async def reconnect(self, n: int) -> dict[str, Any]:
        """N clients on node A, each in a 1:1 conversation with a partner on node B, go away;
        the partners send ``reconnect_messages`` each to every one of them (all acked), then all
        N reconnect to node B at once and catch up; the time until each has everything."""
        cfg = self.cfg
        k = cfg.reconnect_messages
        per_partner = 10
        a_url, b_url = self.system.urls[:2]
        rid = f"{self.name[0]}{self.bench.run_id}"
        storm = self.population(f"r{rid}-u", n, [a_url], spread=False)
        partners = self.population(
            f"r{rid}-p", max(1, math.ceil(n / per_partner)), [b_url], spread=False
        )
        await self.setup(storm)
        await self.setup(partners)
        items_per_gen: list[list[dict[str, Any]]] = [[] for _ in self.gens]
        for i, user in enumerate(storm.users):
            j = i // per_partner
            items_per_gen[partners.gen_of[j]].append(
                {"key": user, "creator": partners.users[j], "kind": "direct", "members": [user]}
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
        self.say(f"{self.name} reconnect: {n} clients leave node A; {k} messages wait for each")
        await call_all(self.gens, "disconnect", prefix=storm.prefix)
        await self.assign(sends)
        burst = await call_all(self.gens, "burst", count=k, tag=f"{self.name}.rc", size=cfg.size)
        burst_failed = sum(r["failed"] for r in burst)
        await self.assign({})
        await asyncio.sleep(1.0)
        self.say(f"{self.name} reconnect: {n} clients reconnect to node B and catch up ...")
        for g in self.gens:
            g.progress = {}
        window = f"{self.name}/reconnect"
        self.stats.mark(window)
        start_at = time.time() + 0.5
        task = asyncio.create_task(
            call_all(
                self.gens,
                "reconnect",
                url=b_url,
                prefix=storm.prefix,
                start_at=start_at,
                expected={u: k for u in storm.users},
                convs=convs_of,
                timeout=max(10.0, n / 40),
            )
        )
        while not task.done():
            await asyncio.sleep(0.5)
            ps = [g.progress for g in self.gens if "synced" in g.progress]
            self.progress(
                f"[{self.name} reconnect] {time.time() - start_at:5.1f}s: synced"
                f" {sum(p['synced'] for p in ps)}, complete {sum(p['done'] for p in ps)}"
                f" of {n}, messages {sum(p['received'] for p in ps)} of {n * k}"
            )
        replies = task.result()
        used = self.stats.report(window)
        complete_s = percentiles_s([t for r in replies for t in r["times"]])
        done = sum(r["done"] for r in replies)
        collected = await call_all(
            self.gens,
            "collect",
            [
                {"out": str(self.bench.tmp / f"{self.name}-reconnect-gen{g.index}")}
                for g in self.gens
            ],
            tags=[f"{self.name}.rc"],
        )
        check = analysis.check_delivery(collected, members, {f"{self.name}.rc"})
        counts = analysis.merged_counts(collected, f"{self.name}.rc")
        res = {
            "clients": n,
            "messages_waiting": n * k,
            "messages_not_acked": burst_failed,
            "synced": done,
            "failed": sum(r["failed"] for r in replies),
            "errors": [e for r in replies for e in r["errors"]][:5],
            "seconds": complete_s["max"] if done == n and complete_s else None,
            "p50_s": complete_s["p50"] if complete_s else None,
            "p99_s": complete_s["p99"] if complete_s else None,
            # The phases, to tell a slow upgrade from a slow sync answer.
            "connected_s": percentiles_s([t for r in replies for t in r["connected_times"]]),
            "sync_done_s": percentiles_s([t for r in replies for t in r["synced_times"]]),
            "lost": check["lost"] + counts["unsequenced"],
            "lost_examples": check["examples"],
            "duplicated": counts["duplicated"],
            "reordered": counts["reordered"],
            "processes": {k: v for k, v in used.items() if k.startswith(self.procs)},
        }
        self.say(
            f"{self.name} reconnect: {done}/{n} clients had everything after"
            f" {res['seconds'] if res['seconds'] is not None else 'n/a'} s"
            f" (p50 {res['p50_s']} s), lost {res['lost']}"
        )
        await call_all(self.gens, "close", prefix=storm.prefix)
        await call_all(self.gens, "close", prefix=partners.prefix)
        return res


def summarize(
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
        "warmup_delivered": warm["received"],
        "throughput_msgs_per_s": round(main["received"] / duration, 1) if duration else 0.0,
        # Acked messages some member never got, plus acked messages whose seq the sender never
        # learnt (the seed's, if its consumer never sequenced them): neither can have arrived.
        "lost": check["lost"] + main["unsequenced"] + warm["unsequenced"],
        "lost_examples": check["examples"],
        "anomaly_examples": [a for c in collected for a in c.get("anomalies", [])][:10],
        "duplicated": main["duplicated"] + warm["duplicated"],
        "reordered": main["reordered"] + warm["reordered"],
        "deliveries_checked": check["checked"],
        "latency_ms": analysis.summary_ms(lat, main["expected"] - main["received"]),
        "ack_latency_ms": analysis.summary_ms(ack, main["sent"] - main["acked"] - main["errors"]),
    }


def one_line(label: str, r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    return (
        f"{label}: p50 {fmt_ms(lat['p50'])} p99 {fmt_ms(lat['p99'])}"
        f" max {fmt_ms(lat['max'])},"
        f" {r['throughput_msgs_per_s']:.0f} deliveries/s, sent {r['sent']},"
        f" delivered {r['delivered']}/{r['expected']}, lost {r['lost']},"
        f" dup {r['duplicated']}, reordered {r['reordered']}, errors {r['send_errors']},"
        f" {fmt_cpu(r.get('cpu_ms_per_delivered'))} CPU per delivery"
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


def fmt_cpu(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} ms"
