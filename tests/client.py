"""A real WebSocket client for the tests: speaks PROTOCOL.md to a running edge node."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

Frame = dict[str, Any]
_ids = itertools.count(1)


class ChatClient:
    def __init__(
        self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, user: str
    ) -> None:
        self.http = session
        self.ws = ws
        self.user = user
        self.frames: list[Frame] = []
        self.close_code: int | None = None
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, base_url: str, token: str, user: str) -> ChatClient:
        session = aiohttp.ClientSession()
        ws_url = base_url.replace("http", "ws", 1) + "/v1/ws"
        try:
            ws = await session.ws_connect(ws_url, params={"access_token": token}, autoping=True)
        except Exception:
            await session.close()
            raise
        return cls(session, ws, user)

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    frame = orjson.loads(msg.data)
                    async with self._changed:
                        self.frames.append(frame)
                        self._changed.notify_all()
        finally:
            self.close_code = self.ws.close_code
            async with self._changed:
                self._changed.notify_all()

    async def send(self, frame: Frame) -> None:
        await self.ws.send_str(orjson.dumps(frame).decode())

    async def send_raw(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data)

    async def wait_for(
        self, match: Callable[[Frame], bool], timeout: float = 15.0, after: int = 0
    ) -> Frame:
        """The first frame (from index ``after``) that matches, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                for frame in self.frames[after:]:
                    if match(frame):
                        return frame
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._reader.done():
                    raise TimeoutError(f"{self.user}: no matching frame; got {self.frames[-10:]}")
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    pass

    async def request(self, frame: Frame, timeout: float = 15.0) -> Frame:
        """Send a frame with a fresh id and return the direct reply carrying that id."""
        frame_id = f"r{next(_ids)}"
        start = len(self.frames)
        await self.send({**frame, "id": frame_id})
        return await self.wait_for(lambda f: f.get("id") == frame_id, timeout, after=start)

    async def wait_closed(self, timeout: float = 15.0) -> int | None:
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.close_code

    def of_type(self, frame_type: str) -> list[Frame]:
        return [f for f in self.frames if f.get("type") == frame_type]

    def messages(self, conversation_id: str) -> list[Frame]:
        return [
            f
            for f in self.frames
            if f.get("type") == "message" and f.get("conversation_id") == conversation_id
        ]

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self.http.close()
