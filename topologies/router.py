"""Router agent: ``chat.commands`` (key: conversation_id) → sequenced messages, fan-out, acks.

It owns the conversation-keyed tables (conversations, sequences, receipts, typing) and is the
only place where membership is decided and seq numbers are handed out. Pure: it reads and
stages rows and outputs through the :class:`~topologies.batch.Batch`; the runtime writes them.

    chat.commands ──▶ router ──▶ chat.messages       (sequenced message, system of record)
                             ├─▶ chat.conversations  (latest state, compacted)
                             ├─▶ chat.receipts       (cursors, compacted)
                             ├─▶ chat.users          (one event per member, bundled)
                             ├─▶ chat.deliver        (ack / ok / error to the origin session)
                             ├─▶ chat.moderation     (moderation decisions applied: the audit)
                             └─▶ chat.commands       (sanctions broadcast to every partition)

Moderation (the inline rules, decisions, reports) is in ``topologies/moderation.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from chat import protocol, records
from chat.records import Message
from tables import conversations, receipts, sequences, typing_state
from tables.conversations import ConversationRow, Rejected
from tables.receipts import Cursors
from topologies import memberships, metrics, moderation
from topologies.batch import Batch, Event
from topologies.timers import Worker

log = logging.getLogger("chat.router")

CONVERSATIONS = conversations.TABLE
SEQUENCES = sequences.TABLE
RECEIPTS = receipts.TABLE
TYPING = typing_state.TABLE


def route(batch: Batch, events: list[Event]) -> None:
    """Handle one batch of commands, in order. Receipts are coalesced: each (conversation,
    user) whose cursors moved is published once, with its final cursors, at the end."""
    moved: dict[tuple[str, str], Cursors] = {}
    for event in events:
        command = event.value
        op = command.get("op")
        origin = command.get("origin")
        handler = HANDLERS.get(op) if isinstance(op, str) else None
        try:
            if handler is None:
                raise Rejected(protocol.INTERNAL, f"router cannot handle command {op!r}")
            if handler is handle_receipt:
                handle_receipt(batch, command, moved)
            else:
                handler(batch, command, event.at)
        except moderation.Blocked as exc:
            reply_error(batch, origin, exc.code, exc.message, reason=exc.reason)
        except Rejected as exc:
            reply_error(batch, origin, exc.code, exc.message)
        except Exception:
            # A bug must not stop the partition: log it, answer `internal`, go on.
            log.exception("command failed", extra={"op": op})
            reply_error(batch, origin, protocol.INTERNAL, "internal error")
    publish_receipts(batch, moved)


def reply_error(
    batch: Batch, origin: Any, code: str, message: str, reason: str | None = None
) -> None:
    if origin:
        frame = protocol.error_frame(code, message, origin.get("id"), reason=reason)
        batch.deliver(origin["slot"], [origin["session"]], frame)


def last_seq_of(batch: Batch, conversation_id: str) -> int:
    row = batch.row(SEQUENCES, conversation_id)
    return int(row["last_seq"]) if row else 0


# --------------------------------------------------------------------------- conversations


def handle_create(batch: Batch, command: dict[str, Any], at: int) -> None:
    cid, user, origin = command["conversation_id"], command["user"], command["origin"]
    existing: ConversationRow | None = batch.row(CONVERSATIONS, cid)
    if existing is not None:
        # Creating a direct conversation again returns it; a replayed group create too.
        conversations.check_member(existing, cid, user)
        reply_conversation(batch, origin, existing)
        return
    if command["kind"] == "direct":
        row = conversations.new_direct(cid, user, at)
    else:
        row = conversations.new_group(
            cid,
            user,
            command["members"],
            command.get("title", ""),
            at,
            batch.settings.max_group_members,
        )
    batch.stage_row(CONVERSATIONS, cid, row)
    publish_conversation(batch, row, "created", row["members"], [])
    reply_conversation(batch, origin, row)


def handle_add_members(batch: Batch, command: dict[str, Any], at: int) -> None:
    cid, user, origin = command["conversation_id"], command["user"], command["origin"]
    row = conversations.check_member(batch.row(CONVERSATIONS, cid), cid, user)
    new, added = conversations.add_members(
        row, user, command["members"], batch.settings.max_group_members
    )
    if added:
        batch.stage_row(CONVERSATIONS, cid, new)
        publish_conversation(batch, new, "members_added", new["members"], [])
    reply_conversation(batch, origin, new)


def handle_remove_members(batch: Batch, command: dict[str, Any], at: int) -> None:
    cid, user, origin = command["conversation_id"], command["user"], command["origin"]
    row = conversations.check_member(batch.row(CONVERSATIONS, cid), cid, user)
    new, removed = conversations.remove_members(row, user, command["members"])
    if removed:
        batch.stage_row(CONVERSATIONS, cid, new)
        publish_conversation(batch, new, "members_removed", new["members"], removed)
    reply_conversation(batch, origin, new)


def reply_conversation(batch: Batch, origin: dict[str, Any], row: ConversationRow) -> None:
    conversation = conversations.public(row, last_seq_of(batch, row["id"]))
    frame = protocol.ok_frame(origin.get("id"), conversation=conversation)
    batch.reply_when_durable(origin["slot"], origin["session"], frame)


def publish_conversation(
    batch: Batch, row: ConversationRow, event: str, members: list[str], removed: list[str]
) -> None:
    """The new state to the store and to the edges' membership sets (presence visibility),
    and a ``conversation`` event to everyone affected."""
    conversation = conversations.public(row, last_seq_of(batch, row["id"]))
    memberships.cache(batch, row["id"], row["members"], removed)
    batch.emit("conversations", row["id"], {**conversation, "created_at": row["created_at"]})
    frame = {"type": "conversation", "event": event, "conversation": conversation}
    for member in members:
        batch.to_user(
            member,
            {
                "op": "conversation",
                "frame": frame,
                "member": True,
                "conversation_id": row["id"],
                "last_seq": conversation["last_seq"],
            },
        )
    for member in removed:
        batch.to_user(
            member,
            {"op": "conversation", "frame": frame, "member": False, "conversation_id": row["id"]},
        )


# --------------------------------------------------------------------------- messages


def handle_send(batch: Batch, command: dict[str, Any], at: int) -> None:
    cid, sender, origin = command["conversation_id"], command["user"], command["origin"]
    row = conversations.check_member(batch.row(CONVERSATIONS, cid), cid, sender)
    seq_row = batch.row(SEQUENCES, cid) or sequences.empty()
    client_msg_id = command["client_msg_id"]
    hit = sequences.lookup(seq_row, sender, client_msg_id)
    if hit is not None:
        # A retry (or a replay after a crash): the original ack, nothing delivered twice.
        seq, ts = hit
        original = Message(
            conversation_id=cid, seq=seq, sender=sender, body="", ts=ts, client_msg_id=client_msg_id
        )
        batch.reply_when_durable(
            origin["slot"], origin["session"], records.ack_frame(original, origin.get("id"))
        )
        metrics.duplicate_sends.inc()
        return
    moderation.check_send(batch, command, at)
    new_row, seq, ts = sequences.assign(
        seq_row, sender, client_msg_id, at, batch.settings.dedup_window
    )
    message = Message(
        conversation_id=cid,
        seq=seq,
        sender=sender,
        body=command["body"],
        ts=ts,
        client_msg_id=client_msg_id,
    )
    if moderation.is_new_account(batch, command, at):
        message["new_account"] = True
    if command.get("attachments"):
        # Resolved and checked by the edge (owned by the sender, ready): copied as they are.
        message["attachments"] = command["attachments"]
    batch.stage_row(SEQUENCES, cid, new_row)
    batch.emit("messages", cid, message)
    for member in row["members"]:
        exclude = origin["session"] if member == sender else None
        batch.to_user(member, {"op": "message", "message": message, "exclude": exclude})
    batch.reply_when_durable(
        origin["slot"], origin["session"], records.ack_frame(message, origin.get("id"))
    )
    # The typer's message ends their typing indicator.
    stop_typing(batch, row, sender, at)


# --------------------------------------------------------------------------- receipts


def handle_receipt(
    batch: Batch, command: dict[str, Any], moved: dict[tuple[str, str], Cursors]
) -> None:
    """Advance a cursor in the row; what changed is published once per batch (see route)."""
    cid, user = command["conversation_id"], command["user"]
    conversations.check_member(batch.row(CONVERSATIONS, cid), cid, user)
    kind = "read" if command["op"] == "receipt.read" else "delivered"
    current = batch.row(RECEIPTS, cid) or {}
    new, changed = receipts.advance(current, user, kind, command["seq"], last_seq_of(batch, cid))
    if not changed:
        return
    moved.setdefault((cid, user), current.get(user, Cursors(read=0, delivered=0)))
    batch.stage_row(RECEIPTS, cid, new)


def publish_receipts(batch: Batch, moved: dict[tuple[str, str], Cursors]) -> None:
    """For each cursor pair that moved in this batch: its final state to the store, and one
    ``receipt`` frame per moved kind to every member (cumulative, so one frame says it all)."""
    for (cid, user), before in moved.items():
        after: Cursors = batch.row(RECEIPTS, cid)[user]
        batch.emit(
            "receipts",
            f"{cid}|{user}",
            {
                "conversation_id": cid,
                "user": user,
                "read": after["read"],
                "delivered": after["delivered"],
            },
        )
        row: ConversationRow | None = batch.row(CONVERSATIONS, cid)
        if row is None:
            continue
        for kind, was, now in (
            ("read", before["read"], after["read"]),
            ("delivered", before["delivered"], after["delivered"]),
        ):
            if now == was:
                continue
            frame = {
                "type": "receipt",
                "conversation_id": cid,
                "user": user,
                "kind": kind,
                "seq": now,
            }
            for member in receipt_audience(batch, row, user, kind):
                batch.to_user(member, {"op": "receipt", "frame": frame})


def receipt_audience(batch: Batch, row: ConversationRow, user: str, kind: str) -> list[str]:
    """Who is told of a moved cursor: every member, except for ``delivered`` in a large group,
    where only the user's own devices are (they trim the inbox and stop notifying). Every
    member confirming every message of a group of n costs n x n frames; past
    CHAT_DELIVERED_RECEIPTS_MAX_MEMBERS that is more than any client wants live, and REST
    (``GET /v1/conversations/{id}/receipts``) still answers everyone's cursors."""
    if kind == "delivered" and len(row["members"]) > batch.settings.delivered_receipts_max_members:
        return [user]
    return list(row["members"])


# --------------------------------------------------------------------------- typing


def handle_typing(batch: Batch, command: dict[str, Any], at: int) -> None:
    cid, user = command["conversation_id"], command["user"]
    row = conversations.check_member(batch.row(CONVERSATIONS, cid), cid, user)
    current = batch.row(TYPING, cid) or {}
    if command["state"] == "start":
        new, relay = typing_state.start(current, user, at)
        batch.stage_row(TYPING, cid, new)
        if relay:
            relay_typing(batch, row, user, "start")
    else:
        stop_typing(batch, row, user, at)


def handle_typing_expire(batch: Batch, command: dict[str, Any], at: int) -> None:
    """From the worker timer: end the starts that were not refreshed in time."""
    cid = command["conversation_id"]
    row: ConversationRow | None = batch.row(CONVERSATIONS, cid)
    current = batch.row(TYPING, cid) or {}
    for user in typing_state.expired(current, at):
        if row is not None:
            stop_typing(batch, row, user, at)


def stop_typing(batch: Batch, row: ConversationRow, user: str, at: int) -> None:
    current = batch.row(TYPING, row["id"]) or {}
    new, was_typing = typing_state.stop(current, user, at)
    if was_typing:
        batch.stage_row(TYPING, row["id"], new or None)
        relay_typing(batch, row, user, "stop")


def relay_typing(batch: Batch, row: ConversationRow, user: str, state: str) -> None:
    frame = {"type": "typing", "conversation_id": row["id"], "user": user, "state": state}
    for member in row["members"]:
        if member != user:
            batch.to_user(member, {"op": "frame", "frame": frame})


async def expire_typing(worker: Worker, now: int) -> None:
    """Turn stale typing entries into commands, so that only the row's owner changes the row.

    The timer sees every row this worker holds (standbys too); a duplicate expire is harmless.
    """
    for cid, row in worker.rows(TYPING):
        if row and typing_state.expired(row, now):
            await worker.send("commands", cid, {"op": "typing.expire", "conversation_id": cid})


HANDLERS: dict[str, Callable[..., None]] = {
    "conversation.create": handle_create,
    "conversation.add_members": handle_add_members,
    "conversation.remove_members": handle_remove_members,
    "message.send": handle_send,
    "message.delivered": handle_receipt,
    "receipt.read": handle_receipt,
    "typing": handle_typing,
    "typing.expire": handle_typing_expire,
    **moderation.HANDLERS,
}
