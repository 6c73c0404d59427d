"""What the edge does with each validated client frame: answer it locally (ping, presence
look-ups) or turn it into a record on ``chat.commands`` / ``chat.users``.

The edge decides nothing about conversations: membership and seq numbers are the router's.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import redis.asyncio as aioredis

from chat import protocol, records
from chat.protocol import ClientFrame, ProtocolError
from chat.settings import Settings
from edge import metrics, presence
from edge.kafka_io import KafkaIO, KafkaUnavailable
from edge.ratelimit import Limit, RateLimiter
from edge.session import Session

if TYPE_CHECKING:
    from edge.media import MediaDirectory

log = logging.getLogger("chat.edge.commands")


@dataclass
class CommandContext:
    settings: Settings
    kafka: KafkaIO
    redis: aioredis.Redis
    limiter: RateLimiter
    slot: int
    # Resolves message.send attachments (None: media are off, as in the in-process tests).
    media: MediaDirectory | None = None


def frame_limit(settings: Settings, frame: ClientFrame) -> tuple[Limit, int]:
    """The per-user token bucket a frame draws from, and how many tokens it costs. Every frame
    type has one, so no frame can be sent without bound; presence frames cost one token per
    user they name (a subscribe to 500 users writes 500 records)."""
    s = settings
    kind = frame.type
    if kind == "message.send":
        return Limit("msg", s.messages_per_s, s.messages_burst), 1
    if kind == "typing":
        return Limit("typing", s.typing_per_s, s.typing_burst), 1
    if kind.startswith("conversation."):
        return Limit("conv", s.conversation_ops_per_s, s.conversation_ops_burst), 1
    if kind == "message.report":
        return Limit("report", s.reports_per_s, s.reports_burst), 1
    if kind in ("message.delivered", "receipt.read"):
        return Limit("receipt", s.receipts_per_s, s.receipts_burst), 1
    if kind == "sync":
        return Limit("sync", s.syncs_per_s, s.syncs_burst), 1
    if kind.startswith("presence."):
        users = len(frame.fields["users"])
        # A frame naming more users than the burst could never pass: cap its cost there.
        return Limit("presence", s.presence_users_per_s, s.presence_users_burst), min(
            max(1, users), s.presence_users_burst
        )
    if kind == "ping":
        return Limit("ping", s.pings_per_s, s.pings_burst), 1
    raise AssertionError(f"no rate limit for {kind}")


async def handle_frame(ctx: CommandContext, session: Session, frame: ClientFrame) -> None:
    """Handle one frame; raises ProtocolError for an ``error`` reply."""
    handler = HANDLERS[frame.type]
    limit, cost = frame_limit(ctx.settings, frame)
    await enforce(ctx, limit, session.user, frame, cost)
    try:
        await handler(ctx, session, frame)
    except KafkaUnavailable as exc:
        log.warning("kafka unavailable", extra={"error": str(exc), "type": frame.type})
        raise ProtocolError(
            protocol.UNAVAILABLE, "the message log is unavailable, retry", frame.id
        ) from None


def origin(ctx: CommandContext, session: Session, frame: ClientFrame) -> records.Origin:
    """Where the router sends the reply: this edge's slot, the session, the frame's id."""
    return records.origin(ctx.slot, session.id, frame.id)


async def on_ping(ctx: CommandContext, session: Session, frame: ClientFrame) -> None:
    session.send(protocol.pong_frame(frame.id))


async def on_create(ctx: CommandContext, session: Session, frame: ClientFrame) -> None:
    f = frame.fields
    if f["kind"] == "direct":
        other = f["members"][0]
        if other == session.user:
            raise ProtocolError(
                protocol.BAD_REQUEST, "a direct conversation needs another user", frame.id
            )
        cid = protocol.direct_conversation_id(session.user, other)
        at = origin(ctx, session, frame)
        await ctx.kafka.send_command(records.create_direct(cid, session.user, at, other))
    else:
        # Group ids are chosen here and carried in the command, so that a replay of
        # chat.commands rebuilds the very same conversation.
        cid = f"grp:{uuid.uuid4().hex}"
        others = [m for m in f["members"] if m != session.user]
        at = origin(ctx, session, frame)
        await ctx.kafka.send_command(
            records.create_group(cid, session.user, at, others, f["title"])
        )


async def on_add_members(ctx: CommandContext, session: Session, frame: ClientFrame) -> None:
    await ctx.kafka.send_command(members_command("conversation.add_members", ctx, session, frame))


async def on_remove_members(ctx: CommandContext, session: Session, frame: ClientFrame) -> None:
    await ctx.kafka.send_command(
        members_command("conversation.remove_members", ctx, session, frame)
    )


def members_command(
    op: Literal["conversation.add_members", "conversation.remove_members"],
    ctx: CommandContext,
    session: Session,
    frame: ClientFrame,
) -> records.MembersCommand:
    cid, members = frame.fields["conversation_id"], frame.fields["members"]
    return records.change_members(op, cid, session.user, origin(ctx, session, frame), members)


async def on_send(ctx: CommandContext, session: Session, frame: ClientFrame) -> None:
    f = frame.fields
    attachments = await resolve_attachments(ctx, session, frame)
    if len(session.pending_sends) < 10_000:
        session.pending_sends.setdefault(f["client_msg_id"], time.monotonic())
    at = origin(ctx, session, frame)
    command = records.send_message(
        f["conversation_id"],
        session.user,
        at,
        f["client_msg_id"],
        f["body"],
        session.account_created_ms,
    )
    if attachments:
        command["attachments"] = attachments
    await ctx.kafka.send_command(command)


async def resolve_attachments(
    ctx: CommandContext, session: Session, frame: ClientFrame
) -> list[records.Attachment]:
    """The attachments' metadata (docs/media.md); ``not_found`` unless each is the sender's
    own and ready."""
    media_ids = frame.fields.get("attachments") or []
    if not media_ids:
        return []
    if ctx.media is None:
        raise ProtocolError(protocol.UNAVAILABLE, "media are not available here", frame.id)
    return await ctx.media.resolve_attachments(
        session.user, frame.fields["conversation_id"], media_ids, frame.id
    )


async def on_report(ctx: CommandContext, session: Session, frame: ClientFrame) -> None:
    f = frame.fields
    at = origin(ctx, session, frame)
    await ctx.kafka.send_command(
        records.report(f["conversation_id"], session.user, at, f["seq"], f["reason"], f["note"])
    )


async def on_delivered(ctx: CommandContext, session: Session, frame: ClientFrame) -> None:
    await ctx.kafka.send_command(cursor_command("message.delivered", ctx, session, frame))


async def on_read(ctx: CommandContext, session: Session, frame: ClientFrame) -> None:
    await ctx.kafka.send_command(cursor_command("receipt.read", ctx, session, frame))


def cursor_command(
    op: Literal["message.delivered", "receipt.read"],
    ctx: CommandContext,
    session: Session,
    frame: ClientFrame,
) -> records.CursorCommand:
    cid, seq = frame.fields["conversation_id"], frame.fields["seq"]
    return records.move_cursor(op, cid, session.user, origin(ctx, session, frame), seq)


async def on_typing(ctx: CommandContext, session: Session, frame: ClientFrame) -> None:
    f = frame.fields
    at = origin(ctx, session, frame)
    await ctx.kafka.send_command(records.typing(f["conversation_id"], session.user, at, f["state"]))


async def on_sync(ctx: CommandContext, session: Session, frame: ClientFrame) -> None:
    # Through chat.users, behind this session's session.open: the answer sees every message
    # that reached the user before it, and later ones arrive live after it.
    await ctx.kafka.send_user_event(
        session.user,
        records.sync_request(session.id, ctx.slot, frame.id, frame.fields["cursors"]),
    )


async def enforce(
    ctx: CommandContext, limit: Limit, subject: str, frame: ClientFrame, cost: int = 1
) -> None:
    verdict = await ctx.limiter.check(limit, subject, cost)
    if not verdict.allowed:
        metrics.rate_limited.labels(limit.scope).inc()
        raise RateLimited(frame.id, verdict.retry_after_ms)


class RateLimited(ProtocolError):
    def __init__(self, frame_id: protocol.FrameId, retry_after_ms: int) -> None:
        super().__init__(protocol.RATE_LIMITED, "too many requests, slow down", frame_id)
        self.retry_after_ms = max(1, retry_after_ms)


HANDLERS = {
    "ping": on_ping,
    "conversation.create": on_create,
    "conversation.add_members": on_add_members,
    "conversation.remove_members": on_remove_members,
    "message.send": on_send,
    "message.delivered": on_delivered,
    "message.report": on_report,
    "receipt.read": on_read,
    "typing": on_typing,
    "sync": on_sync,
    "presence.subscribe": presence.on_subscribe,
    "presence.query": presence.on_query,
}
assert set(HANDLERS) == protocol.CLIENT_TYPES
