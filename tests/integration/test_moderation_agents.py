"""The detector agents on the real pipeline (docs/moderation.md#classifier, #spam-detection):
messages sent through the edges reach the classifier and the spam agents over Kafka, their
``moderation.decision`` commands are on ``chat.commands`` (read here with aiokafka, which checks
the detectors apart from the router), and the router then hides the message for the members.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from chat import records
from chat.kafka_security import aiokafka_kwargs
from tests.client import ChatClient
from tests.integration.conftest import App
from tests.integration.helpers import create_direct, eventually, send_acked, synced


async def decisions_on(app: App, cid: str) -> list[dict[str, Any]]:
    """The ``moderation.decision`` commands of a conversation: its partition of chat.commands,
    from the beginning (a decision is a keyed JSON object there; the edges' bundles are arrays)."""
    topic = app.settings.topic("commands")
    partition = TopicPartition(
        topic, records.partition_for(cid, app.settings.conversation_partitions)
    )
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **aiokafka_kwargs(app.settings))
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        end = (await consumer.end_offsets([partition]))[partition]
        while await consumer.position(partition) < end:
            for batch in (await consumer.getmany(partition, timeout_ms=1000)).values():
                for record in batch:
                    value = orjson.loads(record.value)
                    if isinstance(value, dict) and value.get("op") == "moderation.decision":
                        if value["conversation_id"] == cid:
                            found.append(value)
    finally:
        await consumer.stop()
    return found


def redacted(client: ChatClient, cid: str, seq: int) -> Any:
    return client.wait_for(
        lambda f: (
            f.get("type") == "message.redacted"
            and f.get("conversation_id") == cid
            and f.get("seq") == seq
        ),
        timeout=30,
    )


async def test_an_offensive_message_is_decided_and_hidden_for_the_members(
    app: App, clients, user_ids
) -> None:
    alice = await app.client(user_ids.alice, edge=0)
    bob = await app.client(user_ids.bob, edge=1)
    clients += [alice, bob]
    await synced(bob)
    cid = (await create_direct(alice, bob.user))["id"]
    await send_acked(alice, cid, "m1", "are we still on for dinner at eight tonight?")
    rude = await send_acked(alice, cid, "m2", "you are a fucking idiot and a piece of shit")

    async def decided() -> list[dict[str, Any]] | None:
        found = await decisions_on(app, cid)
        return found or None

    [decision] = await eventually(decided, timeout=60)
    assert decision["seq"] == rude["seq"] and decision["sender"] == alice.user
    assert (decision["source"], decision["reason"], decision["action"]) == (
        "classifier",
        "offensive",
        "redact",
    )
    assert decision["strike"] is True
    assert decision["evidence"]["score"] >= app.settings.moderation_redact_threshold
    # The router applied it: hidden for both members (the sender's other sessions too).
    await redacted(bob, cid, rude["seq"])
    await redacted(alice, cid, rude["seq"])


async def test_one_link_sent_to_many_users_is_a_campaign_and_stopped(
    app: App, clients, user_ids
) -> None:
    spammer = await app.client(user_ids.spammer, edge=0)
    clients.append(spammer)
    # A text and a link no other test (or earlier run) sends, not even nearly: a campaign's
    # text stays a campaign for CHAT_SPAM_WINDOW_S, and a run's near-duplicate of the last
    # run's would be redacted from its first message on.
    token = uuid.uuid4().hex[:8]
    text = " ".join(uuid.uuid4().hex[:10] for _ in range(4))
    link = f"https://prizes-{token}.example.shop/claim"
    targets = [f"{user_ids.target}-{i}" for i in range(3 * app.settings.spam_min_conversations)]
    first = await app.client(targets[0], edge=1)
    clients.append(first)
    await synced(first)
    sent: list[tuple[str, int]] = []
    refused: dict[str, Any] | None = None
    for i, target in enumerate(targets):
        cid = (await create_direct(spammer, target))["id"]
        reply = await spammer.request(
            {
                "type": "message.send",
                "conversation_id": cid,
                "client_msg_id": f"s{i}",
                "body": f"{text} {link}",
            }
        )
        if reply["type"] == "error":
            refused = reply
            break
        sent.append((cid, reply["seq"]))
    # The spammer's strikes muted them before the list ran out: the campaign was stopped.
    assert refused is not None and (refused["code"], refused["reason"]) == ("blocked", "muted")
    assert len(sent) >= app.settings.spam_min_conversations

    async def all_decided() -> list[dict[str, Any]] | None:
        found = [d for cid, _ in sent for d in await decisions_on(app, cid)]
        return found if {d["conversation_id"] for d in found} == {c for c, _ in sent} else None

    found = await eventually(all_decided, timeout=90)
    assert {(d["source"], d["reason"], d["action"], d["strike"]) for d in found} == {
        ("spam", "spam", "redact", True)
    }
    assert {(d["conversation_id"], d["seq"]) for d in found} == set(sent)
    assert any(d["evidence"]["signature"].startswith("l:prizes-") for d in found)
    # The first recipient, online, saw the message and then saw it go.
    cid, seq = sent[0]
    await redacted(first, cid, seq)
