"""The client protocol v1 (docs/protocol.md): decoding and validating client frames, building
server frames. Pure functions, no I/O: the edge calls these and only then talks to Kafka.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import orjson

# Always used with fullmatch: "$" would also accept a trailing newline.
USER_ID_RE: Final = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
GROUP_ID_RE: Final = re.compile(r"grp:[0-9a-f]{32}")
MEDIA_ID_RE: Final = re.compile(r"m[0-9a-f]{32}")
# Attachments one message.send may carry at most (CHAT_MEDIA_MAX_ATTACHMENTS may lower it).
MAX_ATTACHMENTS: Final = 32
MAX_BODY_CHARS: Final = 4000
MAX_TITLE_CHARS: Final = 200
MAX_CLIENT_MSG_ID: Final = 64
MAX_FRAME_ID_CHARS: Final = 64
MAX_PRESENCE_USERS: Final = 500
MAX_SYNC_CURSORS: Final = 10_000
SYNC_PAGE: Final = 500

# Error codes of PROTOCOL.md, "Errors and limits".
BAD_REQUEST: Final = "bad_request"
UNKNOWN_TYPE: Final = "unknown_type"
TOO_LARGE: Final = "too_large"
NOT_MEMBER: Final = "not_member"
NOT_FOUND: Final = "not_found"
FORBIDDEN: Final = "forbidden"
RATE_LIMITED: Final = "rate_limited"
BLOCKED: Final = "blocked"  # by the moderation rules; the frame's `reason` says which
MAX_REPORT_REASON: Final = 64
MAX_REPORT_NOTE: Final = 1000
UNAVAILABLE: Final = "unavailable"
INTERNAL: Final = "internal"

CLIENT_TYPES: Final = frozenset(
    {
        "conversation.create",
        "conversation.add_members",
        "conversation.remove_members",
        "message.send",
        "message.delivered",
        "message.report",
        "receipt.read",
        "typing",
        "sync",
        "presence.subscribe",
        "presence.query",
        "ping",
    }
)

FrameId = str | int | None


class ProtocolError(Exception):
    """A client frame the server answers with an ``error`` frame (the connection stays open)."""

    def __init__(self, code: str, message: str, frame_id: FrameId = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.frame_id = frame_id


@dataclass(frozen=True, slots=True)
class ClientFrame:
    """A decoded, validated client frame. ``fields`` holds only the validated fields."""

    type: str
    id: FrameId
    fields: dict[str, Any]


def is_user_id(value: object) -> bool:
    return isinstance(value, str) and USER_ID_RE.fullmatch(value) is not None


def direct_conversation_id(a: str, b: str) -> str:
    """``dm:<lo>:<hi>`` with the two ids in byte order, so both sides compute the same id."""
    lo, hi = sorted((a, b), key=lambda s: s.encode())
    return f"dm:{lo}:{hi}"


def is_media_id(value: object) -> bool:
    return isinstance(value, str) and MEDIA_ID_RE.fullmatch(value) is not None


def is_conversation_id(value: object) -> bool:
    if not isinstance(value, str) or len(value) > 140:
        return False
    if value.startswith("grp:"):
        return GROUP_ID_RE.fullmatch(value) is not None
    if value.startswith("dm:"):
        parts = value[3:].split(":")
        return (
            len(parts) == 2
            and all(is_user_id(p) for p in parts)
            and direct_conversation_id(parts[0], parts[1]) == value
            and parts[0] != parts[1]
        )
    return False


def direct_members(conversation_id: str) -> tuple[str, str]:
    lo, hi = conversation_id[3:].split(":")
    return lo, hi


# --------------------------------------------------------------------------- decoding


def decode_frame(raw: str | bytes) -> ClientFrame:
    """Parse and validate one client frame, or raise :class:`ProtocolError`."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(BAD_REQUEST, "frame is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ProtocolError(BAD_REQUEST, "frame must be a JSON object")
    frame_id = _frame_id(data.get("id"))
    frame_type = data.get("type")
    if not isinstance(frame_type, str):
        raise ProtocolError(BAD_REQUEST, "missing or mistyped field: type", frame_id)
    validator = _VALIDATORS.get(frame_type)
    if validator is None:
        raise ProtocolError(UNKNOWN_TYPE, f"unknown frame type: {frame_type[:64]!r}", frame_id)
    try:
        fields = validator(data)
    except _Invalid as exc:
        raise ProtocolError(BAD_REQUEST, str(exc), frame_id) from None
    return ClientFrame(frame_type, frame_id, fields)


class _Invalid(Exception):
    pass


def _frame_id(value: object) -> FrameId:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ProtocolError(
            BAD_REQUEST, "id must be a string of at most 64 characters or an integer"
        )
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return value
    elif isinstance(value, str) and len(value) <= MAX_FRAME_ID_CHARS:
        return value
    raise ProtocolError(BAD_REQUEST, "id must be a string of at most 64 characters or an integer")


def _str(data: dict[str, Any], name: str, *, min_len: int = 1, max_len: int) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise _Invalid(f"missing or mistyped field: {name} (string)")
    if not min_len <= len(value) <= max_len:
        raise _Invalid(f"{name} must be {min_len}-{max_len} characters")
    return value


def _conversation_id(data: dict[str, Any]) -> str:
    value = data.get("conversation_id")
    if not isinstance(value, str):
        raise _Invalid("missing or mistyped field: conversation_id (string)")
    if not is_conversation_id(value):
        raise _Invalid("conversation_id is not a valid conversation id")
    return value


def _seq(data: dict[str, Any]) -> int:
    value = data.get("seq")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise _Invalid("missing or mistyped field: seq (integer ≥ 0)")
    return value


def _users(data: dict[str, Any], name: str, *, max_count: int, min_count: int = 0) -> list[str]:
    value = data.get(name)
    if not isinstance(value, list):
        raise _Invalid(f"missing or mistyped field: {name} (array of user ids)")
    if not min_count <= len(value) <= max_count:
        raise _Invalid(f"{name} must hold {min_count}-{max_count} user ids")
    out: list[str] = []
    seen: set[str] = set()
    for item in value:
        if not is_user_id(item):
            raise _Invalid(f"{name} holds an invalid user id")
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _v_create(data: dict[str, Any]) -> dict[str, Any]:
    kind = data.get("kind")
    if kind not in ("direct", "group"):
        raise _Invalid('kind must be "direct" or "group"')
    if kind == "direct":
        members = _users(data, "members", max_count=1, min_count=1)
        return {"kind": kind, "members": members}
    members = _users(data, "members", max_count=999)
    title = data.get("title", "")
    if title is None:
        title = ""
    if not isinstance(title, str) or len(title) > MAX_TITLE_CHARS:
        raise _Invalid(f"title must be a string of at most {MAX_TITLE_CHARS} characters")
    return {"kind": kind, "members": members, "title": title}


def _v_members(data: dict[str, Any]) -> dict[str, Any]:
    cid = _conversation_id(data)
    return {"conversation_id": cid, "members": _users(data, "members", max_count=1000, min_count=1)}


def _v_send(data: dict[str, Any]) -> dict[str, Any]:
    attachments = _attachments(data)
    return {
        "conversation_id": _conversation_id(data),
        "client_msg_id": _str(data, "client_msg_id", max_len=MAX_CLIENT_MSG_ID),
        # A message of attachments alone may have an empty body.
        "body": _str(data, "body", min_len=0 if attachments else 1, max_len=MAX_BODY_CHARS),
        "attachments": attachments,
    }


def _attachments(data: dict[str, Any]) -> list[str]:
    """The media ids of ``attachments: [{media_id}]``, in order, each once."""
    value = data.get("attachments", [])
    if not isinstance(value, list) or len(value) > MAX_ATTACHMENTS:
        raise _Invalid(f"attachments must be a list of at most {MAX_ATTACHMENTS} objects")
    ids: list[str] = []
    for item in value:
        media_id = item.get("media_id") if isinstance(item, dict) else None
        if not isinstance(media_id, str) or not is_media_id(media_id):
            raise _Invalid('each attachment must be {"media_id": "m<32 hex digits>"}')
        if media_id in ids:
            raise _Invalid("an attachment is listed twice")
        ids.append(media_id)
    return ids


def _v_cursor(data: dict[str, Any]) -> dict[str, Any]:
    return {"conversation_id": _conversation_id(data), "seq": _seq(data)}


def _v_report(data: dict[str, Any]) -> dict[str, Any]:
    note = data.get("note", "")
    if not isinstance(note, str) or len(note) > MAX_REPORT_NOTE:
        raise _Invalid(f"note must be a string of at most {MAX_REPORT_NOTE} characters")
    return {
        "conversation_id": _conversation_id(data),
        "seq": _seq(data),
        "reason": _str(data, "reason", max_len=MAX_REPORT_REASON),
        "note": note,
    }


def _v_typing(data: dict[str, Any]) -> dict[str, Any]:
    state = data.get("state")
    if state not in ("start", "stop"):
        raise _Invalid('state must be "start" or "stop"')
    return {"conversation_id": _conversation_id(data), "state": state}


def _v_sync(data: dict[str, Any]) -> dict[str, Any]:
    cursors = data.get("cursors")
    if cursors is None:
        return {"cursors": None}
    if not isinstance(cursors, dict):
        raise _Invalid("cursors must be an object {conversation_id: seq}")
    if len(cursors) > MAX_SYNC_CURSORS:
        raise _Invalid(f"at most {MAX_SYNC_CURSORS} cursors")
    out: dict[str, int] = {}
    for cid, seq in cursors.items():
        if not is_conversation_id(cid):
            raise _Invalid("cursors holds an invalid conversation id")
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**53:
            raise _Invalid("cursor values must be integers ≥ 0")
        out[cid] = seq
    return {"cursors": out}


def _v_presence(data: dict[str, Any]) -> dict[str, Any]:
    return {"users": _users(data, "users", max_count=MAX_PRESENCE_USERS)}


def _v_empty(data: dict[str, Any]) -> dict[str, Any]:
    return {}


_VALIDATORS: Final = {
    "conversation.create": _v_create,
    "conversation.add_members": _v_members,
    "conversation.remove_members": _v_members,
    "message.send": _v_send,
    "message.delivered": _v_cursor,
    "message.report": _v_report,
    "receipt.read": _v_cursor,
    "typing": _v_typing,
    "sync": _v_sync,
    "presence.subscribe": _v_presence,
    "presence.query": _v_presence,
    "ping": _v_empty,
}
assert set(_VALIDATORS) == CLIENT_TYPES


# --------------------------------------------------------------------------- server frames


def error_frame(
    code: str,
    message: str,
    frame_id: FrameId = None,
    retry_after_ms: int | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if reason is not None:
        frame["reason"] = reason
    if frame_id is not None:
        frame["id"] = frame_id
    if retry_after_ms is not None:
        frame["retry_after_ms"] = int(retry_after_ms)
    return frame


def ok_frame(frame_id: FrameId, **payload: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "ok", **payload}
    if frame_id is not None:
        frame["id"] = frame_id
    return frame


def pong_frame(frame_id: FrameId) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "pong"}
    if frame_id is not None:
        frame["id"] = frame_id
    return frame


def encode(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()
