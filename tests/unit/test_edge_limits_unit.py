"""Every frame type draws from a per-user bucket, and a session's outbound queue is bounded in
bytes (#14, item 2): edge/commands.py:frame_limit and edge/session.py, without a stack."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import WSCloseCode

from chat import protocol
from chat.settings import load_settings
from edge.commands import frame_limit
from edge.session import MAX_QUEUED_FRAMES, Session

SAMPLES: dict[str, dict[str, Any]] = {
    "conversation.create": {"kind": "group", "members": ["bob"], "title": "t"},
    "conversation.add_members": {"conversation_id": "grp:" + "a" * 32, "members": ["bob"]},
    "conversation.remove_members": {"conversation_id": "grp:" + "a" * 32, "members": ["bob"]},
    "message.send": {"conversation_id": "dm:a:b", "client_msg_id": "c", "body": "hi"},
    "message.delivered": {"conversation_id": "dm:a:b", "seq": 1},
    "message.report": {"conversation_id": "dm:a:b", "seq": 1, "reason": "spam"},
    "receipt.read": {"conversation_id": "dm:a:b", "seq": 1},
    "typing": {"conversation_id": "dm:a:b", "state": "start"},
    "sync": {},
    "presence.subscribe": {"users": ["bob"]},
    "presence.query": {"users": ["bob"]},
    "ping": {},
}


def decode(frame_type: str, **extra: Any) -> protocol.ClientFrame:
    return protocol.decode_frame(
        protocol.encode({"type": frame_type, **SAMPLES[frame_type], **extra})
    )


def test_every_frame_type_is_rate_limited() -> None:
    assert set(SAMPLES) == protocol.CLIENT_TYPES
    settings = load_settings({})
    scopes = {}
    for frame_type in protocol.CLIENT_TYPES:
        limit, cost = frame_limit(settings, decode(frame_type))
        assert limit.per_second > 0 and limit.burst > 0 and cost == 1, frame_type
        scopes[frame_type] = limit.scope
    # Messages and typing keep their own buckets; nothing shares the message bucket.
    assert [t for t, s in scopes.items() if s == "msg"] == ["message.send"]
    assert scopes["conversation.create"] == scopes["conversation.add_members"] == "conv"
    assert scopes["receipt.read"] == scopes["message.delivered"] == "receipt"
    assert scopes["presence.query"] == scopes["presence.subscribe"] == "presence"


def test_limits_follow_settings() -> None:
    settings = load_settings({"CHAT_SYNCS_PER_S": "0.5", "CHAT_SYNCS_BURST": "3"})
    limit, _ = frame_limit(settings, decode("sync"))
    assert (limit.per_second, limit.burst) == (0.5, 3)


@pytest.mark.parametrize(("users", "cost"), [(0, 1), (1, 1), (7, 7), (500, 500)])
def test_presence_costs_one_token_per_user(users: int, cost: int) -> None:
    names = [f"u{i}" for i in range(users)]
    for frame_type in ("presence.query", "presence.subscribe"):
        frame = decode(frame_type, users=names)
        assert frame_limit(load_settings({}), frame)[1] == cost


def test_presence_cost_capped_at_the_burst() -> None:
    settings = load_settings({"CHAT_PRESENCE_USERS_BURST": "100"})
    frame = decode("presence.query", users=[f"u{i}" for i in range(500)])
    assert frame_limit(settings, frame)[1] == 100


@pytest.mark.parametrize(
    "name",
    [
        "CHAT_CONVERSATION_OPS_PER_S",
        "CHAT_RECEIPTS_BURST",
        "CHAT_SYNCS_PER_S",
        "CHAT_PRESENCE_USERS_BURST",
        "CHAT_PINGS_PER_S",
        "CHAT_REST_PER_S",
        "CHAT_REST_IP_BURST",
        "CHAT_MAX_QUEUED_BYTES",
    ],
)
@pytest.mark.parametrize("value", ["0", "-1"])
def test_limits_must_be_positive(name: str, value: str) -> None:
    from chat.settings import SettingsError

    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


class StuckSocket:
    """A WebSocket whose peer does not read: every write waits until released."""

    def __init__(self) -> None:
        self.closed = False
        self.close_code: int | None = None
        self.sent: list[str] = []
        self.release = asyncio.Event()

    async def send_str(self, text: str) -> None:
        await self.release.wait()
        self.sent.append(text)

    async def close(self, code: int, message: bytes) -> None:
        self.closed = True
        self.close_code = code


async def test_queue_bounded_in_bytes() -> None:
    ws = StuckSocket()
    session = Session("s", "alice", ws, 1e12, max_queued_bytes=100_000)  # type: ignore[arg-type]
    frame = "x" * 10_000
    for _ in range(10):  # the first is taken by the writer (awaiting the socket), 9 queued
        session.send_encoded(frame, "message")
        await asyncio.sleep(0)
    assert not session.closing
    session.send_encoded(frame, "message")  # 10 queued: 100,000 characters, at the bound
    assert not session.closing
    session.send_encoded("y", "message")  # one character past it
    assert session.closing
    await asyncio.sleep(0)
    assert ws.close_code == WSCloseCode.TRY_AGAIN_LATER
    await session.stop()


async def test_queue_bytes_are_released_as_frames_leave() -> None:
    ws = StuckSocket()
    session = Session("s", "alice", ws, 1e12, max_queued_bytes=50_000)  # type: ignore[arg-type]
    for _ in range(4):
        session.send_encoded("x" * 10_000, "message")
    ws.release.set()
    await asyncio.sleep(0.01)
    assert len(ws.sent) == 4
    # All written: the budget is whole again.
    ws.release.clear()
    for _ in range(5):
        session.send_encoded("x" * 10_000, "message")
    assert not session.closing
    await session.stop()


async def test_one_frame_larger_than_the_bound_still_goes_to_an_idle_session() -> None:
    ws = StuckSocket()
    ws.release.set()
    session = Session("s", "alice", ws, 1e12, max_queued_bytes=1_000)  # type: ignore[arg-type]
    session.send_encoded("z" * 5_000, "message")
    await asyncio.sleep(0.01)
    assert ws.sent == ["z" * 5_000] and not session.closing
    await session.stop()


async def test_frame_count_bound_still_holds() -> None:
    ws = StuckSocket()
    session = Session("s", "alice", ws, 1e12, max_queued_bytes=10**9)  # type: ignore[arg-type]
    for _ in range(MAX_QUEUED_FRAMES):
        session.send_encoded("{}", "pong")
    assert not session.closing
    session.send_encoded("{}", "pong")
    assert session.closing
    await session.stop()
