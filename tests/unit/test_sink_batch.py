"""The sink folds a batch's writes per document without changing what the store ends up with."""

from __future__ import annotations

from typing import Any

from sinks.mongo_sink import BatchOps


def message(cid: str, seq: int) -> dict[str, Any]:
    return {"conversation_id": cid, "seq": seq, "sender": "u", "body": "b", "ts": seq}


def docs(ops: list[Any]) -> list[tuple[Any, Any]]:
    return [(op._filter["_id"], op._doc) for op in ops]


def test_one_write_per_message_and_one_last_seq_per_conversation() -> None:
    batch = BatchOps()
    for seq in (1, 2, 3):
        batch.add_message(message("a", seq))
    batch.add_message(message("b", 7))
    writes = dict(batch.by_collection())
    assert [op._doc["_id"] for op in writes["messages"]] == ["a:1", "a:2", "a:3", "b:7"]
    assert writes["messages"][3]._doc == {"_id": "b:7", **message("b", 7)}
    assert docs(writes["conversations"]) == [
        ("a", {"$max": {"last_seq": 3}}),
        ("b", {"$max": {"last_seq": 7}}),
    ]
    assert "receipts" not in writes


def test_messages_are_written_before_the_last_seq_that_announces_them() -> None:
    batch = BatchOps()
    batch.add_conversation({"id": "a", "kind": "direct", "members": ["x", "y"], "admins": []})
    batch.add_message(message("a", 1))
    assert [name for name, _ in batch.by_collection()] == ["messages", "conversations"]


def test_receipts_fold_to_their_highest_cursors() -> None:
    batch = BatchOps()
    batch.add_receipt({"conversation_id": "a", "user": "x", "read": 1, "delivered": 4})
    batch.add_receipt({"conversation_id": "a", "user": "x", "read": 3, "delivered": 2})
    batch.add_receipt({"conversation_id": "a", "user": "y", "read": 0, "delivered": 1})
    writes = dict(batch.by_collection())
    assert docs(writes["receipts"]) == [
        (
            "a|x",
            {
                "$set": {"conversation_id": "a", "user": "x"},
                "$max": {"read": 3, "delivered": 4},
            },
        ),
        (
            "a|y",
            {
                "$set": {"conversation_id": "a", "user": "y"},
                "$max": {"read": 0, "delivered": 1},
            },
        ),
    ]


def test_the_latest_conversation_state_wins() -> None:
    batch = BatchOps()
    batch.add_conversation({"id": "g", "kind": "group", "title": "old", "members": ["x"]})
    batch.add_conversation({"id": "g", "kind": "group", "title": "new", "members": ["x", "y"]})
    writes = dict(batch.by_collection())
    assert docs(writes["conversations"]) == [
        ("g", {"$set": {"kind": "group", "title": "new", "members": ["x", "y"]}})
    ]
