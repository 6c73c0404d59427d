"""Media against the real object store (SeaweedFS from ops/stack/stack.sh), Kafka, the media
agent and processor: upload, verify, send, download, expire, and what bad input gets."""

from __future__ import annotations

import io
import time
import uuid
import zlib
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from PIL import Image

from chat import records
from chat.keys import media_key
from chat.topics import topic_spec
from edge.auth import mint_token
from media import store as keys
from media.store import ObjectMissing, ObjectStore
from tests.conftest import PORT_SHIFT
from tests.integration.conftest import App
from tests.integration.helpers import alice_and_bob, create_direct, eventually, synced
from tests.integration.test_security import start_extra_edge


def jpeg_with_gps(width: int = 1600, height: int = 1200) -> bytes:
    """A photo-like JPEG whose EXIF says where it was taken."""
    im = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    exif = Image.Exif()
    exif[0x010F] = "KChatCam"  # Make
    gps = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    exif[0x8825] = gps  # GPSInfo
    out = io.BytesIO()
    im.save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue()


def png_bomb(side: int = 60_000) -> bytes:
    """A tiny PNG whose header claims side x side pixels (3.6 Gpx: 10.8 GB decoded as RGB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = side.to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    idat = zlib.compress(b"\x00" * (1 + 3 * side) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


async def call(
    app: App, user: str, method: str, path: str, body: Any = None, edge: int = 0
) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.request(
            method,
            app.edges[edge] + path,
            json=body,
            headers={"Authorization": f"Bearer {app.token(user)}"},
        ) as resp:
            return resp.status, await resp.json(content_type=None)


async def post_to_store(upload: dict[str, Any], data: bytes, content_type: str) -> tuple[int, str]:
    """The client's upload: a multipart POST straight to the store, with the policy's fields."""
    form = aiohttp.FormData()
    for name, value in upload["fields"].items():
        form.add_field(name, value)
    form.add_field("file", data, filename="upload", content_type=content_type)
    async with aiohttp.ClientSession() as http:
        async with http.post(upload["url"], data=form) as resp:
            return resp.status, await resp.text()


async def upload(
    app: App, user: str, data: bytes, kind: str, name: str = "photo.jpg", size: int | None = None
) -> tuple[str, dict[str, Any]]:
    """Request, upload and complete; the media id and the completion's answer."""
    status, answer = await call(
        app, user, "POST", "/v1/media", {"name": name, "size": size or len(data), "type": kind}
    )
    assert status == 201, answer
    stored, text = await post_to_store(answer["upload"], data, kind)
    assert stored in (200, 201, 204), text
    media_id = answer["media_id"]
    status, done = await call(app, user, "POST", f"/v1/media/{media_id}/complete")
    assert status == 200, done
    return media_id, done["media"]


async def objects(app: App) -> ObjectStore:
    store = ObjectStore(app.settings)
    await store.start()
    return store


async def test_photo_is_verified_sent_and_downloaded(app: App, clients, user_ids) -> None:
    alice, bob = await alice_and_bob(app, clients, user_ids)
    photo = jpeg_with_gps()
    media_id, media = await upload(app, alice.user, photo, "image/jpeg")
    assert media["status"] == "ready", media
    assert (media["width"], media["height"], media["thumbnail"]) == (1600, 1200, True)
    assert media["placeholder"] and media["owner"] == alice.user

    cid = (await create_direct(alice, bob.user))["id"]
    ack = await alice.request(
        {
            "type": "message.send",
            "conversation_id": cid,
            "client_msg_id": "photo",
            "body": "",
            "attachments": [{"media_id": media_id}],
        }
    )
    assert ack["type"] == "message.ack", ack
    got = await bob.wait_for(lambda f: f.get("type") == "message" and f.get("seq") == ack["seq"])
    (attachment,) = got["attachments"]
    assert attachment == {
        "media_id": media_id,
        "name": "photo.jpg",
        "type": "image/jpeg",
        "size": media["size"],
        "width": 1600,
        "height": 1200,
        "thumbnail": True,
        "placeholder": media["placeholder"],
    }

    # The recipient fetches the bytes from the store with a short-lived URL.
    status, full = await call(app, bob.user, "GET", f"/v1/media/{media_id}?conversation_id={cid}")
    assert status == 200, full
    async with aiohttp.ClientSession() as http:
        async with http.get(full["url"]) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "image/jpeg"
            served = await resp.read()
        status, thumb = await call(
            app, bob.user, "GET", f"/v1/media/{media_id}?conversation_id={cid}&variant=thumb"
        )
        async with http.get(thumb["url"]) as resp:
            assert resp.status == 200
            thumbnail = Image.open(io.BytesIO(await resp.read()))
    with Image.open(io.BytesIO(served)) as im:
        assert im.size == (1600, 1200)
        assert not im.getexif(), "EXIF (and GPS) must be stripped"
    assert max(thumbnail.size) == app.settings.media_thumbnail_px
    # The upload key is gone: only the verified object is kept.
    store = await objects(app)
    try:
        assert await store.size_of(keys.object_key(media_id)) == len(served)
        try:
            await store.size_of(keys.upload_key(media_id))
            raise AssertionError("the unverified upload is still in the store")
        except ObjectMissing:
            pass
    finally:
        await store.close()

    # Someone outside the conversation: the same 404 as an unknown id, with or without it.
    carol = user_ids.carol
    assert (await call(app, carol, "GET", f"/v1/media/{media_id}?conversation_id={cid}"))[0] == 404
    assert (await call(app, carol, "GET", f"/v1/media/{media_id}"))[0] == 404
    assert (await call(app, carol, "GET", f"/v1/media/m{uuid.uuid4().hex}"))[0] == 404

    # History carries the attachment too (the sink persisted it).
    async def stored() -> Any:
        _, page = await call(app, bob.user, "GET", f"/v1/conversations/{cid}/messages")
        return page["messages"] if page.get("messages") else None

    (message,) = await eventually(stored)
    assert message["attachments"] == got["attachments"]


async def test_someone_elses_or_unready_media_is_not_found(app: App, clients, user_ids) -> None:
    alice, bob = await alice_and_bob(app, clients, user_ids)
    cid = (await create_direct(alice, bob.user))["id"]
    media_id, media = await upload(app, alice.user, b"meeting notes\n", "text/plain", "notes.txt")
    assert media["status"] == "ready" and media["type"] == "text/plain"
    # Bob attaches Alice's media: not_found, and nothing is sent.
    reply = await bob.request(
        {
            "type": "message.send",
            "conversation_id": cid,
            "client_msg_id": "steal",
            "body": "look",
            "attachments": [{"media_id": media_id}],
        }
    )
    assert reply["type"] == "error" and reply["code"] == "not_found", reply
    # Alice's own upload that was never completed is not ready: not_found as well.
    status, pending = await call(
        app, alice.user, "POST", "/v1/media", {"name": "a.txt", "size": 5, "type": "text/plain"}
    )
    assert status == 201
    reply = await alice.request(
        {
            "type": "message.send",
            "conversation_id": cid,
            "client_msg_id": "early",
            "body": "x",
            "attachments": [{"media_id": pending["media_id"]}],
        }
    )
    assert reply["type"] == "error" and reply["code"] == "not_found", reply
    # A malformed attachment list is a bad request.
    reply = await alice.request(
        {
            "type": "message.send",
            "conversation_id": cid,
            "client_msg_id": "bad",
            "body": "x",
            "attachments": [{"media_id": "../etc/passwd"}],
        }
    )
    assert reply["type"] == "error" and reply["code"] == "bad_request", reply
    await synced(bob)
    assert not bob.messages(cid)


async def test_oversize_is_refused_by_the_store_itself(app: App, user_ids) -> None:
    user = user_ids.alice
    status, answer = await call(
        app, user, "POST", "/v1/media", {"name": "a.txt", "size": 1000, "type": "text/plain"}
    )
    assert status == 201
    # The edge is not involved here: the store checks the signed policy's length range.
    status, text = await post_to_store(answer["upload"], b"a" * 5000, "text/plain")
    assert status == 400 and "EntityTooLarge" in text, (status, text)
    # A different type than the policy names is refused as well.
    status, text = await post_to_store(
        {**answer["upload"], "fields": {**answer["upload"]["fields"], "Content-Type": "text/html"}},
        b"<script>",
        "text/html",
    )
    assert status == 403, (status, text)
    # And the edge refuses to sign for more than the limit, or for a type not allowed.
    too_big = app.settings.media_max_bytes + 1
    status, body = await call(
        app, user, "POST", "/v1/media", {"name": "a.bin", "size": too_big, "type": "text/plain"}
    )
    assert status == 413 and body["error"] == "too_large"
    status, body = await call(
        app, user, "POST", "/v1/media", {"name": "a.html", "size": 10, "type": "text/html"}
    )
    assert status == 400 and body["error"] == "type_not_allowed"
    status, body = await call(app, user, "POST", "/v1/media", {"name": "", "size": 10})
    assert status == 400


async def test_bytes_that_are_not_what_they_claim_are_rejected(app: App, user_ids) -> None:
    user = user_ids.alice
    _, media = await upload(app, user, b"MZ\x90\x00 not a png at all", "image/png", "cat.png")
    assert media["status"] == "rejected" and "bytes are" in media["reason"], media
    # A PNG that is really a JPEG is rejected too: the declared type must be what the bytes are.
    _, media = await upload(app, user, jpeg_with_gps(64, 64), "image/png", "dog.png")
    assert media["status"] == "rejected", media
    store = await objects(app)
    try:

        async def deleted() -> bool:
            try:
                await store.size_of(keys.upload_key(media["id"]))
            except ObjectMissing:
                return True
            return False

        await eventually(deleted)
    finally:
        await store.close()


async def test_decompression_bomb_is_rejected_without_decoding(app: App, user_ids) -> None:
    bomb = png_bomb()
    assert len(bomb) < 100_000
    started = time.monotonic()
    _, media = await upload(app, user_ids.alice, bomb, "image/png", "bomb.png")
    assert media["status"] == "rejected" and "too large" in media["reason"], media
    # Judged from the header: decoding 3.6 Gpx would take minutes and gigabytes.
    assert time.monotonic() - started < 10


async def test_abandoned_upload_expires_and_is_deleted(app: App, user_ids) -> None:
    """An upload requested (with an URL that ends in a second) and never completed: the media
    agent's timer expires it and the processor deletes what was uploaded."""
    media_id = f"m{uuid.uuid4().hex}"
    user = user_ids.alice
    spec = topic_spec(app.settings, "media-commands")
    producer = AIOKafkaProducer(bootstrap_servers=app.settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        requested = {
            "op": "media.requested",
            "media_id": media_id,
            "user": user,
            "name": "draft.txt",
            "type": "text/plain",
            "size": 5,
            "expires_at": int(time.time() * 1000) + 1000,
        }
        await producer.send_and_wait(
            spec.name,
            records.bundle([records.keyed_event(media_id, requested)]),
            partition=records.partition_for(media_id, spec.partitions),
        )
    finally:
        await producer.stop()
    store = await objects(app)
    try:
        await store.ensure_bucket()
        await store.write(keys.upload_key(media_id), b"draft", "text/plain")

        async def expired() -> dict[str, Any] | None:
            _, body = await call(app, user, "GET", f"/v1/media/{media_id}")
            return body["media"] if body.get("media", {}).get("status") == "expired" else None

        media = await eventually(expired, timeout=30)
        assert media["reason"] == "upload not completed in time"

        async def deleted() -> bool:
            try:
                await store.size_of(keys.upload_key(media_id))
            except ObjectMissing:
                return True
            return False

        await eventually(deleted, timeout=30)
    finally:
        await store.close()
    # Completing it now changes nothing: the URL has ended.
    status, body = await call(app, user, "POST", f"/v1/media/{media_id}/complete")
    assert status == 200 and body["media"]["status"] == "expired"


async def test_media_state_is_cached_for_the_edges(app: App, user_ids) -> None:
    """The agent writes the state to Redis before chat.media: what the edges resolve from."""
    media_id, media = await upload(app, user_ids.alice, b"hello\n", "text/plain", "h.txt")
    client = aioredis.from_url(app.settings.redis_url)
    try:
        cached = await client.hgetall(media_key(media_id))
    finally:
        await client.aclose()
    assert cached[b"status"] == b"ready" and cached[b"owner"] == user_ids.alice.encode()
    assert int(cached[b"size"]) == media["size"] == 6


async def test_uploads_downloads_and_quota_are_limited(app: App, user_ids) -> None:
    """An edge with strict media limits: the fourth upload request is refused with 429, the
    quota with 403, the fourth download URL with 429; other users are not affected."""
    port = 28120 + PORT_SHIFT
    name = await start_extra_edge(
        app,
        43,
        port,
        7,
        CHAT_MEDIA_UPLOADS_PER_S="0.01",
        CHAT_MEDIA_UPLOADS_BURST="3",
        CHAT_MEDIA_DOWNLOADS_PER_S="0.01",
        CHAT_MEDIA_DOWNLOADS_BURST="3",
        CHAT_MEDIA_QUOTA_BYTES_PER_DAY="1000",
    )
    strict = App(app.settings, app.supervisor, [f"http://127.0.0.1:{port}"])
    try:
        small = {"name": "a.txt", "size": 10, "type": "text/plain"}
        statuses = [
            (await call(strict, user_ids.alice, "POST", "/v1/media", small))[0] for _ in range(4)
        ]
        assert statuses == [201, 201, 201, 429], statuses
        # The daily quota: 800 bytes fit, 300 more do not (and reserve nothing).
        big = {"name": "b.txt", "size": 800, "type": "text/plain"}
        assert (await call(strict, user_ids.bob, "POST", "/v1/media", big))[0] == 201
        status, body = await call(strict, user_ids.bob, "POST", "/v1/media", {**big, "size": 300})
        assert status == 403 and body["error"] == "quota_exceeded", body
        assert (await call(strict, user_ids.bob, "POST", "/v1/media", {**big, "size": 200}))[
            0
        ] == 201
        # Downloads (here by the owner, of a ready media uploaded through the test app).
        media_id, _ = await upload(app, user_ids.carol, b"x\n", "text/plain", "x.txt")
        gets = [
            (await call(strict, user_ids.carol, "GET", f"/v1/media/{media_id}"))[0]
            for _ in range(4)
        ]
        assert gets == [200, 200, 200, 429], gets
    finally:
        app.supervisor.stop(name)


async def test_a_hidden_message_takes_its_attachment_with_it(app: App, clients, user_ids) -> None:
    """Moderation redacts a message with a picture: members can no longer download it (404),
    and history shows the placeholder without the attachment; its owner still can."""
    alice, bob = await alice_and_bob(app, clients, user_ids)
    media_id, _ = await upload(app, alice.user, jpeg_with_gps(64, 48), "image/jpeg")
    cid = (await create_direct(alice, bob.user))["id"]
    ack = await alice.request(
        {
            "type": "message.send",
            "conversation_id": cid,
            "client_msg_id": "pic",
            "body": "look",
            "attachments": [{"media_id": media_id}],
        }
    )
    assert ack["type"] == "message.ack", ack
    path = f"/v1/media/{media_id}?conversation_id={cid}"
    assert (await call(app, bob.user, "GET", path))[0] == 200
    moderator = mint_token(app.settings, "mod-media", roles=["moderator"])[0]

    async def redacted() -> bool:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{app.edges[0]}/v1/moderation/messages/{cid}/{ack['seq']}/redact",
                json={},
                headers={"Authorization": f"Bearer {moderator}"},
            ) as resp:
                return resp.status == 202  # 404 until the sink has stored the message

    await eventually(redacted)

    async def refused() -> bool:
        return (await call(app, bob.user, "GET", path))[0] == 404

    await eventually(refused)
    _, page = await call(app, bob.user, "GET", f"/v1/conversations/{cid}/messages")
    (message,) = page["messages"]
    assert message["redacted"] and "attachments" not in message and message["body"] == ""
    assert (await call(app, alice.user, "GET", f"/v1/media/{media_id}"))[0] == 200
