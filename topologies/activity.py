"""Activity agent: ``chat.messages`` (key: conversation_id) → ``chat.activity`` (compacted).

The example agent of docs/adding-an-agent.md: per-conversation statistics (messages, senders,
first and last message time), kept in the ``activity`` table and published as the latest state
of each conversation on a compacted topic that dashboards or other services can read.

    chat.messages ──▶ activity agent ──▶ chat.activity   (latest statistics per conversation)
                           │
                           └── table activity (changelog)
"""

from __future__ import annotations

from tables import activity
from topologies.batch import Batch, Event

ACTIVITY = activity.TABLE


def count_activity(batch: Batch, events: list[Event]) -> None:
    changed: set[str] = set()
    for event in events:
        cid = event.key
        row = batch.row(ACTIVITY, cid) or activity.empty()
        new, counted = activity.count(row, event.value)  # type: ignore[arg-type]
        if counted:
            batch.stage_row(ACTIVITY, cid, new)
            changed.add(cid)
    # One record per conversation and batch, not per message: the topic is compacted, and its
    # readers want the latest state.
    for cid in sorted(changed):
        batch.emit("activity", cid, activity.public(cid, batch.row(ACTIVITY, cid)))
