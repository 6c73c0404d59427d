"""``python -m bench.media``: the media figures of issue #18 (docs/performance.md#media).

Starts its own app (one stream worker, one edge, the media processor; no sink: nothing here
reads history) in a fresh topic namespace and bucket, against the stack's SeaweedFS, and
measures with real HTTP clients:

1. **upload-to-ready** of a 2 MB photo (a 2000x1500 JPEG of noise over a gradient, as a phone
   photo compresses): ``--photos`` uploads one after another, each timed from ``POST
   /v1/media`` to the completion answering ``ready``, split into request, upload (to the
   store) and verification (completion → ready);
2. **the processor's throughput**: ``--batch`` photos uploaded first, then all completed at
   once; images per second from the first completion to the last verdict, with
   ``CHAT_MEDIA_PROCESSOR_CONCURRENCY`` (one processor process);
3. **text latency under an upload burst**: two users exchange text messages at ``--rate``
   msg/s (send → ack and send → delivery) for ``--phase-s`` seconds, then again while
   ``--burst`` users each upload and complete one photo at the same moment.

Takes the bench lock (/tmp/kchat-bench.lock) for the whole run, as ``python -m bench`` does;
writes JSON under bench-results/.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import io
import json
import os
import random
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from PIL import Image

from bench.app import BENCH_ENV, namespace_env
from chat.settings import Settings, load_settings
from edge.auth import mint_token
from ops.supervisor import REPO, Supervisor, edge_spec, media_spec, worker_spec
from ops.topics import ensure_topics

LOCK = "/tmp/kchat-bench.lock"
EDGE_PORT = 38180
WORKER_PORT = 36166
MEDIA_PORT = 36172
OUT_DIR = REPO / "bench-results"


@contextmanager
def bench_lock() -> Iterator[None]:
    with open(LOCK, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def photo(seed: int, width: int = 2000, height: int = 1500) -> bytes:
    """About 2 MB of JPEG: noise over a gradient (a flat gradient would compress to 50 KB)."""
    rng = random.Random(seed)
    base = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    noise = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    out = io.BytesIO()
    Image.blend(base, noise, 0.4).save(out, "JPEG", quality=92)
    return out.getvalue()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(pct(values, 50) * 1000, 1),
        "p99_ms": round(pct(values, 99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
        "mean_ms": round(statistics.fmean(values) * 1000, 1),
    }


class Http:
    def __init__(self, http: aiohttp.ClientSession, settings: Settings, base: str) -> None:
        self.http, self.settings, self.base = http, settings, base

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(self.settings, user)[0]}"}

    async def request_upload(self, user: str, size: int) -> dict[str, Any]:
        body = {"name": "photo.jpg", "size": size, "type": "image/jpeg"}
        async with self.http.post(
            f"{self.base}/v1/media", json=body, headers=self.auth(user)
        ) as resp:
            answer: dict[str, Any] = await resp.json()
            assert resp.status == 201, answer
            return answer

    async def put(self, grant: dict[str, Any], data: bytes) -> None:
        form = aiohttp.FormData()
        for k, v in grant["upload"]["fields"].items():
            form.add_field(k, v)
        form.add_field("file", data, filename="photo.jpg", content_type="image/jpeg")
        async with self.http.post(grant["upload"]["url"], data=form) as resp:
            assert resp.status in (200, 201, 204), await resp.text()

    async def complete(self, user: str, media_id: str) -> dict[str, Any]:
        url = f"{self.base}/v1/media/{media_id}/complete"
        async with self.http.post(url, headers=self.auth(user)) as resp:
            answer: dict[str, Any] = await resp.json()
        media = answer["media"]
        while media["status"] in ("pending", "verifying"):  # the edge's wait ran out
            async with self.http.get(
                f"{self.base}/v1/media/{media_id}", headers=self.auth(user)
            ) as resp:
                media = (await resp.json())["media"]
        assert media["status"] == "ready", media
        return dict(media)

    async def upload(self, user: str, data: bytes) -> dict[str, float]:
        t0 = time.monotonic()
        grant = await self.request_upload(user, len(data))
        t1 = time.monotonic()
        await self.put(grant, data)
        t2 = time.monotonic()
        await self.complete(user, grant["media_id"])
        t3 = time.monotonic()
        return {"total": t3 - t0, "request": t1 - t0, "upload": t2 - t1, "verify": t3 - t2}


async def chat_pair(
    http: aiohttp.ClientSession, settings: Settings, base: str, run: str
) -> tuple[Any, Any, str]:
    a, b = f"bench-a-{run}", f"bench-b-{run}"
    wa = await http.ws_connect(f"{base}/v1/ws?access_token={mint_token(settings, a)[0]}")
    wb = await http.ws_connect(f"{base}/v1/ws?access_token={mint_token(settings, b)[0]}")
    await wa.send_json({"type": "conversation.create", "kind": "direct", "members": [b], "id": 1})
    while True:
        frame = await wa.receive_json()
        if frame.get("id") == 1:
            cid = frame["conversation"]["id"]
            break
    for ws in (wa, wb):
        await ws.send_json({"type": "sync", "id": "s"})
        while (await ws.receive_json()).get("type") != "sync.done":
            pass
    return wa, wb, cid


async def text_latency(
    wa: Any, wb: Any, cid: str, rate: float, seconds: float, tag: str
) -> dict[str, dict[str, float]]:
    """Messages from a to b at ``rate``: send → ack (a) and send → delivery (b)."""
    sent: dict[str, float] = {}
    acks: list[float] = []
    deliveries: list[float] = []
    count = int(rate * seconds)
    done = asyncio.Event()

    async def read_a() -> None:
        async for msg in wa:
            frame = json.loads(msg.data)
            if frame.get("type") == "message.ack" and frame.get("client_msg_id") in sent:
                acks.append(time.monotonic() - sent[frame["client_msg_id"]])
                if len(acks) == count:
                    done.set()

    async def read_b() -> None:
        async for msg in wb:
            frame = json.loads(msg.data)
            if frame.get("type") == "message" and frame.get("client_msg_id") in sent:
                deliveries.append(time.monotonic() - sent[frame["client_msg_id"]])

    readers = [asyncio.create_task(read_a()), asyncio.create_task(read_b())]
    start = time.monotonic()
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        cmid = f"{tag}-{i}"
        sent[cmid] = time.monotonic()
        await wa.send_json(
            {"type": "message.send", "conversation_id": cid, "client_msg_id": cmid, "body": "hi"}
        )
    await asyncio.wait_for(done.wait(), 60)
    await asyncio.sleep(1.0)  # the last deliveries
    for task in readers:
        task.cancel()
    return {"ack": summary(acks), "delivery": summary(deliveries)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:6]
    prefix = f"bench-media-{run_id}"
    env = {
        **BENCH_ENV,
        **namespace_env(prefix),
        "CHAT_MEDIA_BUCKET": prefix,
        "CHAT_MEDIA_PROCESSOR_GROUP": f"{prefix}-media",
        "CHAT_MEDIA_UPLOADS_PER_S": "1000",
        "CHAT_MEDIA_UPLOADS_BURST": "1000",
        "CHAT_MEDIA_DOWNLOADS_PER_S": "1000",
        "CHAT_MEDIA_DOWNLOADS_BURST": "1000",
        "CHAT_REST_IP_PER_S": "10000",
        "CHAT_REST_IP_BURST": "10000",
        "CHAT_MEDIA_COMPLETE_WAIT_S": "30",
    }
    settings = load_settings({**os.environ, **env})
    await ensure_topics(settings)
    log_dir = REPO / ".data" / "logs" / f"bench-media-{run_id}"
    sup = Supervisor(log_dir=log_dir, base_env={**os.environ, **env})
    out: dict[str, Any] = {
        "run": run_id,
        "concurrency": settings.media_processor_concurrency,
    }
    try:
        sup.start(worker_spec(0, {}, WORKER_PORT))
        sup.start(media_spec({}, MEDIA_PORT))
        sup.start(edge_spec(0, {}, EDGE_PORT, 0))
        sup.wait_ready(timeout=180)
        base = f"http://127.0.0.1:{EDGE_PORT}"
        photos = [photo(i) for i in range(max(args.photos, args.batch, args.burst))]
        out["photo_bytes"] = statistics.median(len(p) for p in photos)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            client = Http(http, settings, base)
            await client.upload(f"warm-{run_id}", photos[0])  # bucket, connections, imports
            # 1. upload-to-ready, one at a time
            timings = [await client.upload(f"u-{run_id}", photos[i]) for i in range(args.photos)]
            parts = ("total", "request", "upload", "verify")
            out["upload_to_ready"] = {k: summary([t[k] for t in timings]) for k in parts}
            print("upload-to-ready", json.dumps(out["upload_to_ready"]), flush=True)
            # 2. throughput: uploaded first, completed all at once
            users = [f"t{i}-{run_id}" for i in range(args.batch)]
            grants = [await client.request_upload(u, len(photos[i])) for i, u in enumerate(users)]
            await asyncio.gather(*(client.put(g, photos[i]) for i, g in enumerate(grants)))
            t0 = time.monotonic()
            await asyncio.gather(
                *(client.complete(u, g["media_id"]) for u, g in zip(users, grants, strict=True))
            )
            elapsed = time.monotonic() - t0
            out["throughput"] = {
                "images": args.batch,
                "seconds": round(elapsed, 2),
                "images_per_s": round(args.batch / elapsed, 2),
            }
            print("throughput", json.dumps(out["throughput"]), flush=True)
            # 3. text latency before and during a burst of concurrent uploads
            wa, wb, cid = await chat_pair(http, settings, base, run_id)
            # Unmeasured: the conversation's first messages (new rows, first batches).
            await text_latency(wa, wb, cid, args.rate, 5.0, "warm")
            out["text_before"] = await text_latency(wa, wb, cid, args.rate, args.phase_s, "before")
            burst_users = [f"b{i}-{run_id}" for i in range(args.burst)]
            burst = asyncio.gather(
                *(client.upload(u, photos[i]) for i, u in enumerate(burst_users))
            )
            t_burst = time.monotonic()
            out["text_during"] = await text_latency(wa, wb, cid, args.rate, args.phase_s, "during")
            burst_timings = await burst
            out["burst"] = {
                "uploads": args.burst,
                "seconds_to_all_ready": round(time.monotonic() - t_burst, 2),
                "upload_to_ready": summary([t["total"] for t in burst_timings]),
            }
            print("text", json.dumps({k: out[k] for k in ("text_before", "text_during", "burst")}))
            await wa.close()
            await wb.close()
    finally:
        sup.stop_all()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=40)
    ap.add_argument("--batch", type=int, default=40)
    ap.add_argument("--burst", type=int, default=50)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--phase-s", type=float, default=15.0)
    args = ap.parse_args()
    with bench_lock():
        result = asyncio.run(run(args))
    OUT_DIR.mkdir(exist_ok=True)
    path = OUT_DIR / f"media-{result['run']}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
