"""The router's moderation: the inline check before a message is sequenced, and the commands
that change what moderation hides or allows (docs/moderation.md).

Part of the router agent (``chat.commands``, key: conversation_id), so that a decision is
ordered with the messages of its conversation, and a table rebuild replays both in that order.
Pure, like the rest of the router: rows and outputs go through the Batch.

    message.send         ──▶ check_send: blocked? → `error` (code blocked, reason), a record
    moderation.decision  ──▶ hide / flag, a strike → escalation (mute, broadcast)
    moderation.redact|restore|dismiss (a moderator, through REST)
    message.report       ──▶ a `reported` record for the moderators' queue
    moderation.policy|sanction (broadcast to every partition) ──▶ this partition's policy row
                                        │
                                        └──▶ chat.moderation (the audit trail and the queue)
"""

from __future__ import annotations

from typing import Any, cast

from chat import protocol, records
from chat.records import ModerationRecord, SanctionCommand
from tables import conversations, moderation, sequences
from tables.conversations import ConversationRow, Rejected
from tables.moderation import PolicyRow
from topologies import metrics
from topologies.batch import Batch

POLICY = moderation.POLICY
MODERATED = moderation.MODERATED
CONVERSATIONS = conversations.TABLE
SEQUENCES = sequences.TABLE


class Blocked(Rejected):
    """A message the inline rules refuse: answered with ``error`` code ``blocked``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(protocol.BLOCKED, message)
        self.reason = reason


def policy_of(batch: Batch, conversation_id: str) -> PolicyRow:
    key = records.policy_key_of(conversation_id, batch.settings.conversation_partitions)
    row: PolicyRow | None = batch.row(POLICY, key)
    return row if row is not None else moderation.empty_policy()


def check_send(batch: Batch, command: dict[str, Any], at: int) -> None:
    """Raise :class:`Blocked` if the rules refuse this message; it is then neither stored nor
    delivered, and a ``blocked`` record says which rule matched (not the body)."""
    if not batch.settings.moderation_rules:
        return
    cid, sender = command["conversation_id"], command["user"]
    verdict = moderation.check_message(
        policy_of(batch, cid), sender, command["body"], command.get("account_created"), at
    )
    if verdict is None:
        return
    metrics.moderation_blocked.labels(verdict.reason).inc()
    emit(
        batch,
        ModerationRecord(
            id=f"blocked:{cid}:{sender}:{command['client_msg_id']}",
            kind="blocked",
            conversation_id=cid,
            seq=None,
            user=sender,
            reason=verdict.reason,
            source="rules",
            by=None,
            evidence={"matched": verdict.detail},
            at=at,
        ),
    )
    raise Blocked(verdict.reason, f"the message was not sent: {verdict.reason}")


def is_new_account(batch: Batch, command: dict[str, Any], at: int) -> bool:
    created = command.get("account_created")
    limit_s = policy_of(batch, command["conversation_id"])["rules"]["new_account_s"]
    return created is not None and limit_s > 0 and at - created < limit_s * 1000


# --------------------------------------------------------------------------- decisions on messages


def existing_message(batch: Batch, cid: str, seq: int) -> ConversationRow:
    """The conversation of a message that exists, or :class:`Rejected` ``not_found``."""
    row: ConversationRow | None = batch.row(CONVERSATIONS, cid)
    last = batch.row(SEQUENCES, cid)
    if row is None or last is None or not 1 <= seq <= int(last["last_seq"]):
        raise Rejected(protocol.NOT_FOUND, f"no message {seq} in {cid}")
    return row


def handle_decision(batch: Batch, command: dict[str, Any], at: int) -> None:
    """A detector's verdict (classifier, spam): hide the message or queue it for a moderator."""
    cid, seq = command["conversation_id"], command["seq"]
    row = existing_message(batch, cid, seq)
    source, reason = command["source"], command["reason"]
    metrics.moderation_decisions.labels(source, reason, command["action"]).inc()
    if command["action"] == "flag":
        emit(batch, decision_record("flagged", f"flagged:{source}:{cid}:{seq}", command, at))
        return
    if not hide(batch, row, seq, reason):
        return  # hidden already: a repeat, or two detectors agreeing
    emit(batch, decision_record("redacted", f"redacted:{source}:{cid}:{seq}", command, at))
    if command.get("strike"):
        strike(batch, cid, command["sender"], at, f"{reason} ({source})")


def decision_record(
    kind: str, record_id: str, command: dict[str, Any], at: int
) -> ModerationRecord:
    return ModerationRecord(
        id=record_id,
        kind=cast(Any, kind),
        conversation_id=command["conversation_id"],
        seq=command["seq"],
        user=command["sender"],
        reason=command["reason"],
        source=command["source"],
        by=None,
        evidence=command.get("evidence") or {},
        at=at,
    )


def handle_moderator(batch: Batch, command: dict[str, Any], at: int) -> None:
    """A moderator's redact, restore or dismiss (checked and audited by the edge's REST)."""
    cid, seq, op = command["conversation_id"], command["seq"], command["op"]
    row = existing_message(batch, cid, seq)
    kind = {"moderation.redact": "redacted", "moderation.restore": "restored"}.get(op, "dismissed")
    if op == "moderation.redact":
        hide(batch, row, seq, command["reason"] or "moderator")
    elif op == "moderation.restore":
        unhide(batch, row, seq, command.get("message"))
    emit(
        batch,
        ModerationRecord(
            id=command["action_id"],
            kind=cast(Any, kind),
            conversation_id=cid,
            seq=seq,
            user=None,
            reason=command["reason"],
            source="moderator",
            by=command["by"],
            evidence={},
            at=at,
        ),
    )


def handle_report(batch: Batch, command: dict[str, Any], at: int) -> None:
    """A member reports a message: one queue entry per (message, reporter)."""
    cid, seq, reporter = command["conversation_id"], command["seq"], command["user"]
    conversations.check_member(batch.row(CONVERSATIONS, cid), cid, reporter)
    existing_message(batch, cid, seq)
    emit(
        batch,
        ModerationRecord(
            id=f"reported:{cid}:{seq}:{reporter}",
            kind="reported",
            conversation_id=cid,
            seq=seq,
            user=None,
            reason=command["reason"],
            source="report",
            by=reporter,
            evidence={"note": command["note"]} if command["note"] else {},
            at=at,
        ),
    )
    origin = command["origin"]
    batch.reply_when_durable(origin["slot"], origin["session"], protocol.ok_frame(origin["id"]))


def hide(batch: Batch, row: ConversationRow, seq: int, reason: str) -> bool:
    cid = row["id"]
    current = batch.row(MODERATED, cid) or moderation.empty_moderated()
    new, changed = moderation.hide(current, seq, reason)
    if not changed:
        return False
    batch.stage_row(MODERATED, cid, new)
    frame = {"type": "message.redacted", "conversation_id": cid, "seq": seq, "reason": reason}
    for member in row["members"]:
        batch.to_user(member, {"op": "redacted", "frame": frame})
    return True


def unhide(batch: Batch, row: ConversationRow, seq: int, message: Any) -> None:
    cid = row["id"]
    current = batch.row(MODERATED, cid) or moderation.empty_moderated()
    new, changed = moderation.unhide(current, seq)
    if not changed or message is None:
        return
    batch.stage_row(MODERATED, cid, new)
    frame = {"type": "message.restored", "conversation_id": cid, "seq": seq, "message": message}
    for member in row["members"]:
        batch.to_user(member, {"op": "restored", "frame": frame})


# --------------------------------------------------------------------------- the policy rows


def strike(batch: Batch, cid: str, user: str, at: int, reason: str) -> None:
    """Count a strike against ``user``; from the second on it mutes, for longer each time.

    The strike count lives in every partition's policy row: the new count and sanction are
    broadcast to all of them (this one included, staged at once so that a second strike in
    the same batch counts from the first)."""
    policy = policy_of(batch, cid)
    strikes, kind, until = moderation.escalation(
        policy, user, at, batch.settings.moderation_mute_base_s
    )
    sanction = SanctionCommand(
        op="moderation.sanction",
        conversation_id="",
        user=user,
        kind=cast(Any, "unban" if kind == "none" else kind),
        until=until,
        strikes=strikes,
        at=at,
        by="escalation",
        reason=reason,
        action_id=f"sanction:{user}:{at}:{strikes}",
    )
    key = records.policy_key_of(cid, batch.settings.conversation_partitions)
    apply_sanction(batch, {**sanction, "conversation_id": key})
    broadcast(batch, dict(sanction))
    emit(batch, sanction_record(sanction, "escalation"))


def broadcast(batch: Batch, command: dict[str, Any]) -> None:
    """One copy of a deployment-wide command to every partition of chat.commands."""
    for key in records.policy_keys(batch.settings.conversation_partitions):
        batch.emit("commands", key, {**command, "conversation_id": key})


def handle_sanction(batch: Batch, command: dict[str, Any], at: int) -> None:
    changed = apply_sanction(batch, command)
    # The moderator's REST call broadcast it; the copy on the first partition writes the
    # audit record (escalations wrote theirs when they decided).
    first = records.policy_keys(batch.settings.conversation_partitions)[0]
    if changed and command["conversation_id"] == first and command["by"] != "escalation":
        emit(batch, sanction_record(cast(SanctionCommand, command), "moderator"))


def apply_sanction(batch: Batch, command: dict[str, Any]) -> bool:
    key = command["conversation_id"]
    current: PolicyRow = batch.row(POLICY, key) or moderation.empty_policy()
    new, changed = moderation.apply_sanction(
        current, cast(SanctionCommand, command), batch.settings.moderation_max_sanctions
    )
    if changed:
        batch.stage_row(POLICY, key, new)
    return changed


def sanction_record(command: SanctionCommand, source: str) -> ModerationRecord:
    return ModerationRecord(
        id=command["action_id"],
        kind="sanction",
        conversation_id=None,
        seq=None,
        user=command["user"],
        reason=command["reason"],
        source=source,
        by=command["by"],
        evidence={
            "kind": command["kind"],
            "until": command["until"],
            "strikes": command["strikes"],
        },
        at=command["at"],
    )


def handle_policy(batch: Batch, command: dict[str, Any], at: int) -> None:
    key = command["conversation_id"]
    current: PolicyRow = batch.row(POLICY, key) or moderation.empty_policy()
    new, changed = moderation.set_rules(current, command["rules"])
    if not changed:
        return
    batch.stage_row(POLICY, key, new)
    if key == records.policy_keys(batch.settings.conversation_partitions)[0]:
        rules = command["rules"]
        emit(
            batch,
            ModerationRecord(
                id=command["action_id"],
                kind="policy",
                conversation_id=None,
                seq=None,
                user=None,
                reason="rules changed",
                source="moderator",
                by=command["by"],
                evidence=dict(rules),  # whole: GET /v1/moderation/policy answers it
                at=at,
            ),
        )


def emit(batch: Batch, record: ModerationRecord) -> None:
    key = record["conversation_id"] or (f"user:{record['user']}" if record["user"] else "policy")
    batch.emit("moderation", key, record)


HANDLERS = {
    "moderation.decision": handle_decision,
    "moderation.redact": handle_moderator,
    "moderation.restore": handle_moderator,
    "moderation.dismiss": handle_moderator,
    "moderation.policy": handle_policy,
    "moderation.sanction": handle_sanction,
    "message.report": handle_report,
}
