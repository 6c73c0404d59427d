"""Table ``sessions`` (key: user_id): the user's live sessions, which edge slot holds each, and
when the user was last seen. Owned by the sessions agent; presence is derived from it.
"""

from __future__ import annotations

from typing import TypedDict

TABLE = "sessions"


class LiveSession(TypedDict):
    slot: int
    edge: str


class SessionsRow(TypedDict):
    sessions: dict[str, LiveSession]
    last_seen: int


def empty() -> SessionsRow:
    return SessionsRow(sessions={}, last_seen=0)


def is_online(row: SessionsRow) -> bool:
    return bool(row["sessions"])


def open_session(row: SessionsRow, session: str, slot: int, edge: str, at: int) -> SessionsRow:
    sessions = dict(row["sessions"])
    sessions[session] = LiveSession(slot=slot, edge=edge)
    return SessionsRow(sessions=sessions, last_seen=max(row["last_seen"], at))


def close_session(row: SessionsRow, session: str, at: int) -> SessionsRow:
    if session not in row["sessions"]:
        return row
    sessions = {sid: s for sid, s in row["sessions"].items() if sid != session}
    return SessionsRow(sessions=sessions, last_seen=max(row["last_seen"], at))


def by_slot(row: SessionsRow, exclude: str | None = None) -> dict[int, list[str]]:
    """Session ids grouped by edge slot: one ``chat.deliver`` record per slot."""
    out: dict[int, list[str]] = {}
    for sid, live in row["sessions"].items():
        if sid != exclude:
            out.setdefault(live["slot"], []).append(sid)
    return out
