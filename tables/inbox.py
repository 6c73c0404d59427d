"""Table ``inbox`` (key: user_id): per conversation of the user, its last seq, the user's delivered
cursor and the messages no device of the user has confirmed with ``message.delivered``.

Owned by the sessions agent. It answers ``sync``: recent messages from here, older ones (beyond
what the inbox keeps) are fetched by the edge from the store. Every update is a max or a set
insert by seq, so replaying an input changes nothing.
"""

from __future__ import annotations

from typing import Any, TypedDict

from chat.records import Message

TABLE = "inbox"


class ConversationInbox(TypedDict):
    last_seq: int
    delivered: int
    pending: list[Message]  # ascending by seq, all > delivered


InboxRow = dict[str, ConversationInbox]


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


def add_message(row: InboxRow, message: Message, keep: int) -> InboxRow:
    cid = message["conversation_id"]
    entry = _entry(row, cid)
    seq = message["seq"]
    entry["last_seq"] = max(entry["last_seq"], seq)
    if seq > entry["delivered"] and all(m["seq"] != seq for m in entry["pending"]):
        entry["pending"].append(message)
        entry["pending"].sort(key=lambda m: m["seq"])
        # Keep the newest; anything older is in the store and sync fetches it from there.
        del entry["pending"][: max(len(entry["pending"]) - keep, 0)]
    return {**row, cid: entry}


def mark_delivered(row: InboxRow, conversation_id: str, seq: int) -> InboxRow:
    if conversation_id not in row:
        return row
    entry = _entry(row, conversation_id)
    if seq <= entry["delivered"]:
        return row
    entry["delivered"] = seq
    entry["pending"] = [m for m in entry["pending"] if m["seq"] > seq]
    return {**row, conversation_id: entry}


def sync_reply(
    row: InboxRow, cursors: dict[str, int] | None, page: int
) -> tuple[list[Message], list[list[Any]], dict[str, int], bool]:
    """What a ``sync`` returns: (messages from the inbox, ranges the edge must fetch from the
    store as ``[conversation_id, first_seq, last_seq]``, ``{conversation_id: last_seq}``,
    truncated). Without cursors, the user's delivered cursor is the starting point; a
    conversation missing from the cursors starts at 0.
    """
    messages: list[Message] = []
    fetch: list[list[Any]] = []
    last_seqs: dict[str, int] = {}
    truncated = False
    for cid, entry in row.items():
        last_seqs[cid] = entry["last_seq"]
        cursor = entry["delivered"] if cursors is None else cursors.get(cid, 0)
        if entry["last_seq"] <= cursor:
            continue
        upto = min(entry["last_seq"], cursor + page)
        if upto < entry["last_seq"]:
            truncated = True
        wanted = [m for m in entry["pending"] if cursor < m["seq"] <= upto]
        first_held = wanted[0]["seq"] if wanted else upto + 1
        if first_held > cursor + 1:
            fetch.append([cid, cursor + 1, first_held - 1])
        messages.extend(wanted)
    return messages, fetch, last_seqs, truncated
