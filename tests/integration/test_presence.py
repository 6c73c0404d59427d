"""Presence: online while a session is connected anywhere, subscribe/query, last_seen; visible
only to users who share a conversation."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.client import ChatClient
from tests.integration.conftest import App
from tests.integration.helpers import create_direct, eventually, synced


async def test_presence_follows_sessions_on_any_edge(app: App, clients, user_ids) -> None:
    watcher = await app.client(user_ids.watcher, edge=0)
    clients.append(watcher)
    await create_direct(watcher, user_ids.bob)
    reply = await watcher.request({"type": "presence.subscribe", "users": [user_ids.bob]})
    assert reply["type"] == "ok"
    assert reply["presence"] == [{"user": user_ids.bob, "status": "offline", "last_seen": 0}]

    phone = await app.client(user_ids.bob, edge=1)
    clients.append(phone)
    online = await watcher.wait_for(lambda f: f["type"] == "presence")
    assert online["user"] == user_ids.bob and online["status"] == "online"

    laptop = await app.client(user_ids.bob, edge=0)
    clients.append(laptop)
    await synced(laptop)
    await phone.close()  # still online through the laptop
    await synced(laptop)
    query = await watcher.request({"type": "presence.query", "users": [user_ids.bob]})
    assert query["presence"][0]["status"] == "online"
    await laptop.close()
    offline = await watcher.wait_for(lambda f: f["type"] == "presence" and f["status"] == "offline")
    assert offline["last_seen"] >= online["last_seen"] > 0
    assert [f["status"] for f in watcher.of_type("presence")] == ["online", "offline"]

    async def settled() -> dict | None:
        q = await watcher.request({"type": "presence.query", "users": [user_ids.bob]})
        return q if q["presence"][0]["status"] == "offline" else None

    q = await eventually(settled)
    assert q["presence"][0]["last_seen"] == offline["last_seen"]


async def test_presence_rejects_too_many_users(app: App, clients, user_ids) -> None:
    watcher = await app.client(user_ids.watcher)
    clients.append(watcher)
    reply = await watcher.request(
        {"type": "presence.query", "users": [f"u{i}" for i in range(501)]}
    )
    assert reply["type"] == "error" and reply["code"] == "bad_request"


async def test_a_query_right_after_a_presence_frame_agrees_with_it(
    app: App, clients, user_ids
) -> None:
    """The sessions agent writes the look-up cache before it sends the presence frames, so a
    query made on receipt of a frame never contradicts it (it used to say `offline` for about
    250 ms after an `online` frame, every time)."""
    for attempt in range(5):
        watched = f"{user_ids.bob}-{attempt}"
        watcher = await app.client(f"{user_ids.watcher}-{attempt}", edge=attempt % 2)
        clients.append(watcher)
        await create_direct(watcher, watched)
        await watcher.request({"type": "presence.subscribe", "users": [watched]})
        session = await app.client(watched, edge=(attempt + 1) % 2)
        clients.append(session)
        online = await watcher.wait_for(lambda f: f["type"] == "presence")
        query = await watcher.request({"type": "presence.query", "users": [watched]})
        assert (online["status"], query["presence"][0]["status"]) == ("online", "online")
        await session.close()
        offline = await watcher.wait_for(
            lambda f: f["type"] == "presence" and f["status"] == "offline"
        )
        query = await watcher.request({"type": "presence.query", "users": [watched]})
        assert query["presence"][0] == {
            "user": watched,
            "status": "offline",
            "last_seen": offline["last_seen"],
        }


async def test_a_session_watches_a_bounded_number_of_users(app: App, clients, user_ids) -> None:
    # A watch counts whether or not its user is visible (these share no conversation with the
    # watcher): the bound is on what the session asks, not on what it is shown.
    limit = app.settings.presence_max_watched
    watcher = await app.client(user_ids.watcher)
    clients.append(watcher)
    names = [f"{user_ids.w}-{i}" for i in range(limit + 1)]
    for start in range(0, limit, 500):
        reply = await watcher.request(
            {"type": "presence.subscribe", "users": names[start : min(start + 500, limit)]}
        )
        while reply["type"] == "error" and reply["code"] == "rate_limited":
            await asyncio.sleep(reply.get("retry_after_ms", 100) / 1000)
            reply = await watcher.request(
                {"type": "presence.subscribe", "users": names[start : min(start + 500, limit)]}
            )
        assert reply["type"] == "ok", reply

    async def subscribe(users: list[str]) -> dict:
        while True:
            reply = await watcher.request({"type": "presence.subscribe", "users": users})
            if not (reply["type"] == "error" and reply["code"] == "rate_limited"):
                return reply
            await asyncio.sleep(reply.get("retry_after_ms", 100) / 1000)

    over = await subscribe([names[limit]])
    assert over["type"] == "error" and over["code"] == "bad_request", over
    assert str(limit) in over["message"]
    # Watching again someone already watched is no new watch; the session still works.
    again = await subscribe([names[0]])
    assert again["type"] == "ok"
    assert (await watcher.request({"type": "ping"}))["type"] == "pong"


# --------------------------------------------------------------------------- visibility


async def presence_frames(client: ChatClient, user: str) -> list[dict[str, Any]]:
    """The ``presence`` frames of ``user`` the client has, once everything the edge had queued
    for it before now has arrived (a pong leaves behind it)."""
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    return [f for f in client.of_type("presence") if f["user"] == user]


def offline_unknown(user: str) -> dict[str, Any]:
    return {"user": user, "status": "offline", "last_seen": 0}


async def test_a_stranger_learns_nothing_of_a_users_presence(app: App, clients, user_ids) -> None:
    """A user who shares no conversation with bob is answered as for a user never seen, and a
    watch of bob gets none of his presence frames; a contact on the same edge gets them all."""
    contact = await app.client(user_ids.contact, edge=0)
    stranger = await app.client(user_ids.stranger, edge=0)
    clients.extend([contact, stranger])
    await create_direct(contact, user_ids.bob)
    for client in (contact, stranger):
        reply = await client.request({"type": "presence.subscribe", "users": [user_ids.bob]})
        assert reply["presence"] == [offline_unknown(user_ids.bob)]

    bob = await app.client(user_ids.bob, edge=1)
    clients.append(bob)
    online = await contact.wait_for(lambda f: f["type"] == "presence")
    assert online["status"] == "online"
    query = await stranger.request({"type": "presence.query", "users": [user_ids.bob]})
    assert query["presence"] == [offline_unknown(user_ids.bob)]
    contact_query = await contact.request({"type": "presence.query", "users": [user_ids.bob]})
    assert contact_query["presence"][0]["status"] == "online"

    await bob.close()
    await contact.wait_for(lambda f: f["type"] == "presence" and f["status"] == "offline")
    # Both watches are on one edge, so one delivery would have listed both sessions.
    assert await presence_frames(stranger, user_ids.bob) == []
    query = await stranger.request({"type": "presence.query", "users": [user_ids.bob]})
    assert query["presence"] == [offline_unknown(user_ids.bob)]


async def test_a_user_always_sees_their_own_presence(app: App, clients, user_ids) -> None:
    alone = await app.client(user_ids.alone)
    clients.append(alone)
    await synced(alone)  # its session.open is applied: it is online
    query = await alone.request({"type": "presence.query", "users": [user_ids.alone]})
    assert query["presence"][0]["status"] == "online"


async def group_of(admin: ChatClient, members: list[str]) -> str:
    reply = await admin.request(
        {"type": "conversation.create", "kind": "group", "members": members, "title": "g"}
    )
    assert reply["type"] == "ok", reply
    cid: str = reply["conversation"]["id"]
    return cid


async def remove(admin: ChatClient, cid: str, member: str) -> None:
    reply = await admin.request(
        {"type": "conversation.remove_members", "conversation_id": cid, "members": [member]}
    )
    assert reply["type"] == "ok", reply


async def test_leaving_the_last_shared_conversation_ends_visibility(
    app: App, clients, user_ids
) -> None:
    """carol watches bob while they share two groups. bob leaving the first changes nothing;
    leaving the second hides him from carol at once: her watch is written offline (as a query
    now answers) and gets none of his later frames, while alice, who still shares a group with
    him, gets them."""
    alice = await app.client(user_ids.alice, edge=0)
    carol = await app.client(user_ids.carol, edge=0)
    bob = await app.client(user_ids.bob, edge=1)
    clients.extend([alice, carol, bob])
    await synced(bob)
    first = await group_of(alice, [user_ids.bob, user_ids.carol])
    second = await group_of(alice, [user_ids.bob, user_ids.carol])
    await group_of(alice, [user_ids.bob])  # alice keeps seeing bob through this one
    for watcher in (alice, carol):
        reply = await watcher.request({"type": "presence.subscribe", "users": [user_ids.bob]})
        assert reply["presence"][0]["status"] == "online"

    await remove(alice, first, user_ids.bob)
    await carol.wait_for(
        lambda f: (
            f["type"] == "conversation"
            and f["conversation"]["id"] == first
            and user_ids.bob not in f["conversation"]["members"]
        )
    )
    assert await presence_frames(carol, user_ids.bob) == []
    query = await carol.request({"type": "presence.query", "users": [user_ids.bob]})
    assert query["presence"][0]["status"] == "online"

    await remove(alice, second, user_ids.bob)
    hidden = await carol.wait_for(lambda f: f["type"] == "presence")
    assert hidden == {"type": "presence", **offline_unknown(user_ids.bob)}
    query = await carol.request({"type": "presence.query", "users": [user_ids.bob]})
    assert query["presence"] == [offline_unknown(user_ids.bob)]

    await bob.close()
    offline = await alice.wait_for(lambda f: f["type"] == "presence" and f["status"] == "offline")
    assert offline["last_seen"] > 0
    # alice's and carol's watches are on one edge: one delivery would have listed both.
    assert await presence_frames(carol, user_ids.bob) == [hidden]


async def test_being_removed_ends_visibility_of_everyone_watched(
    app: App, clients, user_ids
) -> None:
    """The watcher is the one removed: every watched user it no longer shares a conversation
    with is hidden; dave, who shares a direct conversation with bob, still sees him."""
    alice = await app.client(user_ids.alice, edge=1)
    carol = await app.client(user_ids.carol, edge=0)
    dave = await app.client(user_ids.dave, edge=0)
    bob = await app.client(user_ids.bob, edge=1)
    clients.extend([alice, carol, dave, bob])
    await synced(bob)
    await synced(alice)
    await create_direct(dave, user_ids.bob)
    group = await group_of(alice, [user_ids.bob, user_ids.carol])
    reply = await carol.request(
        {"type": "presence.subscribe", "users": [user_ids.bob, user_ids.alice]}
    )
    assert [p["status"] for p in reply["presence"]] == ["online", "online"]
    await dave.request({"type": "presence.subscribe", "users": [user_ids.bob]})

    await remove(alice, group, user_ids.carol)
    await carol.wait_for(lambda f: f["type"] == "conversation" and f["event"] == "members_removed")
    # The re-check runs in carol's queue behind the event, so a pong arrives after its frames.
    assert await presence_frames(carol, user_ids.bob) == [
        {"type": "presence", **offline_unknown(user_ids.bob)}
    ]
    assert await presence_frames(carol, user_ids.alice) == [
        {"type": "presence", **offline_unknown(user_ids.alice)}
    ]
    await bob.close()
    await dave.wait_for(lambda f: f["type"] == "presence" and f["status"] == "offline")
    assert len(await presence_frames(carol, user_ids.bob)) == 1


async def test_a_watch_becomes_visible_when_a_conversation_is_shared(
    app: App, clients, user_ids
) -> None:
    """A watch of a stranger counts from the moment a conversation is shared with them: the
    watcher is sent their presence then, and their changes after."""
    bob = await app.client(user_ids.bob, edge=1)
    watcher = await app.client(user_ids.watcher, edge=0)
    clients.extend([bob, watcher])
    await synced(bob)
    reply = await watcher.request({"type": "presence.subscribe", "users": [user_ids.bob]})
    assert reply["presence"] == [offline_unknown(user_ids.bob)]

    await create_direct(bob, user_ids.watcher)
    shown = await watcher.wait_for(lambda f: f["type"] == "presence")
    assert shown["user"] == user_ids.bob and shown["status"] == "online"
    await bob.close()
    offline = await watcher.wait_for(lambda f: f["type"] == "presence" and f["status"] == "offline")
    assert offline["last_seen"] > 0


async def test_visibility_is_checked_when_asked_after_the_conversation_event(
    app: App, clients, user_ids
) -> None:
    """What the web client does: subscribe to a conversation's members as soon as its
    ``conversation`` event arrives. The membership is readable by then (the router writes it
    before the event), so the subscribe sees the new contact at once."""
    bob = await app.client(user_ids.bob, edge=1)
    watcher = await app.client(user_ids.watcher, edge=0)
    clients.extend([bob, watcher])
    await synced(watcher)
    await create_direct(bob, user_ids.watcher)
    await watcher.wait_for(lambda f: f["type"] == "conversation")
    query = await watcher.request({"type": "presence.query", "users": [user_ids.bob]})
    assert query["presence"][0]["status"] == "online"
