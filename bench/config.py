"""Benchmark profiles and the command line that overrides them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class GroupScenario:
    size: int  # members per group
    rate: float  # messages/s offered (deliveries = rate x (size - 1))
    duration: float


@dataclass(frozen=True)
class Config:
    profile: str = "default"
    clients: int = 2000
    rate: float = 1000.0  # messages/s offered, all senders together
    duration: float = 30.0
    warmup: float = 5.0
    size: int = 100  # message body, characters
    group_size: int = 0  # main run: 0 = 1:1 conversations, else groups of this size
    delivered_interval: float = 1.0  # s between message.delivered per conversation
    generators: int = 2  # load-generator processes
    drain: float = 10.0  # s to wait after the last send for acks and deliveries
    settle: float = 20.0  # max s to wait for the app to go idle between runs
    restart_on_backlog: bool = True  # restart the app (fresh namespace) when it did not settle
    groups: tuple[GroupScenario, ...] = ()
    capacity: int = 20000  # idle connections on one edge
    peer_capacity: int = 5000  # idle connections on one node of each peer (RSS per connection)
    reconnect: int = 2000  # clients in the reconnect storm
    reconnect_messages: int = 3  # messages waiting per conversation of a storm client
    # The systems to compare with ours (bench/peers/), in the order they run.
    peers: tuple[str, ...] = ("relay", "seed", "centrifugo")
    # From below where this machine saturates (~150 msg/s) up to the 5,000 msg/s target; the
    # sweep stops at the first rate that fails. Every system gets the same steps.
    sweep_rates: tuple[float, ...] = (25, 50, 100, 150, 250, 500, 1000, 2000, 3000, 5000, 8000)
    sweep_step: float = 5.0
    sweep_warmup: float = 1.0
    skip_main: bool = False
    skip_peer: bool = False  # no peers at all (same as --peers "")
    skip_ours: bool = False  # the peers only
    skip_capacity: bool = False
    skip_reconnect: bool = False
    skip_sweep: bool = False
    skip_groups: bool = False
    keep_app: bool = False  # leave the app we started running
    keep_data: bool = False  # keep the run's topics and Mongo database
    workers: int = 2  # stream workers of the app the bench starts (docs/capacity.md's check)
    topic_prefix: str = ""  # "" = a fresh namespace per run (bench<id>); "chat" = make run's
    out_dir: str = "bench-results"
    connect_concurrency: int = 200
    extra: dict[str, Any] = field(default_factory=dict)


PROFILES: dict[str, Config] = {
    # Group runs are left out of the default profile to keep it (four systems) under 15
    # minutes: add them with --groups 10:200:10,100:20:10.
    "default": Config(),
    "quick": Config(
        profile="quick",
        clients=200,
        rate=200.0,
        duration=6.0,
        warmup=2.0,
        drain=4.0,
        settle=3.0,
        restart_on_backlog=False,  # keeps it under 90 s; later runs may see a backlog
        groups=(),  # --groups 10:50:3 adds one
        capacity=2000,
        peer_capacity=1000,
        reconnect=200,
        peers=("seed",),
        sweep_rates=(50, 100, 200),
        sweep_step=2.0,
        sweep_warmup=0.5,
    ),
}

TARGETS = {
    "p99_ms_at_1000_msgs": 50.0,
    "max_rate_under_100ms_p99": 5000.0,
    "idle_connections": 20000,
    "rss_per_connection_kib": 20.0,
    "reconnect_seconds_2000_clients": 10.0,
    "lost_duplicated_reordered": 0,
}


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _names(text: str) -> tuple[str, ...]:
    from bench.peers import PEERS

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown peers {unknown}; known: {', '.join(PEERS)}")
    return names


def _groups(text: str) -> tuple[GroupScenario, ...]:
    """``SIZE:RATE:SECONDS,...``, e.g. ``10:200:15,100:20:15``."""
    out = []
    for item in text.split(","):
        if item.strip():
            size, rate, secs = item.split(":")
            out.append(GroupScenario(int(size), float(rate), float(secs)))
    return tuple(out)


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the chat backend against its peers (docs/performance.md)",
    )
    p.add_argument("--profile", choices=sorted(PROFILES), default="default")
    p.add_argument("--clients", type=int, help="connected clients in the main run")
    p.add_argument("--rate", type=float, help="offered messages/s in the main run")
    p.add_argument("--duration", type=float, help="measured seconds of the main run")
    p.add_argument("--warmup", type=float, help="seconds of load before measuring")
    p.add_argument("--size", type=int, help="message body size (characters, >= 40)")
    p.add_argument(
        "--group-size",
        type=int,
        choices=(0, 10, 100),
        help="main run: 0 = 1:1 conversations, else groups (the peer always runs 1:1)",
    )
    p.add_argument("--groups", type=_groups, help="extra group runs: SIZE:RATE:SECONDS,...")
    p.add_argument("--delivered-interval", type=float, help="s between message.delivered")
    p.add_argument("--generators", type=int, help="load-generator processes")
    p.add_argument("--drain", type=float, help="max s to wait for outstanding deliveries")
    p.add_argument("--capacity", type=int, help="idle connections held by one edge")
    p.add_argument("--peer-capacity", type=int, help="idle connections held by one peer node")
    p.add_argument(
        "--peers",
        type=_names,
        help="comma-separated peers to run (relay,seed,centrifugo); empty: none",
    )
    p.add_argument("--reconnect", type=int, help="clients in the reconnect storm")
    p.add_argument("--sweep-rates", type=_floats, help="comma-separated rates of the sweep")
    p.add_argument("--sweep-step", type=float, help="seconds per sweep step")
    p.add_argument("--out-dir", help="where latest.json and the plots go")
    p.add_argument("--skip-peer", action="store_true", help="run no peers (= --peers '')")
    p.add_argument("--skip-ours", action="store_true", help="run the peers only")
    for name in ("main", "capacity", "reconnect", "sweep", "groups"):
        p.add_argument(
            f"--skip-{name}", action="store_true", help=f"skip the {name} run of every system"
        )
    p.add_argument("--keep-app", action="store_true", help="leave the app the bench started")
    p.add_argument(
        "--workers", type=int, choices=range(1, 5), help="stream workers of the app it starts"
    )
    p.add_argument(
        "--keep-data", action="store_true", help="keep the run's topics and Mongo database"
    )
    p.add_argument(
        "--topic-prefix",
        help="topic prefix of the app the bench starts (default: a fresh bench<id> per run)",
    )
    args = p.parse_args(argv)
    cfg = PROFILES[args.profile]
    changes: dict[str, Any] = {}
    for f in fields(Config):
        value = getattr(args, f.name, None)
        if value is None or f.name == "profile":
            continue
        if isinstance(value, bool):
            if value:
                changes[f.name] = True
            continue
        changes[f.name] = value
    cfg = replace(cfg, **changes)
    if cfg.size < 40:
        p.error("--size must be at least 40 (the body carries the send timestamp)")
    if cfg.size > 4000:
        p.error("--size must be at most 4000 (PROTOCOL.md)")
    if cfg.group_size and cfg.clients % cfg.group_size:
        p.error("--clients must be a multiple of --group-size")
    if cfg.clients % 2:
        p.error("--clients must be even (1:1 pairs)")
    return cfg
