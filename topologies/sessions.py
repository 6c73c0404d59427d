"""Sessions agent: ``chat.users`` (key: user_id) → frames for the user's live sessions.

It owns the user-keyed tables (sessions, inbox, presence_subscribers): where each user is
connected, what they have not confirmed yet, and who watches their presence. Pure: it reads and
stages rows and outputs through the :class:`~topologies.batch.Batch`; the runtime writes them.

    chat.users ──▶ sessions agent ──▶ chat.deliver (bundled per edge slot)
                                  └─▶ Redis chat:presence:<user> (look-up cache, written
                                      before the presence frames go out)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from chat import protocol, records
from chat.keys import edge_alive_key, presence_key
from tables import inbox, presence_subscribers, sessions
from tables.sessions import SessionsRow
from topologies.batch import Batch, Event
from topologies.timers import Worker

log = logging.getLogger("chat.sessions")

SESSIONS = sessions.TABLE
INBOX = inbox.TABLE
SUBSCRIBERS = presence_subscribers.TABLE


def route_users(batch: Batch, events: list[Event]) -> None:
    for event in events:
        try:
            handle_user_event(batch, event.key, event.value, event.at)
        except Exception:
            log.exception("user event failed", extra={"op": event.value.get("op")})


def handle_user_event(batch: Batch, user: str, record: dict[str, Any], at: int) -> None:
    op = record["op"]
    if op == "message":
        message = record["message"]
        row = batch.row(INBOX, user) or {}
        batch.stage_row(INBOX, user, inbox.add_message(row, message, inbox_limits(batch)))
        send_to_sessions(batch, user, records.message_frame(message), exclude=record.get("exclude"))
    elif op == "receipt":
        frame = record["frame"]
        if frame["user"] == user and frame["kind"] == "delivered":
            row = batch.row(INBOX, user) or {}
            batch.stage_row(
                INBOX, user, inbox.mark_delivered(row, frame["conversation_id"], frame["seq"])
            )
        send_to_sessions(batch, user, frame)
    elif op == "conversation":
        row = batch.row(INBOX, user) or {}
        if record["member"]:
            new = inbox.join(row, record["conversation_id"], record.get("last_seq", 0))
        else:
            new = inbox.leave(row, record["conversation_id"])
        batch.stage_row(INBOX, user, new)
        send_to_sessions(batch, user, record["frame"])
    elif op == "frame":
        send_to_sessions(batch, user, record["frame"])
    elif op == "redacted":
        frame = record["frame"]
        row = batch.row(INBOX, user) or {}
        new_row = inbox.redact(row, frame["conversation_id"], frame["seq"], frame["reason"])
        if new_row is not row:
            batch.stage_row(INBOX, user, new_row)
        send_to_sessions(batch, user, frame)
    elif op == "restored":
        frame = record["frame"]
        row = batch.row(INBOX, user) or {}
        new_row = inbox.restore(row, frame["message"])
        if new_row is not row:
            batch.stage_row(INBOX, user, new_row)
        send_to_sessions(batch, user, frame)
    elif op == "sync":
        answer_sync(batch, user, record)
    elif op == "presence.subscribe":
        row = batch.row(SUBSCRIBERS, user) or {}
        batch.stage_row(
            SUBSCRIBERS,
            user,
            presence_subscribers.subscribe(row, record["session"], record["slot"]),
        )
    elif op == "presence.unsubscribe":
        row = dict(batch.row(SUBSCRIBERS, user) or {})
        if row.pop(record["session"], None) is not None:
            batch.stage_row(SUBSCRIBERS, user, row or None)
    elif op == "session.open":
        change_sessions(
            batch,
            user,
            lambda r: sessions.open_session(
                r, record["session"], record["slot"], record["edge"], at
            ),
        )
    elif op in ("session.close", "session.expire"):
        change_sessions(batch, user, lambda r: sessions.close_session(r, record["session"], at))
    else:
        log.warning("unknown user event", extra={"op": op})


def inbox_limits(batch: Batch) -> inbox.Limits:
    return inbox.Limits(
        per_conversation=batch.settings.inbox_max_per_conversation,
        bytes=batch.settings.inbox_max_bytes,
    )


def send_to_sessions(
    batch: Batch, user: str, frame: dict[str, Any], exclude: str | None = None
) -> None:
    row: SessionsRow | None = batch.row(SESSIONS, user)
    if not row:
        return
    for slot, session_ids in sessions.by_slot(row, exclude).items():
        batch.deliver(slot, session_ids, frame)


def change_sessions(batch: Batch, user: str, change: Callable[[SessionsRow], SessionsRow]) -> None:
    before: SessionsRow = batch.row(SESSIONS, user) or sessions.empty()
    after = change(before)
    if after is before:
        return
    batch.stage_row(SESSIONS, user, after)
    was_online, is_online = sessions.is_online(before), sessions.is_online(after)
    if was_online == is_online:
        return
    status = "online" if is_online else "offline"
    # The look-up cache first (the runtime writes it before the frames go out), so that a
    # watcher who queries right after the presence frame reads the same status.
    batch.cache(presence_key(user), {"status": status, "last_seen": after["last_seen"]})
    frame = {"type": "presence", "user": user, "status": status, "last_seen": after["last_seen"]}
    subscribers = batch.row(SUBSCRIBERS, user) or {}
    for slot, session_ids in presence_subscribers.by_slot(subscribers).items():
        batch.deliver(slot, session_ids, frame)


def answer_sync(batch: Batch, user: str, record: dict[str, Any]) -> None:
    row = batch.row(INBOX, user) or {}
    messages, fetch, last_seqs, truncated = inbox.sync_reply(
        row, record.get("cursors"), protocol.SYNC_PAGE, batch.settings.sync_max_bytes
    )
    batch.deliver_sync(
        record["slot"],
        record["session"],
        {
            "id": record.get("id"),
            "messages": messages,
            "fetch": fetch,
            "conversations": last_seqs,
            "truncated": truncated,
        },
    )


# --------------------------------------------------------------------------- timers

# Edges seen without a liveness key, and since when (monotonic seconds). An edge is declared
# dead only when its key stays missing for a whole TTL: a live edge re-sets it every TTL/3, so a
# Redis restart (which forgets every key) does not expire the sessions of live edges.
_missing_since: dict[str, float] = {}


async def expire_dead_edges(worker: Worker, now_ms: int) -> None:
    """Sessions of an edge whose liveness key expired are closed through the normal path: this
    timer only produces ``session.expire`` events; the agent owning the user applies them."""
    by_edge: dict[str, list[tuple[str, str]]] = {}
    for user, row in worker.rows(SESSIONS):
        for sid, live in (row or {}).get("sessions", {}).items():
            by_edge.setdefault(live["edge"], []).append((user, sid))
    edges = list(by_edge)
    if not edges:
        _missing_since.clear()
        return
    try:
        alive = await worker.redis.mget([edge_alive_key(e) for e in edges])
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
        if now - first_missing < worker.settings.edge_liveness_ttl_s:
            continue
        del _missing_since[edge]
        log.info(
            "edge is gone, expiring its sessions",
            extra={"edge": edge, "sessions": len(by_edge[edge])},
        )
        for user, sid in by_edge[edge]:
            await worker.send("users", user, {"op": "session.expire", "session": sid, "edge": edge})
    for edge in set(_missing_since) - set(edges):
        del _missing_since[edge]


_redis_run_id: str | None = None


async def rebuild_presence_cache(worker: Worker, now_ms: int) -> None:
    """Redis keeps presence only as a cache. When this worker starts, or Redis restarts empty
    (its run_id changes), write the presence of every user this worker holds again."""
    global _redis_run_id
    try:
        run_id = str((await worker.redis.info("server"))["run_id"])
    except Exception:
        return  # Redis down: look-ups answer `unavailable` meanwhile
    if run_id == _redis_run_id:
        return
    writes = [
        (
            presence_key(user),
            {"status": "online" if row["sessions"] else "offline", "last_seen": row["last_seen"]},
        )
        for user, row in worker.rows(SESSIONS)
        if row
    ]
    if writes:
        log.info("rebuilding the presence cache", extra={"users": len(writes)})
        await worker.set_cache(writes)
    _redis_run_id = run_id
