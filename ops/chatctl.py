"""chatctl: the operator's command line.

chatctl token alice            mint a development token (HS256, CHAT_JWT_SECRET)
chatctl topics                 topics, partitions, end offsets and consumer lag
chatctl topology               the stream topology: topics, agents, tables
chatctl replay store --db NAME rebuild the MongoDB read side from the topics into NAME
chatctl env                    every CHAT_* variable with its default and current value
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from chat.kafka_security import aiokafka_kwargs
from chat.settings import Settings, describe, load_settings
from chat.topics import changelog_name, topic_specs
from topologies.topology import AGENTS, input_topics


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    from edge.auth import mint_token

    token, _ = mint_token(settings, args.user, args.ttl)
    print(token)
    return 0


def cmd_env(settings: Settings, args: argparse.Namespace) -> int:
    for name, default in describe():
        current = os.environ.get(name)
        secret = any(word in name for word in ("SECRET", "KEY", "PASSWORD"))
        shown = "<set>" if current and secret else current
        print(f"{name}={default}" + (f"   (now: {shown})" if current is not None else ""))
    return 0


async def topic_report(settings: Settings) -> list[dict[str, Any]]:
    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings))
    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(settings), group_id=None, enable_auto_commit=False
    )
    await admin.start()
    await consumer.start()
    try:
        groups = {
            settings.worker_app_id: [settings.topic(t) for t in input_topics()],
            settings.sink_group: [
                settings.topic(t) for t in ("messages", "conversations", "receipts")
            ],
        }
        committed: dict[str, dict[TopicPartition, int]] = {}
        for group in groups:
            offsets = await admin.list_consumer_group_offsets(group)
            committed[group] = {tp: meta.offset for tp, meta in offsets.items()}
        rows = []
        for spec in topic_specs(settings):
            tps = [TopicPartition(spec.name, p) for p in range(spec.partitions)]
            ends = await consumer.end_offsets(tps)
            lag: dict[str, int] = {}
            for group, topics in groups.items():
                if spec.name in topics:
                    lag[group] = sum(max(0, ends[tp] - committed[group].get(tp, 0)) for tp in tps)
            rows.append(
                {
                    "topic": spec.name,
                    "partitions": spec.partitions,
                    "key": spec.key,
                    "records": sum(ends.values()),
                    "lag": lag,
                    "config": spec.config,
                }
            )
        return rows
    finally:
        await consumer.stop()
        await admin.close()


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    rows = asyncio.run(topic_report(settings))
    print(f"{'topic':<22} {'parts':>5} {'end offsets':>12}  {'consumer lag':<40} key")
    for r in rows:
        lag = ", ".join(f"{g}={n}" for g, n in r["lag"].items()) or "-"
        print(f"{r['topic']:<22} {r['partitions']:>5} {r['records']:>12}  {lag:<40} {r['key']}")
    return 0


def cmd_topology(settings: Settings, args: argparse.Namespace) -> int:
    """Who reads and writes what, from the declarations in topologies/topology.py."""
    print("topics:")
    for spec in topic_specs(settings):
        config = ", ".join(f"{k}={v}" for k, v in spec.config.items())
        shape = "bundles" if spec.bundled else "one record per event"
        print(f"  {spec.name:<20} key={spec.key:<28} partitions={spec.partitions:<3} {config}")
        print(f"  {'':<20} {shape}; writers: {spec.writers}; readers: {spec.readers}")
    print("agents:")
    for agent in AGENTS:
        targets = ", ".join(settings.topic(t) for t in agent.outputs)
        print(f"  {settings.topic(agent.source)} --> [{agent.name}] --> {targets}")
        for table in agent.tables:
            changelog = changelog_name(settings, table)
            print(f"  {'':<16}table {table:<22} changelog {changelog}")
    sink = [s.name for s in topic_specs(settings) if "mongo sink" in s.readers.lower()]
    print(f"  {', '.join(sink)} --> [mongo sink] --> MongoDB")
    # The one process that does I/O on the media's bytes (docs/media.md).
    verdicts = settings.topic("media-commands")
    print(f"  {settings.topic('media')} --> [media processor] --> object store, {verdicts}")
    return 0


def progress_bar(label: str) -> Callable[[int, int], None]:
    started = time.monotonic()

    def show(done: int, total: int) -> None:
        width = 30
        filled = int(width * done / total) if total else width
        rate = done / max(time.monotonic() - started, 1e-6)
        print(
            f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} ({rate:,.0f}/s)",
            end="",
            file=sys.stderr,
            flush=True,
        )

    return show


def cmd_replay_store(settings: Settings, args: argparse.Namespace) -> int:
    from sinks.replay import replay_store

    target = args.db or settings.mongo_db
    if target == settings.mongo_db and not args.yes:
        print(f"refusing to rebuild the live database {target!r} without --yes", file=sys.stderr)
        return 2
    started = time.monotonic()
    count = asyncio.run(replay_store(settings, target, args.drop, progress_bar("replay store")))
    seconds = time.monotonic() - started
    print(f"\nreplayed {count} records into {target!r} in {seconds:.1f}s", file=sys.stderr)
    return 0


def cmd_replay_tables(settings: Settings, args: argparse.Namespace) -> int:
    from ops.rebuild import RebuildRefused, rebuild_tables

    app_id = args.app_id or f"{settings.worker_app_id}-rebuild-{int(time.time())}"
    try:
        result = rebuild_tables(settings, app_id, args.web_port, progress_bar("replay tables"))
    except RebuildRefused as exc:
        print(f"refusing: {exc}", file=sys.stderr)
        return 2
    print(
        f"\nrebuilt every table from {result.records} input records in {result.seconds:.1f}s "
        f"under the application id {result.app_id!r}.\n"
        f"To switch to it: stop the workers, start them with CHAT_WORKER_APP_ID={result.app_id}.",
        file=sys.stderr,
    )
    print(result.app_id)
    return 0


async def dead_letters(settings: Settings, newest: int) -> list[dict[str, Any]]:
    """The newest entries of the dead-letter topic (one partition), oldest first."""
    topic = settings.topic("deadletter")
    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(settings), group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, max(0, end - newest))
        entries: list[dict[str, Any]] = []
        while await consumer.position(tp) < end:
            for batch in (await consumer.getmany(tp, timeout_ms=1000)).values():
                entries.extend(orjson.loads(record.value) for record in batch)
        return entries
    finally:
        await consumer.stop()


def cmd_deadletters(settings: Settings, args: argparse.Namespace) -> int:
    for entry in asyncio.run(dead_letters(settings, args.newest)):
        print(
            f"{entry['topic']}[{entry['partition']}] key={entry['key']!r} "
            f"bytes={entry['bytes']} reason={entry['reason']}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatctl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    token = sub.add_parser("token", help="mint a development token")
    token.add_argument("user")
    token.add_argument("--ttl", type=int, default=None, help="lifetime in seconds")
    token.set_defaults(func=cmd_token)
    sub.add_parser("topics", help="describe topics, partitions and consumer lag").set_defaults(
        func=cmd_topics
    )
    sub.add_parser("topology", help="print the stream topology").set_defaults(func=cmd_topology)
    sub.add_parser("env", help="list every CHAT_* variable").set_defaults(func=cmd_env)
    dead = sub.add_parser("deadletters", help="list records the workers could never write")
    dead.add_argument("--newest", type=int, default=50, help="how many of the newest entries")
    dead.set_defaults(func=cmd_deadletters)
    replay = sub.add_parser("replay", help="rebuild derived state from the topics")
    replay_sub = replay.add_subparsers(dest="what", required=True)
    store = replay_sub.add_parser("store", help="rebuild MongoDB from the topics")
    store.add_argument("--db", help="target database (default: CHAT_MONGO_DB, needs --yes)")
    store.add_argument("--drop", action="store_true", help="drop the target database first")
    store.add_argument("--yes", action="store_true", help="allow rebuilding the live database")
    tables = replay_sub.add_parser(
        "tables",
        help="rebuild every worker table from the input topics under a new application id",
    )
    tables.add_argument(
        "--app-id", help="the new application id (default: <CHAT_WORKER_APP_ID>-rebuild-<time>)"
    )
    tables.add_argument(
        "--web-port", type=int, default=6099, help="metrics port of the rebuild worker"
    )
    tables.set_defaults(func=cmd_replay_tables)
    store.set_defaults(func=cmd_replay_store)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings()
    result: int = args.func(settings, args)
    return result


if __name__ == "__main__":
    sys.exit(main())
