"""Moderation in the router, as pure functions: the inline rules, decisions, strikes and
escalation, reports, moderator actions, and the inbox placeholders (docs/moderation.md).

The integration suite (tests/integration/test_moderation.py) runs the same paths through Kafka.
"""

from __future__ import annotations

from typing import Any

import orjson

from chat import records
from tables import inbox, moderation
from tables.moderation import PolicyRow
from tests.unit.test_agents import (
    DM,
    SETTINGS,
    Tables,
    cmd,
    decoded,
    run,
    user_events,
    with_direct_conversation,
)
from topologies import router, sessions
from topologies.batch import Batch, Event

KEYS = records.policy_keys(SETTINGS.conversation_partitions)


def rules(**fields: Any) -> records.PolicyRules:
    base = records.PolicyRules(terms=[], domains=[], new_account_s=0, version=1)
    return records.PolicyRules(**{**base, **fields})  # type: ignore[typeddict-item]


def set_policy(tables: Tables, new: records.PolicyRules) -> None:
    events = [
        Event(
            key,
            {
                "op": "moderation.policy",
                "conversation_id": key,
                "rules": new,
                "by": "mod",
                "action_id": "a1",
            },
            500,
        )
        for key in KEYS
    ]
    run(tables, router.route, events)


def send(
    tables: Tables, body: str, client_msg_id: str = "c1", at: int = 1000, **extra: Any
) -> Batch:
    return run(
        tables,
        router.route,
        [cmd("message.send", DM, "alice", at=at, client_msg_id=client_msg_id, body=body, **extra)],
    )


def errors(batch: Batch) -> list[dict[str, Any]]:
    return [
        d["frame"]
        for entries in batch.deliveries.values()
        for d in decoded(entries)
        if d["frame"]["type"] == "error"
    ]


def moderation_records(batch: Batch) -> list[dict[str, Any]]:
    return [orjson.loads(v) for topic, _, v in batch.records if topic == "moderation"]


def messages(batch: Batch) -> list[dict[str, Any]]:
    return [orjson.loads(v) for topic, _, v in batch.records if topic == "messages"]


# --------------------------------------------------------------------------- inline rules


def test_a_blocked_term_is_refused_with_its_reason_and_not_sequenced() -> None:
    tables = with_direct_conversation()
    set_policy(tables, rules(terms=["buy now"]))
    batch = send(tables, "Hey, BUY   now? no: Buy Now!")
    assert messages(batch) == []
    assert [(e["code"], e["reason"]) for e in errors(batch)] == [("blocked", "blocked_term")]
    [record] = moderation_records(batch)
    assert record["kind"] == "blocked" and record["evidence"] == {"matched": "buy now"}
    assert "body" not in orjson.dumps(record).decode()
    # Nothing was sequenced: the next message gets seq 1.
    assert messages(send(tables, "hello", client_msg_id="c2"))[0]["seq"] == 1


def test_terms_match_whole_words_case_and_accent_insensitive() -> None:
    policy = moderation.empty_policy()
    policy["rules"] = rules(terms=["spam"])
    assert moderation.check_message(policy, "a", "SPÁM here", None, 0) is not None
    assert moderation.check_message(policy, "a", "\uff53\uff50\uff41\uff4d", None, 0) is not None
    assert moderation.check_message(policy, "a", "spammer and antispam", None, 0) is None


def test_blocked_domains_and_their_subdomains() -> None:
    tables = with_direct_conversation()
    set_policy(tables, rules(domains=["bad.example"]))
    batch = send(tables, "see https://x.bad.example/win")
    assert [e["reason"] for e in errors(batch)] == ["blocked_domain"]
    assert messages(send(tables, "see https://notbad.example/ok", client_msg_id="c2"))


def test_new_accounts_may_not_send_links_until_old_enough() -> None:
    tables = with_direct_conversation()
    set_policy(tables, rules(new_account_s=3600))
    young = send(tables, "visit www.shop.example.com", at=1000, account_created=0)
    assert [e["reason"] for e in errors(young)] == ["new_account_links"]
    plain = send(tables, "no links here", client_msg_id="c2", at=1000, account_created=0)
    assert messages(plain)[0]["new_account"] is True
    old = send(tables, "www.shop.example.com", client_msg_id="c3", at=3_601_000, account_created=0)
    assert messages(old) and "new_account" not in messages(old)[0]


def test_rules_are_off_with_the_switch() -> None:
    tables = with_direct_conversation()
    set_policy(tables, rules(terms=["spam"]))
    batch = Batch(SETTINGS.__class__(env="dev", moderation_rules=False), tables)
    router.route(batch, [cmd("message.send", DM, "alice", client_msg_id="c1", body="spam")])
    assert messages(batch)


def test_an_older_policy_never_replaces_a_newer_one() -> None:
    tables = with_direct_conversation()
    set_policy(tables, rules(terms=["new"], version=5))
    set_policy(tables, rules(terms=["old"], version=4))
    assert all(tables[moderation.POLICY][k]["rules"]["terms"] == ["new"] for k in KEYS)


# --------------------------------------------------------------------------- decisions


def decision(seq: int, action: str = "redact", strike: bool = True, at: int = 2000) -> Event:
    return Event(
        DM,
        {
            "op": "moderation.decision",
            "conversation_id": DM,
            "seq": seq,
            "sender": "alice",
            "action": action,
            "reason": "offensive",
            "source": "classifier",
            "evidence": {"score": 0.97},
            "strike": strike,
        },
        at,
    )


def test_a_redaction_reaches_every_member_once_and_counts_a_strike() -> None:
    tables = with_direct_conversation()
    send(tables, "something rude")
    batch = run(tables, router.route, [decision(1), decision(1)])
    redacted = [(u, e["frame"]) for u, e in user_events(batch) if e["op"] == "redacted"]
    assert sorted(u for u, _ in redacted) == ["alice", "bob"]
    assert redacted[0][1] == {
        "type": "message.redacted",
        "conversation_id": DM,
        "seq": 1,
        "reason": "offensive",
    }
    kinds = [r["kind"] for r in moderation_records(batch)]
    assert kinds == ["redacted", "sanction"]
    # The strike is broadcast to every partition's policy row.
    sanctions = [orjson.loads(v) for t, _, v in batch.records if t == "commands"]
    assert sorted(s["conversation_id"] for s in sanctions) == sorted(KEYS)
    assert {s["strikes"] for s in sanctions} == {1}


def test_a_decision_on_a_message_that_does_not_exist_changes_nothing() -> None:
    tables = with_direct_conversation()
    batch = run(tables, router.route, [decision(7)])
    assert batch.rows == {} and batch.records == [] and user_events(batch) == []


def test_repeat_offenders_are_muted_longer_each_time() -> None:
    policy: PolicyRow = moderation.empty_policy()
    steps = []
    for n in range(4):
        strikes, kind, until = moderation.escalation(policy, "eve", 0, 600)
        steps.append((strikes, kind, until))
        command = records.SanctionCommand(
            op="moderation.sanction",
            conversation_id=KEYS[0],
            user="eve",
            kind="unban" if kind == "none" else kind,  # type: ignore[typeddict-item]
            until=until,
            strikes=strikes,
            at=n,
            by="escalation",
            reason="",
            action_id=str(n),
        )
        policy, _ = moderation.apply_sanction(policy, command, 10)
    assert steps == [
        (1, "none", 0),
        (2, "mute", 600_000),
        (3, "mute", 3_600_000),
        (4, "mute", 21_600_000),
    ]


def test_a_muted_user_is_blocked_until_the_mute_ends() -> None:
    tables = with_direct_conversation()
    for key in KEYS:
        run(
            tables,
            router.route,
            [
                Event(
                    key,
                    {
                        "op": "moderation.sanction",
                        "conversation_id": key,
                        "user": "alice",
                        "kind": "mute",
                        "until": 5000,
                        "strikes": -1,
                        "at": 10,
                        "by": "mod",
                        "reason": "",
                        "action_id": "m1",
                    },
                    10,
                )
            ],
        )
    assert [e["reason"] for e in errors(send(tables, "hi", at=4999))] == ["muted"]
    assert messages(send(tables, "hi", client_msg_id="c2", at=5000))


def test_a_later_sanction_wins_whatever_order_partitions_see_them_in() -> None:
    def sanction(kind: str, at: int) -> records.SanctionCommand:
        return records.SanctionCommand(
            op="moderation.sanction",
            conversation_id=KEYS[0],
            user="eve",
            kind=kind,  # type: ignore[typeddict-item]
            until=0,
            strikes=-1,
            at=at,
            by="mod",
            reason="",
            action_id=f"{kind}{at}",
        )

    a, b = moderation.empty_policy(), moderation.empty_policy()
    for command in (sanction("ban", 1), sanction("unban", 2)):
        a, _ = moderation.apply_sanction(a, command, 10)
    for command in (sanction("unban", 2), sanction("ban", 1)):
        b, _ = moderation.apply_sanction(b, command, 10)
    assert a == b and a["sanctions"]["eve"]["kind"] == "none"


def test_sanctions_beyond_the_bound_drop_expired_ones_first() -> None:
    policy = moderation.empty_policy()
    for i in range(5):
        command = records.SanctionCommand(
            op="moderation.sanction",
            conversation_id=KEYS[0],
            user=f"u{i}",
            kind="ban" if i == 0 else "mute",
            until=0 if i == 0 else 10 + i,
            strikes=1,
            at=100 + i,
            by="mod",
            reason="",
            action_id=str(i),
        )
        policy, _ = moderation.apply_sanction(policy, command, 3)
    assert len(policy["sanctions"]) == 3 and "u0" in policy["sanctions"]


# --------------------------------------------------------------------------- reports, moderators


def test_a_report_from_a_member_is_queued_and_answered() -> None:
    tables = with_direct_conversation()
    send(tables, "hello")
    batch = run(
        tables, router.route, [cmd("message.report", DM, "bob", seq=1, reason="spam", note="x")]
    )
    [record] = moderation_records(batch)
    assert (record["kind"], record["by"], record["seq"]) == ("reported", "bob", 1)
    replies = [d["frame"] for e in batch.replies.values() for d in decoded(e)]
    assert [r["type"] for r in replies] == ["ok"]


def test_a_report_from_a_non_member_or_of_a_missing_message_is_refused() -> None:
    tables = with_direct_conversation()
    send(tables, "hello")
    outsider = run(
        tables, router.route, [cmd("message.report", DM, "eve", seq=1, reason="spam", note="")]
    )
    missing = run(
        tables, router.route, [cmd("message.report", DM, "bob", seq=9, reason="spam", note="")]
    )
    assert [e["code"] for e in errors(outsider)] == ["not_member"]
    assert [e["code"] for e in errors(missing)] == ["not_found"]
    assert moderation_records(outsider) == moderation_records(missing) == []


def test_a_moderator_restores_what_was_hidden() -> None:
    tables = with_direct_conversation()
    sent = messages(send(tables, "hello"))[0]
    run(tables, router.route, [decision(1, strike=False)])
    restore = {
        "op": "moderation.restore",
        "conversation_id": DM,
        "seq": 1,
        "by": "mod",
        "reason": "fine",
        "action_id": "a9",
        "message": sent,
    }
    batch = run(tables, router.route, [Event(DM, restore, 3000)])
    frames = [e["frame"] for _, e in user_events(batch) if e["op"] == "restored"]
    assert len(frames) == 2 and frames[0]["message"]["body"] == "hello"
    assert [r["kind"] for r in moderation_records(batch)] == ["restored"]
    assert tables[moderation.MODERATED][DM]["hidden"] == {}


def test_the_inbox_keeps_a_placeholder_at_the_hidden_seq() -> None:
    tables: Tables = {t: {} for t in (sessions.SESSIONS, sessions.INBOX, sessions.SUBSCRIBERS)}
    message = records.Message(
        conversation_id=DM, seq=1, sender="alice", body="rude", ts=1, client_msg_id="c1"
    )
    events = [
        Event("bob", {"op": "message", "message": message}, 1),
        Event(
            "bob",
            {
                "op": "redacted",
                "frame": {
                    "type": "message.redacted",
                    "conversation_id": DM,
                    "seq": 1,
                    "reason": "offensive",
                },
            },
            2,
        ),
    ]
    run(tables, sessions.route_users, events)
    held, _, _, _ = inbox.sync_reply(tables[sessions.INBOX]["bob"], None, 100, 10_000)
    assert held == [{**message, "body": "", "redacted": {"reason": "offensive"}}]


def test_links_are_found_in_the_ways_people_write_them() -> None:
    cases = {
        "see https://x.bad.example/win": ["x.bad.example"],
        "visit www.shop.example.com now": ["shop.example.com"],
        "cheap.example.com/deal": ["cheap.example.com"],
        "(https://a.io)!": ["a.io"],
        "e.g. this": [],
        "v1.2 release": [],
        "3.14": [],
        "no dot at all": [],
    }
    assert {body: moderation.link_domains(body) for body in cases} == cases
