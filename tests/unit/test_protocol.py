"""Client frame decoding and validation against /work/shared/PROTOCOL.md (chat/protocol.py)."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chat import protocol
from chat.protocol import (
    CLIENT_TYPES,
    ClientFrame,
    ProtocolError,
    decode_frame,
    direct_conversation_id,
    error_frame,
    is_conversation_id,
    is_user_id,
    ok_frame,
    pong_frame,
)

DM = "dm:alice:bob"
GRP = "grp:" + "0123456789abcdef" * 2
USER_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")

PROPS = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


def decode(obj: Any) -> ClientFrame:
    return decode_frame(orjson.dumps(obj))


def reject(obj: Any, code: str = protocol.BAD_REQUEST) -> ProtocolError:
    raw = obj if isinstance(obj, str | bytes) else orjson.dumps(obj)
    with pytest.raises(ProtocolError) as info:
        decode_frame(raw)
    assert info.value.code == code, info.value.message
    assert info.value.message
    return info.value


# --------------------------------------------------------------------------- identities


@pytest.mark.parametrize(
    "user",
    ["a", "A", "0", "alice", "a.b", "a_b", "a-b", "a@example.com", "x" * 64, "Z9_.@-"],
)
def test_valid_user_ids(user: str) -> None:
    assert is_user_id(user)


@pytest.mark.parametrize(
    "user",
    ["", "x" * 65, "a b", "a:b", "a/b", "é", "a+b", "a\tb", " a", "a ", None, 1, ["a"], b"a"],
)
def test_invalid_user_ids(user: object) -> None:
    assert not is_user_id(user)


@pytest.mark.parametrize("user", ["alice\n", "a\n", "x" * 64 + "\n"])
def test_user_id_with_trailing_newline_is_invalid(user: str) -> None:
    # PROTOCOL.md: 1-64 characters of [A-Za-z0-9_.@-]; a newline is not one of them.
    # (``$`` in USER_ID_RE also matches before a trailing "\n".)
    assert not is_user_id(user)


def test_direct_conversation_id_byte_order() -> None:
    assert direct_conversation_id("bob", "alice") == "dm:alice:bob"
    assert direct_conversation_id("alice", "bob") == "dm:alice:bob"
    # Byte order: uppercase sorts before lowercase, digits before letters, '-' before '.'.
    assert direct_conversation_id("alice", "Bob") == "dm:Bob:alice"
    assert direct_conversation_id("a", "9") == "dm:9:a"
    assert direct_conversation_id("a.b", "a-b") == "dm:a-b:a.b"
    assert direct_conversation_id("ab", "a") == "dm:a:ab"


@pytest.mark.parametrize(
    "cid",
    [
        DM,
        "dm:Bob:alice",
        "dm:9:a",
        "dm:a:ab",
        "dm:" + "a" * 64 + ":" + "b" * 64,
        GRP,
        "grp:" + "f" * 32,
        "grp:" + "0" * 32,
    ],
)
def test_valid_conversation_ids(cid: str) -> None:
    assert is_conversation_id(cid)


@pytest.mark.parametrize(
    "cid",
    [
        "",
        "dm:",
        "dm:alice",
        "dm:bob:alice",  # not in byte order
        "dm:alice:Bob",  # not in byte order
        "dm:alice:alice",  # one user
        "dm:alice:bob:carol",
        "dm::bob",
        "dm:alice:",
        "dm:al ice:bob",
        "dm:" + "a" * 65 + ":b",
        "DM:alice:bob",
        "grp:",
        "grp:" + "A" * 32,  # uppercase hex
        "grp:" + "0" * 31,
        "grp:" + "0" * 33,
        "grp:" + "g" * 32,
        "grp-" + "0" * 32,
        "GRP:" + "0" * 32,
        "alice",
        None,
        5,
        ["dm:alice:bob"],
    ],
)
def test_invalid_conversation_ids(cid: object) -> None:
    assert not is_conversation_id(cid)


@pytest.mark.parametrize("cid", ["grp:" + "0" * 32 + "\n", "dm:alice:bob\n"])
def test_conversation_id_with_trailing_newline_is_invalid(cid: str) -> None:
    assert not is_conversation_id(cid)


def test_direct_members() -> None:
    assert protocol.direct_members("dm:Bob:alice") == ("Bob", "alice")


# --------------------------------------------------------------------------- envelope


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "{",
        "not json",
        "{'type': 'ping'}",
        b"\xff\xfe",
        "NaN",
        '{"type":"ping",}',
        '{"type": "ping"} x',
    ],
)
def test_invalid_json_is_bad_request(raw: str | bytes) -> None:
    err = reject(raw)
    assert err.frame_id is None


@pytest.mark.parametrize("raw", ["[]", '["ping"]', '"ping"', "1", "1.5", "null", "true", "false"])
def test_non_object_is_bad_request(raw: str) -> None:
    reject(raw)


def test_bytes_and_str_are_both_accepted() -> None:
    assert decode_frame(b'{"type":"ping"}').type == "ping"
    assert decode_frame('{"type":"ping"}').type == "ping"


def test_missing_type_is_bad_request_with_id_echoed() -> None:
    err = reject({"id": "q1"})
    assert err.frame_id == "q1"


@pytest.mark.parametrize("value", [None, 1, True, ["ping"], {"t": "ping"}, 1.5])
def test_mistyped_type_is_bad_request(value: object) -> None:
    err = reject({"type": value, "id": 7})
    assert err.frame_id == 7


@pytest.mark.parametrize("frame_id", ["abc", 12, 0, -3, "", "x" * 64, 2**63 - 1, -(2**63)])
def test_unknown_type_echoes_id(frame_id: str | int) -> None:
    err = reject({"type": "message.edit", "id": frame_id}, protocol.UNKNOWN_TYPE)
    assert err.frame_id == frame_id


@pytest.mark.parametrize(
    "frame_type",
    ["", "PING", "ping ", "message", "ok", "error", "pong", "message.ack", "sync.done", "x" * 1000],
)
def test_unknown_types(frame_type: str) -> None:
    err = reject({"type": frame_type}, protocol.UNKNOWN_TYPE)
    assert err.frame_id is None
    assert len(err.message) < 200


@pytest.mark.parametrize("frame_id", ["abc", "", "x" * 64, 0, 1, -1, 2**53, 2**63 - 1])
def test_valid_ids_are_echoed(frame_id: str | int) -> None:
    frame = decode({"type": "ping", "id": frame_id})
    assert frame.id == frame_id
    assert type(frame.id) is type(frame_id)


def test_null_and_missing_id() -> None:
    assert decode({"type": "ping"}).id is None
    assert decode({"type": "ping", "id": None}).id is None


@pytest.mark.parametrize("frame_id", [True, False, "x" * 65, 1.5, 1.0, [1], {"a": 1}, 2**64 - 1])
def test_invalid_ids_are_bad_request(frame_id: object) -> None:
    err = reject({"type": "ping", "id": frame_id})
    assert err.frame_id is None


def test_invalid_id_wins_over_unknown_type() -> None:
    reject({"type": "nope", "id": True})


def test_validation_errors_echo_the_id() -> None:
    err = reject({"type": "message.send", "id": "m-1", "conversation_id": DM})
    assert err.frame_id == "m-1"
    err = reject({"type": "typing", "id": 42, "conversation_id": DM, "state": "paused"})
    assert err.frame_id == 42


def test_unknown_fields_are_ignored() -> None:
    frame = decode(
        {
            "type": "message.send",
            "id": 1,
            "conversation_id": DM,
            "client_msg_id": "c",
            "body": "hi",
            "extra": {"deep": [1, 2]},
            "sender": "mallory",
            "seq": 99,
        }
    )
    assert frame == ClientFrame(
        "message.send",
        1,
        {"conversation_id": DM, "client_msg_id": "c", "body": "hi", "attachments": []},
    )
    frame = decode({"type": "ping", "whatever": None, "users": "x"})
    assert frame.fields == {}


# --------------------------------------------------------------------------- conversation.create


def test_create_direct() -> None:
    frame = decode(
        {
            "type": "conversation.create",
            "id": "c1",
            "kind": "direct",
            "members": ["bob"],
            "title": "ignored",
        }
    )
    assert frame.type == "conversation.create"
    assert frame.id == "c1"
    assert frame.fields["kind"] == "direct"
    assert frame.fields["members"] == ["bob"]


@pytest.mark.parametrize("members", [[], ["bob", "carol"], "bob", None, ["bad id"], [1]])
def test_create_direct_needs_exactly_one_valid_member(members: object) -> None:
    reject({"type": "conversation.create", "kind": "direct", "members": members})


def test_create_group() -> None:
    frame = decode(
        {
            "type": "conversation.create",
            "kind": "group",
            "members": ["bob", "carol"],
            "title": "Team",
        }
    )
    assert frame.fields == {"kind": "group", "members": ["bob", "carol"], "title": "Team"}


def test_create_group_defaults_and_limits() -> None:
    frame = decode({"type": "conversation.create", "kind": "group", "members": []})
    assert frame.fields == {"kind": "group", "members": [], "title": ""}
    frame = decode({"type": "conversation.create", "kind": "group", "members": [], "title": None})
    assert frame.fields["title"] == ""
    frame = decode(
        {"type": "conversation.create", "kind": "group", "members": [], "title": "t" * 200}
    )
    assert frame.fields["title"] == "t" * 200
    many = [f"u{i}" for i in range(999)]
    frame = decode({"type": "conversation.create", "kind": "group", "members": many})
    assert frame.fields["members"] == many


def test_create_group_dedups_members_in_order() -> None:
    frame = decode(
        {
            "type": "conversation.create",
            "kind": "group",
            "members": ["carol", "bob", "carol", "bob", "dave"],
        }
    )
    assert frame.fields["members"] == ["carol", "bob", "dave"]


@pytest.mark.parametrize(
    "extra",
    [
        {"members": [f"u{i}" for i in range(1000)]},
        {"members": ["ok", ""]},
        {"members": ["x" * 65]},
        {"members": [None]},
        {"members": {"bob": True}},
        {"members": "bob"},
        {},
        {"members": [], "title": "t" * 201},
        {"members": [], "title": 5},
        {"members": [], "title": ["t"]},
    ],
)
def test_create_group_invalid(extra: dict[str, Any]) -> None:
    reject({"type": "conversation.create", "kind": "group", **extra})


@pytest.mark.parametrize("kind", [None, "", "Group", "channel", 1, ["group"]])
def test_create_invalid_kind(kind: object) -> None:
    frame: dict[str, Any] = {"type": "conversation.create", "members": ["bob"]}
    if kind is not None:
        frame["kind"] = kind
    reject(frame)


# --------------------------------------------------------------------------- add/remove members


@pytest.mark.parametrize("frame_type", ["conversation.add_members", "conversation.remove_members"])
def test_members_frames(frame_type: str) -> None:
    frame = decode(
        {"type": frame_type, "id": 3, "conversation_id": GRP, "members": ["bob", "bob", "carol"]}
    )
    assert frame.fields == {"conversation_id": GRP, "members": ["bob", "carol"]}
    many = [f"u{i}" for i in range(1000)]
    assert (
        decode({"type": frame_type, "conversation_id": GRP, "members": many}).fields["members"]
        == many
    )


@pytest.mark.parametrize("frame_type", ["conversation.add_members", "conversation.remove_members"])
@pytest.mark.parametrize(
    "extra",
    [
        {"conversation_id": GRP, "members": []},
        {"conversation_id": GRP, "members": [f"u{i}" for i in range(1001)]},
        {"conversation_id": GRP, "members": ["a b"]},
        {"conversation_id": GRP, "members": "bob"},
        {"conversation_id": GRP},
        {"members": ["bob"]},
        {"conversation_id": "grp:nothex", "members": ["bob"]},
        {"conversation_id": 7, "members": ["bob"]},
    ],
)
def test_members_frames_invalid(frame_type: str, extra: dict[str, Any]) -> None:
    reject({"type": frame_type, **extra})


# --------------------------------------------------------------------------- message.send


def send(**fields: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "message.send",
        "conversation_id": DM,
        "client_msg_id": "c-1",
        "body": "hi",
    }
    frame.update(fields)
    return {k: v for k, v in frame.items() if v is not ...}


@pytest.mark.parametrize("body", ["x", "x" * 4000, "é" * 4000, "\U0001f600" * 4000, " ", "\n"])
def test_send_valid_bodies(body: str) -> None:
    frame = decode(send(body=body))
    assert frame.fields["body"] == body


@pytest.mark.parametrize("cmid", ["c", "c" * 64, "any chars ok: é"])
def test_send_valid_client_msg_ids(cmid: str) -> None:
    assert decode(send(client_msg_id=cmid)).fields["client_msg_id"] == cmid


def test_send_group() -> None:
    assert decode(send(conversation_id=GRP)).fields["conversation_id"] == GRP


@pytest.mark.parametrize(
    "fields",
    [
        {"body": ""},
        {"body": "x" * 4001},
        {"body": "\U0001f600" * 4001},
        {"body": None},
        {"body": ...},
        {"body": 5},
        {"body": ["hi"]},
        {"client_msg_id": ""},
        {"client_msg_id": "c" * 65},
        {"client_msg_id": 5},
        {"client_msg_id": ...},
        {"conversation_id": ...},
        {"conversation_id": "dm:bob:alice"},
        {"conversation_id": "grp:123"},
        {"conversation_id": None},
    ],
)
def test_send_invalid(fields: dict[str, Any]) -> None:
    reject(send(**fields))


# --------------------------------------------------------------------------- delivered / read


@pytest.mark.parametrize("frame_type", ["message.delivered", "receipt.read"])
@pytest.mark.parametrize("seq", [0, 1, 12345, 2**53 - 1])
def test_cursor_frames(frame_type: str, seq: int) -> None:
    frame = decode({"type": frame_type, "conversation_id": GRP, "seq": seq})
    assert frame.fields == {"conversation_id": GRP, "seq": seq}


@pytest.mark.parametrize("frame_type", ["message.delivered", "receipt.read"])
@pytest.mark.parametrize("seq", [-1, 1.0, 1.5, "1", True, False, None, [1], 2**64 - 1])
def test_cursor_frames_invalid_seq(frame_type: str, seq: object) -> None:
    reject({"type": frame_type, "conversation_id": GRP, "seq": seq})


@pytest.mark.parametrize("frame_type", ["message.delivered", "receipt.read"])
def test_cursor_frames_missing_fields(frame_type: str) -> None:
    reject({"type": frame_type, "conversation_id": GRP})
    reject({"type": frame_type, "seq": 1})
    reject({"type": frame_type, "conversation_id": "dm:x", "seq": 1})


# --------------------------------------------------------------------------- typing


@pytest.mark.parametrize("state", ["start", "stop"])
def test_typing(state: str) -> None:
    frame = decode({"type": "typing", "conversation_id": DM, "state": state})
    assert frame.fields == {"conversation_id": DM, "state": state}


@pytest.mark.parametrize("state", [None, "", "START", "paused", True, 1, ["start"]])
def test_typing_invalid_state(state: object) -> None:
    reject({"type": "typing", "conversation_id": DM, "state": state})


def test_typing_needs_conversation() -> None:
    reject({"type": "typing", "state": "start"})


# --------------------------------------------------------------------------- sync


def test_sync_without_cursors() -> None:
    assert decode({"type": "sync", "id": "s"}).fields == {"cursors": None}
    assert decode({"type": "sync", "cursors": None}).fields == {"cursors": None}


def test_sync_with_cursors() -> None:
    frame = decode({"type": "sync", "cursors": {DM: 0, GRP: 17}})
    assert frame.fields == {"cursors": {DM: 0, GRP: 17}}
    assert decode({"type": "sync", "cursors": {}}).fields == {"cursors": {}}


@pytest.mark.parametrize(
    "cursors",
    [
        [DM, 0],
        [[DM, 0]],
        "dm:alice:bob",
        0,
        True,
        {DM: -1},
        {DM: 1.5},
        {DM: "3"},
        {DM: True},
        {DM: None},
        {"dm:bob:alice": 1},
        {"nope": 1},
        {GRP.upper(): 1},
    ],
)
def test_sync_invalid_cursors(cursors: object) -> None:
    reject({"type": "sync", "cursors": cursors})


# --------------------------------------------------------------------------- presence, ping


@pytest.mark.parametrize("frame_type", ["presence.subscribe", "presence.query"])
def test_presence(frame_type: str) -> None:
    users = [f"user{i}" for i in range(500)]
    assert decode({"type": frame_type, "users": users}).fields == {"users": users}
    assert decode({"type": frame_type, "users": ["a", "a", "b"]}).fields == {"users": ["a", "b"]}
    assert decode({"type": frame_type, "users": []}).fields == {"users": []}


@pytest.mark.parametrize("frame_type", ["presence.subscribe", "presence.query"])
@pytest.mark.parametrize(
    "users",
    [
        [f"user{i}" for i in range(501)],
        ["ok", "not ok"],
        "alice",
        None,
        {"alice": 1},
        [5],
        ["alice\n"],
    ],
)
def test_presence_invalid(frame_type: str, users: object) -> None:
    reject({"type": frame_type, "users": users})


def test_ping() -> None:
    assert decode({"type": "ping", "id": "p"}) == ClientFrame("ping", "p", {})


def test_every_client_type_has_a_valid_example() -> None:
    examples: dict[str, dict[str, Any]] = {
        "conversation.create": {"kind": "direct", "members": ["bob"]},
        "conversation.add_members": {"conversation_id": GRP, "members": ["bob"]},
        "conversation.remove_members": {"conversation_id": GRP, "members": ["bob"]},
        "message.send": {"conversation_id": DM, "client_msg_id": "1", "body": "b"},
        "message.delivered": {"conversation_id": DM, "seq": 1},
        "message.report": {"conversation_id": DM, "seq": 1, "reason": "spam"},
        "receipt.read": {"conversation_id": DM, "seq": 1},
        "typing": {"conversation_id": DM, "state": "start"},
        "sync": {},
        "presence.subscribe": {"users": ["bob"]},
        "presence.query": {"users": ["bob"]},
        "ping": {},
    }
    assert set(examples) == CLIENT_TYPES
    for frame_type, fields in examples.items():
        frame = decode({"type": frame_type, "id": frame_type, **fields})
        assert frame.type == frame_type
        assert frame.id == frame_type


# --------------------------------------------------------------------------- server frames


def test_error_frame_shapes() -> None:
    assert error_frame("bad_request", "nope") == {
        "type": "error",
        "code": "bad_request",
        "message": "nope",
    }
    assert error_frame("not_found", "gone", "q") == {
        "type": "error",
        "code": "not_found",
        "message": "gone",
        "id": "q",
    }
    assert error_frame("internal", "x", 0)["id"] == 0
    frame = error_frame("rate_limited", "slow down", 5, retry_after_ms=250)
    assert frame == {
        "type": "error",
        "code": "rate_limited",
        "message": "slow down",
        "id": 5,
        "retry_after_ms": 250,
    }
    assert (
        type(
            error_frame("rate_limited", "x", retry_after_ms=12.0)[  # type: ignore[arg-type]
                "retry_after_ms"
            ]
        )
        is int
    )
    assert error_frame("rate_limited", "x", retry_after_ms=0)["retry_after_ms"] == 0


def test_ok_frame_shapes() -> None:
    assert ok_frame(None) == {"type": "ok"}
    assert ok_frame("a", conversation={"id": GRP}) == {
        "type": "ok",
        "id": "a",
        "conversation": {"id": GRP},
    }
    assert ok_frame(0, presence=[]) == {"type": "ok", "id": 0, "presence": []}


def test_pong_frame_shapes() -> None:
    assert pong_frame(None) == {"type": "pong"}
    assert pong_frame(0) == {"type": "pong", "id": 0}
    assert pong_frame("p") == {"type": "pong", "id": "p"}


def test_encode_is_json() -> None:
    frame = error_frame("bad_request", "é \U0001f600", "x")
    assert json.loads(protocol.encode(frame)) == frame
    assert isinstance(protocol.encode(frame), str)


def test_error_codes() -> None:
    assert {
        protocol.BAD_REQUEST,
        protocol.UNKNOWN_TYPE,
        protocol.TOO_LARGE,
        protocol.NOT_MEMBER,
        protocol.NOT_FOUND,
        protocol.FORBIDDEN,
        protocol.RATE_LIMITED,
        protocol.UNAVAILABLE,
        protocol.INTERNAL,
    } == {
        "bad_request",
        "unknown_type",
        "too_large",
        "not_member",
        "not_found",
        "forbidden",
        "rate_limited",
        "unavailable",
        "internal",
    }


# --------------------------------------------------------------------------- properties

user_ids = st.from_regex(USER_RE, fullmatch=True)
field_names = st.sampled_from(
    [
        "id",
        "type",
        "conversation_id",
        "members",
        "kind",
        "title",
        "client_msg_id",
        "body",
        "seq",
        "state",
        "cursors",
        "users",
    ]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**53, 2**63, 2**64, -(2**63) - 1, 10**40, -(10**40)])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["direct", "group", "start", "stop", DM, GRP, "alice", "", "x" * 70])
    | user_ids
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            field_names | st.text(max_size=8) | st.sampled_from([DM, GRP]), children, max_size=5
        )
    ),
    max_leaves=25,
)
frame_types = st.sampled_from(sorted(CLIENT_TYPES)) | st.text(max_size=12) | json_values
frames = st.builds(
    lambda t, extra, keep_type: {**extra, "type": t} if keep_type else extra,
    frame_types,
    st.dictionaries(field_names | st.text(max_size=8), json_values, max_size=8),
    st.booleans(),
)


def _check_outcome(raw: str | bytes) -> None:
    try:
        frame = decode_frame(raw)
    except ProtocolError as exc:
        assert exc.code in (protocol.BAD_REQUEST, protocol.UNKNOWN_TYPE)
        assert isinstance(exc.message, str)
        assert exc.frame_id is None or isinstance(exc.frame_id, str | int)
        return
    assert isinstance(frame, ClientFrame)
    assert frame.type in CLIENT_TYPES
    assert frame.id is None or (isinstance(frame.id, str | int) and not isinstance(frame.id, bool))
    # Whatever was accepted can be put back on the wire.
    orjson.dumps(frame.fields)


@PROPS
@given(st.text())
def test_decode_never_raises_on_text(raw: str) -> None:
    _check_outcome(raw)


@PROPS
@given(st.text(alphabet=st.characters(codec=None, categories=None), max_size=50))
def test_decode_never_raises_on_text_with_surrogates(raw: str) -> None:
    _check_outcome(raw)


@PROPS
@given(st.binary())
def test_decode_never_raises_on_bytes(raw: bytes) -> None:
    _check_outcome(raw)


@PROPS
@given(json_values)
def test_decode_never_raises_on_json_values(value: Any) -> None:
    _check_outcome(json.dumps(value))


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(frames)
def test_decode_never_raises_on_frame_like_objects(frame: dict[str, Any]) -> None:
    raw = json.dumps(frame)
    _check_outcome(raw)
    _check_outcome(raw.encode())


@PROPS
@given(
    st.dictionaries(st.text(max_size=5), json_values, max_size=4),
    st.sampled_from(sorted(CLIENT_TYPES)),
)
def test_decode_with_nan_and_infinity(extra: dict[str, Any], frame_type: str) -> None:
    frame = {**extra, "type": frame_type, "n": float("nan"), "i": float("-inf")}
    _check_outcome(json.dumps(frame))


@pytest.mark.parametrize("depth", [10, 200, 1000, 5000, 100_000])
def test_decode_deep_nesting(depth: int) -> None:
    raw = '{"type":"sync","cursors":' + '{"a":' * depth + "1" + "}" * depth + "}"
    _check_outcome(raw)
    raw = '{"type":"presence.query","users":' + "[" * depth + "]" * depth + "}"
    _check_outcome(raw)


def test_decode_huge_numbers() -> None:
    for number in ["9" * 400, "-" + "9" * 400, "1e400", "1e-400", "1" + "0" * 30]:
        _check_outcome(f'{{"type":"message.delivered","conversation_id":"{DM}","seq":{number}}}')
        _check_outcome(f'{{"type":"ping","id":{number}}}')


@PROPS
@given(user_ids, user_ids)
def test_direct_conversation_id_is_symmetric_and_valid(a: str, b: str) -> None:
    cid = direct_conversation_id(a, b)
    assert cid == direct_conversation_id(b, a)
    assert is_conversation_id(cid) == (a != b)
    if a != b:
        assert set(protocol.direct_members(cid)) == {a, b}
        lo, hi = protocol.direct_members(cid)
        assert lo.encode() < hi.encode()
        frame = decode({"type": "typing", "conversation_id": cid, "state": "start"})
        assert frame.fields["conversation_id"] == cid


@PROPS
@given(st.text(max_size=20), st.text(max_size=20))
def test_direct_conversation_id_symmetric_for_any_text(a: str, b: str) -> None:
    assert direct_conversation_id(a, b) == direct_conversation_id(b, a)


near_user_ids = st.text(max_size=70) | st.builds(
    lambda core, prefix, suffix: prefix + core + suffix,
    user_ids,
    st.sampled_from(["", "", " ", "\n", ":"]),
    st.sampled_from(["", "", "\n", "\r\n", " ", "\x00", "é"]),
)


@PROPS
@given(near_user_ids)
@example("alice\n")
def test_is_user_id_matches_the_documented_alphabet(value: str) -> None:
    assert is_user_id(value) == (USER_RE.fullmatch(value) is not None)


@PROPS
@given(st.text(max_size=150))
def test_is_conversation_id_never_raises(value: str) -> None:
    if is_conversation_id(value):
        assert value.startswith(("dm:", "grp:"))


@PROPS
@given(st.text(max_size=4100), st.text(max_size=70))
def test_send_lengths_property(body: str, cmid: str) -> None:
    ok = 1 <= len(body) <= 4000 and 1 <= len(cmid) <= 64
    try:
        frame = decode_frame(json.dumps(send(body=body, client_msg_id=cmid)))
    except ProtocolError as exc:
        assert not ok, exc.message
        assert exc.code == protocol.BAD_REQUEST
    else:
        assert ok
        assert frame.fields["body"] == body
