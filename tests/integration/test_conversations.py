"""Groups, membership rules and conversation events, across both edge nodes."""

from __future__ import annotations

import re

from tests.integration.conftest import App
from tests.integration.helpers import synced


async def test_group_lifecycle(app: App, clients, user_ids) -> None:
    alice = await app.client(user_ids.alice, edge=0)
    bob = await app.client(user_ids.bob, edge=1)
    carol = await app.client(user_ids.carol, edge=0)
    clients += [alice, bob, carol]
    for c in (alice, bob, carol):
        await synced(c)

    reply = await alice.request(
        {"type": "conversation.create", "kind": "group", "members": [bob.user], "title": "team"}
    )
    assert reply["type"] == "ok"
    group = reply["conversation"]
    assert re.fullmatch(r"grp:[0-9a-f]{32}", group["id"])
    assert group["title"] == "team" and group["kind"] == "group"
    assert group["members"] == [alice.user, bob.user]
    assert group["admins"] == [alice.user]
    assert group["last_seq"] == 0
    created = await bob.wait_for(lambda f: f["type"] == "conversation")
    assert created["event"] == "created" and created["conversation"]["id"] == group["id"]

    # Only admins add members.
    denied = await bob.request(
        {
            "type": "conversation.add_members",
            "conversation_id": group["id"],
            "members": [carol.user],
        }
    )
    assert denied["type"] == "error" and denied["code"] == "forbidden"
    # A non-member learns it is not a member, and cannot send.
    outsider = await carol.request(
        {
            "type": "message.send",
            "conversation_id": group["id"],
            "client_msg_id": "x",
            "body": "let me in",
        }
    )
    assert outsider["type"] == "error" and outsider["code"] == "not_member"

    added = await alice.request(
        {
            "type": "conversation.add_members",
            "conversation_id": group["id"],
            "members": [carol.user],
        }
    )
    assert added["type"] == "ok" and carol.user in added["conversation"]["members"]
    event = await carol.wait_for(lambda f: f["type"] == "conversation")
    assert event["event"] == "members_added"
    await bob.wait_for(lambda f: f["type"] == "conversation" and f["event"] == "members_added")

    ack = await carol.request(
        {
            "type": "message.send",
            "conversation_id": group["id"],
            "client_msg_id": "c1",
            "body": "hi all",
        }
    )
    assert ack["type"] == "message.ack" and ack["seq"] == 1
    for member in (alice, bob):
        msg = await member.wait_for(lambda f: f["type"] == "message")
        assert msg["sender"] == carol.user and msg["seq"] == 1

    # Bob may not remove carol, but may leave.
    denied = await bob.request(
        {
            "type": "conversation.remove_members",
            "conversation_id": group["id"],
            "members": [carol.user],
        }
    )
    assert denied["type"] == "error" and denied["code"] == "forbidden"
    left = await bob.request(
        {
            "type": "conversation.remove_members",
            "conversation_id": group["id"],
            "members": [bob.user],
        }
    )
    assert left["type"] == "ok" and bob.user not in left["conversation"]["members"]
    removed = await bob.wait_for(
        lambda f: f["type"] == "conversation" and f["event"] == "members_removed"
    )
    assert bob.user not in removed["conversation"]["members"]
    await alice.wait_for(lambda f: f["type"] == "conversation" and f["event"] == "members_removed")

    # Removed members receive nothing more.
    await alice.request(
        {
            "type": "message.send",
            "conversation_id": group["id"],
            "client_msg_id": "a1",
            "body": "bob is gone",
        }
    )
    await carol.wait_for(lambda f: f["type"] == "message" and f["seq"] == 2)
    after = await bob.request(
        {
            "type": "message.send",
            "conversation_id": group["id"],
            "client_msg_id": "b9",
            "body": "still here?",
        }
    )
    assert after["type"] == "error" and after["code"] == "not_member"
    assert [m["seq"] for m in bob.messages(group["id"])] == [1]


async def test_unknown_and_foreign_conversations(app: App, clients, user_ids) -> None:
    mallory = await app.client(user_ids.mallory)
    clients.append(mallory)
    unknown = await mallory.request(
        {
            "type": "message.send",
            "conversation_id": "grp:" + "0" * 32,
            "client_msg_id": "m",
            "body": "x",
        }
    )
    assert unknown["type"] == "error" and unknown["code"] == "not_found"
    # A direct conversation of two other people: the same answer whether it exists or not.
    foreign = await mallory.request(
        {"type": "receipt.read", "conversation_id": f"dm:{user_ids.a}:{user_ids.b}", "seq": 1}
    )
    # receipt.read has no reply on success; on refusal it gets an error.
    assert foreign["type"] == "error" and foreign["code"] == "not_member"


async def test_direct_with_self_and_group_limits(app: App, clients, user_ids) -> None:
    alice = await app.client(user_ids.alice)
    clients.append(alice)
    selfish = await alice.request(
        {"type": "conversation.create", "kind": "direct", "members": [alice.user]}
    )
    assert selfish["type"] == "error" and selfish["code"] == "bad_request"
    too_many = await alice.request(
        {"type": "conversation.create", "kind": "group", "members": [f"u{i}" for i in range(1000)]}
    )
    assert too_many["type"] == "error" and too_many["code"] == "bad_request"
    big = await alice.request(
        {
            "type": "conversation.create",
            "kind": "group",
            "members": [f"{user_ids.u}{i}" for i in range(999)],
        },
        timeout=60,
    )
    assert big["type"] == "ok" and len(big["conversation"]["members"]) == 1000
    more = await alice.request(
        {
            "type": "conversation.add_members",
            "conversation_id": big["conversation"]["id"],
            "members": [user_ids.one_too_many],
        }
    )
    assert more["type"] == "error" and more["code"] == "bad_request"
