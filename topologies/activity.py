"""Activity agent: ``chat.messages`` (key: conversation_id) → ``chat.activity`` (compacted).

The example agent of docs/adding-an-agent.md: per-conversation statistics (messages, senders,
first and last message time), kept in the ``activity`` table and published as the latest state
of each conversation on a compacted topic that dashboards or other services can read.

    chat.messages ──▶ activity agent ──▶ chat.activity   (latest statistics per conversation)
                           │
                           └── table activity (changelog)
"""

from __future__ import annotations

from typing import Any

from chat import records
from tables import activity
from topologies import metrics
from topologies.app import (
    activity_table,
    activity_topic,
    app,
    deliver_topic,
    messages_topic,
    settings,
)
from topologies.outbox import Outbox


@app.agent(messages_topic, concurrency=1)
async def count_activity(stream: Any) -> None:
    async for events in stream.take_events(1000, within=settings.worker_batch_ms / 1000):
        metrics.observe_batch_age("activity", events)
        outbox = Outbox(app, deliver_topic, outputs=not settings.worker_rebuild)
        changed: set[str] = set()
        for event in events:
            message = records.loads(event.value)
            cid = message["conversation_id"]
            row = outbox.row(activity_table, cid) or activity.empty()
            new, counted = activity.count(row, message)
            if counted:
                outbox.stage_row(activity_table, cid, new)
                changed.add(cid)
        # One record per conversation and batch, not per message: the topic is compacted, and
        # its readers want the latest state.
        for cid in changed:
            outbox.produce(
                activity_topic, cid, activity.public(cid, outbox.row(activity_table, cid))
            )
        await outbox.publish_batch("activity", events)
