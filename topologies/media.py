"""Media agent: ``chat.media-commands`` (key: media id) → the ``media`` table → ``chat.media``.

It decides each upload's state (docs/media.md) and does no I/O: the media processor
(``media/processor.py``) reads the bytes and sends its verdict here as a command, so a table
rebuild replays verdicts and never re-runs the verification.

    chat.media-commands ──▶ media agent ──▶ chat.media      (latest state: processor, sink)
                               │        └─▶ Redis chat:media:<id> (edges resolve attachments)
                               └── table media (changelog <app>-media-changelog)
"""

from __future__ import annotations

import logging

from chat.keys import media_key
from tables import media
from topologies.batch import Batch, Event
from topologies.timers import Worker

log = logging.getLogger("chat.media")

MEDIA = media.TABLE


def apply_commands(batch: Batch, events: list[Event]) -> None:
    """Apply each command; each media that changed is published once, with its final state.
    The Redis hash is written before ``chat.media`` (the runtime's order), so an edge that
    hears of a ready media can resolve it."""
    ttl_ms = batch.settings.media_unreferenced_ttl_s * 1000
    changed: set[str] = set()
    for event in events:
        row = batch.row(MEDIA, event.key)
        try:
            new = media.apply(row, event.value, event.at, ttl_ms)
        except (KeyError, TypeError, ValueError):
            # A malformed command must not stop the partition; it can never apply later either.
            log.exception("media command skipped", extra={"media_id": event.key})
            continue
        if new is not row and new != row:
            batch.stage_row(MEDIA, event.key, new)
            changed.add(event.key)
    for media_id in sorted(changed):
        state = batch.row(MEDIA, media_id)["state"]
        batch.cache(media_key(media_id), media.cache_fields(state))
        batch.emit("media", media_id, state)


async def expire_media(worker: Worker, now: int) -> None:
    """Uploads past their URL's end and ready media never attached become ``media.expire``
    commands (the agent alone changes rows); standbys may send one too, which is harmless."""
    ttl_ms = worker.settings.media_unreferenced_ttl_s * 1000
    for media_id, row in worker.rows(MEDIA):
        if media.due(row, now, ttl_ms):
            await worker.send(
                "media-commands", media_id, {"op": "media.expire", "media_id": media_id}
            )
