"""Moderation through the real pipeline (docs/moderation.md): inline rules in the router,
detector decisions and escalating mutes, reports and the moderators' queue, redaction and
restore as members, history and sync see them, and the moderator API's refusals.

The rules are deployment-wide: the terms and domains here are ones no other test sends.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from chat.kafka_security import aiokafka_kwargs
from edge.auth import mint_token
from tests.client import ChatClient
from tests.integration.conftest import App
from tests.integration.helpers import create_direct, eventually, synced

TERM = "zqx-forbidden-word"
DOMAIN = "blocked-for-tests.example"


def moderator_token(app: App, user: str = "mod-1") -> str:
    return mint_token(app.settings, user, roles=["moderator"])[0]


async def call(app: App, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.request(
            method,
            app.edges[0] + path,
            headers={"Authorization": f"Bearer {token}"},
            json=body,
        ) as resp:
            return resp.status, await resp.json(content_type=None)


async def set_rules(app: App, **rules: Any) -> None:
    status, body = await call(
        app, "PUT", "/v1/moderation/policy", moderator_token(app), {"terms": [TERM], **rules}
    )
    assert status == 202, body


async def send(client: ChatClient, cid: str, body: str, cmid: str) -> dict[str, Any]:
    return await client.request(
        {"type": "message.send", "conversation_id": cid, "client_msg_id": cmid, "body": body}
    )


async def test_inline_rules_block_before_a_seq_is_given(app: App, clients, user_ids) -> None:
    # Applied in order: the policy records reach every partition before the sends below.
    await set_rules(app, domains=[DOMAIN], new_account_hours=1)
    alice = await app.client(user_ids.alice)
    bob = await app.client(user_ids.bob)
    clients += [alice, bob]
    cid = (await create_direct(alice, bob.user))["id"]
    await synced(bob)

    term = await send(alice, cid, f"well {TERM.upper()}!", "b1")
    domain = await send(alice, cid, f"see https://www.{DOMAIN}/offer", "b2")
    assert (term["type"], term["code"], term["reason"]) == ("error", "blocked", "blocked_term")
    assert (domain["code"], domain["reason"]) == ("blocked", "blocked_domain")

    # An account younger than the rule's hour may send text, not links.
    young_token = mint_token(app.settings, user_ids.young, account_created=int(time.time()))[0]
    young = await ChatClient.connect(app.edges[0], young_token, user_ids.young)
    clients.append(young)
    young_cid = (await create_direct(young, bob.user))["id"]
    link = await send(young, young_cid, "cheap.example.com/deal", "y1")
    assert (link["code"], link["reason"]) == ("blocked", "new_account_links")
    assert (await send(young, young_cid, "just words", "y2"))["seq"] == 1

    # The connection stays usable, nothing was sequenced or delivered: the next one is seq 1.
    ok = await send(alice, cid, "hello", "b3")
    assert (ok["type"], ok["seq"]) == ("message.ack", 1)
    delivered = await bob.wait_for(
        lambda f: f.get("type") == "message" and f["conversation_id"] == cid and f["seq"] == 1
    )
    assert delivered["body"] == "hello"
    assert not [f for f in bob.frames if f.get("type") == "message" and TERM in f["body"].lower()]


async def test_a_report_reaches_the_queue_and_only_members_may_report(
    app: App, clients, user_ids
) -> None:
    alice = await app.client(user_ids.alice)
    bob = await app.client(user_ids.bob)
    eve = await app.client(user_ids.eve)
    clients += [alice, bob, eve]
    cid = (await create_direct(alice, bob.user))["id"]
    await send(alice, cid, "buy my stuff", "r1")
    report = {"type": "message.report", "conversation_id": cid, "seq": 1, "reason": "spam"}
    assert (await bob.request({**report, "note": "again"}))["type"] == "ok"
    assert (await eve.request(report))["code"] == "not_member"
    assert (await bob.request({**report, "seq": 99}))["code"] == "not_found"
    too_long = await bob.request({**report, "note": "x" * 1001})
    assert too_long["code"] == "bad_request"
    assert (await bob.request({**report, "note": "x" * 1000}))["type"] == "ok"

    token = moderator_token(app)

    async def queued() -> dict[str, Any] | None:
        status, body = await call(app, "GET", "/v1/moderation/queue?limit=200", token)
        assert status == 200, body
        return next((e for e in body["queue"] if e["conversation_id"] == cid), None)

    entry = await eventually(queued)
    assert entry["status"] == "open" and entry["message"]["body"] == "buy my stuff"
    assert {e["by"] for e in entry["entries"]} == {bob.user}
    # Without the role: 403, whatever the token's user.
    status, _ = await call(app, "GET", "/v1/moderation/queue", app.token(bob.user))
    assert status == 403


async def test_redact_and_restore_reach_members_history_and_sync(
    app: App, clients, user_ids
) -> None:
    alice = await app.client(user_ids.alice)
    clients.append(alice)
    cid = (await create_direct(alice, user_ids.bob))["id"]
    await send(alice, cid, "first", "m1")
    await send(alice, cid, "rude words", "m2")
    await send(alice, cid, "third", "m3")
    token = moderator_token(app)

    async def stored() -> bool:
        status, _ = await call(app, "POST", f"/v1/moderation/messages/{cid}/2/redact", token, {})
        return status == 202  # 404 until the sink has stored the message

    await eventually(stored)
    frame = await alice.wait_for(lambda f: f.get("type") == "message.redacted")
    assert (frame["conversation_id"], frame["seq"]) == (cid, 2)

    # Bob was offline: his sync holds the placeholder at seq 2, the others whole.
    bob = await app.client(user_ids.bob)
    clients.append(bob)
    done = await synced(bob)
    assert done["type"] == "sync.done"
    synced_messages = {
        f["seq"]: f
        for f in bob.frames
        if f.get("type") == "message" and f["conversation_id"] == cid
    }
    assert synced_messages[2]["body"] == "" and synced_messages[2]["redacted"]["reason"]
    assert synced_messages[1]["body"] == "first" and synced_messages[3]["body"] == "third"

    async def history() -> list[dict[str, Any]] | None:
        status, body = await call(
            app, "GET", f"/v1/conversations/{cid}/messages", app.token(bob.user)
        )
        page = body.get("messages", []) if status == 200 else []
        return page if len(page) == 3 and page[1].get("redacted") else None

    page = await eventually(history)
    assert [m["seq"] for m in page] == [1, 2, 3] and page[1]["body"] == ""

    status, _ = await call(app, "POST", f"/v1/moderation/messages/{cid}/2/restore", token, {})
    assert status == 202
    restored = await bob.wait_for(lambda f: f.get("type") == "message.restored")
    assert restored["message"]["body"] == "rude words"

    async def history_restored() -> bool:
        _, body = await call(app, "GET", f"/v1/conversations/{cid}/messages", app.token(bob.user))
        return body["messages"][1]["body"] == "rude words"

    await eventually(history_restored)
    status, body = await call(app, "GET", "/v1/moderation/audit?limit=200", token)
    kinds = [(e["kind"], e["by"]) for e in body["audit"] if e.get("conversation_id") == cid]
    assert ("redacted", "mod-1") in kinds and ("restored", "mod-1") in kinds
    # A message that does not exist, and actions that do not: 404.
    for path in (f"{cid}/99/redact", f"{cid}/1/explode", "dm:nope/1/redact", f"{cid}/1e3/redact"):
        status, _ = await call(app, "POST", f"/v1/moderation/messages/{path}", token, {})
        assert status == 404, path


async def produce_decision(app: App, cid: str, seq: int, sender: str) -> None:
    producer = AIOKafkaProducer(**aiokafka_kwargs(app.settings), acks="all")
    await producer.start()
    try:
        decision = {
            "op": "moderation.decision",
            "conversation_id": cid,
            "seq": seq,
            "sender": sender,
            "action": "redact",
            "reason": "offensive",
            "source": "classifier",
            "evidence": {"score": 0.99},
            "strike": True,
        }
        await producer.send_and_wait(
            app.settings.topic("commands"), orjson.dumps(decision), key=cid.encode()
        )
    finally:
        await producer.stop()


async def test_detector_decisions_redact_and_a_second_strike_mutes(
    app: App, clients, user_ids
) -> None:
    alice = await app.client(user_ids.alice)
    bob = await app.client(user_ids.bob)
    clients += [alice, bob]
    cid = (await create_direct(alice, bob.user))["id"]
    await synced(bob)
    await send(alice, cid, "offensive one", "d1")
    await send(alice, cid, "offensive two", "d2")
    await produce_decision(app, cid, 1, alice.user)
    await bob.wait_for(lambda f: f.get("type") == "message.redacted" and f["seq"] == 1)
    # One strike is a warning: alice may still send.
    assert (await send(alice, cid, "sorry", "d3"))["type"] == "message.ack"
    await produce_decision(app, cid, 2, alice.user)
    await bob.wait_for(lambda f: f.get("type") == "message.redacted" and f["seq"] == 2)
    muted = await send(alice, cid, "and again", "d4")
    assert (muted["code"], muted["reason"]) == ("blocked", "muted")
    # The mute holds in every conversation (every partition's copy of the policy).
    other = (await create_direct(alice, user_ids.carol))["id"]

    async def muted_elsewhere() -> bool:
        reply = await send(alice, other, "hi carol", f"d5-{time.monotonic()}")
        return reply.get("reason") == "muted"

    await eventually(muted_elsewhere)
    # A moderator lifts it.
    token = moderator_token(app)
    status, _ = await call(app, "POST", f"/v1/moderation/users/{alice.user}/unban", token, {})
    assert status == 202
    assert (await send(alice, cid, "better now", "d6"))["type"] == "message.ack"


async def test_moderator_api_refuses_bad_input(app: App, user_ids) -> None:
    token = moderator_token(app)
    user = user_ids.alice
    for minutes in (0, -1, 10_081, "5", True, None):
        status, _ = await call(
            app, "POST", f"/v1/moderation/users/{user}/mute", token, {"minutes": minutes}
        )
        assert status == 400, minutes
    status, _ = await call(
        app, "POST", f"/v1/moderation/users/{user}/mute", token, {"minutes": 10_080}
    )
    assert status == 202
    status, _ = await call(app, "POST", f"/v1/moderation/users/{user}/unban", token, {})
    assert status == 202
    status, _ = await call(app, "POST", "/v1/moderation/users/bad user!/ban", token, {})
    assert status == 404
    max_terms = app.settings.moderation_max_terms
    too_many = {"terms": [f"t{i}" for i in range(max_terms + 1)]}
    status, _ = await call(app, "PUT", "/v1/moderation/policy", token, too_many)
    assert status == 400
    for bad in (
        {"terms": "x"},
        {"terms": [""]},
        {"terms": ["x" * 101]},
        {"new_account_hours": -1},
        [],
    ):
        status, _ = await call(app, "PUT", "/v1/moderation/policy", token, bad)
        assert status == 400, bad
    status, _ = await call(app, "GET", "/v1/moderation/queue?status=weird", token)
    assert status == 400
    status, _ = await call(app, "GET", "/v1/moderation/queue?limit=201", token)
    assert status == 400
    # At the limit the policy is accepted, and the rules still hold the test's term afterwards.
    at_limit = {"terms": [TERM] + [f"term-{i}" for i in range(max_terms - 1)]}
    status, body = await call(app, "PUT", "/v1/moderation/policy", token, at_limit)
    assert status == 202 and len(body["rules"]["terms"]) == max_terms
    # Leave the deployment's rules small again: later tests (the web client's) add to them.
    await set_rules(app)
