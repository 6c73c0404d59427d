"""Session-close announcements survive a Kafka blip (#14, item 8): edge/announcer.py."""

from __future__ import annotations

import asyncio
from typing import Any

from edge.announcer import Announcer
from edge.kafka_io import KafkaUnavailable


class FlakyKafka:
    """Refuses every record while ``down``; records what it took."""

    def __init__(self) -> None:
        self.down = False
        self.taken: list[tuple[str, dict[str, Any]]] = []
        self.refused = 0

    async def send(self, user: str, event: dict[str, Any]) -> None:
        if self.down:
            self.refused += 1
            raise KafkaUnavailable("blip")
        self.taken.append((user, event))


def close_events(session: str, user: str, watched: list[str]) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = [(user, {"op": "session.close", "session": session})]
    events += [(w, {"op": "presence.unsubscribe", "session": session}) for w in watched]
    return events


async def test_close_during_a_blip_is_sent_once_kafka_is_back() -> None:
    kafka = FlakyKafka()
    announcer = Announcer(kafka.send, initial_delay_s=0.01, max_delay_s=0.05)
    kafka.down = True
    first = close_events("s1", "alice", ["bob", "carol"])
    second = close_events("s2", "dave", ["alice"])
    await announcer.announce(first)
    await announcer.announce(second)
    await asyncio.sleep(0.2)
    assert kafka.taken == [] and kafka.refused > 2  # retried, with backoff, not dropped
    kafka.down = False
    await announcer.close(timeout_s=2.0)
    # Everything, presence watches included, in the order the sessions closed.
    assert kafka.taken == first + second
    assert not announcer.pending


async def test_later_closes_wait_behind_earlier_ones() -> None:
    """A close that arrives while others wait is not sent ahead of them (one user's records
    keep their order on chat.users)."""
    kafka = FlakyKafka()
    announcer = Announcer(kafka.send, initial_delay_s=0.05, max_delay_s=0.05)
    kafka.down = True
    await announcer.announce(close_events("s1", "alice", []))
    kafka.down = False
    await announcer.announce(close_events("s2", "alice", []))
    assert kafka.taken == []
    await announcer.close(timeout_s=2.0)
    assert [e["session"] for _, e in kafka.taken] == ["s1", "s2"]


async def test_no_blip_sends_at_once() -> None:
    kafka = FlakyKafka()
    announcer = Announcer(kafka.send)
    await announcer.announce(close_events("s1", "alice", ["bob"]))
    assert len(kafka.taken) == 2 and announcer._retrier is None
    await announcer.close(timeout_s=0.1)


async def test_bounded_queue_drops_the_oldest() -> None:
    kafka = FlakyKafka()
    announcer = Announcer(kafka.send, initial_delay_s=0.01, max_pending=3)
    kafka.down = True
    for i in range(5):
        await announcer.announce(close_events(f"s{i}", "alice", []))
    assert [e["session"] for _, e in announcer.pending] == ["s2", "s3", "s4"]
    kafka.down = False
    await announcer.close(timeout_s=2.0)
    assert [e["session"] for _, e in kafka.taken] == ["s2", "s3", "s4"]


async def test_close_gives_up_after_its_timeout() -> None:
    kafka = FlakyKafka()
    announcer = Announcer(kafka.send, initial_delay_s=0.01, max_delay_s=0.02)
    kafka.down = True
    await announcer.announce(close_events("s1", "alice", []))
    await announcer.close(timeout_s=0.1)
    assert announcer._retrier is not None
    await asyncio.gather(announcer._retrier, return_exceptions=True)
    assert announcer._retrier.cancelled()
