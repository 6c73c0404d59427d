"""Router agent: ``chat.commands`` (key: conversation_id) → sequenced messages, fan-out, acks.

It owns the conversation-keyed tables (conversations, sequences, receipts, typing) and is the
only place where membership is decided and seq numbers are handed out.

    chat.commands ──▶ router ──▶ chat.messages       (sequenced message, system of record)
                             ├─▶ chat.conversations  (latest state, compacted)
                             ├─▶ chat.receipts       (cursors, compacted)
                             ├─▶ chat.users          (one record per member)
                             └─▶ chat.deliver        (ack / ok / error to the origin session)
"""

from __future__ import annotations

import logging
import time
from typing import Any

from chat import protocol, records
from chat.records import Message
from tables import conversations, receipts, sequences, typing_state
from tables.conversations import ConversationRow, Rejected
from topologies import metrics
from topologies.app import (
    app,
    commands_topic,
    conversations_table,
    conversations_topic,
    deliver_topic,
    messages_topic,
    receipts_table,
    receipts_topic,
    sequences_table,
    settings,
    typing_table,
    users_topic,
)
from topologies.outbox import Outbox

log = logging.getLogger("chat.router")


def event_time_ms(event: Any) -> int:
    """Record timestamps, not the wall clock, so that a replay computes the same state."""
    ms: int = round(event.message.timestamp * 1000)
    return ms


@app.agent(commands_topic, concurrency=1)
async def route_commands(stream: Any) -> None:
    async for events in stream.take_events(1000, within=settings.worker_batch_ms / 1000):
        metrics.observe_batch_age("router", events)
        outbox = Outbox(app, deliver_topic, outputs=not settings.worker_rebuild)
        for event in events:
            command = records.loads(event.value)
            handle_command(outbox, command, event_time_ms(event))
        await outbox.publish_batch("router", events)


def handle_command(outbox: Outbox, command: dict[str, Any], at: int) -> None:
    op = command.get("op")
    origin = command.get("origin")
    handler = HANDLERS.get(op) if isinstance(op, str) else None
    try:
        if handler is None:
            raise Rejected(protocol.INTERNAL, f"router cannot handle command {op!r}")
        handler(outbox, command, at)
    except Rejected as exc:
        reply_error(outbox, origin, exc.code, exc.message)
    except Exception:
        # A bug must not stop the partition: log it, answer `internal`, go on with the next one.
        log.exception("command failed", extra={"op": op})
        reply_error(outbox, origin, protocol.INTERNAL, "internal error")


def reply_error(outbox: Outbox, origin: Any, code: str, message: str) -> None:
    if origin:
        frame = protocol.error_frame(code, message, origin.get("id"))
        outbox.deliver(origin["slot"], [origin["session"]], frame)


def last_seq_of(outbox: Outbox, conversation_id: str) -> int:
    row = outbox.row(sequences_table, conversation_id)
    return int(row["last_seq"]) if row else 0


# --------------------------------------------------------------------------- conversations


def handle_create(outbox: Outbox, command: dict[str, Any], at: int) -> None:
    cid, user, origin = command["conversation_id"], command["user"], command["origin"]
    existing: ConversationRow | None = outbox.row(conversations_table, cid)
    if existing is not None:
        # Creating a direct conversation again returns it; a replayed group create too.
        conversations.check_member(existing, cid, user)
        reply_conversation(outbox, origin, existing)
        return
    if command["kind"] == "direct":
        row = conversations.new_direct(cid, user, at)
    else:
        row = conversations.new_group(
            cid, user, command["members"], command.get("title", ""), at, settings.max_group_members
        )
    outbox.stage_row(conversations_table, cid, row)
    publish_conversation(outbox, row, "created", row["members"], [])
    reply_conversation(outbox, origin, row)


def handle_add_members(outbox: Outbox, command: dict[str, Any], at: int) -> None:
    cid, user, origin = command["conversation_id"], command["user"], command["origin"]
    row = conversations.check_member(outbox.row(conversations_table, cid), cid, user)
    new, added = conversations.add_members(
        row, user, command["members"], settings.max_group_members
    )
    if added:
        outbox.stage_row(conversations_table, cid, new)
        publish_conversation(outbox, new, "members_added", new["members"], [])
    reply_conversation(outbox, origin, new)


def handle_remove_members(outbox: Outbox, command: dict[str, Any], at: int) -> None:
    cid, user, origin = command["conversation_id"], command["user"], command["origin"]
    row = conversations.check_member(outbox.row(conversations_table, cid), cid, user)
    new, removed = conversations.remove_members(row, user, command["members"])
    if removed:
        outbox.stage_row(conversations_table, cid, new)
        publish_conversation(outbox, new, "members_removed", new["members"], removed)
    reply_conversation(outbox, origin, new)


def reply_conversation(outbox: Outbox, origin: dict[str, Any], row: ConversationRow) -> None:
    conversation = conversations.public(row, last_seq_of(outbox, row["id"]))
    frame = protocol.ok_frame(origin.get("id"), conversation=conversation)
    outbox.reply_when_durable(origin["slot"], origin["session"], frame)


def publish_conversation(
    outbox: Outbox, row: ConversationRow, event: str, members: list[str], removed: list[str]
) -> None:
    """The new state to the store, and a ``conversation`` event to everyone affected."""
    conversation = conversations.public(row, last_seq_of(outbox, row["id"]))
    outbox.produce(
        conversations_topic, row["id"], {**conversation, "created_at": row["created_at"]}
    )
    frame = {"type": "conversation", "event": event, "conversation": conversation}
    for member in members:
        outbox.produce(
            users_topic,
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
        outbox.produce(
            users_topic,
            member,
            {
                "op": "conversation",
                "frame": frame,
                "member": False,
                "conversation_id": row["id"],
            },
        )


# --------------------------------------------------------------------------- messages


def handle_send(outbox: Outbox, command: dict[str, Any], at: int) -> None:
    cid, sender, origin = command["conversation_id"], command["user"], command["origin"]
    row = conversations.check_member(outbox.row(conversations_table, cid), cid, sender)
    seq_row = outbox.row(sequences_table, cid) or sequences.empty()
    client_msg_id = command["client_msg_id"]
    hit = sequences.lookup(seq_row, sender, client_msg_id)
    if hit is not None:
        # A retry (or a replay after a crash): the original ack, nothing delivered twice.
        seq, ts = hit
        original = Message(
            conversation_id=cid, seq=seq, sender=sender, body="", ts=ts, client_msg_id=client_msg_id
        )
        outbox.reply_when_durable(
            origin["slot"], origin["session"], records.ack_frame(original, origin.get("id"))
        )
        metrics.duplicate_sends.inc()
        return
    new_row, seq, ts = sequences.assign(seq_row, sender, client_msg_id, at, settings.dedup_window)
    message = Message(
        conversation_id=cid,
        seq=seq,
        sender=sender,
        body=command["body"],
        ts=ts,
        client_msg_id=client_msg_id,
    )
    outbox.stage_row(sequences_table, cid, new_row)
    outbox.produce(messages_topic, cid, message)
    for member in row["members"]:
        exclude = origin["session"] if member == sender else None
        outbox.produce(
            users_topic, member, {"op": "message", "message": message, "exclude": exclude}
        )
    outbox.reply_when_durable(
        origin["slot"], origin["session"], records.ack_frame(message, origin.get("id"))
    )
    # The typer's message ends their typing indicator.
    stop_typing(outbox, row, sender, at)


# --------------------------------------------------------------------------- receipts


def handle_receipt(outbox: Outbox, command: dict[str, Any], at: int) -> None:
    cid, user = command["conversation_id"], command["user"]
    row = conversations.check_member(outbox.row(conversations_table, cid), cid, user)
    kind = "read" if command["op"] == "receipt.read" else "delivered"
    current = outbox.row(receipts_table, cid) or {}
    new, changed = receipts.advance(current, user, kind, command["seq"], last_seq_of(outbox, cid))
    if not changed:
        return
    outbox.stage_row(receipts_table, cid, new)
    outbox.produce(
        receipts_topic,
        f"{cid}|{user}",
        {
            "conversation_id": cid,
            "user": user,
            "read": new[user]["read"],
            "delivered": new[user]["delivered"],
        },
    )
    for changed_kind, seq in changed:
        frame = {
            "type": "receipt",
            "conversation_id": cid,
            "user": user,
            "kind": changed_kind,
            "seq": seq,
        }
        for member in row["members"]:
            outbox.produce(users_topic, member, {"op": "receipt", "frame": frame})


# --------------------------------------------------------------------------- typing


def handle_typing(outbox: Outbox, command: dict[str, Any], at: int) -> None:
    cid, user = command["conversation_id"], command["user"]
    row = conversations.check_member(outbox.row(conversations_table, cid), cid, user)
    current = outbox.row(typing_table, cid) or {}
    if command["state"] == "start":
        new, relay = typing_state.start(current, user, at)
        outbox.stage_row(typing_table, cid, new)
        if relay:
            relay_typing(outbox, row, user, "start")
    else:
        stop_typing(outbox, row, user, at)


def handle_typing_expire(outbox: Outbox, command: dict[str, Any], at: int) -> None:
    """From the worker timer: end the starts that were not refreshed in time."""
    cid = command["conversation_id"]
    row: ConversationRow | None = outbox.row(conversations_table, cid)
    current = outbox.row(typing_table, cid) or {}
    for user in typing_state.expired(current, at):
        if row is not None:
            stop_typing(outbox, row, user, at)


def stop_typing(outbox: Outbox, row: ConversationRow, user: str, at: int) -> None:
    current = outbox.row(typing_table, row["id"]) or {}
    new, was_typing = typing_state.stop(current, user, at)
    if was_typing:
        outbox.stage_row(typing_table, row["id"], new or None)
        relay_typing(outbox, row, user, "stop")


def relay_typing(outbox: Outbox, row: ConversationRow, user: str, state: str) -> None:
    frame = {"type": "typing", "conversation_id": row["id"], "user": user, "state": state}
    for member in row["members"]:
        if member != user:
            outbox.produce(users_topic, member, {"op": "frame", "frame": frame})


@app.timer(interval=1.0)
async def expire_typing() -> None:
    """Turn stale typing entries into commands, so that only the row's owner changes the row.

    The timer sees every row this worker holds (standbys too); a duplicate expire is harmless.
    """
    if settings.worker_rebuild:
        return
    now = int(time.time() * 1000)
    for cid, row in list(typing_table.items()):
        if row and typing_state.expired(row, now):
            await commands_topic.send(
                key=cid.encode(),
                value=records.dumps({"op": "typing.expire", "conversation_id": cid}),
            )


HANDLERS = {
    "conversation.create": handle_create,
    "conversation.add_members": handle_add_members,
    "conversation.remove_members": handle_remove_members,
    "message.send": handle_send,
    "message.delivered": handle_receipt,
    "receipt.read": handle_receipt,
    "typing": handle_typing,
    "typing.expire": handle_typing_expire,
}
