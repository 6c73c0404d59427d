"""Delivery guarantees: one gapless order, idempotent send (also across edges), multi-device."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from chat.records import deliveries, frame_delivery
from tests.integration.conftest import App
from tests.integration.helpers import create_direct, live_session_of, synced


async def test_gapless_order_seen_by_every_member(app: App, clients, user_ids) -> None:
    alice = await app.client(user_ids.alice, edge=0)
    bob = await app.client(user_ids.bob, edge=1)
    carol = await app.client(user_ids.carol, edge=1)
    clients += [alice, bob, carol]
    for c in clients:
        await synced(c)
    group = (
        await alice.request(
            {"type": "conversation.create", "kind": "group", "members": [bob.user, carol.user]}
        )
    )["conversation"]
    cid = group["id"]
    for c in (bob, carol):
        await c.wait_for(lambda f: f["type"] == "conversation")

    # Three senders at once, on both edges.
    async def burst(client, n: int) -> list[int]:
        for i in range(n):
            await client.send(
                {
                    "type": "message.send",
                    "conversation_id": cid,
                    "client_msg_id": f"{client.user}-{i}",
                    "body": f"{i}",
                    "id": f"{client.user}-{i}",
                }
            )
        acks = []
        for i in range(n):
            ack = await client.wait_for(lambda f, i=i: f.get("id") == f"{client.user}-{i}")
            assert ack["type"] == "message.ack", ack
            acks.append(ack["seq"])
        return acks

    results = await asyncio.gather(burst(alice, 20), burst(bob, 20), burst(carol, 20))
    all_seqs = sorted(s for r in results for s in r)
    assert all_seqs == list(range(1, 61))  # no gaps, no reuse
    for r in results:
        assert r == sorted(r)  # one sender's messages keep their order

    for member in (alice, bob, carol):
        others = 40  # a member does not get its own session's messages back
        await member.wait_for(lambda f, m=member, o=others: len(m.messages(cid)) >= o, timeout=30)
        seqs = [f["seq"] for f in member.messages(cid)]
        assert seqs == sorted(seqs)  # in seq order per session
        assert len(seqs) == len(set(seqs)) == others


async def test_resend_returns_original_ack_even_on_the_other_edge(
    app: App, clients, user_ids
) -> None:
    alice = await app.client(user_ids.alice, edge=0)
    bob = await app.client(user_ids.bob, edge=1)
    clients += [alice, bob]
    await synced(bob)
    cid = (await create_direct(alice, bob.user))["id"]

    send = {"type": "message.send", "conversation_id": cid, "client_msg_id": "same", "body": "once"}
    first = await alice.request(send)
    again = await alice.request(send)
    assert (again["seq"], again["ts"]) == (first["seq"], first["ts"])

    # Reconnect to the other edge node and retry: still the original ack.
    await alice.close()
    alice2 = await app.client(alice.user, edge=1)
    clients.append(alice2)
    third = await alice2.request(send)
    assert third["type"] == "message.ack"
    assert (third["seq"], third["ts"]) == (first["seq"], first["ts"])

    # A new message proves the pipeline moved on; bob got "once" exactly once.
    nxt = await alice2.request({**send, "client_msg_id": "next", "body": "next"})
    assert nxt["seq"] == first["seq"] + 1
    await bob.wait_for(lambda f: f["type"] == "message" and f["client_msg_id"] == "next")
    assert [m["client_msg_id"] for m in bob.messages(cid)] == ["same", "next"]


async def test_multi_device(app: App, clients, user_ids) -> None:
    phone = await app.client(user_ids.alice, edge=0)
    laptop = await app.client(user_ids.alice, edge=1)
    bob = await app.client(user_ids.bob, edge=1)
    clients += [phone, laptop, bob]
    for c in clients:
        await synced(c)
    cid = (await create_direct(phone, bob.user))["id"]
    await laptop.wait_for(lambda f: f["type"] == "conversation")

    ack = await phone.request(
        {
            "type": "message.send",
            "conversation_id": cid,
            "client_msg_id": "p1",
            "body": "from my phone",
        }
    )
    # The sending session gets only the ack; the user's other session and bob get the message.
    echoed = await laptop.wait_for(lambda f: f["type"] == "message")
    assert echoed["seq"] == ack["seq"] and echoed["sender"] == phone.user
    await bob.wait_for(lambda f: f["type"] == "message")
    reply = await bob.request(
        {"type": "message.send", "conversation_id": cid, "client_msg_id": "b1", "body": "hi both"}
    )
    for device in (phone, laptop):
        got = await device.wait_for(lambda f: f["type"] == "message" and f["sender"] == bob.user)
        assert got["seq"] == reply["seq"]
    assert [m["seq"] for m in phone.messages(cid)] == [reply["seq"]]


async def test_a_repeated_delivery_reaches_the_session_once(app: App, clients, user_ids) -> None:
    """The stream agents are at-least-once: a batch redone after a crash repeats its
    ``chat.deliver`` records. The edge writes each message seq to a session once."""
    bob = await app.client(user_ids.bob, edge=1)
    clients.append(bob)
    await synced(bob)
    session_id, slot = await live_session_of(app, bob.user)
    cid = f"dm:{user_ids.alice}:{bob.user}"

    def frame(seq: int) -> dict[str, object]:
        return {
            "type": "message",
            "conversation_id": cid,
            "seq": seq,
            "sender": user_ids.alice,
            "body": f"m{seq}",
            "ts": 1,
            "client_msg_id": f"c{seq}",
        }

    producer = AIOKafkaProducer(bootstrap_servers=app.settings.kafka_bootstrap)
    await producer.start()
    try:
        for seq in (1, 2, 1, 2, 3, 3, 4):
            await producer.send_and_wait(
                app.settings.topic("deliver"),
                deliveries([frame_delivery([session_id], frame(seq))]),
                partition=slot,
            )
    finally:
        await producer.stop()
    # One partition, read in order: once 4 is here, every repeat before it was handled.
    await bob.wait_for(lambda f: f["type"] == "message" and f["seq"] == 4)
    got = [f["seq"] for f in bob.frames if f["type"] == "message" and f["conversation_id"] == cid]
    assert got == [1, 2, 3, 4]
