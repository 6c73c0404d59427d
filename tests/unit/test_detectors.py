"""The detector agents (classifier, spam-signals, spam-campaigns) as pure handlers over plain
dicts: what they decide, what they leave alone, and that a replay decides the same.

docs/moderation.md#classifier and #spam-detection describe the rules tested here; the
integration suite (tests/integration/test_moderation_agents.py) runs them on real Kafka.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from chat import records
from chat.settings import Settings
from tables import spam_campaigns, spam_senders
from topologies import classifier, signatures, spam
from topologies.batch import Batch, Event
from topologies.topology import AGENTS, running_agents

SETTINGS = Settings(env="dev")
Tables = dict[str, dict[str, Any]]


def empty_tables() -> Tables:
    return {table: {} for agent in AGENTS for table in agent.tables}


def run(tables: Tables, handler: Any, events: list[Event], settings: Settings = SETTINGS) -> Batch:
    batch = Batch(settings, tables)
    handler(batch, events)
    for (table, key), value in batch.rows.items():
        if value is None:
            tables[table].pop(key, None)
        else:
            tables[table][key] = value
    return batch


def message(cid: str, seq: int, sender: str, body: str, ts: int, **extra: Any) -> Event:
    value = {
        "conversation_id": cid,
        "seq": seq,
        "sender": sender,
        "body": body,
        "ts": ts,
        "client_msg_id": f"{sender}-{seq}",
        **extra,
    }
    return Event(cid, value, ts)


def decisions(batch: Batch) -> list[dict[str, Any]]:
    out = []
    for topic, key, value in batch.records:
        assert topic == "commands"
        decision = orjson.loads(value)
        assert decision["op"] == "moderation.decision" and decision["conversation_id"] == key
        assert len(orjson.dumps(decision["evidence"])) < 1024
        out.append(decision)
    return out


def bundled_events(batch: Batch, topic: str) -> list[Event]:
    """What a stage wrote to ``topic``, as the next stage reads it: partition by partition."""
    out = []
    by_partition = batch.bundled.get(topic, {})
    for partition in sorted(by_partition):
        for entry in by_partition[partition]:
            key, event = orjson.loads(entry)
            out.append(Event(key, event, 0))
    return out


class Pipeline:
    """The three spam stages over the same tables, batch by batch."""

    def __init__(self, settings: Settings = SETTINGS) -> None:
        self.settings = settings
        self.tables = empty_tables()
        self.decided: list[dict[str, Any]] = []

    def send(self, events: list[Event]) -> list[dict[str, Any]]:
        first = run(self.tables, spam.signal_messages, events, self.settings)
        signals = bundled_events(first, spam.SIGNALS)
        second = run(self.tables, spam.track_senders, signals, self.settings)
        spreads = bundled_events(second, spam.SPREADS)
        third = run(self.tables, spam.find_campaigns, spreads, self.settings)
        new = decisions(first) + decisions(second) + decisions(third)
        self.decided += new
        return new


# --------------------------------------------------------------------------- signatures


def bands(*texts: str) -> list[set[str]]:
    return [
        set(s) for s in signatures.text_signatures([signatures.analyse(t)[0] for t in texts], 24)
    ]


def test_near_duplicates_share_a_band_and_unrelated_texts_do_not() -> None:
    base = "Hi {}! Huge sale today only: 90% off designer bags and watches, click before midnight"
    anna, boris, other = bands(
        base.format("Anna"),
        base.format("Boris"),
        "are we still meeting for lunch tomorrow at the usual place near the office?",
    )
    assert anna & boris
    assert not anna & other


def test_signatures_do_not_depend_on_the_rest_of_the_batch() -> None:
    texts = [
        signatures.analyse(f"message number {i} about the weekend plans at the lake")[0]
        for i in range(5)
    ]
    together = signatures.text_signatures(texts, 24)
    alone = [signatures.text_signatures([t], 24)[0] for t in texts]
    assert together == alone


def test_short_texts_get_no_text_signature() -> None:
    assert bands("ok see you", "thanks!!") == [set(), set()]


def test_links_are_normalized() -> None:
    _, links = signatures.analyse(
        "look HTTPS://www.Deals.example.shop/x/?utm_source=a&id=7#top and spam.io/y, now"
    )
    assert links == ["deals.example.shop/x?id=7", "spam.io/y"]
    folded, _ = signatures.analyse("Ça, c'est TRÈS bien... https://a.io/b")
    assert folded == "ca c est tres bien"


@pytest.mark.parametrize(
    ("body", "link_only"),
    [
        ("https://spam.io/x", True),
        ("look https://spam.io/x", True),
        ("I found the recipe we talked about yesterday https://food.io/pie", False),
        ("no link here.", False),
    ],
)
def test_link_only(body: str, link_only: bool) -> None:
    assert signatures.is_link_only(*signatures.analyse(body)) is link_only


# --------------------------------------------------------------------------- classifier


def test_offensive_messages_are_redacted_or_flagged_and_normal_ones_left_alone() -> None:
    batch = run(
        empty_tables(),
        classifier.classify,
        [
            message("c1", 1, "ann", "you are a fucking idiot", 1000),
            message("c1", 2, "bob", "see you at the station at nine", 1001),
            message("c2", 1, "cid", "what a lovely photo of the lake", 1002),
        ],
    )
    [decision] = decisions(batch)
    assert decision["seq"] == 1 and decision["sender"] == "ann"
    assert (decision["action"], decision["reason"], decision["source"]) == (
        "redact",
        "offensive",
        "classifier",
    )
    assert decision["strike"] is True
    assert decision["evidence"]["score"] >= SETTINGS.moderation_redact_threshold
    assert decision["evidence"]["model"].startswith("alt-profanity-check ")


def test_the_thresholds_are_settings() -> None:
    events = [message("c1", 1, "ann", "you are a fucking idiot", 1000)]
    lenient = Settings(env="dev", moderation_flag_threshold=0.5, moderation_redact_threshold=1.0)
    [decision] = decisions(run(empty_tables(), classifier.classify, events, lenient))
    assert (decision["action"], decision["strike"]) == ("flag", False)


def test_the_model_gives_the_packages_probabilities() -> None:
    """The classifier does the packaged model's arithmetic itself (its predict_prob spends 5 ms
    a call checking inputs): the probabilities must be the package's own."""
    from profanity_check import predict_prob

    rng = random.Random(3)
    vocabulary = "the you a fuck shit idiot lunch tomorrow damn hell ass great photo cat".split()
    texts = [
        "you are a fucking idiot",
        "see you at the station at nine",
        "",
        "!!!",
        "the and of",  # stop words only: no term at all
        "Ça va? très bien, merci",
        *(
            " ".join(rng.choice(vocabulary) for _ in range(rng.randrange(1, 12)))
            for _ in range(300)
        ),
    ]
    ours = classifier.model().scores(texts)
    theirs = predict_prob(texts).tolist()
    assert ours == pytest.approx(theirs, abs=1e-9)


def test_placeholders_of_hidden_messages_are_not_judged() -> None:
    hidden = message("c1", 1, "ann", "", 1000, redacted={"reason": "spam"})
    assert decisions(run(empty_tables(), classifier.classify, [hidden])) == []


# --------------------------------------------------------------------------- spam


SPAM = "Congratulations, you won a prize! Claim it now https://win.example.shop/claim"


def campaign(
    senders: int, recipients: int, start: int = 1_000_000, every_ms: int = 50
) -> list[Event]:
    """``senders`` accounts sending the same link to ``recipients`` direct conversations."""
    return [
        message(f"dm:spam{i % senders}:u{i}", 1, f"spam{i % senders}", SPAM, start + i * every_ms)
        for i in range(recipients)
    ]


def test_a_campaign_is_caught_and_every_message_of_it_decided() -> None:
    pipeline = Pipeline()
    events = campaign(senders=5, recipients=500)
    for start in range(0, len(events), 7):  # batches of 7
        pipeline.send(events[start : start + 7])
    decided = {(d["conversation_id"], d["seq"]) for d in pipeline.decided}
    assert decided == {(e.value["conversation_id"], 1) for e in events}
    assert {(d["action"], d["reason"], d["source"], d["strike"]) for d in pipeline.decided} == {
        ("redact", "spam", "spam", True)
    }
    first = pipeline.decided[0]["evidence"]
    assert first["conversations"] >= SETTINGS.spam_min_conversations
    assert first["kind"] in ("link", "text")


def test_detection_comes_as_soon_as_the_spreading_senders_reach_enough_conversations() -> None:
    pipeline = Pipeline()
    events = campaign(senders=1, recipients=30)
    threshold = SETTINGS.spam_min_conversations
    for i, event in enumerate(events):
        new = pipeline.send([event])
        if i < threshold - 1:
            assert new == [], i
        elif i == threshold - 1:  # the earlier ones are decided with this one
            assert {d["conversation_id"] for d in new} == {
                e.value["conversation_id"] for e in events[:threshold]
            }
        else:
            # One decision per signature of the message in a campaign (its link, its text's
            # bands): the router applies the first.
            assert {d["conversation_id"] for d in new} == {event.value["conversation_id"]}


def test_near_duplicate_texts_with_a_name_swapped_are_a_campaign() -> None:
    names = ["Anna", "Boris", "Chen", "Dmitri", "Eve", "Farah", "Goran", "Hana", "Ivo", "Jun"] * 3
    events = [
        message(
            f"dm:spammer:{i}",
            1,
            "spammer",
            f"Hey {name}, I made $5000 last week working from home, ask me how!!",
            1_000_000 + i,
        )
        for i, name in enumerate(names)
    ]
    pipeline = Pipeline()
    pipeline.send(events)
    assert len({d["conversation_id"] for d in pipeline.decided}) >= 25


def test_many_people_sharing_one_link_is_not_a_campaign() -> None:
    """Each sharer sends it to one or two conversations: nobody spreads it."""
    events = [
        message(f"g{i}", 1, f"fan{i}", "the match is on https://tv.example.com/live", 1_000_000 + i)
        for i in range(200)
    ] + [
        message(f"h{i}", 1, f"fan{i}", "the match is on https://tv.example.com/live", 1_000_500 + i)
        for i in range(200)
    ]
    pipeline = Pipeline()
    pipeline.send(events)
    assert pipeline.decided == []


def test_normal_chatter_is_not_flagged() -> None:
    rng = random.Random(7)
    words = (
        "the a we you they meet lunch dinner tomorrow today office home train late early "
        "movie game weekend call later sure thanks great idea photo park coffee kids school "
        "work project deadline meeting review code bug fix deploy release friday monday"
    ).split()
    events = []
    for i in range(2000):
        cid = f"g{rng.randrange(300)}"
        body = " ".join(rng.choice(words) for _ in range(rng.randrange(3, 16)))
        if rng.random() < 0.05:
            body += f" https://docs.example.com/d/{rng.randrange(10_000)}"
        events.append(message(cid, i + 1, f"user{rng.randrange(400)}", body, 1_000_000 + i * 20))
    pipeline = Pipeline()
    for start in range(0, len(events), 100):
        pipeline.send(events[start : start + 100])
    assert pipeline.decided == []


def test_repeats_decide_nothing_twice_and_a_replay_decides_the_same() -> None:
    events = campaign(senders=2, recipients=40)
    first, replay, one_by_one = Pipeline(), Pipeline(), Pipeline()
    for pipeline in (first, replay):
        for start in range(0, len(events), 6):
            pipeline.send(events[start : start + 6])
    assert first.decided == replay.decided and first.tables == replay.tables
    for event in events:
        one_by_one.send([event])
    decided = {(d["conversation_id"], d["seq"]) for d in first.decided}
    assert decided == {(d["conversation_id"], d["seq"]) for d in one_by_one.decided}
    before = len(first.decided)
    assert first.send(events[:20]) == []  # at-least-once: the same records again
    assert len(first.decided) == before


def test_a_burst_from_a_new_account_is_flagged_once() -> None:
    events = [
        message(
            f"dm:newbie:{i}",
            1,
            "newbie",
            f"hello number {i}",
            1_000_000 + i * 1000,
            new_account=True,
        )
        for i in range(25)
    ]
    pipeline = Pipeline()
    for event in events:
        pipeline.send([event])
    [burst] = pipeline.decided
    assert (burst["action"], burst["reason"], burst["strike"]) == ("flag", "burst", False)
    assert burst["conversation_id"] == f"dm:newbie:{SETTINGS.spam_burst_conversations - 1}"
    old = Pipeline()
    for event in events:
        old.send(
            [
                Event(
                    event.key,
                    {k: v for k, v in event.value.items() if k != "new_account"},
                    event.at,
                )
            ]
        )
    assert old.decided == []


def test_a_link_only_message_from_a_new_account_is_flagged() -> None:
    pipeline = Pipeline()
    [flag] = pipeline.send(
        [message("dm:a:b", 3, "newbie", "https://win.example.shop/x", 1000, new_account=True)]
    )
    assert (flag["action"], flag["reason"], flag["seq"]) == ("flag", "link_only", 3)
    assert flag["evidence"] == {"links": ["win.example.shop/x"]}
    assert (
        pipeline.send([message("dm:a:b", 4, "olduser", "https://win.example.shop/x", 1000)]) == []
    )


def test_quiet_rows_are_expired_by_their_owner_and_busy_ones_kept() -> None:
    pipeline = Pipeline()
    pipeline.send(campaign(senders=1, recipients=12, start=1_000_000, every_ms=10))
    senders, campaigns = set(pipeline.tables[spam.SENDERS]), set(pipeline.tables[spam.CAMPAIGNS])
    assert senders == {"spam0"} and campaigns
    window = SETTINGS.spam_window_s * 1000
    for now, left in ((1_000_000 + window, True), (1_000_110 + window + 1, False)):
        run(
            pipeline.tables,
            spam.track_senders,
            [Event(k, {"op": "expire", "now": now}, 0) for k in sorted(senders)],
        )
        run(
            pipeline.tables,
            spam.find_campaigns,
            [Event(k, {"op": "expire", "now": now}, 0) for k in sorted(campaigns)],
        )
        assert bool(pipeline.tables[spam.SENDERS]) is left
        assert bool(pipeline.tables[spam.CAMPAIGNS]) is left


def test_rows_stay_bounded() -> None:
    limits = spam.limits(SETTINGS)
    sender = spam_senders.empty()
    campaign_row = spam_campaigns.empty()
    for i in range(5000):
        sent: Any = {
            "conversation_id": f"c{i}",
            "seq": 1,
            "ts": 1000 + i,
            "signatures": [f"t0:{i}"],
        }
        sender, _ = spam_senders.sight(sender, "u", sent, False, limits)
        sighting: Any = {
            "conversation_id": f"c{i}",
            "seq": 1,
            "sender": f"u{i % 70}",
            "ts": 1000 + i,
        }
        campaign_row, _ = spam_campaigns.spread(campaign_row, [sighting], limits)
    assert len(sender["recent"]) == len(sender["last_seq"]) == limits.max_entries
    assert len(campaign_row["spreaders"]) == spam_campaigns.MAX_SENDERS
    assert len(records.dumps(sender)) < 64 * 1024
    assert len(records.dumps(campaign_row)) < 128 * 1024


def test_the_detectors_can_be_left_out_of_the_workers() -> None:
    names = {agent.name for agent in running_agents(Settings(moderation_agents=False))}
    spam_agents = {"detectors", "spam-senders", "spam-campaigns"}
    assert not names & spam_agents
    assert spam_agents <= {a.name for a in running_agents(SETTINGS)}
