"""The object store (any S3-compatible service: SeaweedFS locally, AWS S3 in production), the
only module that talks to it. The edges presign; the media processor reads, writes and deletes.

Object keys, one place: ``uploads/<id>`` (what the client uploaded, unverified),
``objects/<id>`` (the verified bytes, metadata stripped), ``thumbs/<id>.jpg``.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import quote

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from chat.settings import DEV_S3_SECRET, Settings, SettingsError


def upload_key(media_id: str) -> str:
    return f"uploads/{media_id}"


def object_key(media_id: str) -> str:
    return f"objects/{media_id}"


def thumbnail_key(media_id: str) -> str:
    return f"thumbs/{media_id}.jpg"


def all_keys(media_id: str) -> list[str]:
    return [upload_key(media_id), object_key(media_id), thumbnail_key(media_id)]


def public_endpoint(settings: Settings) -> str:
    """Where clients reach the store (the presigned URLs name it)."""
    return settings.media_s3_public_endpoint or settings.media_s3_endpoint


class ObjectMissing(Exception):
    """The object is not in the store (never uploaded, or deleted)."""


class ObjectStore:
    """Two clients with the same credentials: one for the store's own endpoint (requests),
    one that only signs URLs for the public endpoint (a SigV4 signature covers the host)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bucket = settings.media_bucket
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._signer: Any = None

    def _new_client(self, endpoint: str) -> Any:
        s = self.settings
        return get_session().create_client(
            "s3",
            endpoint_url=endpoint,
            region_name=s.media_s3_region,
            aws_access_key_id=s.media_s3_access_key,
            aws_secret_access_key=s.media_s3_secret_key,
            config=AioConfig(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                connect_timeout=5,
                read_timeout=30,
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        )

    async def start(self) -> None:
        if self.settings.media_s3_secret_key == DEV_S3_SECRET and not self.settings.is_dev:
            raise SettingsError(
                "CHAT_MEDIA_S3_SECRET_KEY is the local stack's development secret: set the "
                "store's own (only CHAT_ENV=dev runs with it)"
            )
        self._client = await self._stack.enter_async_context(
            self._new_client(self.settings.media_s3_endpoint)
        )
        self._signer = await self._stack.enter_async_context(
            self._new_client(public_endpoint(self.settings))
        )

    async def close(self) -> None:
        await self._stack.aclose()

    async def ensure_bucket(self) -> None:
        try:
            await self._client.head_bucket(Bucket=self.bucket)
        except ClientError:
            with contextlib.suppress(ClientError):  # another process created it meanwhile
                await self._client.create_bucket(Bucket=self.bucket)

    async def ping(self) -> bool:
        try:
            await self._client.head_bucket(Bucket=self.bucket)
        except Exception:
            return False
        return True

    async def presign_upload(
        self, media_id: str, content_type: str, size: int, ttl_s: int
    ) -> dict[str, Any]:
        """A POST policy for exactly this key, type and at most ``size`` bytes: the store
        itself refuses anything else, whatever the client sends."""
        key = upload_key(media_id)
        post: dict[str, Any] = await self._signer.generate_presigned_post(
            Bucket=self.bucket,
            Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[
                {"Content-Type": content_type},
                ["content-length-range", 1, size],
            ],
            ExpiresIn=ttl_s,
        )
        return post

    async def presign_download(self, key: str, ttl_s: int, filename: str, content_type: str) -> str:
        params = {
            "Bucket": self.bucket,
            "Key": key,
            "ResponseContentType": content_type,
            # A file is saved, never rendered in the page's origin (it is the store's anyway).
            "ResponseContentDisposition": f"inline; filename*=UTF-8''{_rfc5987(filename)}",
        }
        url: str = await self._signer.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=ttl_s
        )
        return url

    async def size_of(self, key: str) -> int:
        try:
            head = await self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _status(exc) == 404:
                raise ObjectMissing(key) from None
            raise
        return int(head["ContentLength"])

    async def read(self, key: str, limit: int) -> bytes:
        """At most ``limit`` bytes of the object (the caller checked its size first)."""
        try:
            answer = await self._client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes=0-{max(0, limit - 1)}"
            )
        except ClientError as exc:
            if _status(exc) == 404:
                raise ObjectMissing(key) from None
            raise
        async with answer["Body"] as body:
            data: bytes = await body.read()
        return data

    async def write(self, key: str, data: bytes, content_type: str) -> None:
        await self._client.put_object(
            Bucket=self.bucket, Key=key, Body=data, ContentType=content_type
        )

    async def delete(self, keys: list[str]) -> None:
        """Idempotent: deleting a missing key succeeds."""
        await self._client.delete_objects(
            Bucket=self.bucket,
            Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
        )


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _rfc5987(value: str) -> str:
    return quote(value, safe="")
