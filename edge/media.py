"""Media at the edge (docs/media.md): upload requests answered with a presigned POST policy,
completions, downloads answered with a presigned URL, and the attachments of ``message.send``
resolved. The bytes never pass through here: clients send them to the object store and fetch
them from it.

The edge decides nothing about a media's state: the media agent does, and writes it to Redis
(``chat:media:<id>``) before publishing it on ``chat.media``, which the sink keeps in MongoDB;
this module reads Redis first and MongoDB when Redis has nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import unicodedata
import uuid
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from chat import protocol
from chat.keys import media_key, media_quota_key, media_refs_key, member_of_key
from chat.protocol import ProtocolError
from chat.records import Attachment, MediaReferenced, MediaRequested, MediaUploaded
from chat.settings import Settings
from edge import metrics
from edge.auth import TokenVerifier, Unauthorized, authenticate
from edge.kafka_io import KafkaIO, KafkaUnavailable
from edge.ratelimit import Limit, RateLimiter
from edge.rest import rate_limited
from edge.store import Store
from media import store as keys
from media.store import ObjectStore

log = logging.getLogger("chat.edge.media")
MAX_NAME_CHARS = 255
READY = "ready"
DECIDED = ("ready", "rejected", "expired", "deleted")
QUOTA_WINDOW_S = 24 * 3600
# Reserve the declared size against the day's quota, or refuse without reserving anything.
_RESERVE = """
local used = redis.call('INCRBY', KEYS[1], ARGV[1])
if used > tonumber(ARGV[2]) then
  redis.call('DECRBY', KEYS[1], ARGV[1])
  return -1
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return used
"""


def _error(status: int, code: str, message: str = "") -> web.HTTPException:
    body = {"error": code, **({"message": message} if message else {})}
    cls = {400: web.HTTPBadRequest, 403: web.HTTPForbidden, 404: web.HTTPNotFound}.get(status)
    if cls is None:
        return web.HTTPServiceUnavailable(text=protocol_json(body), content_type="application/json")
    return cls(text=protocol_json(body), content_type="application/json")


def protocol_json(body: Mapping[str, Any]) -> str:
    return json.dumps(body)


def not_found() -> web.HTTPException:
    # Unknown ids, other people's media and media of conversations one is not in look alike.
    return _error(404, protocol.NOT_FOUND)


def clean_name(raw: object) -> str:
    """A file name to show and to offer on download: no path, no control characters."""
    if not isinstance(raw, str):
        raise _error(400, protocol.BAD_REQUEST, "name must be a string")
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise _error(400, protocol.BAD_REQUEST, f"name must be 1-{MAX_NAME_CHARS} characters")
    return name


def public(state: Mapping[str, Any]) -> dict[str, Any]:
    """What a client is told about a media (its owner and state, not the store's keys)."""
    fields = ("id", "owner", "status", "name", "type", "size", "width", "height", "thumbnail")
    out = {k: state[k] for k in fields if k in state}
    for k in ("placeholder", "reason"):
        if state.get(k):
            out[k] = state[k]
    return out


def attachment(state: Mapping[str, Any]) -> Attachment:
    out = Attachment(
        media_id=state["id"], name=state["name"], type=state["type"], size=int(state["size"])
    )
    if int(state.get("width") or 0):
        out["width"] = int(state["width"])
        out["height"] = int(state["height"])
    if state.get("thumbnail"):
        out["thumbnail"] = True
    if state.get("placeholder"):
        out["placeholder"] = state["placeholder"]
    return out


def _decode(raw: Mapping[Any, Any]) -> dict[str, Any]:
    ints = ("size", "width", "height", "created_at", "updated_at")
    state: dict[str, Any] = {k.decode(): v.decode() for k, v in raw.items()}
    for k in ints:
        if k in state:
            state[k] = int(state[k])
    state["thumbnail"] = state.get("thumbnail") in ("1", "True", "true")
    return state


class MediaDirectory:
    """The edge's view of media: their states (Redis, then MongoDB), the object store's
    presigned URLs, and the ``chat.media-commands`` the edge sends."""

    def __init__(
        self,
        settings: Settings,
        redis: aioredis.Redis,
        store: Store,
        kafka: KafkaIO,
        verifier: TokenVerifier,
        limiter: RateLimiter,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.store = store
        self.kafka = kafka
        self.verifier = verifier
        self.limiter = limiter
        self.objects = ObjectStore(settings)
        self.upload_limit = Limit(
            "media-up", settings.media_uploads_per_s, settings.media_uploads_burst
        )
        self.download_limit = Limit(
            "media-down", settings.media_downloads_per_s, settings.media_downloads_burst
        )

    async def start(self) -> None:
        await self.objects.start()  # no request yet: presigning needs none

    async def close(self) -> None:
        await self.objects.close()

    async def state(self, media_id: str) -> dict[str, Any] | None:
        try:
            raw = await self.redis.hgetall(media_key(media_id))
        except Exception as exc:
            log.warning("media look-up in Redis failed: %s", exc)
            raw = {}
        if raw:
            return _decode(raw)
        doc = await self.store.db.media.find_one({"_id": media_id})
        if doc is None:
            return None
        doc["id"] = doc.pop("_id")
        return doc

    async def is_member(self, user: str, conversation_id: str) -> bool:
        """Membership as the router last wrote it to Redis (before the conversation's events
        went out, so a recipient of a message is a member here at once); the store, which
        trails by the sink's batch, when Redis does not know (emptied, not yet rebuilt)."""
        try:
            if await self.redis.sismember(member_of_key(user), conversation_id):
                return True
        except Exception as exc:
            log.warning("membership look-up in Redis failed: %s", exc)
        return await self.store.member_conversation(conversation_id, user) is not None

    async def visible_in(self, media_id: str, conversation_id: str) -> bool:
        """Whether the media is attached to a message of the conversation that moderation did
        not hide. The stored messages decide; a message the sink has not stored yet (it trails
        delivery by a batch) counts through the edge's own record of the attachment."""
        seqs = [
            m["seq"]
            async for m in self.store.db.messages.find(
                {"conversation_id": conversation_id, "attachments.media_id": media_id},
                projection={"seq": 1},
            )
        ]
        if seqs:
            hidden = await self.store.db.redactions.count_documents(
                {"conversation_id": conversation_id, "seq": {"$in": seqs}, "hidden": True}
            )
            return hidden < len(seqs)
        try:
            return bool(await self.redis.hexists(media_refs_key(media_id), conversation_id))
        except Exception as exc:
            log.warning("media reference look-up in Redis failed: %s", exc)
            return False

    async def resolve_attachments(
        self, user: str, conversation_id: str, media_ids: list[str], frame_id: protocol.FrameId
    ) -> list[Attachment]:
        """The metadata of each attachment of a ``message.send``: each must be ready and the
        sender's own, or the whole frame is refused with ``not_found`` (whether it exists,
        is someone else's or is not ready yet is not told apart)."""
        if len(media_ids) > self.settings.media_max_attachments:
            raise ProtocolError(
                protocol.BAD_REQUEST,
                f"at most {self.settings.media_max_attachments} attachments per message",
                frame_id,
            )
        states = await asyncio.gather(*(self.state(m) for m in media_ids))
        resolved: list[Attachment] = []
        for media_id, state in zip(media_ids, states, strict=True):
            if state is None or state.get("owner") != user or state.get("status") != READY:
                raise ProtocolError(
                    protocol.NOT_FOUND, f"no ready media {media_id} of yours", frame_id
                )
            resolved.append(attachment(state))
        # Before the message exists: a recipient who sees it can download at once. A message
        # the router then refuses leaves a reference that only its owner's choice created.
        async with self.redis.pipeline(transaction=False) as pipe:
            for media_id in media_ids:
                pipe.hset(media_refs_key(media_id), conversation_id, "1")
            await pipe.execute()
        for media_id in media_ids:
            await self.kafka.send_media_event(
                media_id,
                MediaReferenced(
                    op="media.referenced", media_id=media_id, conversation_id=conversation_id
                ),
            )
        return resolved

    # ----------------------------------------------------------------------- REST

    async def identify(self, request: web.Request, limit: Limit) -> str:
        try:
            identity = authenticate(request, self.verifier)
        except Unauthorized:
            raise web.HTTPUnauthorized(
                text='{"error":"unauthorized"}', content_type="application/json"
            ) from None
        verdict = await self.limiter.check(limit, identity.user)
        if not verdict.allowed:
            metrics.rate_limited.labels(limit.scope).inc()
            raise rate_limited(verdict.retry_after_ms)
        return identity.user

    async def request_upload(self, request: web.Request) -> web.Response:
        """``POST /v1/media`` {name, size, type}: a media id and a presigned POST policy."""
        user = await self.identify(request, self.upload_limit)
        s = self.settings
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise _error(400, protocol.BAD_REQUEST, "a JSON object {name, size, type}")
        name = clean_name(body.get("name"))
        size, kind = body.get("size"), body.get("type")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise _error(400, protocol.BAD_REQUEST, "size must be a positive integer")
        if size > s.media_max_bytes:
            raise web.HTTPRequestEntityTooLarge(
                max_size=s.media_max_bytes,
                actual_size=size,
                text=protocol_json(
                    {"error": "too_large", "message": f"at most {s.media_max_bytes} bytes"}
                ),
                content_type="application/json",
            )
        if kind not in s.media_allowed_types:
            raise _error(
                400,
                "type_not_allowed",
                "type must be one of " + ", ".join(s.media_allowed_types),
            )
        now = time.time()
        quota_key = media_quota_key(user, int(now // QUOTA_WINDOW_S))
        used = await self.redis.eval(
            _RESERVE, 1, quota_key, size, s.media_quota_bytes_per_day, 2 * QUOTA_WINDOW_S
        )
        if int(used) < 0:
            raise _error(403, "quota_exceeded", "the daily upload quota is used up")
        media_id = f"m{uuid.uuid4().hex}"
        expires_at = int(now * 1000) + s.media_upload_ttl_s * 1000
        post = await self.objects.presign_upload(media_id, kind, size, s.media_upload_ttl_s)
        event = MediaRequested(
            op="media.requested",
            media_id=media_id,
            user=user,
            name=name,
            type=kind,
            size=size,
            expires_at=expires_at,
        )
        await self._send(media_id, event)
        return web.json_response(
            {
                "media_id": media_id,
                "upload": {"url": post["url"], "fields": post["fields"]},
                "expires_at": expires_at,
            },
            status=201,
        )

    async def complete(self, request: web.Request) -> web.Response:
        """``POST /v1/media/{id}/complete``: the upload is done; answers the verdict (200) when
        it comes within CHAT_MEDIA_COMPLETE_WAIT_S, else 202 with the state so far."""
        user = await self.identify(request, self.upload_limit)
        media_id = request.match_info["media_id"]
        if not protocol.is_media_id(media_id):
            raise not_found()
        await self._send(media_id, MediaUploaded(op="media.uploaded", media_id=media_id, user=user))
        deadline = time.monotonic() + self.settings.media_complete_wait_s
        delay = 0.02
        state = await self.state(media_id)
        while time.monotonic() < deadline:
            if state is not None:
                if state.get("owner") != user:
                    raise not_found()
                if state.get("status") in DECIDED:
                    return web.json_response({"media": public(state)})
            # The verdict is the media agent's; its Redis hash is polled (a few ms apart,
            # doubling to 200 ms), bounded by the deadline.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
            state = await self.state(media_id)
        if state is None or state.get("owner") != user:
            raise not_found()
        return web.json_response({"media": public(state)}, status=202)

    async def download(self, request: web.Request) -> web.Response:
        """``GET /v1/media/{id}[?conversation_id=&variant=thumb]``: a short-lived presigned URL.
        The owner may always fetch; anyone else must be a member of a conversation the media
        was attached in, by a message moderation did not hide. Everyone else gets 404, as for an
        unknown id."""
        user = await self.identify(request, self.download_limit)
        media_id = request.match_info["media_id"]
        if not protocol.is_media_id(media_id):
            raise not_found()
        state = await self.state(media_id)
        if state is None:
            raise not_found()
        if state.get("owner") != user:
            cid = request.query.get("conversation_id", "")
            if state.get("status") != READY or not protocol.is_conversation_id(cid):
                raise not_found()
            if not await self.is_member(user, cid):
                raise not_found()
            if not await self.visible_in(media_id, cid):
                raise not_found()
        if state.get("status") != READY:
            return web.json_response({"media": public(state)})
        ttl = self.settings.media_download_ttl_s
        if request.query.get("variant") == "thumb":
            if not state.get("thumbnail"):
                raise not_found()
            key, kind = keys.thumbnail_key(media_id), "image/jpeg"
        else:
            key, kind = keys.object_key(media_id), state["type"]
        url = await self.objects.presign_download(key, ttl, state["name"], kind)
        return web.json_response(
            {"media": public(state), "url": url, "expires_at": int((time.time() + ttl) * 1000)}
        )

    async def _send(self, media_id: str, event: Mapping[str, Any]) -> None:
        try:
            await self.kafka.send_media_event(media_id, event)
        except KafkaUnavailable:
            raise _error(503, "unavailable", "the message log is unavailable, retry") from None


def add_routes(app: web.Application, directory: MediaDirectory) -> None:
    app.router.add_post("/v1/media", directory.request_upload)
    app.router.add_post("/v1/media/{media_id}/complete", directory.complete)
    app.router.add_get("/v1/media/{media_id}", directory.download)
