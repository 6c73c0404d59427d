"""Sessions agent: ``chat.users`` (key: user_id) → frames for the user's live sessions.

It owns the user-keyed tables (sessions, inbox, presence_subscribers): where each user is
connected, what they have not confirmed yet, and who watches their presence.

    chat.users ──▶ sessions agent ──▶ chat.deliver (partition = edge slot of each session)
                                  └─▶ Redis chat:presence:<user> (look-up cache)
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from chat import protocol, records
from chat.keys import edge_alive_key, presence_key
from chat.redis_pool import connect_redis
from tables import inbox, presence_subscribers, sessions
from tables.sessions import SessionsRow
from topologies import metrics
from topologies.app import (
    app,
    deliver_topic,
    inbox_table,
    presence_subscribers_table,
    sessions_table,
    settings,
    users_topic,
)
from topologies.outbox import Outbox
from topologies.router import event_time_ms

log = logging.getLogger("chat.sessions")
redis_client = connect_redis(settings)
_presence_writes: set[asyncio.Task[None]] = set()


@app.agent(users_topic, concurrency=1)
async def route_users(stream: Any) -> None:
    async for events in stream.take_events(1000, within=settings.worker_batch_ms / 1000):
        metrics.observe_batch_age("sessions", events)
        outbox = Outbox(app, deliver_topic, outputs=not settings.worker_rebuild)
        presence_changes: list[tuple[str, str, int]] = []
        for event in events:
            user = event.key.decode()
            record = records.loads(event.value)
            try:
                change = handle_user_event(outbox, user, record, event_time_ms(event))
            except Exception:
                log.exception("user event failed", extra={"op": record.get("op")})
                continue
            if change is not None:
                presence_changes.append(change)
        await outbox.publish_batch("sessions", events)
        if presence_changes and not settings.worker_rebuild:
            write_presence_cache(presence_changes)


def handle_user_event(
    outbox: Outbox, user: str, record: dict[str, Any], at: int
) -> tuple[str, str, int] | None:
    """Apply one event; returns ``(user, status, last_seen)`` when the user's presence changed."""
    op = record["op"]
    if op == "message":
        message = record["message"]
        row = outbox.row(inbox_table, user) or {}
        outbox.stage_row(
            inbox_table, user, inbox.add_message(row, message, settings.inbox_max_per_conversation)
        )
        send_to_sessions(
            outbox, user, records.message_frame(message), exclude=record.get("exclude")
        )
    elif op == "receipt":
        frame = record["frame"]
        if frame["user"] == user and frame["kind"] == "delivered":
            row = outbox.row(inbox_table, user) or {}
            outbox.stage_row(
                inbox_table, user, inbox.mark_delivered(row, frame["conversation_id"], frame["seq"])
            )
        send_to_sessions(outbox, user, frame)
    elif op == "conversation":
        row = outbox.row(inbox_table, user) or {}
        if record["member"]:
            new = inbox.join(row, record["conversation_id"], record.get("last_seq", 0))
        else:
            new = inbox.leave(row, record["conversation_id"])
        outbox.stage_row(inbox_table, user, new)
        send_to_sessions(outbox, user, record["frame"])
    elif op == "frame":
        send_to_sessions(outbox, user, record["frame"])
    elif op == "sync":
        answer_sync(outbox, user, record)
    elif op == "presence.subscribe":
        row = outbox.row(presence_subscribers_table, user) or {}
        outbox.stage_row(
            presence_subscribers_table,
            user,
            presence_subscribers.subscribe(row, record["session"], record["slot"]),
        )
    elif op == "presence.unsubscribe":
        row = dict(outbox.row(presence_subscribers_table, user) or {})
        if row.pop(record["session"], None) is not None:
            outbox.stage_row(presence_subscribers_table, user, row or None)
    elif op == "session.open":
        return change_sessions(
            outbox,
            user,
            at,
            lambda r: sessions.open_session(
                r, record["session"], record["slot"], record["edge"], at
            ),
        )
    elif op in ("session.close", "session.expire"):
        return change_sessions(
            outbox, user, at, lambda r: sessions.close_session(r, record["session"], at)
        )
    else:
        log.warning("unknown user event", extra={"op": op})
    return None


def send_to_sessions(
    outbox: Outbox, user: str, frame: dict[str, Any], exclude: str | None = None
) -> None:
    row: SessionsRow | None = outbox.row(sessions_table, user)
    if not row:
        return
    for slot, session_ids in sessions.by_slot(row, exclude).items():
        outbox.deliver(slot, session_ids, frame)


def change_sessions(outbox: Outbox, user: str, at: int, change: Any) -> tuple[str, str, int] | None:
    before: SessionsRow = outbox.row(sessions_table, user) or sessions.empty()
    after: SessionsRow = change(before)
    if after is before:
        return None
    outbox.stage_row(sessions_table, user, after)
    was_online, is_online = sessions.is_online(before), sessions.is_online(after)
    if was_online == is_online:
        return None
    status = "online" if is_online else "offline"
    frame = {"type": "presence", "user": user, "status": status, "last_seen": after["last_seen"]}
    subscribers = outbox.row(presence_subscribers_table, user) or {}
    for slot, session_ids in presence_subscribers.by_slot(subscribers).items():
        outbox.deliver(slot, session_ids, frame)
    return user, status, after["last_seen"]


def answer_sync(outbox: Outbox, user: str, record: dict[str, Any]) -> None:
    row = outbox.row(inbox_table, user) or {}
    messages, fetch, last_seqs, truncated = inbox.sync_reply(
        row, record.get("cursors"), protocol.SYNC_PAGE
    )
    outbox.deliver_raw(
        record["slot"],
        {
            "sessions": [record["session"]],
            "sync": {
                "id": record.get("id"),
                "messages": messages,
                "fetch": fetch,
                "conversations": last_seqs,
                "truncated": truncated,
            },
        },
    )


def write_presence_cache(changes: list[tuple[str, str, int]]) -> None:
    """Presence look-ups (``presence.query``) read Redis; it is a cache rebuilt from this table."""

    async def write() -> None:
        try:
            async with redis_client.pipeline(transaction=False) as pipe:
                for user, status, last_seen in changes:
                    pipe.hset(
                        presence_key(user), mapping={"status": status, "last_seen": last_seen}
                    )
                await pipe.execute()
        except Exception as exc:  # Redis down: presence look-ups go stale, nothing is lost.
            log.warning("presence cache write failed: %s", exc)

    task = asyncio.ensure_future(write())
    _presence_writes.add(task)
    task.add_done_callback(_presence_writes.discard)


# Edges seen without a liveness key, and since when (monotonic seconds). An edge is declared
# dead only when its key stays missing for a whole TTL: a live edge re-sets it every TTL/3, so a
# Redis restart (which forgets every key) does not expire the sessions of live edges.
_missing_since: dict[str, float] = {}


@app.timer(interval=5.0)
async def expire_dead_edges() -> None:
    """Sessions of an edge whose liveness key expired are closed through the normal path: this
    timer only produces ``session.expire`` events; the agent owning the user applies them."""
    if settings.worker_rebuild:
        return
    by_edge: dict[str, list[tuple[str, str]]] = {}
    for user, row in list(sessions_table.items()):
        for sid, live in (row or {}).get("sessions", {}).items():
            by_edge.setdefault(live["edge"], []).append((user, sid))
    edges = list(by_edge)
    if not edges:
        _missing_since.clear()
        return
    try:
        alive = await redis_client.mget([edge_alive_key(e) for e in edges])
    except Exception as exc:
        log.warning("cannot check edge liveness (Redis): %s", exc)
        _missing_since.clear()
        return
    now = time.monotonic()
    for edge, flag in zip(edges, alive, strict=True):
        if flag is not None:
            _missing_since.pop(edge, None)
            continue
        first_missing = _missing_since.setdefault(edge, now)
        if now - first_missing < settings.edge_liveness_ttl_s:
            continue
        del _missing_since[edge]
        log.info(
            "edge is gone, expiring its sessions",
            extra={"edge": edge, "sessions": len(by_edge[edge])},
        )
        for user, sid in by_edge[edge]:
            await users_topic.send(
                key=user.encode(),
                value=records.dumps({"op": "session.expire", "session": sid, "edge": edge}),
            )
    for edge in set(_missing_since) - set(edges):
        del _missing_since[edge]


_redis_run_id: str | None = None


@app.timer(interval=5.0)
async def rebuild_presence_cache() -> None:
    """Redis keeps presence only as a cache. When this worker starts, or Redis restarts empty
    (its run_id changes), write the presence of every user this worker holds again."""
    if settings.worker_rebuild:
        return
    global _redis_run_id
    try:
        run_id = str((await redis_client.info("server"))["run_id"])
    except Exception:
        return  # Redis down: look-ups answer `unavailable` meanwhile
    if run_id == _redis_run_id:
        return
    changes = [
        (user, "online" if row["sessions"] else "offline", row["last_seen"])
        for user, row in list(sessions_table.items())
        if row
    ]
    if changes:
        log.info("rebuilding the presence cache", extra={"users": len(changes)})
        write_presence_cache(changes)
    _redis_run_id = run_id
