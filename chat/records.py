"""Shapes of the JSON values on the internal topics (see docs/topology.md).

Values are orjson-encoded dicts; these helpers keep the field names in one place.
"""

from __future__ import annotations

from typing import Any, TypedDict

import orjson
from aiokafka.partitioner import murmur2


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


# --------------------------------------------------------------------------- bundles
#
# The internal topics (chat.commands, chat.users, chat.deliver) carry *bundles*: one record holds
# every event a producer had for that partition at that moment, as a JSON array. A stream agent
# pays Faust's per-record cost once per bundle instead of once per event; replaying a bundle
# gives the same outputs as replaying its events one by one, in order. The public topics
# (chat.messages, chat.conversations, chat.receipts, chat.activity) stay one record per event.
#
#   chat.commands  [[conversation_id, command], ...]
#   chat.users     [[user_id, event], ...]
#   chat.deliver   [{"sessions": [...], "frame": {...}} | {"sessions": [...], "sync": {...}}, ...]


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (murmur2 of its UTF-8 bytes).

    Bundles are produced to an explicit partition, so every producer must agree with the
    partitioner that placed the single-event records before them and the table rows after."""
    hashed: int = murmur2(key.encode())
    return (hashed & 0x7FFFFFFF) % partitions


def bundle(items: list[bytes]) -> bytes:
    """A bundle from events already encoded with :func:`dumps` (no second encoding)."""
    return b"[" + b",".join(items) + b"]"


def split_bundles(items: list[bytes], max_bytes: int) -> list[bytes]:
    """Bundles of at most ``max_bytes`` each (a single larger item gets a bundle of its own;
    whoever writes it finds out it is too large)."""
    out: list[bytes] = []
    current: list[bytes] = []
    size = 2
    for item in items:
        if current and size + len(item) + 1 > max_bytes:
            out.append(bundle(current))
            current, size = [], 2
        current.append(item)
        size += len(item) + 1
    if current:
        out.append(bundle(current))
    return out


def keyed_event(key: str, event: dict[str, Any]) -> bytes:
    """One entry of a ``chat.commands`` or ``chat.users`` bundle: ``[key, event]``, the key
    being the conversation id or the user id the event is about."""
    return dumps([key, event])


def decode_bundle(raw: bytes) -> list[Any]:
    value = loads(raw)
    if not isinstance(value, list):
        raise ValueError("an internal record must be a JSON array (a bundle)")
    return value


def frame_delivery(sessions: list[str], frame: dict[str, Any]) -> bytes:
    """One entry of a ``chat.deliver`` bundle: a frame for some sessions of the edge."""
    return dumps({"sessions": sessions, "frame": frame})


def sync_delivery(session: str, sync: dict[str, Any]) -> bytes:
    """One entry of a ``chat.deliver`` bundle: the answer to a session's ``sync``."""
    return dumps({"sessions": [session], "sync": sync})


def deliveries(entries: list[bytes]) -> bytes:
    """A whole ``chat.deliver`` record (tests and tools inject deliveries with it)."""
    return bundle(entries)
