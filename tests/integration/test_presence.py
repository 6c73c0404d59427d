"""Presence: online while a session is connected anywhere, subscribe/query, last_seen."""

from __future__ import annotations

import asyncio

from tests.integration.conftest import App
from tests.integration.helpers import synced


async def test_presence_follows_sessions_on_any_edge(app: App, clients, user_ids) -> None:
    watcher = await app.client(user_ids.watcher, edge=0)
    clients.append(watcher)
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

    from tests.integration.helpers import eventually

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
