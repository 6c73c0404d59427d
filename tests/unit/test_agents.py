"""The agents' handlers as the pure functions they are: (rows, events) → (rows, outputs).

No Kafka here: each test runs batches against plain dicts standing in for the tables, applies the
staged rows the way the runtime does, and looks at what the batch would write. The integration
suite runs the same handlers on the real runtime.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat import records
from chat.settings import Settings
from topologies import activity, router, sessions
from topologies.batch import Batch, Event
from topologies.topology import AGENTS

SETTINGS = Settings(env="dev")
Tables = dict[str, dict[str, Any]]


def empty_tables() -> Tables:
    return {table: {} for agent in AGENTS for table in agent.tables}


def run(tables: Tables, handler: Any, events: list[Event]) -> Batch:
    """One batch, its rows applied to ``tables`` as the runtime applies them."""
    batch = Batch(SETTINGS, tables)
    handler(batch, events)
    for (table, key), value in batch.rows.items():
        if value is None:
            tables[table].pop(key, None)
        else:
            tables[table][key] = value
    return batch


def origin(session: str = "s-alice", slot: int = 0, frame_id: int = 1) -> dict[str, Any]:
    return {"slot": slot, "session": session, "id": frame_id}


def command(op: str, cid: str, user: str, **fields: Any) -> dict[str, Any]:
    return {"op": op, "conversation_id": cid, "user": user, "origin": origin(), **fields}


def cmd(op: str, cid: str, user: str, at: int = 1000, **fields: Any) -> Event:
    return Event(cid, command(op, cid, user, **fields), at)


def decoded(entries: list[bytes]) -> list[Any]:
    return [orjson.loads(entry) for entry in entries]


def user_events(batch: Batch) -> list[tuple[str, dict[str, Any]]]:
    return [(u, e) for entries in batch.user_events.values() for u, e in decoded(entries)]


DM = "dm:alice:bob"


def with_direct_conversation() -> Tables:
    tables = empty_tables()
    run(tables, router.route, [cmd("conversation.create", DM, "alice", kind="direct")])
    return tables


def test_send_sequences_fans_out_and_acks_after_the_rows() -> None:
    tables = with_direct_conversation()
    batch = run(
        tables,
        router.route,
        [cmd("message.send", DM, "alice", client_msg_id="c1", body="hi")],
    )
    assert [(t, k) for t, k, _ in batch.records] == [("messages", DM)]
    message = orjson.loads(batch.records[0][2])
    assert (message["seq"], message["body"], message["sender"]) == (1, "hi", "alice")
    assert sorted(u for u, _ in user_events(batch)) == ["alice", "bob"]
    # Each member's event sits in the partition of that member's id, like a keyed record.
    for partition, entries in batch.user_events.items():
        for user, _ in decoded(entries):
            assert records.partition_for(user, SETTINGS.user_partitions) == partition
    # The sender's own session is excluded from the fan-out; the ack is a reply (after rows).
    exclude = {u: e["exclude"] for u, e in user_events(batch)}
    assert exclude == {"alice": "s-alice", "bob": None}
    assert batch.deliveries == {}
    (ack,) = decoded(batch.replies[0])
    assert ack["frame"]["type"] == "message.ack" and ack["frame"]["seq"] == 1
    assert tables["sequences"][DM]["last_seq"] == 1


def test_a_repeated_send_gets_the_original_ack_and_nothing_else() -> None:
    tables = with_direct_conversation()
    send = cmd("message.send", DM, "alice", client_msg_id="c1", body="hi")
    run(tables, router.route, [send])
    again = run(tables, router.route, [send, send])
    assert again.records == [] and again.user_events == {} and again.rows == {}
    assert [d["frame"]["seq"] for d in decoded(again.replies[0])] == [1, 1]


def test_receipts_are_coalesced_per_batch() -> None:
    tables = with_direct_conversation()
    run(
        tables,
        router.route,
        [cmd("message.send", DM, "alice", client_msg_id=f"c{i}", body="x") for i in range(5)],
    )
    batch = run(
        tables,
        router.route,
        [cmd("message.delivered", DM, "bob", seq=s) for s in (1, 2, 3)]
        + [cmd("receipt.read", DM, "bob", seq=2)],
    )
    # One record for the store with the final cursors, one frame per kind per member.
    assert [(t, k) for t, k, _ in batch.records] == [("receipts", f"{DM}|bob")]
    assert orjson.loads(batch.records[0][2]) == {
        "conversation_id": DM,
        "user": "bob",
        "read": 2,
        "delivered": 3,
    }
    frames = sorted((u, e["frame"]["kind"], e["frame"]["seq"]) for u, e in user_events(batch))
    assert frames == [
        ("alice", "delivered", 3),
        ("alice", "read", 2),
        ("bob", "delivered", 3),
        ("bob", "read", 2),
    ]


def test_a_non_member_is_refused_with_an_error_to_its_session() -> None:
    tables = with_direct_conversation()
    batch = run(tables, router.route, [cmd("message.send", DM, "eve", client_msg_id="c", body="")])
    (error,) = decoded(batch.deliveries[0])
    assert error["frame"]["type"] == "error" and error["frame"]["code"] == "not_member"
    assert batch.rows == {} and batch.records == []


COMMANDS = st.lists(
    st.one_of(
        st.builds(
            lambda user, n: ("message.send", user, {"client_msg_id": f"c{n}", "body": f"b{n}"}),
            st.sampled_from(["alice", "bob"]),
            st.integers(0, 6),
        ),
        st.builds(
            lambda user, seq: ("message.delivered", user, {"seq": seq}),
            st.sampled_from(["alice", "bob"]),
            st.integers(0, 8),
        ),
        st.builds(
            lambda user, seq: ("receipt.read", user, {"seq": seq}),
            st.sampled_from(["alice", "bob"]),
            st.integers(0, 8),
        ),
        st.builds(
            lambda user, state: ("typing", user, {"state": state}),
            st.sampled_from(["alice", "bob"]),
            st.sampled_from(["start", "stop"]),
        ),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(commands=COMMANDS, cut=st.lists(st.integers(1, 30), max_size=6))
def test_any_bundling_of_the_commands_gives_the_same_state_and_messages(
    commands: list[tuple[str, str, dict[str, Any]]], cut: list[int]
) -> None:
    """Replay determinism: one batch of everything, or any split into smaller batches (as
    bundles and batch windows fall), ends in the same rows and the same sequenced messages."""
    events = [
        cmd(op, DM, user, at=1000 + i, **fields) for i, (op, user, fields) in enumerate(commands)
    ]

    def outcome(boundaries: list[int]) -> tuple[Tables, list[bytes]]:
        tables = with_direct_conversation()
        messages: list[bytes] = []
        edges = sorted({b for b in boundaries if b < len(events)})
        for start, end in zip([0, *edges], [*edges, len(events)], strict=True):
            batch = run(tables, router.route, events[start:end])
            messages += [v for t, _, v in batch.records if t == "messages"]
        return tables, messages

    whole = outcome([])
    assert outcome(cut) == whole
    assert outcome(list(range(1, len(events)))) == whole


# --------------------------------------------------------------------------- sessions agent


def user_event(user: str, op: str, at: int = 1000, **fields: Any) -> Event:
    return Event(user, {"op": op, **fields}, at)


def message(seq: int) -> dict[str, Any]:
    return {
        "conversation_id": DM,
        "seq": seq,
        "sender": "alice",
        "body": f"m{seq}",
        "ts": seq,
        "client_msg_id": f"c{seq}",
    }


def test_a_message_goes_to_the_inbox_and_to_every_live_session_per_slot() -> None:
    tables = empty_tables()
    run(
        tables,
        sessions.route_users,
        [
            user_event("bob", "session.open", session="b1", slot=0, edge="e0"),
            user_event("bob", "session.open", session="b2", slot=1, edge="e1"),
            user_event("bob", "session.open", session="b3", slot=1, edge="e1"),
        ],
    )
    batch = run(
        tables,
        sessions.route_users,
        [
            user_event("bob", "message", message=message(1), exclude=None),
            user_event("bob", "message", message=message(2), exclude="b3"),
        ],
    )
    slot0 = [(d["sessions"], d["frame"]["seq"]) for d in decoded(batch.deliveries[0])]
    slot1 = [(d["sessions"], d["frame"]["seq"]) for d in decoded(batch.deliveries[1])]
    assert slot0 == [(["b1"], 1), (["b1"], 2)]
    assert slot1 == [(["b2", "b3"], 1), (["b2"], 2)]
    assert [m["seq"] for m in tables["inbox"]["bob"][DM]["pending"]] == [1, 2]


def test_presence_is_cached_before_the_watchers_are_told() -> None:
    tables = empty_tables()
    run(
        tables, sessions.route_users, [user_event("bob", "presence.subscribe", session="w", slot=2)]
    )
    batch = run(
        tables,
        sessions.route_users,
        [user_event("bob", "session.open", at=5000, session="b1", slot=0, edge="e0")],
    )
    assert batch.cache_writes == [("chat:presence:bob", {"status": "online", "last_seen": 5000})]
    (frame,) = decoded(batch.deliveries[2])
    assert frame == {
        "sessions": ["w"],
        "frame": {"type": "presence", "user": "bob", "status": "online", "last_seen": 5000},
    }
    closing = run(
        tables,
        sessions.route_users,
        [user_event("bob", "session.close", at=6000, session="b1", edge="e0")],
    )
    assert closing.cache_writes == [("chat:presence:bob", {"status": "offline", "last_seen": 6000})]


def test_sync_answers_the_inbox_to_the_asking_session() -> None:
    tables = empty_tables()
    run(
        tables,
        sessions.route_users,
        [user_event("bob", "message", message=message(s), exclude=None) for s in (1, 2, 3)],
    )
    batch = run(
        tables,
        sessions.route_users,
        [user_event("bob", "sync", session="b9", slot=3, id=7, cursors={DM: 1})],
    )
    (answer,) = decoded(batch.deliveries[3])
    assert answer["sessions"] == ["b9"]
    assert [m["seq"] for m in answer["sync"]["messages"]] == [2, 3]
    assert answer["sync"]["conversations"] == {DM: 3}
    assert answer["sync"]["id"] == 7


def test_a_broken_event_does_not_stop_the_batch() -> None:
    tables = empty_tables()
    batch = run(
        tables,
        sessions.route_users,
        [
            user_event("bob", "message"),  # no message: a bug upstream
            user_event("bob", "message", message=message(1), exclude=None),
        ],
    )
    assert [m["seq"] for m in tables["inbox"]["bob"][DM]["pending"]] == [1]
    assert batch.rows


def test_activity_publishes_one_record_per_conversation_and_batch() -> None:
    tables = empty_tables()
    batch = run(
        tables,
        activity.count_activity,
        [Event(DM, message(s), s) for s in (1, 2, 2, 3)],
    )
    assert [(t, k) for t, k, _ in batch.records] == [("activity", DM)]
    assert orjson.loads(batch.records[0][2])["messages"] == 3


@pytest.mark.parametrize("size", [10, 100, 1000])
def test_bundles_split_below_their_byte_limit(size: int) -> None:
    entries = [
        records.keyed_event(f"user-{i}", {"op": "frame", "n": "x" * size}) for i in range(50)
    ]
    limit = 4096
    bundles = records.split_bundles(entries, limit)
    assert all(len(b) <= limit for b in bundles if len(orjson.loads(b)) > 1)
    assert [e for b in bundles for e in orjson.loads(b)] == [orjson.loads(e) for e in entries]


def test_delivered_receipts_in_a_large_group_go_to_the_confirming_user_only() -> None:
    tables = empty_tables()
    members = [f"m{i}" for i in range(SETTINGS.delivered_receipts_max_members + 1)]
    group = "grp:large"
    run(
        tables,
        router.route,
        [cmd("conversation.create", group, "m0", kind="group", members=members[1:], title="t")],
    )
    run(tables, router.route, [cmd("message.send", group, "m0", client_msg_id="c", body="x")])
    delivered = run(tables, router.route, [cmd("message.delivered", group, "m5", seq=1)])
    assert [u for u, _ in user_events(delivered)] == ["m5"]
    read = run(tables, router.route, [cmd("receipt.read", group, "m5", seq=1)])
    assert sorted(u for u, _ in user_events(read)) == sorted(members)
    # A group at the limit still shares delivered receipts with everyone.
    small = "grp:small"
    run(
        tables,
        router.route,
        [
            cmd(
                "conversation.create",
                small,
                "m0",
                kind="group",
                members=members[1 : SETTINGS.delivered_receipts_max_members],
                title="t",
            )
        ],
    )
    run(tables, router.route, [cmd("message.send", small, "m0", client_msg_id="c", body="x")])
    shared = run(tables, router.route, [cmd("message.delivered", small, "m5", seq=1)])
    assert len(user_events(shared)) == SETTINGS.delivered_receipts_max_members


def test_membership_sets_follow_every_conversation_change() -> None:
    """The router writes each member's conversation set (presence visibility) as cache writes
    of the batch, which the runtime makes before the ``conversation`` events go out."""
    tables = empty_tables()
    gid = "grp:" + "a" * 32
    created = run(
        tables,
        router.route,
        [cmd("conversation.create", gid, "alice", kind="group", members=["bob"], title="t")],
    )
    assert created.set_writes == [
        ("chat:member-of:alice", gid, True),
        ("chat:member-of:bob", gid, True),
    ]
    added = run(
        tables, router.route, [cmd("conversation.add_members", gid, "alice", members=["carol"])]
    )
    assert ("chat:member-of:carol", gid, True) in added.set_writes
    removed = run(
        tables, router.route, [cmd("conversation.remove_members", gid, "alice", members=["bob"])]
    )
    assert ("chat:member-of:bob", gid, False) in removed.set_writes
    assert ("chat:member-of:bob", gid, True) not in removed.set_writes
    # Nothing changed, nothing written: removing a non-member.
    again = run(
        tables, router.route, [cmd("conversation.remove_members", gid, "alice", members=["bob"])]
    )
    assert again.set_writes == []
