"""Table ``spam_campaigns`` (key: a signature from ``topologies/signatures.py``): who sent it to
which conversations lately, and whether it is a campaign.

Owned by the spam-campaigns agent (``topologies/spam.py``), which reads ``chat.spam-signals``
keyed by signature, so that every message sharing a text band, a link or (for a new account)
a sender meets in one row, whatever conversation it was sent to.

- **Campaign** (a text or a link): a sender *spreads* a signature when they sent it to
  ``conversations_per_sender`` distinct conversations within the window; once the spreading
  senders together reached ``min_conversations`` conversations, every message of theirs in the
  window is decided, and so is every later message with that signature (with its sender's
  earlier ones in the window) until it has been quiet for a window. People who share a
  popular link send it to one or two conversations each and never spread it.
- **Burst** (the ``sender`` signature of a new account): the account wrote to
  ``burst_conversations`` conversations within the burst window: one decision, for the message
  that crossed the line, then none until the burst has been quiet for a window.

Pure, deterministic (times are the messages' ``ts``), idempotent: a conversation's messages
reach a row in seq order, so a seq at or below the last one seen from that conversation is a
repeat and changes nothing. A row is bounded: ``max_entries`` sightings, 4 x that many
conversations remembered for repeats (beyond that a repeat may be decided twice; the router
applies a decision on a message once). Rows quiet for a window are deleted by ``expire``
events (the agent's timer sends them; the row's owner deletes it if it is still quiet), so
the table holds only the signatures of recent minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict

TABLE = "spam_campaigns"

Kind = Literal["text", "link", "sender"]
# Campaign senders and sample messages a row keeps for the evidence.
MAX_SENDERS = 20
MAX_SAMPLES = 5


class Sighting(TypedDict):
    conversation_id: str
    seq: int
    sender: str
    ts: int


class Campaign(TypedDict):
    since: int  # ts of the message that made it one
    last_ts: int  # the latest message seen: it ends a window after this
    conversations: int  # reached when it was detected
    messages: int  # decided (a burst: sent in it)
    senders: list[str]  # the first MAX_SENDERS


class CampaignRow(TypedDict):
    kind: Kind
    recent: list[Sighting]  # within the window, oldest first, not decided
    last_seq: dict[str, int]  # conversation -> the highest seq seen (repeats)
    campaign: Campaign | None


@dataclass(frozen=True)
class Limits:
    window_ms: int
    min_conversations: int
    conversations_per_sender: int
    burst_window_ms: int
    burst_conversations: int
    max_entries: int


@dataclass(frozen=True)
class Verdict:
    """What a sighting decided: the messages to act on (the new campaign's, or the one that
    crossed a burst line, or the sighting itself in a running campaign) and the evidence."""

    decide: list[Sighting]
    evidence: dict[str, object]


def empty(kind: Kind) -> CampaignRow:
    return CampaignRow(kind=kind, recent=[], last_seq={}, campaign=None)


def window_of(row: CampaignRow, limits: Limits) -> int:
    return limits.burst_window_ms if row["kind"] == "sender" else limits.window_ms


def latest_ts(row: CampaignRow) -> int:
    campaign = row["campaign"]
    last = campaign["last_ts"] if campaign else 0
    return max([last, *(s["ts"] for s in row["recent"])])


def sight(
    row: CampaignRow, sighting: Sighting, limits: Limits
) -> tuple[CampaignRow, Verdict | None]:
    """The row with ``sighting`` counted (unchanged for a repeat), and what it decided."""
    cid, seq = sighting["conversation_id"], sighting["seq"]
    if row["last_seq"].get(cid, 0) >= seq:
        return row, None
    window = window_of(row, limits)
    last_seq = {c: s for c, s in row["last_seq"].items() if c != cid}
    last_seq[cid] = seq  # re-inserted: the dict's order is recency, the oldest go first
    while len(last_seq) > 4 * limits.max_entries:
        del last_seq[next(iter(last_seq))]
    campaign = row["campaign"]
    if campaign is not None and sighting["ts"] - campaign["last_ts"] > window:
        campaign = None  # quiet for a window: over
    recent = [s for s in row["recent"] if sighting["ts"] - s["ts"] <= window]
    if campaign is not None:
        return _continue(row, campaign, recent, last_seq, sighting)
    recent.append(sighting)
    del recent[: -limits.max_entries]
    new = CampaignRow(kind=row["kind"], recent=recent, last_seq=last_seq, campaign=None)
    if row["kind"] == "sender":
        return _burst(new, sighting, limits)
    return _campaign(new, sighting, limits)


def _continue(
    row: CampaignRow,
    campaign: Campaign,
    recent: list[Sighting],
    last_seq: dict[str, int],
    sighting: Sighting,
) -> tuple[CampaignRow, Verdict | None]:
    """A sighting while the signature is a campaign: decided now, with the sender's earlier
    sightings in the window that were not decided yet (a sender who had not spread it when
    the campaign was detected)."""
    sender = sighting["sender"]
    senders = campaign["senders"]
    if sender not in senders and len(senders) < MAX_SENDERS:
        senders = [*senders, sender]
    if row["kind"] == "sender":
        earlier: list[Sighting] = []
    else:
        earlier = [s for s in recent if s["sender"] == sender]
        recent = [s for s in recent if s["sender"] != sender]
    running = Campaign(
        since=campaign["since"],
        last_ts=sighting["ts"],
        conversations=campaign["conversations"],
        messages=campaign["messages"] + len(earlier) + 1,
        senders=senders,
    )
    new = CampaignRow(kind=row["kind"], recent=recent, last_seq=last_seq, campaign=running)
    if row["kind"] == "sender":
        return new, None  # a burst is flagged once
    return new, Verdict([*earlier, sighting], _evidence(running))


def _campaign(
    row: CampaignRow, sighting: Sighting, limits: Limits
) -> tuple[CampaignRow, Verdict | None]:
    recent = row["recent"]
    mine = {s["conversation_id"] for s in recent if s["sender"] == sighting["sender"]}
    if len(mine) < limits.conversations_per_sender:
        return row, None  # only a sender who just spread it can make it a campaign
    by_sender: dict[str, set[str]] = {}
    for s in recent:
        by_sender.setdefault(s["sender"], set()).add(s["conversation_id"])
    spreading = sorted(
        u for u, cs in by_sender.items() if len(cs) >= limits.conversations_per_sender
    )
    reached = set().union(*(by_sender[u] for u in spreading))
    if len(reached) < limits.min_conversations:
        return row, None
    decided = [s for s in recent if s["sender"] in spreading]
    campaign = Campaign(
        since=sighting["ts"],
        last_ts=sighting["ts"],
        conversations=len(reached),
        messages=len(decided),
        senders=spreading[:MAX_SENDERS],
    )
    rest = [s for s in recent if s["sender"] not in spreading]
    new = CampaignRow(kind=row["kind"], recent=rest, last_seq=row["last_seq"], campaign=campaign)
    return new, Verdict(decided, _evidence(campaign, decided))


def _burst(
    row: CampaignRow, sighting: Sighting, limits: Limits
) -> tuple[CampaignRow, Verdict | None]:
    recent = row["recent"]
    conversations = {s["conversation_id"] for s in recent}
    if len(conversations) < limits.burst_conversations:
        return row, None
    burst = Campaign(
        since=recent[0]["ts"],
        last_ts=sighting["ts"],
        conversations=len(conversations),
        messages=len(recent),
        senders=[sighting["sender"]],
    )
    new = CampaignRow(kind=row["kind"], recent=[], last_seq=row["last_seq"], campaign=burst)
    return new, Verdict([sighting], _evidence(burst, recent))


def _evidence(campaign: Campaign, sample: list[Sighting] | None = None) -> dict[str, object]:
    """Small (well below 1 KB): the counts, a few senders and a few of the messages."""
    evidence: dict[str, object] = {
        "since": campaign["since"],
        "conversations": campaign["conversations"],
        "messages": campaign["messages"],
        "senders": campaign["senders"][:MAX_SAMPLES],
    }
    if sample:
        evidence["sample"] = [[s["conversation_id"], s["seq"]] for s in sample[:MAX_SAMPLES]]
    return evidence


def quiet(row: CampaignRow, now: int, limits: Limits) -> bool:
    """Whether nothing happened in the row for a whole window before ``now`` (ms): it can
    be deleted, as nothing in it counts any more."""
    return now - latest_ts(row) > window_of(row, limits)
