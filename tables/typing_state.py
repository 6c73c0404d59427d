"""Table ``typing`` (key: conversation_id): per user, when their ``start`` was last relayed, last
refreshed, and whether they are typing now. Owned by the router; a worker timer turns stale
entries into ``typing.expire`` commands so that only the partition's owner changes the row.
"""

from __future__ import annotations

from typing import TypedDict

TABLE = "typing"
THROTTLE_MS = 3000  # at most one relayed start per user and conversation every 3 s
EXPIRE_MS = 6000  # a start not refreshed within 6 s ends with a server-sent stop


class Typist(TypedDict):
    relayed: int
    refreshed: int
    active: bool


TypingRow = dict[str, Typist]


def _pruned(row: TypingRow, now: int) -> TypingRow:
    # A stopped entry is kept only while it still throttles the next start.
    return {u: t for u, t in row.items() if t["active"] or now - t["relayed"] < THROTTLE_MS}


def start(row: TypingRow, user: str, at: int) -> tuple[TypingRow, bool]:
    """Record a ``start``; returns whether it is relayed (False while throttled). A throttled
    start still refreshes the indicator, so it does not expire while the user keeps typing."""
    current = row.get(user)
    relay = current is None or at - current["relayed"] >= THROTTLE_MS
    relayed = at if relay or current is None else current["relayed"]
    new = _pruned(row, at)
    new[user] = Typist(relayed=relayed, refreshed=at, active=True)
    return new, relay


def stop(row: TypingRow, user: str, at: int) -> tuple[TypingRow, bool]:
    """End ``user``'s indicator; returns whether they were typing (then a stop is relayed)."""
    current = row.get(user)
    if current is None or not current["active"]:
        return row, False
    new = _pruned(row, at)
    new[user] = Typist(relayed=current["relayed"], refreshed=current["refreshed"], active=False)
    return _pruned(new, at), True


def expired(row: TypingRow, now: int) -> list[str]:
    return [u for u, t in row.items() if t["active"] and now - t["refreshed"] >= EXPIRE_MS]
