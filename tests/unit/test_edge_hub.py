"""The hub's fan-out of ``chat.deliver`` entries (edge/hub.py), with sessions on fake sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from chat import records
from chat.records import SyncAnswer
from edge.hub import Hub
from edge.presence import Watches
from edge.session import Session


class FakeSocket:
    closed = False

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_str(self, text: str) -> None:
        self.sent.append(orjson.loads(text))


def session(sid: str, user: str) -> tuple[Session, FakeSocket]:
    ws = FakeSocket()
    return Session(sid, user, ws, expires_at=2**40), ws  # type: ignore[arg-type]


def message(seq: int) -> dict[str, Any]:
    return {
        "type": "message",
        "conversation_id": "dm:a:b",
        "seq": seq,
        "sender": "a",
        "body": "hi",
        "ts": 1,
        "client_msg_id": f"m{seq}",
    }


def delivered(raw_entries: list[bytes]) -> list[records.Delivery]:
    return [records.decode_delivery(e) for e in records.decode_bundle(records.bundle(raw_entries))]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_frame_reaches_the_listed_sessions_it_holds() -> None:
    syncs: list[tuple[str, SyncAnswer]] = []
    hub = Hub(lambda s, sync: syncs.append((s.id, sync)))
    (alice, alice_ws), (bob, bob_ws) = session("s1", "alice"), session("s2", "bob")
    hub.add(alice)
    hub.add(bob)
    entries = [
        records.frame_delivery(["s1", "gone"], message(1)),
        records.frame_delivery(["s1", "s2"], {"type": "typing", "user": "a", "state": "start"}),
        records.frame_delivery(["s1"], message(1)),  # a redelivery: written once
    ]
    for delivery in delivered(entries):
        hub.deliver(delivery)
    await settle()
    assert [f["type"] for f in alice_ws.sent] == ["message", "typing"]
    assert [f["type"] for f in bob_ws.sent] == ["typing"]
    assert syncs == []


async def test_a_sync_answer_goes_to_the_assembler() -> None:
    syncs: list[tuple[str, SyncAnswer]] = []
    hub = Hub(lambda s, sync: syncs.append((s.id, sync)))
    alice, _ = session("s1", "alice")
    hub.add(alice)
    answer = {"id": 7, "messages": [], "fetch": [], "conversations": {}, "truncated": False}
    (delivery,) = delivered([records.sync_delivery("s1", answer)])
    hub.deliver(delivery)
    hub.deliver(records.decode_delivery({"sessions": ["elsewhere"], "sync": answer}))
    assert syncs == [("s1", answer)]


def test_the_hub_counts_sessions_per_user() -> None:
    hub = Hub(lambda s, sync: None)
    first, second = session("s1", "alice")[0], session("s2", "alice")[0]
    hub.add(first)
    hub.add(second)
    assert (len(hub), hub.count_for("alice")) == (2, 2)
    hub.remove(first)
    hub.remove(first)  # a second removal changes nothing
    assert (len(hub), hub.count_for("alice"), hub.get("s2")) == (1, 1, second)
    hub.remove(second)
    assert hub.sessions_per_user == {}
    assert list(hub.expired(now=2**41)) == []


@pytest.mark.parametrize("bad", [{"sessions": ["s1"]}, ["s1"], None])
def test_a_delivery_is_a_frame_or_a_sync(bad: object) -> None:
    with pytest.raises(ValueError):
        records.decode_delivery(bad)


def presence(user: str, status: str) -> dict[str, Any]:
    return {"type": "presence", "user": user, "status": status, "last_seen": 1}


async def test_presence_frames_are_written_only_while_their_user_is_visible() -> None:
    """The workers may still send a watch's presence after the edge hid it (its unsubscribe is
    on the way): the edge writes a presence frame only if its user is visible to the session
    when the frame is written, not when it was queued."""
    hub = Hub(lambda s, sync: None, Watches())
    alice, ws = session("s1", "alice")
    hub.add(alice)
    alice.watching = {"bob": True, "carol": False}
    for user in ("bob", "carol", "dave"):
        hub.deliver(
            records.decode_delivery({"sessions": ["s1"], "frame": presence(user, "online")})
        )
    await settle()
    assert ws.sent == [presence("bob", "online")]
    hub.deliver(records.decode_delivery({"sessions": ["s1"], "frame": presence("bob", "offline")}))
    alice.watching["bob"] = False  # hidden after the frame was queued, before it is written
    await settle()
    assert ws.sent == [presence("bob", "online")]
