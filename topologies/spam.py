"""Spam detection in two agents, because a campaign spans conversations and ``chat.messages``
is keyed by conversation (docs/moderation.md#spam-detection):

    chat.messages ──▶ spam-signals ──▶ chat.spam-signals (key: signature) ──▶ spam-campaigns
                          │                                                      │
                          └──▶ chat.commands (link_only)        table spam_campaigns (changelog)
                                                                                 │
                                                 chat.commands (spam: redact; burst: flag) ◀──┘

1. ``spam-signals`` computes each message's signatures (``topologies/signatures.py``: text
   bands and links; ``u:<sender>`` for a new account) and sends one event per signature, keyed
   by it, bundled per partition. A new account's link-only message is flagged here: it needs
   no other message.
2. ``spam-campaigns`` keeps one row per signature (``tables/spam_campaigns.py``): who sent it
   where within the window. When a signature becomes a campaign it decides every message of
   the campaign in the window, and then each later one as it comes. Its timer deletes quiet
   rows through ``expire`` events, so only the owner of a row ever changes it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from chat.settings import Settings
from tables import spam_campaigns
from tables.spam_campaigns import Limits, Sighting
from topologies import decisions, signatures
from topologies.batch import Batch, Event
from topologies.timers import Worker

SOURCE = "spam"
SIGNALS = "spam-signals"
CAMPAIGNS = spam_campaigns.TABLE
# Links per message that get a signature, and the length of one: enough for any campaign,
# and a message stuffed with links cannot make a thousand rows.
MAX_LINKS = 5
MAX_URL = 200
# Expire events sent at once by the timer (each is a small produce; the producer batches them).
EXPIRE_CHUNK = 500


def limits(settings: Settings) -> Limits:
    return Limits(
        window_ms=settings.spam_window_s * 1000,
        min_conversations=settings.spam_min_conversations,
        conversations_per_sender=settings.spam_conversations_per_sender,
        burst_window_ms=settings.spam_burst_window_s * 1000,
        burst_conversations=settings.spam_burst_conversations,
        max_entries=settings.spam_row_max_entries,
    )


# --------------------------------------------------------------------------- 1. spam-signals


def signal_messages(batch: Batch, events: list[Event]) -> None:
    messages = [event.value for event in events if decisions.judged(event.value)]
    analysed = [signatures.analyse(m["body"]) for m in messages]
    bands = signatures.text_signatures(
        [folded for folded, _ in analysed], batch.settings.spam_min_text_chars
    )
    for message, (folded, links), texts in zip(messages, analysed, bands, strict=True):
        sighting = {
            "conversation_id": message["conversation_id"],
            "seq": message["seq"],
            "sender": message["sender"],
            "ts": message["ts"],
        }
        new_account = bool(message.get("new_account"))
        if new_account and signatures.is_link_only(folded, links):
            evidence = {"links": [url[:MAX_URL] for url in links[:MAX_LINKS]]}
            decisions.send(batch, message, "flag", "link_only", SOURCE, evidence, strike=False)
        for signature in texts:
            batch.emit_bundled(SIGNALS, signature, {"op": "signal", "kind": "text", **sighting})
        for url in links[:MAX_LINKS]:
            batch.emit_bundled(
                SIGNALS, f"l:{url[:MAX_URL]}", {"op": "signal", "kind": "link", **sighting}
            )
        if new_account:
            batch.emit_bundled(
                SIGNALS, f"u:{message['sender']}", {"op": "signal", "kind": "sender", **sighting}
            )


# --------------------------------------------------------------------------- 2. spam-campaigns


def find_campaigns(batch: Batch, events: list[Event]) -> None:
    bounds = limits(batch.settings)
    for event in events:
        value: dict[str, Any] = event.value
        row = batch.row(CAMPAIGNS, event.key)
        if value.get("op") == "expire":
            if row is not None and spam_campaigns.quiet(row, value["now"], bounds):
                batch.stage_row(CAMPAIGNS, event.key, None)
            continue
        sighting = Sighting(
            conversation_id=value["conversation_id"],
            seq=value["seq"],
            sender=value["sender"],
            ts=value["ts"],
        )
        new, verdict = spam_campaigns.sight(
            row or spam_campaigns.empty(value["kind"]), sighting, bounds
        )
        if new is not row:
            batch.stage_row(CAMPAIGNS, event.key, new)
        if verdict is None:
            continue
        evidence = {"signature": event.key[:MAX_URL], "kind": new["kind"], **verdict.evidence}
        for decided in verdict.decide:
            if new["kind"] == "sender":
                decisions.send(batch, decided, "flag", "burst", SOURCE, evidence, strike=False)
            else:
                decisions.send(batch, decided, "redact", "spam", SOURCE, evidence, strike=True)


async def expire_quiet_rows(worker: Worker, now: int) -> None:
    """Ask the owner of each row quiet for a window to delete it (an ``expire`` event through
    the row's own partition). Rows of standby partitions are seen too: a duplicate is harmless."""
    bounds = limits(worker.settings)
    keys = [
        key for key, row in worker.rows(CAMPAIGNS) if row and spam_campaigns.quiet(row, now, bounds)
    ]
    for start in range(0, len(keys), EXPIRE_CHUNK):
        await asyncio.gather(
            *(
                worker.send(SIGNALS, key, {"op": "expire", "now": now})
                for key in keys[start : start + EXPIRE_CHUNK]
            )
        )
