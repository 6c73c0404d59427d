"""Table ``sequences`` (key: conversation_id): the last seq handed out and recent idempotency keys.

Owned by the router. A ``message.send`` changes exactly this one row, so the new seq and the
``(sender, client_msg_id) → seq`` key reach the changelog as ONE record: a command replayed after
a crash finds either the old row (and computes the very same message again) or the new row (and
repeats the original ack). Two rows written apart could hand one seq to two messages.
"""

from __future__ import annotations

from typing import TypedDict

TABLE = "sequences"


class SequenceRow(TypedDict):
    last_seq: int
    last_ts: int
    # "sender\x00client_msg_id" -> [seq, ts], oldest first (JSON objects keep insertion order).
    recent: dict[str, list[int]]


def empty() -> SequenceRow:
    return SequenceRow(last_seq=0, last_ts=0, recent={})


def dedup_key(sender: str, client_msg_id: str) -> str:
    return f"{sender}\x00{client_msg_id}"


def lookup(row: SequenceRow, sender: str, client_msg_id: str) -> tuple[int, int] | None:
    hit = row["recent"].get(dedup_key(sender, client_msg_id))
    return (hit[0], hit[1]) if hit else None


def assign(
    row: SequenceRow, sender: str, client_msg_id: str, at: int, window: int
) -> tuple[SequenceRow, int, int]:
    """Hand out the next seq. ``at`` is the command's record timestamp, so a replay computes the
    same ``ts``; it never goes backwards within a conversation even if edge clocks disagree."""
    seq = row["last_seq"] + 1
    ts = max(at, row["last_ts"])
    recent = dict(row["recent"])
    recent[dedup_key(sender, client_msg_id)] = [seq, ts]
    while len(recent) > window:
        del recent[next(iter(recent))]
    return SequenceRow(last_seq=seq, last_ts=ts, recent=recent), seq, ts
