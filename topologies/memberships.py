"""Who is in which conversation, as one Redis set per user (``chat:member-of:<user>``, the ids
of the user's conversations), for the edges' presence visibility: a user's presence is visible
only to users whose set intersects theirs (docs/protocol.md, "presence").

The router writes the sets with every conversation change, as cache writes of its batch: the
runtime writes them before the ``conversation`` events go out, so an edge that delivers such an
event (and the client that reacts to it) already reads the new membership. Redis holds nothing
the tables cannot rebuild: the timer here writes every membership this worker holds again when
Redis restarts empty, and writes again the set writes Redis did not take (topologies/cache.py).
"""

from __future__ import annotations

import logging

from chat.keys import member_of_key
from tables import conversations
from topologies.batch import Batch
from topologies.timers import Worker

log = logging.getLogger("chat.memberships")


def cache(batch: Batch, conversation_id: str, members: list[str], removed: list[str]) -> None:
    """The conversation's membership after a change. Every member is written, not only the
    added ones: idempotent, and a write lost earlier is repaired by the next change."""
    for member in members:
        batch.cache_member(member_of_key(member), conversation_id, True)
    for member in removed:
        batch.cache_member(member_of_key(member), conversation_id, False)


_redis_run_id: str | None = None


async def rebuild_cache(worker: Worker, now_ms: int) -> None:
    """When this worker starts, or Redis restarts empty (its run_id changes), write the
    membership of every conversation this worker holds; otherwise write the owed set writes."""
    global _redis_run_id
    try:
        run_id = str((await worker.redis.info("server"))["run_id"])
    except Exception:
        return  # Redis down: presence look-ups answer `unavailable` meanwhile
    if run_id == _redis_run_id:
        await worker.flush_cache()
        return
    writes = [
        (member_of_key(member), cid)
        for cid, row in worker.rows(conversations.TABLE)
        if row
        for member in row["members"]
    ]
    if writes:
        log.info("rebuilding the membership cache", extra={"memberships": len(writes)})
        await worker.add_to_sets(writes)
    _redis_run_id = run_id
