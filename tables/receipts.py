"""Table ``receipts`` (key: conversation_id): each member's read and delivered cursors.

Owned by the router. Cursors only move forward, so replaying a receipt command changes nothing.
"""

from __future__ import annotations

from typing import TypedDict

TABLE = "receipts"


class Cursors(TypedDict):
    read: int
    delivered: int


ReceiptsRow = dict[str, Cursors]


def advance(
    row: ReceiptsRow, user: str, kind: str, seq: int, last_seq: int
) -> tuple[ReceiptsRow, list[tuple[str, int]]]:
    """Move ``user``'s cursor of ``kind`` to ``seq`` (capped at ``last_seq``).

    Returns the new row and the ``(kind, seq)`` receipts that changed. Reading implies delivery,
    so a read cursor drags the delivered cursor along.
    """
    seq = min(seq, last_seq)
    current = row.get(user, Cursors(read=0, delivered=0))
    read, delivered = current["read"], current["delivered"]
    changed: list[tuple[str, int]] = []
    if kind == "read" and seq > read:
        read = seq
        changed.append(("read", read))
    if seq > delivered:
        delivered = seq
        changed.append(("delivered", delivered))
    if not changed:
        return row, []
    new = dict(row)
    new[user] = Cursors(read=read, delivered=delivered)
    return new, changed
