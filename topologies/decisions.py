"""How a detector agent (the classifier, the spam detector) tells the router about a message.

A decision is a command: ``chat.commands``, keyed by the conversation, so that the router
applies it in order with that conversation's messages (docs/moderation.md). The router checks
it, hides the message or queues it for a moderator, counts the strike, and writes what it
applied to ``chat.moderation``. A decision may arrive twice (a replayed batch, two signatures
of one message): the router applies one per message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chat.records import ModerationAction, ModerationDecision, ModerationReason
from topologies import metrics
from topologies.batch import Batch


def send(
    batch: Batch,
    message: Mapping[str, Any],
    action: ModerationAction,
    reason: ModerationReason,
    source: str,
    evidence: dict[str, Any],
    *,
    strike: bool,
) -> None:
    """A decision on ``message`` (a ``chat.messages`` record, or a sighting of one)."""
    decision = ModerationDecision(
        op="moderation.decision",
        conversation_id=message["conversation_id"],
        seq=message["seq"],
        sender=message["sender"],
        action=action,
        reason=reason,
        source=source,
        evidence=evidence,
        strike=strike,
    )
    batch.emit("commands", decision["conversation_id"], decision)
    metrics.detector_decisions.labels(source, reason, action).inc()


def judged(message: Mapping[str, Any]) -> bool:
    """Whether a ``chat.messages`` record is one the detectors look at: a message with a body,
    not a placeholder the router wrote for a message it hid."""
    return bool(message.get("body")) and "redacted" not in message
