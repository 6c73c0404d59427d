"""Pure table transitions (tables/*.py): conversations, sequences, receipts, typing, sessions,
inbox and presence subscribers."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat import protocol
from chat.records import Message
from tables import (
    activity,
    conversations,
    inbox,
    presence_subscribers,
    receipts,
    sequences,
    sessions,
    typing_state,
)
from tables.conversations import Rejected

GRP = "grp:" + "ab" * 16
DM = "dm:alice:bob"
PROPS = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


def rejected(fn: Any, *args: Any, code: str) -> Rejected:
    with pytest.raises(Rejected) as info:
        fn(*args)
    assert info.value.code == code
    assert info.value.message
    return info.value


def group(*others: str, creator: str = "alice", max_members: int = 1000) -> Any:
    return conversations.new_group(GRP, creator, list(others), "Team", 1000, max_members)


# --------------------------------------------------------------------------- conversations


def test_new_direct() -> None:
    row = conversations.new_direct(DM, "bob", 42)
    assert row == {
        "id": DM,
        "kind": "direct",
        "title": "",
        "members": ["alice", "bob"],
        "admins": [],
        "created_at": 42,
    }
    assert conversations.new_direct(DM, "alice", 42)["members"] == ["alice", "bob"]


def test_new_direct_by_outsider_is_forbidden() -> None:
    rejected(conversations.new_direct, DM, "carol", 1, code=protocol.FORBIDDEN)


def test_new_group_adds_creator_first_and_makes_it_admin() -> None:
    row = conversations.new_group(GRP, "alice", ["bob", "alice", "carol"], "Team", 7, 1000)
    assert row == {
        "id": GRP,
        "kind": "group",
        "title": "Team",
        "members": ["alice", "bob", "carol"],
        "admins": ["alice"],
        "created_at": 7,
    }


def test_new_group_alone() -> None:
    row = conversations.new_group(GRP, "alice", [], "", 7, 1000)
    assert row["members"] == ["alice"]
    assert row["admins"] == ["alice"]


def test_new_group_max_members() -> None:
    assert len(group("b", "c", max_members=3)["members"]) == 3
    # The creator listed among the others does not count twice.
    assert len(group("b", "c", "alice", max_members=3)["members"]) == 3
    rejected(
        conversations.new_group, GRP, "alice", ["b", "c", "d"], "", 1, 3, code=protocol.BAD_REQUEST
    )


def test_default_limit_allows_creator_plus_999() -> None:
    row = group(*[f"u{i}" for i in range(999)])
    assert len(row["members"]) == 1000


def test_public_shape_and_copies() -> None:
    row = group("bob")
    pub = conversations.public(row, 9)
    assert pub == {
        "id": GRP,
        "kind": "group",
        "title": "Team",
        "members": ["alice", "bob"],
        "admins": ["alice"],
        "last_seq": 9,
    }
    pub["members"].append("mallory")
    pub["admins"].append("mallory")
    assert row["members"] == ["alice", "bob"]
    assert row["admins"] == ["alice"]


def test_check_member() -> None:
    row = group("bob")
    assert conversations.check_member(row, GRP, "bob") is row
    rejected(conversations.check_member, row, GRP, "carol", code=protocol.NOT_MEMBER)
    rejected(conversations.check_member, None, GRP, "carol", code=protocol.NOT_FOUND)


def test_check_member_direct() -> None:
    row = conversations.new_direct(DM, "alice", 1)
    assert conversations.check_member(row, DM, "alice") is row
    assert conversations.check_member(row, DM, "bob") is row
    # Not naming the user: not_member, whether the conversation exists or not.
    rejected(conversations.check_member, row, DM, "carol", code=protocol.NOT_MEMBER)
    rejected(conversations.check_member, None, DM, "carol", code=protocol.NOT_MEMBER)
    rejected(conversations.check_member, None, "dm:carol:dave", "alice", code=protocol.NOT_MEMBER)
    # Naming the user but never created: not_found.
    rejected(conversations.check_member, None, DM, "alice", code=protocol.NOT_FOUND)


def test_add_members_by_admin() -> None:
    row = group("bob")
    before = copy.deepcopy(row)
    new, added = conversations.add_members(row, "alice", ["carol", "bob", "dave"], 1000)
    assert added == ["carol", "dave"]
    assert new["members"] == ["alice", "bob", "carol", "dave"]
    assert new["admins"] == ["alice"]
    assert new["id"] == GRP and new["title"] == "Team" and new["created_at"] == 1000
    assert row == before  # pure


def test_add_members_nothing_new() -> None:
    row = group("bob")
    new, added = conversations.add_members(row, "alice", ["bob", "alice"], 1000)
    assert added == []
    assert new["members"] == ["alice", "bob"]


@pytest.mark.parametrize("actor", ["bob", "mallory"])
def test_only_admins_add(actor: str) -> None:
    rejected(
        conversations.add_members, group("bob"), actor, ["carol"], 1000, code=protocol.FORBIDDEN
    )


def test_add_members_max() -> None:
    row = group("bob")
    new, added = conversations.add_members(row, "alice", ["c", "d"], 4)
    assert len(new["members"]) == 4
    rejected(conversations.add_members, new, "alice", ["e"], 4, code=protocol.BAD_REQUEST)
    rejected(conversations.add_members, row, "alice", ["c", "d", "e"], 4, code=protocol.BAD_REQUEST)
    # Already-present members do not count against the limit.
    same, added = conversations.add_members(new, "alice", ["bob", "c"], 4)
    assert added == [] and same["members"] == new["members"]


def test_direct_members_cannot_change() -> None:
    row = conversations.new_direct(DM, "alice", 1)
    rejected(conversations.add_members, row, "alice", ["carol"], 1000, code=protocol.FORBIDDEN)
    rejected(conversations.remove_members, row, "alice", ["bob"], code=protocol.FORBIDDEN)
    rejected(conversations.remove_members, row, "alice", ["alice"], code=protocol.FORBIDDEN)


def test_admin_removes_others() -> None:
    row = group("bob", "carol")
    before = copy.deepcopy(row)
    new, removed = conversations.remove_members(row, "alice", ["bob", "zed"])
    assert removed == ["bob"]
    assert new["members"] == ["alice", "carol"]
    assert new["admins"] == ["alice"]
    assert row == before  # pure


def test_member_may_remove_only_itself() -> None:
    row = group("bob", "carol")
    new, removed = conversations.remove_members(row, "bob", ["bob"])
    assert removed == ["bob"]
    assert new["members"] == ["alice", "carol"]
    assert new["admins"] == ["alice"]
    rejected(conversations.remove_members, row, "bob", ["carol"], code=protocol.FORBIDDEN)
    rejected(conversations.remove_members, row, "bob", ["bob", "carol"], code=protocol.FORBIDDEN)
    rejected(conversations.remove_members, row, "bob", ["alice"], code=protocol.FORBIDDEN)
    rejected(conversations.remove_members, row, "mallory", ["bob"], code=protocol.FORBIDDEN)


def test_non_member_removing_itself_changes_nothing() -> None:
    row = group("bob")
    new, removed = conversations.remove_members(row, "mallory", ["mallory"])
    assert removed == []
    assert new["members"] == row["members"]
    assert new["admins"] == row["admins"]


def test_last_admin_leaving_promotes_earliest_member() -> None:
    row = group("bob", "carol")
    row, _ = conversations.add_members(row, "alice", ["dave"], 1000)
    new, removed = conversations.remove_members(row, "alice", ["alice"])
    assert removed == ["alice"]
    assert new["members"] == ["bob", "carol", "dave"]
    assert new["admins"] == ["bob"]
    # The new admin can now add and remove.
    new, _ = conversations.add_members(new, "bob", ["erin"], 1000)
    new, _ = conversations.remove_members(new, "bob", ["carol"])
    assert new["members"] == ["bob", "dave", "erin"]


def test_admin_removing_itself_and_others_promotes_earliest_remaining() -> None:
    row = group("bob", "carol", "dave")
    new, removed = conversations.remove_members(row, "alice", ["alice", "bob"])
    assert set(removed) == {"alice", "bob"}
    assert new["members"] == ["carol", "dave"]
    assert new["admins"] == ["carol"]


def test_no_promotion_while_an_admin_remains() -> None:
    row = group("bob", "carol")
    row["admins"] = ["alice", "carol"]
    new, _ = conversations.remove_members(row, "alice", ["alice"])
    assert new["admins"] == ["carol"]
    assert new["members"] == ["bob", "carol"]


def test_last_member_leaving_leaves_an_empty_group() -> None:
    new, removed = conversations.remove_members(group(), "alice", ["alice"])
    assert removed == ["alice"]
    assert new["members"] == []
    assert new["admins"] == []


@PROPS
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "remove"]),
            st.sampled_from(["a", "b", "c", "d", "e", "f"]),
            st.lists(
                st.sampled_from(["a", "b", "c", "d", "e", "f"]), min_size=1, max_size=3, unique=True
            ),
        ),
        max_size=25,
    )
)
def test_group_invariants(ops: list[tuple[str, str, list[str]]]) -> None:
    row = conversations.new_group(GRP, "a", ["b"], "", 1, 5)
    for op, actor, members in ops:
        try:
            if op == "add":
                row, _ = conversations.add_members(row, actor, members, 5)
            else:
                row, _ = conversations.remove_members(row, actor, members)
        except Rejected as exc:
            assert exc.code in (protocol.FORBIDDEN, protocol.BAD_REQUEST)
        assert len(row["members"]) <= 5
        assert len(set(row["members"])) == len(row["members"])
        assert set(row["admins"]) <= set(row["members"])
        assert bool(row["admins"]) == bool(row["members"])


# --------------------------------------------------------------------------- sequences


def test_assign_is_gapless_and_remembers_keys() -> None:
    row = sequences.empty()
    assert row == {"last_seq": 0, "last_ts": 0, "recent": {}}
    seqs = []
    for i in range(10):
        row, seq, ts = sequences.assign(row, "alice", f"c{i}", 1000 + i, 256)
        seqs.append(seq)
        assert ts == 1000 + i
    assert seqs == list(range(1, 11))
    assert row["last_seq"] == 10
    assert sequences.lookup(row, "alice", "c3") == (4, 1003)
    assert sequences.lookup(row, "bob", "c3") is None
    assert sequences.lookup(row, "alice", "c99") is None


def test_assign_is_pure() -> None:
    row = sequences.empty()
    row, _, _ = sequences.assign(row, "alice", "c1", 5, 256)
    before = copy.deepcopy(row)
    sequences.assign(row, "alice", "c2", 6, 256)
    assert row == before


def test_assign_ts_never_decreases() -> None:
    row = sequences.empty()
    row, _, ts1 = sequences.assign(row, "a", "1", 5000, 10)
    row, _, ts2 = sequences.assign(row, "b", "1", 4000, 10)  # a lagging edge clock
    row, _, ts3 = sequences.assign(row, "a", "2", 6000, 10)
    assert (ts1, ts2, ts3) == (5000, 5000, 6000)
    assert sequences.lookup(row, "b", "1") == (2, 5000)


def test_dedup_window_evicts_oldest_first() -> None:
    row = sequences.empty()
    for i in range(5):
        row, _, _ = sequences.assign(row, "alice", f"c{i}", i, 3)
    assert list(row["recent"]) == [sequences.dedup_key("alice", f"c{i}") for i in (2, 3, 4)]
    assert sequences.lookup(row, "alice", "c0") is None
    assert sequences.lookup(row, "alice", "c1") is None
    assert sequences.lookup(row, "alice", "c2") == (3, 2)
    # The order survives the changelog (JSON) round trip, so eviction stays FIFO after a restart.
    row = orjson.loads(orjson.dumps(row))
    row, _, _ = sequences.assign(row, "alice", "c5", 5, 3)
    assert list(row["recent"]) == [sequences.dedup_key("alice", f"c{i}") for i in (3, 4, 5)]


def test_dedup_key_separates_sender_and_id() -> None:
    assert sequences.dedup_key("ab", "c") != sequences.dedup_key("a", "bc")


@PROPS
@given(
    st.lists(st.integers(min_value=0, max_value=10**13), min_size=1, max_size=60),
    st.integers(min_value=1, max_value=20),
)
def test_assign_properties(ats: list[int], window: int) -> None:
    row = sequences.empty()
    last_ts = 0
    for i, at in enumerate(ats):
        row, seq, ts = sequences.assign(row, f"u{i % 3}", f"m{i}", at, window)
        assert seq == i + 1
        assert ts >= last_ts and ts >= at
        assert ts == max(at, last_ts)
        last_ts = ts
        assert len(row["recent"]) == min(i + 1, window)
        assert sequences.lookup(row, f"u{i % 3}", f"m{i}") == (seq, ts)
    kept = [sequences.dedup_key(f"u{i % 3}", f"m{i}") for i in range(len(ats))][-window:]
    assert list(row["recent"]) == kept


# --------------------------------------------------------------------------- receipts


def test_read_drags_delivered() -> None:
    row, changed = receipts.advance({}, "bob", "read", 5, 10)
    assert changed == [("read", 5), ("delivered", 5)]
    assert row == {"bob": {"read": 5, "delivered": 5}}


def test_delivered_alone() -> None:
    row, changed = receipts.advance({}, "bob", "delivered", 4, 10)
    assert changed == [("delivered", 4)]
    assert row == {"bob": {"read": 0, "delivered": 4}}


def test_cursors_are_monotonic() -> None:
    row, _ = receipts.advance({}, "bob", "read", 5, 10)
    same, changed = receipts.advance(row, "bob", "read", 3, 10)
    assert changed == [] and same is row
    same, changed = receipts.advance(row, "bob", "delivered", 5, 10)
    assert changed == [] and same is row
    same, changed = receipts.advance(row, "bob", "read", 5, 10)
    assert changed == [] and same is row


def test_read_below_delivered_moves_only_read() -> None:
    row, _ = receipts.advance({}, "bob", "delivered", 8, 10)
    row, changed = receipts.advance(row, "bob", "read", 5, 10)
    assert changed == [("read", 5)]
    assert row["bob"] == {"read": 5, "delivered": 8}


def test_cursor_capped_by_last_seq() -> None:
    row, changed = receipts.advance({}, "bob", "read", 99, 7)
    assert changed == [("read", 7), ("delivered", 7)]
    same, changed = receipts.advance(row, "bob", "delivered", 1000, 7)
    assert changed == [] and same is row
    row, changed = receipts.advance({}, "bob", "delivered", 5, 0)
    assert changed == [] and row == {}


def test_receipts_per_user_and_pure() -> None:
    row, _ = receipts.advance({}, "bob", "read", 2, 10)
    before = copy.deepcopy(row)
    new, _ = receipts.advance(row, "carol", "delivered", 3, 10)
    assert row == before
    assert new == {"bob": {"read": 2, "delivered": 2}, "carol": {"read": 0, "delivered": 3}}


@PROPS
@given(
    st.lists(
        st.tuples(st.sampled_from(["read", "delivered"]), st.integers(0, 60), st.integers(0, 50)),
        max_size=40,
    )
)
def test_receipts_properties(ops: list[tuple[str, int, int]]) -> None:
    row: receipts.ReceiptsRow = {}
    last_seq = 0
    for kind, seq, grow in ops:
        last_seq += grow
        before = row.get("u", {"read": 0, "delivered": 0})
        row, changed = receipts.advance(row, "u", kind, seq, last_seq)
        after = row.get("u", {"read": 0, "delivered": 0})
        assert before["read"] <= after["read"] <= after["delivered"] <= last_seq
        assert before["delivered"] <= after["delivered"]
        expected = [(k, after[k]) for k in ("read", "delivered") if after[k] != before[k]]
        assert changed == expected


# --------------------------------------------------------------------------- typing


def test_typing_throttle_and_refresh() -> None:
    row, relay = typing_state.start({}, "bob", 10_000)
    assert relay
    assert row == {"bob": {"relayed": 10_000, "refreshed": 10_000, "active": True}}
    row, relay = typing_state.start(row, "bob", 11_000)
    assert not relay
    row, relay = typing_state.start(row, "bob", 12_999)
    assert not relay
    assert row["bob"] == {"relayed": 10_000, "refreshed": 12_999, "active": True}
    row, relay = typing_state.start(row, "bob", 13_000)  # 3 s after the last relayed start
    assert relay
    assert row["bob"] == {"relayed": 13_000, "refreshed": 13_000, "active": True}


def test_typing_throttle_is_per_user() -> None:
    row, _ = typing_state.start({}, "bob", 0)
    row, relay = typing_state.start(row, "carol", 1)
    assert relay
    assert set(row) == {"bob", "carol"}


def test_typing_expiry_after_6s_without_refresh() -> None:
    row, _ = typing_state.start({}, "bob", 0)
    assert typing_state.expired(row, 5_999) == []
    assert typing_state.expired(row, 6_000) == ["bob"]
    row, relay = typing_state.start(row, "bob", 2_000)  # throttled, but refreshes
    assert not relay
    assert typing_state.expired(row, 6_000) == []
    assert typing_state.expired(row, 7_999) == []
    assert typing_state.expired(row, 8_000) == ["bob"]


def test_typing_stop() -> None:
    row, _ = typing_state.start({}, "bob", 0)
    row, _ = typing_state.start(row, "carol", 0)
    new, was = typing_state.stop(row, "bob", 100)
    assert was
    assert typing_state.expired(new, 10_000) == ["carol"]  # bob is no longer typing
    assert row["bob"]["active"]  # pure
    same, was = typing_state.stop(new, "bob", 200)
    assert not was and same is new
    assert typing_state.THROTTLE_MS == 3000
    assert typing_state.EXPIRE_MS == 6000


def test_typing_start_stop_start_within_3s_relays_one_start() -> None:
    row, relay = typing_state.start({}, "bob", 0)
    assert relay
    row, _ = typing_state.stop(row, "bob", 500)
    row, relay = typing_state.start(row, "bob", 1_000)
    assert not relay  # still throttled by the start relayed at 0
    row, _ = typing_state.stop(row, "bob", 1_500)
    row, relay = typing_state.start(row, "bob", 3_000)
    assert relay


def test_typing_stopped_entries_are_pruned_after_the_throttle() -> None:
    row, _ = typing_state.start({}, "bob", 0)
    row, _ = typing_state.stop(row, "bob", 10)
    row, _ = typing_state.start(row, "carol", 5_000)
    assert set(row) == {"carol"}


@PROPS
@given(st.lists(st.integers(0, 2_000), min_size=1, max_size=40))
def test_typing_at_most_one_relay_per_3s(gaps: list[int]) -> None:
    row: typing_state.TypingRow = {}
    now = 0
    relayed_at: list[int] = []
    for gap in gaps:
        now += gap
        row, relay = typing_state.start(row, "u", now)
        if relay:
            relayed_at.append(now)
        assert row["u"]["refreshed"] == now
    assert relayed_at[0] == gaps[0]
    assert all(b - a >= 3000 for a, b in itertools.pairwise(relayed_at))


# --------------------------------------------------------------------------- sessions


def test_sessions_open_close_by_slot() -> None:
    row = sessions.empty()
    assert not sessions.is_online(row)
    row = sessions.open_session(row, "s1", 0, "edge-a", 100)
    row = sessions.open_session(row, "s2", 3, "edge-b", 200)
    row = sessions.open_session(row, "s3", 0, "edge-a", 150)
    assert sessions.is_online(row)
    assert row["last_seen"] == 200
    assert sessions.by_slot(row) == {0: ["s1", "s3"], 3: ["s2"]}
    assert sessions.by_slot(row, exclude="s1") == {0: ["s3"], 3: ["s2"]}
    assert sessions.by_slot(row, exclude="s2") == {0: ["s1", "s3"]}
    before = copy.deepcopy(row)
    row2 = sessions.close_session(row, "s1", 300)
    assert row == before  # pure
    assert sessions.is_online(row2)
    assert row2["last_seen"] == 300
    row2 = sessions.close_session(row2, "s2", 250)
    assert row2["last_seen"] == 300  # never goes backwards
    row2 = sessions.close_session(row2, "s3", 400)
    assert not sessions.is_online(row2)
    assert row2 == {"sessions": {}, "last_seen": 400}
    assert sessions.by_slot(row2) == {}


def test_close_unknown_session_returns_same_row() -> None:
    row = sessions.open_session(sessions.empty(), "s1", 0, "e", 100)
    assert sessions.close_session(row, "nope", 500) is row


def test_reopen_session_moves_slot() -> None:
    row = sessions.open_session(sessions.empty(), "s1", 0, "e", 100)
    row = sessions.open_session(row, "s1", 2, "f", 50)
    assert row["sessions"] == {"s1": {"slot": 2, "edge": "f"}}
    assert row["last_seen"] == 100


# --------------------------------------------------------------------------- inbox


SYNC_BYTES = 256 * 1024


def limits(keep: int, max_bytes: int = 256 * 1024) -> inbox.Limits:
    return inbox.Limits(per_conversation=keep, bytes=max_bytes)


def msg(seq: int, cid: str = GRP, sender: str = "bob") -> Message:
    return Message(
        conversation_id=cid,
        seq=seq,
        sender=sender,
        body=f"m{seq}",
        ts=seq * 10,
        client_msg_id=f"c{seq}",
    )


def seqs(messages: list[Message]) -> list[int]:
    return [m["seq"] for m in messages]


def fill(cid: str, upto: int, keep: int, row: inbox.InboxRow | None = None) -> inbox.InboxRow:
    row = {} if row is None else row
    for s in range(1, upto + 1):
        row = inbox.add_message(row, msg(s, cid), limits(keep))
    return row


def test_add_message_sorted_and_deduplicated() -> None:
    row: inbox.InboxRow = {}
    for s in (3, 1, 2, 3, 1):
        row = inbox.add_message(row, msg(s), limits(10))
    assert seqs(row[GRP]["pending"]) == [1, 2, 3]
    assert row[GRP]["last_seq"] == 3
    assert row[GRP]["delivered"] == 0


def test_add_message_is_pure() -> None:
    row = fill(GRP, 2, 10)
    before = copy.deepcopy(row)
    inbox.add_message(row, msg(3), limits(10))
    inbox.mark_delivered(row, GRP, 2)
    assert row == before


def test_add_message_keeps_newest() -> None:
    row = fill(GRP, 10, 3)
    assert seqs(row[GRP]["pending"]) == [8, 9, 10]
    assert row[GRP]["last_seq"] == 10
    row = inbox.add_message(row, msg(2), limits(3))  # a late old one does not displace newer ones
    assert seqs(row[GRP]["pending"]) == [8, 9, 10]


def test_add_message_keep_one() -> None:
    row = fill(GRP, 5, 1)
    assert seqs(row[GRP]["pending"]) == [5]


def test_add_message_keep_zero_keeps_nothing() -> None:
    # inbox_max_per_conversation=0: everything is left to the store. ``del pending[:-0]`` deletes
    # nothing, so the pending list would grow without bound.
    row = fill(GRP, 5, 0)
    assert row[GRP]["pending"] == []
    assert row[GRP]["last_seq"] == 5


def test_add_message_ignores_delivered() -> None:
    row = fill(GRP, 3, 10)
    row = inbox.mark_delivered(row, GRP, 5)  # delivered can run ahead of the inbox
    row = inbox.add_message(row, msg(4), limits(10))
    row = inbox.add_message(row, msg(5), limits(10))
    assert row[GRP]["pending"] == []
    assert row[GRP]["last_seq"] == 5
    row = inbox.add_message(row, msg(6), limits(10))
    assert seqs(row[GRP]["pending"]) == [6]


def test_mark_delivered_trims() -> None:
    row = fill(GRP, 6, 10)
    row = inbox.mark_delivered(row, GRP, 4)
    assert seqs(row[GRP]["pending"]) == [5, 6]
    assert row[GRP]["delivered"] == 4
    same = inbox.mark_delivered(row, GRP, 3)
    assert same is row
    assert inbox.mark_delivered(row, GRP, 4) is row
    assert inbox.mark_delivered(row, DM, 4) is row  # not one of the user's conversations
    row = inbox.mark_delivered(row, GRP, 6)
    assert row[GRP]["pending"] == []
    assert row[GRP]["last_seq"] == 6


def test_join_and_leave() -> None:
    row = inbox.join({}, GRP, 7)
    assert row == {GRP: {"last_seq": 7, "delivered": 0, "pending": []}}
    row = inbox.join(row, GRP, 3)
    assert row[GRP]["last_seq"] == 7
    row = inbox.join(row, DM, 0)
    row = inbox.leave(row, GRP)
    assert set(row) == {DM}
    assert inbox.leave(row, GRP) == row


def test_sync_without_cursors_uses_delivered() -> None:
    row = fill(GRP, 6, 10)
    row = inbox.mark_delivered(row, GRP, 3)
    messages, fetch, last_seqs, truncated = inbox.sync_reply(row, None, 500, SYNC_BYTES)
    assert seqs(messages) == [4, 5, 6]
    assert fetch == []
    assert last_seqs == {GRP: 6}
    assert truncated is False


def test_sync_with_cursors() -> None:
    row = fill(GRP, 6, 10)
    row = fill(DM, 2, 10, row)
    row = inbox.mark_delivered(row, GRP, 5)
    messages, fetch, last_seqs, truncated = inbox.sync_reply(row, {GRP: 2, DM: 2}, 500, SYNC_BYTES)
    # The client's cursor wins over the delivered cursor; messages dropped from the inbox are
    # fetched from the store.
    assert seqs(messages) == [6]
    assert fetch == [[GRP, 3, 5]]
    assert last_seqs == {GRP: 6, DM: 2}
    assert truncated is False


def test_sync_fetches_older_than_inbox() -> None:
    row = fill(GRP, 10, 3)
    assert seqs(row[GRP]["pending"]) == [8, 9, 10]
    messages, fetch, _, truncated = inbox.sync_reply(row, {GRP: 0}, 500, SYNC_BYTES)
    assert fetch == [[GRP, 1, 7]]
    assert seqs(messages) == [8, 9, 10]
    assert not truncated


def test_sync_missing_cursor_starts_at_zero_and_unknown_cursors_ignored() -> None:
    row = fill(GRP, 2, 10)
    row = fill(DM, 2, 10, row)
    row = inbox.mark_delivered(row, DM, 2)
    messages, fetch, last_seqs, _ = inbox.sync_reply(row, {GRP: 1, "dm:x:y": 0}, 500, SYNC_BYTES)
    # DM has no cursor: it starts at 0 although the delivered cursor (2) trimmed the inbox.
    assert [(m["conversation_id"], m["seq"]) for m in messages] == [(GRP, 2)]
    assert fetch == [[DM, 1, 2]]
    assert last_seqs == {GRP: 2, DM: 2}


def test_sync_up_to_date() -> None:
    row = fill(GRP, 4, 10)
    row = inbox.join(row, DM, 0)
    messages, fetch, last_seqs, truncated = inbox.sync_reply(row, {GRP: 4}, 500, SYNC_BYTES)
    assert (messages, fetch, truncated) == ([], [], False)
    assert last_seqs == {GRP: 4, DM: 0}
    # A cursor ahead of the server changes nothing.
    assert inbox.sync_reply(row, {GRP: 40}, 500, SYNC_BYTES)[:2] == ([], [])


def test_sync_joined_without_messages_in_inbox_fetches_all() -> None:
    row = inbox.join({}, GRP, 5)
    messages, fetch, _, truncated = inbox.sync_reply(row, None, 500, SYNC_BYTES)
    assert messages == []
    assert fetch == [[GRP, 1, 5]]
    assert not truncated


def test_sync_truncates_at_page() -> None:
    row = fill(GRP, 1000, 200)
    messages, fetch, last_seqs, truncated = inbox.sync_reply(row, {GRP: 0}, 500, SYNC_BYTES)
    assert messages == []
    assert fetch == [[GRP, 1, 500]]
    assert truncated is True
    assert last_seqs == {GRP: 1000}
    messages, fetch, _, truncated = inbox.sync_reply(row, {GRP: 500}, 500, SYNC_BYTES)
    assert fetch == [[GRP, 501, 800]]
    assert seqs(messages) == list(range(801, 1001))
    assert truncated is False


def test_sync_truncates_inside_inbox() -> None:
    row = fill(GRP, 20, 15)  # pending 6..20
    messages, fetch, _, truncated = inbox.sync_reply(row, {GRP: 2}, 5, SYNC_BYTES)
    assert fetch == [[GRP, 3, 5]]
    assert seqs(messages) == [6, 7]
    assert truncated is True
    messages, fetch, _, truncated = inbox.sync_reply(row, {GRP: 10}, 5, SYNC_BYTES)
    assert fetch == []
    assert seqs(messages) == [11, 12, 13, 14, 15]
    assert truncated is True


@PROPS
@given(
    last=st.integers(0, 60),
    keep=st.integers(1, 30),
    cursor=st.integers(0, 70),
    delivered=st.integers(0, 70),
    page=st.integers(1, 40),
    use_cursors=st.booleans(),
)
def test_sync_covers_exactly_the_wanted_range(
    last: int, keep: int, cursor: int, delivered: int, page: int, use_cursors: bool
) -> None:
    row = fill(GRP, last, keep)
    if delivered:
        row = inbox.mark_delivered(row, GRP, delivered)
    pending = seqs(row[GRP]["pending"]) if GRP in row else []
    assert pending == sorted(set(pending))
    assert len(pending) <= keep
    assert all(s > delivered for s in pending)
    messages, fetch, last_seqs, truncated = inbox.sync_reply(
        row, {GRP: cursor} if use_cursors else None, page, SYNC_BYTES
    )
    start = cursor if use_cursors else delivered
    upto = min(last, start + page)
    got: list[int] = []
    for cid, first, final in fetch:
        assert cid == GRP
        assert first <= final
        got.extend(range(first, final + 1))
    got.extend(seqs(messages))
    assert got == list(range(start + 1, upto + 1))
    assert truncated == (start + page < last)
    if last:
        assert last_seqs == {GRP: last}


def big(seq: int, cid: str, chars: int = 4000) -> Message:
    # "\x01" JSON-escapes to six bytes: the message that filled an inbox row past 1 MB.
    return Message(
        conversation_id=cid,
        seq=seq,
        sender="eve",
        body="\x01" * chars,
        ts=seq,
        client_msg_id=f"c{seq}",
    )


def row_bytes(row: inbox.InboxRow) -> int:
    return len(orjson.dumps(row))


def test_inbox_row_stays_within_its_byte_budget() -> None:
    budget = 256 * 1024
    row: inbox.InboxRow = {}
    for seq in range(1, 49):  # the reproduction of the outage: 48 x ~24 KB never confirmed
        row = inbox.add_message(row, big(seq, GRP), limits(200, budget))
    assert row_bytes(row) <= budget + 1024
    pending = seqs(row[GRP]["pending"])
    # The newest are kept, contiguous up to the last seq; sync fetches the rest from the store.
    assert pending == list(range(49 - len(pending), 49))
    assert row[GRP]["last_seq"] == 48
    messages, fetch, _, _ = inbox.sync_reply(row, {GRP: 0}, 500, SYNC_BYTES)
    assert fetch == [[GRP, 1, pending[0] - 1]]
    assert seqs(messages) == pending


def test_inbox_byte_budget_drops_the_oldest_across_conversations() -> None:
    row: inbox.InboxRow = {}
    small_budget = 60_000
    row = inbox.add_message(row, big(1, GRP, 4000), limits(200, small_budget))  # ts 1
    row = inbox.add_message(row, big(2, DM, 4000), limits(200, small_budget))  # ts 2
    row = inbox.add_message(row, big(3, GRP, 4000), limits(200, small_budget))  # ts 3
    # Three of ~24 KB do not fit 60 KB: the oldest (GRP seq 1) goes, the others stay.
    assert seqs(row[GRP]["pending"]) == [3]
    assert seqs(row[DM]["pending"]) == [2]


def test_sync_answer_stays_within_its_byte_budget() -> None:
    row: inbox.InboxRow = {}
    for i in range(20):
        cid = f"group-{i}"
        for seq in range(1, 11):
            row = inbox.add_message(row, big(seq, cid, 1000), limits(200, 10**9))
    messages, fetch, last_seqs, truncated = inbox.sync_reply(row, None, 500, 100_000)
    assert len(orjson.dumps(messages)) <= 100_000
    # Every conversation is still answered in full: what is not carried is a range to fetch.
    covered = {cid: [] for cid in last_seqs}
    for cid, first, last in fetch:
        covered[cid].extend(range(first, last + 1))
    for m in messages:
        covered[m["conversation_id"]].append(m["seq"])
    assert all(sorted(v) == list(range(1, 11)) for v in covered.values())
    assert not truncated


# --------------------------------------------------------------------------- presence subscribers


def test_subscribe_and_by_slot() -> None:
    row = presence_subscribers.subscribe({}, "s1", 0)
    row = presence_subscribers.subscribe(row, "s2", 1)
    row = presence_subscribers.subscribe(row, "s3", 0)
    assert presence_subscribers.by_slot(row) == {0: ["s1", "s3"], 1: ["s2"]}
    before = dict(row)
    row2 = presence_subscribers.subscribe(row, "s1", 4)  # re-subscribe: moves, newest
    assert row == before  # pure
    assert list(row2) == ["s2", "s3", "s1"]
    assert row2["s1"] == 4


def test_subscribers_capped_oldest_first() -> None:
    cap = presence_subscribers.MAX_SUBSCRIBERS
    row: presence_subscribers.SubscribersRow = {}
    for i in range(cap + 5):
        row = presence_subscribers.subscribe(row, f"s{i}", i % 4)
    assert len(row) == cap
    assert "s0" not in row and "s4" not in row
    assert "s5" in row and f"s{cap + 4}" in row
    assert next(iter(row)) == "s5"
    # A re-subscribe refreshes a session so it is not the next one evicted.
    row = presence_subscribers.subscribe(row, "s5", 0)
    row = presence_subscribers.subscribe(row, "new", 1)
    assert "s5" in row and "s6" not in row
    assert len(row) == cap


# --------------------------------------------------------------------------- activity


def _message(seq: int, sender: str, ts: int) -> Any:
    return {
        "conversation_id": "c",
        "seq": seq,
        "sender": sender,
        "body": "x",
        "ts": ts,
        "client_msg_id": f"m{seq}",
    }


def test_activity_counts_each_seq_once() -> None:
    row = activity.empty()
    for seq, sender, ts in ((1, "a", 100), (2, "b", 150), (3, "a", 200)):
        row, counted = activity.count(row, _message(seq, sender, ts))
        assert counted
    again, counted = activity.count(row, _message(2, "b", 150))
    assert not counted and again == row
    assert row["messages"] == 3 and row["last_seq"] == 3
    assert row["senders"] == {"a": 2, "b": 1}
    assert (row["first_ts"], row["last_ts"]) == (100, 200)


def test_activity_public_lists_top_senders_by_count_then_name() -> None:
    row = activity.empty()
    for seq, sender in enumerate(["b", "a", "b", "c", "a"], start=1):
        row, _ = activity.count(row, _message(seq, sender, seq))
    public = activity.public("c", row)
    assert public["senders"] == 3
    assert public["top_senders"] == [
        {"user": "a", "messages": 2},
        {"user": "b", "messages": 2},
        {"user": "c", "messages": 1},
    ]
