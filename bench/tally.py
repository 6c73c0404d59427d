"""What one generator process counts per tag (a run, its warm-up, a sweep step ...) and what
each recipient saw of each conversation: the raw material of the delivery check."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Tally:
    """Counters and samples of one tag (a run, its warm-up, a sweep step ...)."""

    sent: int = 0
    acked: int = 0
    errors: int = 0
    expected: int = 0  # deliveries owed for what was acked: sum of (members - 1)
    received: int = 0  # unique deliveries
    duplicated: int = 0
    reordered: int = 0
    # Acked, but the system never told the sender the message's seq (the seed sequences after
    # its ack): such a message cannot be checked per recipient, so it counts as lost.
    unsequenced: int = 0
    first_send_ns: int = 0
    last_send_ns: int = 0
    lat_us: array = field(default_factory=lambda: array("q"))  # type: ignore[type-arg]
    recv_ms: array = field(default_factory=lambda: array("q"))  # type: ignore[type-arg]
    ack_us: array = field(default_factory=lambda: array("q"))  # type: ignore[type-arg]
    error_codes: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "acked": self.acked,
            "errors": self.errors,
            "expected": self.expected,
            "received": self.received,
            "duplicated": self.duplicated,
            "reordered": self.reordered,
            "unsequenced": self.unsequenced,
            "first_send_ns": self.first_send_ns,
            "last_send_ns": self.last_send_ns,
            "error_codes": self.error_codes,
        }


class RecvState:
    """What one recipient saw of one conversation. Its own messages never come back to it (the
    sending session is excluded), so their seqs, known from its acks, are not gaps."""

    __slots__ = ("count", "dup", "gaps", "max_seq", "own", "reordered")

    def __init__(self) -> None:
        self.max_seq = 0
        self.gaps: set[int] = set()
        self.own: set[int] = set()
        self.dup = 0
        self.reordered = 0
        self.count = 0

    def mark_own(self, seq: int) -> None:
        self.own.add(seq)
        self.gaps.discard(seq)

    def contiguous(self) -> int:
        """The highest seq up to which everything reached this user (what a client confirms
        with ``message.delivered``): below the first gap."""
        return min(self.gaps) - 1 if self.gaps else self.max_seq

    def see(self, seq: int) -> str:
        if seq == self.max_seq + 1:
            self.max_seq = seq
        elif seq > self.max_seq:
            self.gaps.update(s for s in range(self.max_seq + 1, seq) if s not in self.own)
            self.max_seq = seq
        elif seq in self.gaps:
            self.gaps.discard(seq)
            self.reordered += 1
            self.count += 1
            return "reordered"
        else:
            self.dup += 1
            return "dup"
        self.count += 1
        return "new"
