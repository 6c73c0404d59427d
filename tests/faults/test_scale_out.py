"""Scaling out and in under load: a third worker and a third edge join, then the worker leaves.

This once answered `not_found` for a conversation created and acknowledged before: Faust wrote
table changelogs under JSON-encoded keys, whose hash put a row in another partition than its
source records, so a worker taking a partition over recovered the wrong rows.
"""

from __future__ import annotations

import asyncio

from ops.supervisor import edge_spec, worker_spec
from tests.conftest import TEST_ENV, WORKER_PORT, App
from tests.faults.load import background_load
from tests.faults.test_process_faults import in_thread, report


async def test_live_scale_out_and_in(app: App, clients, user_ids) -> None:
    """Add a third worker and a third edge under load, move recipients onto the new edge, then
    remove the new worker again: the rebalances lose nothing."""
    sup = app.supervisor
    extra_worker = worker_spec(2, TEST_ENV, WORKER_PORT + 2)
    extra_edge = edge_spec(3, TEST_ENV, 28095, 3)
    try:
        async with background_load(app, user_ids.tag) as load:
            clients += [c for p in load.pairs for c in (p.sender, p.recipient)]
            await asyncio.sleep(2)
            sup.start(extra_worker)
            sup.start(extra_edge)
            await in_thread(sup.wait_ready, [extra_worker.name, extra_edge.name], 120)
            app.edges.append("http://127.0.0.1:28095")
            await load.move_recipients(clients, to_edge=len(app.edges) - 1)
            before = load.acked_count()
            await load.wait_for_acks(before + 20, timeout=60)
            await in_thread(sup.stop, extra_worker.name)  # scale in: graceful leave
            after = load.acked_count()
            await load.wait_for_acks(after + 20, timeout=60)
            await load.stop()
            figures = await load.verify()
    finally:
        for name in (extra_worker.name, extra_edge.name):
            if name in sup.running:
                sup.stop(name)
        if "http://127.0.0.1:28095" in app.edges:
            app.edges.remove("http://127.0.0.1:28095")
    report("scale out to 3 workers + 3 edges, then in", {**figures, "lost": 0})
