"""Table ``media`` (key: media id): each upload's life, from its request to ready, rejected,
expired or deleted.

Owned by the media agent (``topologies/media.py``). The transitions are pure and take their
time from the input record, so a rebuild from ``chat.media-commands`` reaches the same rows;
every one is a no-op unless the row is in the state it expects, so a repeated command (an edge
retry, a batch replayed after a crash, a verdict produced twice) changes nothing.

    pending ──uploaded──▶ verifying ──verified──▶ ready ──(never referenced)──▶ deleted
       │                      └──────rejected──▶ rejected
       └──(past expires_at)──▶ expired

Rows in a final state are kept (about 200 bytes each): a late or repeated command for them
must find them, not an empty key that a repeated request would bring back to life.
"""

from __future__ import annotations

from typing import Any, TypedDict

from chat.records import MediaState

TABLE = "media"
PENDING, VERIFYING, READY = "pending", "verifying", "ready"
REJECTED, EXPIRED, DELETED = "rejected", "expired", "deleted"
FINAL = (REJECTED, EXPIRED, DELETED)


class MediaRow(TypedDict):
    state: MediaState
    expires_at: int  # ms: a pending upload expires after it
    ready_at: int  # ms, 0 until ready
    referenced: bool  # attached to at least one message


def requested(row: MediaRow | None, cmd: dict[str, Any], at: int) -> MediaRow | None:
    if row is not None:
        return row
    state = MediaState(
        id=cmd["media_id"],
        owner=cmd["user"],
        status=PENDING,
        name=cmd["name"],
        type=cmd["type"],
        size=int(cmd["size"]),
        width=0,
        height=0,
        thumbnail=False,
        placeholder="",
        reason="",
        created_at=at,
        updated_at=at,
    )
    return MediaRow(state=state, expires_at=int(cmd["expires_at"]), ready_at=0, referenced=False)


def _with(row: MediaRow, at: int, **changes: Any) -> MediaRow:
    state = MediaState(**{**row["state"], **changes, "updated_at": at})  # type: ignore[typeddict-item]
    return MediaRow(
        state=state,
        expires_at=row["expires_at"],
        ready_at=at if changes.get("status") == READY else row["ready_at"],
        referenced=row["referenced"],
    )


def uploaded(row: MediaRow | None, cmd: dict[str, Any], at: int) -> MediaRow | None:
    """Only the owner completes an upload, and only before its URL expired."""
    if row is None or row["state"]["status"] != PENDING:
        return row
    if cmd["user"] != row["state"]["owner"] or at > row["expires_at"]:
        return row
    return _with(row, at, status=VERIFYING)


def verified(row: MediaRow | None, cmd: dict[str, Any], at: int) -> MediaRow | None:
    if row is None or row["state"]["status"] != VERIFYING:
        return row
    return _with(
        row,
        at,
        status=READY,
        type=cmd["type"],
        size=int(cmd["size"]),
        width=int(cmd["width"]),
        height=int(cmd["height"]),
        thumbnail=bool(cmd["thumbnail"]),
        placeholder=cmd["placeholder"],
    )


def rejected(row: MediaRow | None, cmd: dict[str, Any], at: int) -> MediaRow | None:
    if row is None or row["state"]["status"] != VERIFYING:
        return row
    return _with(row, at, status=REJECTED, reason=cmd["reason"])


def referenced(row: MediaRow | None, cmd: dict[str, Any], at: int) -> MediaRow | None:
    if row is None or row["referenced"] or row["state"]["status"] != READY:
        return row
    return MediaRow(
        state=row["state"], expires_at=row["expires_at"], ready_at=row["ready_at"], referenced=True
    )


def due(row: MediaRow | None, now: int, unreferenced_ttl_ms: int) -> str:
    """What expiry would make of the row at ``now``: its final status, or "" (not due)."""
    if row is None:
        return ""
    status = row["state"]["status"]
    if status == PENDING and now > row["expires_at"]:
        return EXPIRED
    if status == READY and not row["referenced"] and now > row["ready_at"] + unreferenced_ttl_ms:
        return DELETED
    return ""


def expire(
    row: MediaRow | None, cmd: dict[str, Any], at: int, unreferenced_ttl_ms: int
) -> MediaRow | None:
    final = due(row, at, unreferenced_ttl_ms)
    if row is None or not final:
        return row
    reason = "upload not completed in time" if final == EXPIRED else "never attached to a message"
    return _with(row, at, status=final, reason=reason)


def apply(
    row: MediaRow | None, cmd: dict[str, Any], at: int, unreferenced_ttl_ms: int
) -> MediaRow | None:
    """The row after one command (the same row when the command changes nothing)."""
    op = cmd.get("op")
    if op == "media.requested":
        return requested(row, cmd, at)
    if op == "media.uploaded":
        return uploaded(row, cmd, at)
    if op == "media.verified":
        return verified(row, cmd, at)
    if op == "media.rejected":
        return rejected(row, cmd, at)
    if op == "media.referenced":
        return referenced(row, cmd, at)
    if op == "media.expire":
        return expire(row, cmd, at, unreferenced_ttl_ms)
    raise ValueError(f"unknown media command {op!r}")


def cache_fields(state: MediaState) -> dict[str, str | int]:
    """The Redis hash the edges read (values as Redis stores them)."""
    return {k: int(v) if isinstance(v, bool) else v for k, v in state.items()}  # type: ignore[misc]
