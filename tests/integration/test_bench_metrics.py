"""Every metric the bench reads (bench/internals.py) exists in the live ``/metrics`` output.

The bench reads the app's histograms by name; a renamed metric would silently drop out of its
report (as ``chat_edge_produce_seconds`` once did), so this test names the same list.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.internals import EDGE_SERIES, WORKER_SERIES
from tests.client import ChatClient
from tests.conftest import WORKER_PORT, App
from tests.integration.helpers import alice_and_bob, create_direct, eventually, send_acked


async def _series(http: aiohttp.ClientSession, url: str) -> set[str]:
    """Names of the histograms in ``url``'s output that have at least one observation."""
    async with http.get(url) as resp:
        assert resp.status == 200, url
        text = await resp.text()
    return {
        s.name.removesuffix("_count")
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.endswith("_count") and s.value > 0
    }


async def test_every_metric_the_bench_reads_is_exported(
    app: App, clients: list[ChatClient], user_ids: Any
) -> None:
    alice, _bob = await alice_and_bob(app, clients, user_ids)
    conversation = await create_direct(alice, user_ids.bob)
    # One message through the whole path, so that every histogram has an observation (labelled
    # ones only appear in the output once a label value has been seen).
    await send_acked(alice, conversation["id"], "m1")
    worker_urls = [f"http://127.0.0.1:{WORKER_PORT + i}/metrics" for i in range(2)]
    async with aiohttp.ClientSession() as http:

        async def edges_complete() -> set[str] | None:
            seen: set[str] = set()
            for edge in app.edges:
                seen |= await _series(http, edge + "/metrics")
            return seen if set(EDGE_SERIES) <= seen else None

        async def workers_complete() -> set[str] | None:
            seen: set[str] = set()
            for url in worker_urls:
                seen |= await _series(http, url)
            return seen if set(WORKER_SERIES) <= seen else None

        # The delivery histogram fills when bob's edge hands the message over, a moment later.
        assert set(EDGE_SERIES) <= await eventually(edges_complete, timeout=20)
        assert set(WORKER_SERIES) <= await eventually(workers_complete, timeout=20)
