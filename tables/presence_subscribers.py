"""Table ``presence_subscribers`` (key: the watched user_id): the sessions that asked to be told
when this user goes online or offline, with the edge slot holding each. Owned by the sessions
agent. Entries of closed sessions are dropped by the edge on delivery and age out by the cap.
"""

from __future__ import annotations

TABLE = "presence_subscribers"
MAX_SUBSCRIBERS = 2000

SubscribersRow = dict[str, int]  # session id -> edge slot, oldest first


def subscribe(row: SubscribersRow, session: str, slot: int) -> SubscribersRow:
    new = {sid: s for sid, s in row.items() if sid != session}
    new[session] = slot
    while len(new) > MAX_SUBSCRIBERS:
        del new[next(iter(new))]
    return new


def by_slot(row: SubscribersRow) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for sid, slot in row.items():
        out.setdefault(slot, []).append(sid)
    return out
