"""One user cannot stall anyone else by growing state: the outage of issue #14, reproduced.

A user fills a group that has no other members, and an offline victim's inbox, with 48 messages
of 4,000 ``"\\x01"`` characters (each JSON-escapes to six bytes) and never confirms them. Before
the byte budgets, the inbox row grew past the broker's 1 MB record limit, the changelog write
failed and was retried forever, and every partition behind it stopped: fresh pairs of users
never got their first message, and a restart recovered the same state and failed the same way.
"""

from __future__ import annotations

import asyncio

import aiohttp

from tests.conftest import App
from tests.integration.helpers import create_direct, eventually, send_acked, synced

BODY = "\x01" * 4000
PAIRS = 16


async def fresh_pairs_exchange(app: App, clients: list, tag: str) -> None:
    """Sixteen new pairs across both edges: each sender's first message reaches its partner."""

    async def one(i: int) -> None:
        sender = await app.client(f"sender-{tag}-{i}", edge=i % 2)
        recipient = await app.client(f"recipient-{tag}-{i}", edge=(i + 1) % 2)
        clients.extend([sender, recipient])
        await synced(sender)
        await synced(recipient)
        conversation = await create_direct(sender, recipient.user)
        await send_acked(sender, conversation["id"], "first", f"hello {i}")
        await recipient.wait_for(
            lambda f: f.get("type") == "message" and f["conversation_id"] == conversation["id"],
            timeout=15,
        )

    await asyncio.gather(*(one(i) for i in range(PAIRS)))


async def stored_count(app: App, user: str, cid: str) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{app.edges[0]}/v1/conversations/{cid}/messages?limit=100",
            headers={"Authorization": f"Bearer {app.token(user)}"},
        ) as resp:
            if resp.status != 200:
                return 0
            body = await resp.json()
            return len(body["messages"])


async def test_a_user_filling_inboxes_stalls_nobody(app: App, clients, user_ids) -> None:
    attacker = await app.client(user_ids.eve)
    clients.append(attacker)
    await synced(attacker)
    alone = await attacker.request({"type": "conversation.create", "kind": "group", "members": []})
    assert alone["type"] == "ok", alone
    group = alone["conversation"]["id"]
    direct = (await create_direct(attacker, user_ids.victim))["id"]  # the victim stays offline

    for cid in (group, direct):
        for i in range(48):
            await send_acked(attacker, cid, f"{cid}-{i}", BODY)

    await fresh_pairs_exchange(app, clients, f"{user_ids.tag}-a")
    # Everything the attacker sent is stored and readable.
    for cid in (group, direct):
        await eventually(lambda cid=cid: _all_stored(app, attacker.user, cid), timeout=30)

    # A restart recovers the tables from their changelogs; everyone keeps being served.
    await asyncio.get_running_loop().run_in_executor(None, _restart_workers, app)
    await fresh_pairs_exchange(app, clients, f"{user_ids.tag}-b")

    # The victim comes online and syncs all 48 (newest from the inbox, the rest from the store).
    victim = await app.client(user_ids.victim, edge=1)
    clients.append(victim)
    done = await synced(victim)
    assert done["type"] == "sync.done", done
    got = sorted(m["seq"] for m in victim.messages(direct))
    assert got == list(range(1, 49))
    assert all(m["body"] == BODY for m in victim.messages(direct))


async def _all_stored(app: App, user: str, cid: str) -> bool:
    return await stored_count(app, user, cid) == 48


def _restart_workers(app: App) -> None:
    for name in ("worker-0", "worker-1"):
        app.supervisor.restart(name)
