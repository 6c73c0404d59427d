"""Presence at the edge: look-ups, watches, and who may see whose presence.

A user's presence is visible only to users who share a conversation with them (as in Matrix
and Zulip). Anyone else is answered ``offline`` with ``last_seen`` 0, what a user never seen
gets, so an answer tells a stranger nothing, not even whether the user exists. The router keeps
each user's conversation ids as a Redis set (``chat:member-of:<user>``, written before the
``conversation`` events go out: topologies/memberships.py); two users share a conversation
when their sets intersect, one ``SINTERCARD ... LIMIT 1`` per user asked, pipelined.

A watch (``presence.subscribe``) belongs to the session; the sessions agent holds it (a
``presence.subscribe`` event on ``chat.users``) only while the watched user is visible. A
``conversation`` event reaching a watching session re-checks the watches it can change:
members who became visible are subscribed and their presence written; watched users no longer
visible are unsubscribed and written as offline, which is what a query about them now answers.
A ``presence`` frame is written only if its user is visible to the session when it is written.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from chat import protocol, records
from chat.keys import member_of_key, presence_key
from chat.protocol import ClientFrame, ProtocolError
from edge.session import Session

if TYPE_CHECKING:
    from edge.commands import CommandContext

log = logging.getLogger("chat.edge.presence")

# Users checked per Redis round trip. A check costs Redis about 0.13 us per conversation of the
# smaller of the two users' sets (1.3 ms for users in 10,000 conversations each): Redis runs
# one client's pipeline to its end, so a frame naming 500 such users in one pipeline would hold
# everyone else's commands for 0.7 s; 50 at a time hold them for at most 70 ms.
VISIBILITY_BATCH = 50


async def on_subscribe(ctx: CommandContext, session: Session, frame: ClientFrame) -> None:
    users: list[str] = frame.fields["users"]
    watching = session.watching if session.watching is not None else {}
    new = set(users) - watching.keys()
    limit = ctx.settings.presence_max_watched
    if len(watching) + len(new) > limit:
        raise ProtocolError(
            protocol.BAD_REQUEST,
            f"a session watches at most {limit} users (unsubscribe by reconnecting)",
            frame.id,
        )
    visible = await checked(visible_to(ctx.redis, session.user, users), frame)
    session.watching = watching
    for user in users:
        await watch(ctx, session, user, visible[user])
    # Read after the watches are sent: a change the watch misses is in the answer.
    presence = await checked(presence_of(ctx.redis, users, visible), frame)
    session.send(protocol.ok_frame(frame.id, presence=presence))


async def on_query(ctx: CommandContext, session: Session, frame: ClientFrame) -> None:
    users: list[str] = frame.fields["users"]
    visible = await checked(visible_to(ctx.redis, session.user, users), frame)
    presence = await checked(presence_of(ctx.redis, users, visible), frame)
    session.send(protocol.ok_frame(frame.id, presence=presence))


async def checked(look_up: Any, frame: ClientFrame) -> Any:
    try:
        return await look_up
    except Exception as exc:
        log.warning("presence look-up failed: %s", exc)
        raise ProtocolError(
            protocol.UNAVAILABLE, "presence is unavailable, retry", frame.id
        ) from None


async def visible_to(redis: aioredis.Redis, viewer: str, users: list[str]) -> dict[str, bool]:
    """Whose presence ``viewer`` may see among ``users``: those sharing a conversation with
    them, and themselves."""
    others = sorted({u for u in users if u != viewer})
    shared: list[int] = []
    for start in range(0, len(others), VISIBILITY_BATCH):
        async with redis.pipeline(transaction=False) as pipe:
            for user in others[start : start + VISIBILITY_BATCH]:
                # LIMIT 1: one shared conversation is enough, stop looking there.
                pipe.sintercard(2, [member_of_key(viewer), member_of_key(user)], limit=1)
            shared += await pipe.execute()
    visible = {user: count > 0 for user, count in zip(others, shared, strict=True)}
    visible[viewer] = True
    return visible


async def presence_of(
    redis: aioredis.Redis, users: list[str], visible: dict[str, bool]
) -> list[dict[str, Any]]:
    """``{user, status, last_seen}`` per user, in order; a user not visible is offline, 0."""
    shown = sorted({u for u in users if visible.get(u)})
    states: list[dict[bytes, bytes]] = []
    if shown:
        async with redis.pipeline(transaction=False) as pipe:
            for user in shown:
                pipe.hgetall(presence_key(user))
            states = await pipe.execute()
    by_user = dict(zip(shown, states, strict=True))
    return [presence_entry(user, by_user.get(user, {})) for user in users]


def presence_entry(user: str, state: dict[bytes, bytes]) -> dict[str, Any]:
    status = (state.get(b"status") or b"offline").decode()
    return {"user": user, "status": status, "last_seen": int(state.get(b"last_seen") or 0)}


async def watch(ctx: CommandContext, session: Session, user: str, visible: bool) -> None:
    """Record a watch of ``user``, and tell the sessions agent when it starts or stops
    counting. A watch starts counting once Kafka took the event; it stops at once (the edge
    writes no presence frame of a watch that does not count, whatever the agent still sends)."""
    assert session.watching is not None
    held = session.watching.get(user, False)
    if visible and not held:
        await ctx.kafka.send_user_event(user, records.presence_subscribe(session.id, ctx.slot))
    session.watching[user] = visible
    if held and not visible:
        await ctx.kafka.send_user_event(user, records.presence_unsubscribe(session.id))


class Watches:
    """The hub's side of presence: watches re-checked on ``conversation`` events, ``presence``
    frames written only while visible. Both run as jobs in the session's queue, so what they
    write keeps its place among the session's frames."""

    def __init__(self) -> None:
        self.ctx: CommandContext | None = None  # the node's, set when it starts

    def conversation_changed(self, session: Session, frame: dict[str, Any]) -> None:
        watching, ctx = session.watching, self.ctx
        if not watching or ctx is None:
            return
        event = frame.get("event")
        members = set(frame.get("conversation", {}).get("members", ()))
        if event in ("created", "members_added") and session.user in members:
            gained = [u for u in members if watching.get(u) is False]
            if gained:
                session.run_in_order(lambda: reveal(ctx, session, gained))
        elif event == "members_removed":
            # Whom the event can hide: those who left (when this session's user stayed), or
            # everyone (when it left); only those are looked up again.
            stayed = session.user in members
            candidates = [
                u
                for u, held in watching.items()
                if held and u != session.user and not (stayed and u in members)
            ]
            if candidates:
                session.run_in_order(lambda: recheck(ctx, session, candidates))

    def presence_changed(self, session: Session, frame: dict[str, Any]) -> None:
        user = frame["user"]
        if not (session.watching or {}).get(user):
            return

        async def write_if_visible() -> None:
            if (session.watching or {}).get(user):
                await session.write_now(frame)

        session.run_in_order(write_if_visible)


async def reveal(ctx: CommandContext, session: Session, users: list[str]) -> None:
    """Watched users who now share a conversation with the session's user: watch them at the
    sessions agent, then write their presence (read after, as a subscribe answers)."""
    try:
        gained = [u for u in users if (session.watching or {}).get(u) is False]
        for user in gained:
            await watch(ctx, session, user, True)
        presence = await presence_of(ctx.redis, gained, dict.fromkeys(gained, True))
    except Exception as exc:
        log.warning("presence watch not revealed: %s", exc)
        return
    for entry in presence:
        await session.write_now({"type": "presence", **entry})


async def recheck(ctx: CommandContext, session: Session, users: list[str]) -> None:
    """Watched users who may no longer share a conversation with the session's user: those who
    do not are unwatched and written as offline (a query about them says so too)."""
    try:
        visible = await visible_to(ctx.redis, session.user, users)
    except Exception as exc:
        # Redis away: hidden, since they may be strangers now (a subscribe once Redis answers
        # again, or a reconnect, shows those still visible).
        log.warning("presence watches not re-checked, hidden: %s", exc)
        visible = dict.fromkeys(users, False)
    for user in users:
        if not (session.watching or {}).get(user) or visible[user]:
            continue
        try:
            await watch(ctx, session, user, False)
        except Exception as exc:  # hidden already; the agent's entry ages out (its cap)
            log.warning("presence unsubscribe not sent: %s", exc)
        await session.write_now({"type": "presence", **presence_entry(user, {})})
