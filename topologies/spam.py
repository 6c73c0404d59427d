"""Spam detection in three stages, because a campaign spans conversations and ``chat.messages``
is keyed by conversation (docs/moderation.md#spam-detection):

    chat.messages ──▶ detectors ──▶ chat.spam-signals (key: sender) ──▶ spam-senders
                         │                                                  │  table spam_senders
                         └──▶ chat.commands (link_only)      chat.commands ◀┤  (burst: flag)
                                                                            ▼
                              chat.commands (spam: redact) ◀── spam-campaigns ◀── chat.spam-spreads
                                                        table spam_campaigns      (key: signature)

1. ``signal_messages``, in the ``detectors`` agent (``topologies/detectors.py``), computes each
   message's signatures (``topologies/signatures.py``: text bands and links) and sends one event
   per message, keyed by its sender, bundled per partition. A new account's link-only message
   is flagged here: it needs no other message.
2. ``spam-senders`` keeps one row per sender (``tables/spam_senders.py``): what they sent where
   within the window. A signature the sender put in many conversations is *spread*: its
   sightings go on, keyed by the signature. A new account's burst is flagged here.
3. ``spam-campaigns`` keeps one row per spread signature (``tables/spam_campaigns.py``). When the
   senders spreading it reach enough conversations together it decides all their sightings,
   then each later one as it comes.

Normal traffic costs one event and one row write per message (stage 2); stage 3 sees only what
someone spreads. Both tables' timers delete quiet rows through ``expire`` events, so only the
owner of a row ever changes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from chat.settings import Settings
from tables import spam_campaigns, spam_senders
from tables.spam_campaigns import Limits
from tables.spam_senders import Sent
from topologies import decisions, signatures
from topologies.batch import Batch, Event
from topologies.timers import Worker

SOURCE = "spam"
SIGNALS = "spam-signals"
SPREADS = "spam-spreads"
SENDERS = spam_senders.TABLE
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


# --------------------------------------------------------------------------- 1. signatures


def signal_messages(batch: Batch, events: list[Event]) -> None:
    messages = [event.value for event in events if decisions.judged(event.value)]
    analysed = [signatures.analyse(m["body"]) for m in messages]
    bands = signatures.text_signatures(
        [folded for folded, _ in analysed], batch.settings.spam_min_text_chars
    )
    for message, (folded, links), texts in zip(messages, analysed, bands, strict=True):
        new_account = bool(message.get("new_account"))
        if new_account and signatures.is_link_only(folded, links):
            evidence = {"links": [url[:MAX_URL] for url in links[:MAX_LINKS]]}
            decisions.send(batch, message, "flag", "link_only", SOURCE, evidence, strike=False)
        found = texts + [f"l:{url[:MAX_URL]}" for url in links[:MAX_LINKS]]
        if not found and not new_account:
            continue  # nothing to compare, and no burst to count
        batch.emit_bundled(
            SIGNALS,
            message["sender"],
            {
                "op": "signal",
                "conversation_id": message["conversation_id"],
                "seq": message["seq"],
                "ts": message["ts"],
                "signatures": found,
                "new_account": new_account,
            },
        )


# --------------------------------------------------------------------------- 2. spam-senders


def track_senders(batch: Batch, events: list[Event]) -> None:
    bounds = limits(batch.settings)
    for event in events:
        value: dict[str, Any] = event.value
        row = batch.row(SENDERS, event.key)
        if value.get("op") == "expire":
            if row is not None and spam_senders.quiet(row, value["now"], bounds):
                batch.stage_row(SENDERS, event.key, None)
            continue
        sent = Sent(
            conversation_id=value["conversation_id"],
            seq=value["seq"],
            ts=value["ts"],
            signatures=value["signatures"],
        )
        new, verdict = spam_senders.sight(
            row or spam_senders.empty(), event.key, sent, value["new_account"], bounds
        )
        if new is not row:
            batch.stage_row(SENDERS, event.key, new)
        if verdict is None:
            continue
        for signature, sightings in verdict.spread.items():
            batch.emit_bundled(SPREADS, signature, {"op": "spread", "sightings": sightings})
        if verdict.burst is not None:
            message = {**sent, "sender": event.key}
            decisions.send(batch, message, "flag", "burst", SOURCE, verdict.burst, strike=False)


# --------------------------------------------------------------------------- 3. spam-campaigns


def find_campaigns(batch: Batch, events: list[Event]) -> None:
    bounds = limits(batch.settings)
    for event in events:
        value: dict[str, Any] = event.value
        row = batch.row(CAMPAIGNS, event.key)
        if value.get("op") == "expire":
            if row is not None and spam_campaigns.quiet(row, value["now"], bounds):
                batch.stage_row(CAMPAIGNS, event.key, None)
            continue
        new, verdict = spam_campaigns.spread(
            row or spam_campaigns.empty(), value["sightings"], bounds
        )
        if new is not row:
            batch.stage_row(CAMPAIGNS, event.key, new)
        if verdict is None:
            continue
        kind = "link" if event.key.startswith("l:") else "text"
        evidence = {"signature": event.key[:MAX_URL], "kind": kind, **verdict.evidence}
        for sighting in verdict.decide:
            decisions.send(batch, sighting, "redact", "spam", SOURCE, evidence, strike=True)


# --------------------------------------------------------------------------- timers


async def expire_quiet_senders(worker: Worker, now: int) -> None:
    bounds = limits(worker.settings)
    await _expire(worker, SIGNALS, SENDERS, now, lambda row: spam_senders.quiet(row, now, bounds))


async def expire_quiet_campaigns(worker: Worker, now: int) -> None:
    bounds = limits(worker.settings)
    await _expire(
        worker, SPREADS, CAMPAIGNS, now, lambda row: spam_campaigns.quiet(row, now, bounds)
    )


async def _expire(
    worker: Worker, topic: str, table: str, now: int, is_quiet: Callable[[Any], bool]
) -> None:
    """Ask the owner of each quiet row to delete it (an ``expire`` event through the row's own
    partition). Rows of standby partitions are seen too: a duplicate is harmless."""
    keys = [key for key, row in worker.rows(table) if row and is_quiet(row)]
    for start in range(0, len(keys), EXPIRE_CHUNK):
        await asyncio.gather(
            *(
                worker.send(topic, key, {"op": "expire", "now": now})
                for key in keys[start : start + EXPIRE_CHUNK]
            )
        )
