"""Media without services: the attachment validation, the media table's transitions, the
agent's handler, and the verification of bytes (sniffing, bombs, metadata stripping)."""

from __future__ import annotations

import io
import json
import uuid
import zlib

import pytest
from aiohttp import web
from PIL import Image

from chat import protocol
from chat.keys import media_key
from chat.protocol import ProtocolError
from chat.settings import SettingsError, load_settings
from edge.media import _decode, attachment, clean_name, public
from media import verify
from media.store import ObjectStore
from tables import media
from topologies.batch import Batch, Event
from topologies.media import MEDIA, apply_commands

ALLOWED = ("image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf", "text/plain")
MID = "m" + "a" * 32


def send(**extra: object) -> dict[str, object]:
    return {"type": "message.send", "conversation_id": "dm:a:b", "client_msg_id": "c", **extra}


def test_attachments_are_validated() -> None:
    frame = protocol.decode_frame(
        protocol_json(send(body="", attachments=[{"media_id": MID}]))  # body may be empty
    )
    assert frame.fields["attachments"] == [MID] and frame.fields["body"] == ""
    for bad in (
        [{"media_id": "x"}],
        [{"media_id": MID}, {"media_id": MID}],
        [MID],
        "nope",
        [{"media_id": f"m{uuid.uuid4().hex}"}] * (protocol.MAX_ATTACHMENTS + 1),
    ):
        with pytest.raises(ProtocolError) as err:
            protocol.decode_frame(protocol_json(send(body="x", attachments=bad)))
        assert err.value.code == protocol.BAD_REQUEST
    with pytest.raises(ProtocolError):  # no attachments: the body is required
        protocol.decode_frame(protocol_json(send(body="")))


def protocol_json(frame: dict[str, object]) -> str:
    return json.dumps(frame)


def requested(at: int = 1000) -> dict[str, object]:
    return {
        "op": "media.requested",
        "media_id": MID,
        "user": "alice",
        "name": "a.png",
        "type": "image/png",
        "size": 10,
        "expires_at": at + 5000,
    }


VERIFIED = {
    "op": "media.verified",
    "media_id": MID,
    "type": "image/png",
    "size": 9,
    "width": 2,
    "height": 3,
    "thumbnail": True,
    "placeholder": "L00000fQfQfQfQfQfQfQfQfQfQfQ",
}


def test_media_life_and_repeats() -> None:
    ttl = 60_000
    row = media.apply(None, requested(), 1000, ttl)
    assert row is not None and row["state"]["status"] == "pending"
    assert media.apply(row, requested(), 1100, ttl) is row  # a repeated request
    # Only the owner completes, and only before the URL ends.
    assert (
        media.apply(row, {"op": "media.uploaded", "media_id": MID, "user": "bob"}, 1200, ttl) is row
    )
    late = media.apply(row, {"op": "media.uploaded", "media_id": MID, "user": "alice"}, 9000, ttl)
    assert late is row
    row = media.apply(row, {"op": "media.uploaded", "media_id": MID, "user": "alice"}, 1200, ttl)
    assert row is not None and row["state"]["status"] == "verifying"
    ready = media.apply(row, VERIFIED, 1300, ttl)
    assert ready is not None and ready["state"]["status"] == "ready" and ready["ready_at"] == 1300
    assert ready["state"]["width"] == 2 and ready["state"]["size"] == 9
    # A verdict repeated, or a late rejection, changes nothing.
    assert media.apply(ready, VERIFIED, 1400, ttl) is ready
    assert (
        media.apply(ready, {"op": "media.rejected", "media_id": MID, "reason": "x"}, 1400, ttl)
        is ready
    )
    # Never attached: deleted after the TTL; attached: kept.
    assert media.due(ready, 1300 + ttl + 1, ttl) == "deleted"
    gone = media.apply(ready, {"op": "media.expire", "media_id": MID}, 1300 + ttl + 1, ttl)
    assert gone is not None and gone["state"]["status"] == "deleted"
    kept = media.apply(
        ready, {"op": "media.referenced", "media_id": MID, "conversation_id": "c"}, 1400, ttl
    )
    assert kept is not None and kept["referenced"] and not media.due(kept, 10**12, ttl)


def test_pending_upload_expires_only_after_its_url() -> None:
    row = media.apply(None, requested(), 1000, 1)
    expire = {"op": "media.expire", "media_id": MID}
    assert media.apply(row, expire, 5999, 1) is row  # a timer ahead of the record time
    expired = media.apply(row, expire, 6001, 1)
    assert expired is not None and expired["state"]["status"] == "expired"


def test_agent_publishes_each_changed_media_once_with_its_cache() -> None:
    settings = load_settings({})
    batch = Batch(settings, {MEDIA: {}})
    events = [
        Event(MID, requested(), 1000),
        Event(MID, {"op": "media.uploaded", "media_id": MID, "user": "alice"}, 1001),
        Event(MID, {"op": "nonsense"}, 1002),
    ]
    apply_commands(batch, events)
    assert batch.rows[(MEDIA, MID)]["state"]["status"] == "verifying"
    assert [(t, k) for t, k, _ in batch.records] == [("media", MID)]
    assert batch.cache_writes[0][0] == media_key(MID)
    assert batch.cache_writes[0][1]["status"] == "verifying"


def png(width: int, height: int, **save: object) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG", **save)
    return out.getvalue()


def test_sniffing_trusts_the_bytes_not_the_label() -> None:
    assert verify.sniff(png(2, 2)) == "image/png"
    assert verify.sniff(b"%PDF-1.7\n") == "application/pdf"
    assert verify.sniff("héllo\n".encode()) == "text/plain"
    assert verify.sniff(b"MZ\x90\x00\x03\x00") == "application/octet-stream"
    refused = verify.inspect(b"plain words", "image/png", ALLOWED, 10**6, 64)
    assert isinstance(refused, verify.Rejected) and "text/plain" in refused.reason
    refused = verify.inspect(b"\x7fELF\x02\x01", "text/plain", ALLOWED, 10**6, 64)
    assert isinstance(refused, verify.Rejected) and "not allowed" in refused.reason


def test_metadata_is_stripped_and_a_thumbnail_made() -> None:
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 29.0)}
    out = io.BytesIO()
    Image.new("RGB", (800, 400), (10, 120, 200)).save(out, "JPEG", exif=exif)
    result = verify.inspect(out.getvalue(), "image/jpeg", ALLOWED, 10**7, 160)
    assert isinstance(result, verify.Verified)
    assert (result.width, result.height) == (800, 400) and result.placeholder
    with Image.open(io.BytesIO(result.data)) as im:
        assert not im.getexif()
    assert result.thumbnail is not None
    with Image.open(io.BytesIO(result.thumbnail)) as thumb:
        assert thumb.size == (160, 80)


def test_a_bomb_is_judged_by_its_header() -> None:
    side = 100_000

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = chunk(b"IHDR", side.to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0]))
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * (1 + 3 * side)))
    data = b"\x89PNG\r\n\x1a\n" + ihdr + idat + chunk(b"IEND", b"")
    result = verify.inspect(data, "image/png", ALLOWED, 40_000_000, 64)
    assert isinstance(result, verify.Rejected) and "too large" in result.reason
    # Under Pillow's own limit but over ours: refused before decoding too.
    result = verify.inspect(png(300, 300), "image/png", ALLOWED, 50_000, 64)
    assert isinstance(result, verify.Rejected) and "too large" in result.reason


def test_file_names_lose_paths_and_control_characters() -> None:
    assert clean_name("C:\\Users\\me\\holiday.jpg") == "holiday.jpg"
    assert clean_name("../../etc/passwd") == "passwd"
    assert clean_name("a\u202eb\x00c.png") == "abc.png"  # bidi override and NUL dropped
    for bad in ("", "///", 7, "x" * 300):
        with pytest.raises(web.HTTPBadRequest):
            clean_name(bad)


def test_what_clients_are_told_of_a_media() -> None:
    cached = {
        b"id": MID.encode(),
        b"owner": b"alice",
        b"status": b"ready",
        b"name": b"a.png",
        b"type": b"image/png",
        b"size": b"9",
        b"width": b"2",
        b"height": b"3",
        b"thumbnail": b"1",
        b"placeholder": b"L00000fQfQfQfQfQfQfQfQfQfQfQ",
        b"reason": b"",
        b"created_at": b"1",
        b"updated_at": b"2",
    }
    state = _decode(cached)
    assert state["size"] == 9 and state["thumbnail"] is True
    assert attachment(state) == {
        "media_id": MID,
        "name": "a.png",
        "type": "image/png",
        "size": 9,
        "width": 2,
        "height": 3,
        "thumbnail": True,
        "placeholder": "L00000fQfQfQfQfQfQfQfQfQfQfQ",
    }
    told = public(state)
    assert "reason" not in told and "created_at" not in told and told["owner"] == "alice"
    text = {**state, "type": "text/plain", "width": 0, "height": 0, "thumbnail": False}
    text["placeholder"] = ""
    assert attachment(text) == {"media_id": MID, "name": "a.png", "type": "text/plain", "size": 9}


async def test_the_development_store_secret_is_refused_outside_dev() -> None:
    production = load_settings({"CHAT_ENV": "production"})
    with pytest.raises(SettingsError, match="CHAT_MEDIA_S3_SECRET_KEY"):
        await ObjectStore(production).start()
    store = ObjectStore(load_settings({"CHAT_ENV": "dev"}))
    await store.start()  # signs without any request to the store
    post = await store.presign_upload(MID, "image/png", 10, 60)
    assert post["fields"]["key"] == f"uploads/{MID}"
    await store.close()
