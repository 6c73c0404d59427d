"""Table ``activity`` (key: conversation_id): message counts per conversation and per sender.

Owned by the activity agent (``topologies/activity.py``), the example of how to add a stream
agent (docs/adding-an-agent.md). It reads the sequenced messages, so counting must survive the
at-least-once delivery of ``chat.messages``: a message is counted only if its seq is above the
last one counted, and a conversation's messages arrive in seq order, so a repeat changes nothing.
"""

from __future__ import annotations

from typing import TypedDict

from chat.records import Message

TABLE = "activity"


class ActivityRow(TypedDict):
    messages: int
    last_seq: int
    first_ts: int
    last_ts: int
    senders: dict[str, int]  # user -> messages sent


def empty() -> ActivityRow:
    return ActivityRow(messages=0, last_seq=0, first_ts=0, last_ts=0, senders={})


def count(row: ActivityRow, message: Message) -> tuple[ActivityRow, bool]:
    """The row with ``message`` counted, and whether it changed (False for a repeat)."""
    if message["seq"] <= row["last_seq"]:
        return row, False
    senders = dict(row["senders"])
    senders[message["sender"]] = senders.get(message["sender"], 0) + 1
    return (
        ActivityRow(
            messages=row["messages"] + 1,
            last_seq=message["seq"],
            first_ts=row["first_ts"] or message["ts"],
            last_ts=max(row["last_ts"], message["ts"]),
            senders=senders,
        ),
        True,
    )


def public(conversation_id: str, row: ActivityRow) -> dict[str, object]:
    """The record published on ``chat.activity``: the row plus its key and the top senders."""
    top = sorted(row["senders"].items(), key=lambda item: (-item[1], item[0]))[:10]
    return {
        "conversation_id": conversation_id,
        "messages": row["messages"],
        "last_seq": row["last_seq"],
        "first_ts": row["first_ts"],
        "last_ts": row["last_ts"],
        "senders": len(row["senders"]),
        "top_senders": [{"user": user, "messages": n} for user, n in top],
    }
