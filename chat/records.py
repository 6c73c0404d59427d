"""Shapes of the JSON values on the internal topics (see docs/topology.md).

Values are orjson-encoded dicts; these helpers keep the field names in one place.
"""

from __future__ import annotations

from typing import Any, TypedDict

import orjson


class Origin(TypedDict):
    """Where a command came from, so that replies go straight back to that session."""

    slot: int
    session: str
    id: str | int | None


class Message(TypedDict):
    conversation_id: str
    seq: int
    sender: str
    body: str
    ts: int
    client_msg_id: str


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def loads(raw: bytes | str) -> Any:
    return orjson.loads(raw)


def message_frame(message: Message) -> dict[str, Any]:
    return {"type": "message", **message}


def ack_frame(message: Message, frame_id: str | int | None) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "message.ack",
        "conversation_id": message["conversation_id"],
        "client_msg_id": message["client_msg_id"],
        "seq": message["seq"],
        "ts": message["ts"],
    }
    if frame_id is not None:
        frame["id"] = frame_id
    return frame


def delivery(sessions: list[str], frame: dict[str, Any]) -> bytes:
    """A ``chat.deliver`` record: one frame for some sessions of the edge owning the partition."""
    return dumps({"sessions": sessions, "frame": frame})
