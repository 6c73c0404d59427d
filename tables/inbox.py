"""Table ``inbox`` (key: user_id): per conversation of the user, its last seq, the user's delivered
cursor and the messages no device of the user has confirmed with ``message.delivered``.

Owned by the sessions agent. It answers ``sync``: recent messages from here, older ones (beyond
what the inbox keeps) are fetched by the edge from the store. Every update is a max or a set
insert by seq, so replaying an input changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

from chat.records import Message, dumps, redacted_copy

TABLE = "inbox"


class ConversationInbox(TypedDict):
    last_seq: int
    delivered: int
    pending: list[Message]  # ascending by seq, all > delivered


InboxRow = dict[str, ConversationInbox]


@dataclass(frozen=True)
class Limits:
    """How much of the pending messages a row keeps. Anything beyond is still in the store,
    and sync fetches it from there; the byte budget keeps every row (and its changelog record)
    far below the broker's record limit, whatever a sender puts in the messages."""

    per_conversation: int
    bytes: int


def _size(message: Message) -> int:
    return len(dumps(message))


def _entry(row: InboxRow, conversation_id: str) -> ConversationInbox:
    current = row.get(conversation_id)
    if current is None:
        return ConversationInbox(last_seq=0, delivered=0, pending=[])
    return ConversationInbox(
        last_seq=current["last_seq"],
        delivered=current["delivered"],
        pending=list(current["pending"]),
    )


def join(row: InboxRow, conversation_id: str, last_seq: int) -> InboxRow:
    entry = _entry(row, conversation_id)
    entry["last_seq"] = max(entry["last_seq"], last_seq)
    return {**row, conversation_id: entry}


def leave(row: InboxRow, conversation_id: str) -> InboxRow:
    return {cid: e for cid, e in row.items() if cid != conversation_id}


def add_message(row: InboxRow, message: Message, limits: Limits) -> InboxRow:
    cid = message["conversation_id"]
    entry = _entry(row, cid)
    seq = message["seq"]
    entry["last_seq"] = max(entry["last_seq"], seq)
    if seq <= entry["delivered"] or any(m["seq"] == seq for m in entry["pending"]):
        return {**row, cid: entry}
    entry["pending"].append(message)
    entry["pending"].sort(key=lambda m: m["seq"])
    # Keep the newest; anything older is in the store and sync fetches it from there.
    del entry["pending"][: max(len(entry["pending"]) - limits.per_conversation, 0)]
    new = {**row, cid: entry}
    _fit_bytes(new, limits.bytes)
    return new


def _fit_bytes(row: InboxRow, budget: int) -> None:
    """Drop the oldest pending messages, across conversations, until the row fits ``budget``.

    Each conversation loses a prefix of its pending list, so what is left is still the newest
    contiguous run, and sync fetches everything before it from the store. Measuring costs
    about what writing the row to its changelog costs anyway."""
    total = sum(_size(m) for e in row.values() for m in e["pending"])
    while total > budget:
        holding = [cid for cid, e in row.items() if e["pending"]]
        if not holding:
            return
        oldest_cid = min(holding, key=lambda cid: row[cid]["pending"][0]["ts"])
        entry = _entry(row, oldest_cid)
        total -= _size(entry["pending"].pop(0))
        row[oldest_cid] = entry


def mark_delivered(row: InboxRow, conversation_id: str, seq: int) -> InboxRow:
    if conversation_id not in row:
        return row
    entry = _entry(row, conversation_id)
    if seq <= entry["delivered"]:
        return row
    entry["delivered"] = seq
    entry["pending"] = [m for m in entry["pending"] if m["seq"] > seq]
    return {**row, conversation_id: entry}


def redact(row: InboxRow, conversation_id: str, seq: int, reason: str) -> InboxRow:
    """A pending message hidden by moderation becomes its placeholder (same seq, no body)."""
    entry = row.get(conversation_id)
    if entry is None or not any(m["seq"] == seq for m in entry["pending"]):
        return row
    new = _entry(row, conversation_id)
    new["pending"] = [redacted_copy(m, reason) if m["seq"] == seq else m for m in new["pending"]]
    return {**row, conversation_id: new}


def restore(row: InboxRow, message: Message) -> InboxRow:
    """A pending placeholder becomes the message again (a moderator restored it)."""
    cid, seq = message["conversation_id"], message["seq"]
    entry = row.get(cid)
    if entry is None or not any(m["seq"] == seq for m in entry["pending"]):
        return row
    new = _entry(row, cid)
    new["pending"] = [message if m["seq"] == seq else m for m in new["pending"]]
    return {**row, cid: new}


def sync_reply(
    row: InboxRow, cursors: dict[str, int] | None, page: int, max_bytes: int
) -> tuple[list[Message], list[list[Any]], dict[str, int], bool]:
    """What a ``sync`` returns: (messages from the inbox, ranges the edge must fetch from the
    store as ``[conversation_id, first_seq, last_seq]``, ``{conversation_id: last_seq}``,
    truncated). Without cursors, the user's delivered cursor is the starting point; a
    conversation missing from the cursors starts at 0. Once the messages carried reach
    ``max_bytes``, further conversations are answered with a fetch range only, so that the
    answer always fits in one record.
    """
    messages: list[Message] = []
    fetch: list[list[Any]] = []
    last_seqs: dict[str, int] = {}
    truncated = False
    carried = 0
    for cid, entry in row.items():
        last_seqs[cid] = entry["last_seq"]
        cursor = entry["delivered"] if cursors is None else cursors.get(cid, 0)
        if entry["last_seq"] <= cursor:
            continue
        upto = min(entry["last_seq"], cursor + page)
        if upto < entry["last_seq"]:
            truncated = True
        wanted = [m for m in entry["pending"] if cursor < m["seq"] <= upto]
        size = sum(_size(m) for m in wanted)
        if carried + size > max_bytes:
            wanted = []
        carried += size if wanted else 0
        first_held = wanted[0]["seq"] if wanted else upto + 1
        if first_held > cursor + 1:
            fetch.append([cid, cursor + 1, first_held - 1])
        messages.extend(wanted)
    return messages, fetch, last_seqs, truncated
