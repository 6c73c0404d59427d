"""Table ``spam_senders`` (key: user_id): what a sender sent lately, and which signatures they
spread (sent to many conversations).

Owned by the spam-senders agent (``topologies/spam.py``), which reads ``chat.spam-signals``
keyed by sender: one event per message that has a signature (a text band, a link) or whose
sender is a new account. Spam is a sender sending one thing to many conversations, so this is
where it is first seen, at one row write per message; only what a sender *spreads* goes on to
``spam-campaigns`` (keyed by signature), where senders are counted together.

- **Spreading**: a signature the sender put in ``conversations_per_sender`` distinct
  conversations within the window. The sightings so far are forwarded at once, and every later
  one as it comes, until the sender has not sent it for a window.
- **Burst** (a new account only): it wrote to ``burst_conversations`` conversations within the
  burst window: one verdict for the message that crossed the line, then none until a burst
  window has passed.

Pure, deterministic (times are the messages' ``ts``), idempotent: one sender's messages of one
conversation arrive in seq order, so a seq at or below the last one seen from that
conversation is a repeat. Bounded: ``max_entries`` messages, as many conversations remembered
for repeats, ``MAX_SPREADING`` signatures. Rows quiet for a window are deleted by ``expire``
events (see ``quiet``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from tables.spam_campaigns import Limits, Sighting

TABLE = "spam_senders"
MAX_SPREADING = 50


class Sent(TypedDict):
    conversation_id: str
    seq: int
    ts: int
    signatures: list[str]


class SenderRow(TypedDict):
    recent: list[Sent]  # within the window, oldest first
    spreading: dict[str, int]  # signature -> when the sender last sent it (ts)
    last_seq: dict[str, int]  # conversation -> the highest seq seen (repeats)
    burst_until: int  # no burst verdict before this ts


@dataclass(frozen=True)
class SenderVerdict:
    spread: dict[str, list[Sighting]]  # signature -> sightings to forward to spam-campaigns
    burst: dict[str, object] | None  # the evidence of a burst, for this message


def empty() -> SenderRow:
    return SenderRow(recent=[], spreading={}, last_seq={}, burst_until=0)


def latest_ts(row: SenderRow) -> int:
    return max([0, *(s["ts"] for s in row["recent"]), *row["spreading"].values()])


def quiet(row: SenderRow, now: int, limits: Limits) -> bool:
    """Nothing sent for a whole window before ``now`` (ms): nothing in the row counts any more."""
    return now - latest_ts(row) > limits.window_ms


def sight(
    row: SenderRow, sender: str, sent: Sent, new_account: bool, limits: Limits
) -> tuple[SenderRow, SenderVerdict | None]:
    """The row with ``sent`` counted (unchanged for a repeat), and what it found."""
    cid, ts = sent["conversation_id"], sent["ts"]
    if row["last_seq"].get(cid, 0) >= sent["seq"]:
        return row, None
    last_seq = {c: s for c, s in row["last_seq"].items() if c != cid}
    last_seq[cid] = sent["seq"]  # re-inserted: the dict's order is recency, the oldest go first
    while len(last_seq) > limits.max_entries:
        del last_seq[next(iter(last_seq))]
    recent = [s for s in row["recent"] if ts - s["ts"] <= limits.window_ms]
    recent.append(sent)
    del recent[: -limits.max_entries]
    spreading = {sig: at for sig, at in row["spreading"].items() if ts - at <= limits.window_ms}

    spread: dict[str, list[Sighting]] = {}
    for signature in sent["signatures"]:
        if signature in spreading:
            spread[signature] = [_sighting(sender, sent)]
        else:
            mine = [s for s in recent if signature in s["signatures"]]
            if len({s["conversation_id"] for s in mine}) >= limits.conversations_per_sender:
                spread[signature] = [_sighting(sender, s) for s in mine]
        if signature in spread:
            spreading.pop(signature, None)
            spreading[signature] = ts
    while len(spreading) > MAX_SPREADING:
        del spreading[next(iter(spreading))]

    burst: dict[str, object] | None = None
    burst_until = row["burst_until"]
    if new_account and ts >= burst_until:
        lately = [s for s in recent if ts - s["ts"] <= limits.burst_window_ms]
        conversations = {s["conversation_id"] for s in lately}
        if len(conversations) >= limits.burst_conversations:
            burst = {
                "since": lately[0]["ts"],
                "conversations": len(conversations),
                "messages": len(lately),
                "sample": [[s["conversation_id"], s["seq"]] for s in lately[:5]],
            }
            burst_until = ts + limits.burst_window_ms
    new = SenderRow(recent=recent, spreading=spreading, last_seq=last_seq, burst_until=burst_until)
    if not spread and burst is None:
        return new, None
    return new, SenderVerdict(spread, burst)


def _sighting(sender: str, sent: Sent) -> Sighting:
    return Sighting(
        conversation_id=sent["conversation_id"], seq=sent["seq"], sender=sender, ts=sent["ts"]
    )
