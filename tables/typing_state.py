"""Table ``typing`` (key: conversation_id): who is typing, when their start was last relayed and
last refreshed. Owned by the router; a worker timer turns stale entries into ``typing.expire``
commands so that only the partition's owner changes the row.
"""

from __future__ import annotations

from typing import TypedDict

TABLE = "typing"
THROTTLE_MS = 3000  # at most one relayed start per user and conversation every 3 s
EXPIRE_MS = 6000  # a start not refreshed within 6 s ends with a server-sent stop


class Typist(TypedDict):
    relayed: int
    refreshed: int


TypingRow = dict[str, Typist]


def start(row: TypingRow, user: str, at: int) -> tuple[TypingRow, bool]:
    """Record a ``start``; returns whether it is relayed (False while throttled)."""
    current = row.get(user)
    relay = current is None or at - current["relayed"] >= THROTTLE_MS
    relayed = at if relay or current is None else current["relayed"]
    new = dict(row)
    new[user] = Typist(relayed=relayed, refreshed=at)
    return new, relay


def stop(row: TypingRow, user: str) -> tuple[TypingRow, bool]:
    """Forget ``user``; returns whether they were typing (then a stop is relayed)."""
    if user not in row:
        return row, False
    new = dict(row)
    del new[user]
    return new, True


def expired(row: TypingRow, now: int) -> list[str]:
    return [user for user, t in row.items() if now - t["refreshed"] >= EXPIRE_MS]
