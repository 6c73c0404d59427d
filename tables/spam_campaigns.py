"""Table ``spam_campaigns`` (key: a signature from ``topologies/signatures.py``): the senders
spreading it, and whether together they make a campaign.

Owned by the spam-campaigns agent (``topologies/spam.py``), which reads ``chat.spam-spreads``
keyed by signature. Only senders who *spread* a signature get here (``tables/spam_senders.py``:
they sent it to ``conversations_per_sender`` conversations within the window), with their
sightings of it. Once the spreading senders together reached ``min_conversations``
conversations, every sighting they sent is decided, and every later one as it comes, until the
signature has been quiet for a window. People who share a popular link send it to one or two
conversations each and never get here.

Pure, deterministic (times are the messages' ``ts``). A repeated sighting (a replayed batch)
is decided again at most, which the router applies once. Bounded: ``max_entries`` sightings
waiting, ``max_entries`` conversations per sender, ``MAX_SENDERS`` senders. Rows quiet for a
window are deleted by ``expire`` events from the agent's timer (the row's owner deletes it if
it is still quiet), so the table holds only the signatures spread in recent minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

TABLE = "spam_campaigns"

MAX_SENDERS = 50
MAX_SAMPLES = 3


class Sighting(TypedDict):
    conversation_id: str
    seq: int
    sender: str
    ts: int


class Spreader(TypedDict):
    conversations: list[str]  # where they sent it within the window, in order
    last_ts: int


class Campaign(TypedDict):
    since: int  # ts of the sighting that made it one
    conversations: int  # reached when it was detected
    messages: int  # decided so far


class CampaignRow(TypedDict):
    spreaders: dict[str, Spreader]
    waiting: list[Sighting]  # not decided yet: no campaign (yet)
    campaign: Campaign | None
    last_ts: int


@dataclass(frozen=True)
class Limits:
    window_ms: int
    min_conversations: int
    conversations_per_sender: int
    burst_window_ms: int
    burst_conversations: int
    max_entries: int


@dataclass(frozen=True)
class Verdict:
    """The sightings to decide, and the evidence."""

    decide: list[Sighting]
    evidence: dict[str, object]


def empty() -> CampaignRow:
    return CampaignRow(spreaders={}, waiting=[], campaign=None, last_ts=0)


def quiet(row: CampaignRow, now: int, limits: Limits) -> bool:
    """Nothing spread for a whole window before ``now`` (ms): the row can go."""
    return now - row["last_ts"] > limits.window_ms


def spread(
    row: CampaignRow, sightings: list[Sighting], limits: Limits
) -> tuple[CampaignRow, Verdict | None]:
    """The row with one sender's sightings of the signature added, and what they decided."""
    if not sightings:
        return row, None
    ts = max(row["last_ts"], *(s["ts"] for s in sightings))
    spreaders = {
        user: spreader
        for user, spreader in row["spreaders"].items()
        if ts - spreader["last_ts"] <= limits.window_ms
    }
    for s in sightings:
        current = spreaders.get(s["sender"], Spreader(conversations=[], last_ts=0))
        conversations = current["conversations"]
        if s["conversation_id"] not in conversations:
            conversations = [*conversations, s["conversation_id"]][-limits.max_entries :]
        spreaders.pop(s["sender"], None)
        spreaders[s["sender"]] = Spreader(
            conversations=conversations, last_ts=max(current["last_ts"], s["ts"])
        )
    while len(spreaders) > MAX_SENDERS:
        del spreaders[next(iter(spreaders))]

    campaign = row["campaign"]
    if campaign is not None and ts - row["last_ts"] > limits.window_ms:
        campaign = None  # quiet for a window: over
    if campaign is not None:
        running = Campaign(
            since=campaign["since"],
            conversations=campaign["conversations"],
            messages=campaign["messages"] + len(sightings),
        )
        new = CampaignRow(spreaders=spreaders, waiting=[], campaign=running, last_ts=ts)
        return new, Verdict(sightings, _evidence(running, spreaders, sightings))

    known = {(s["conversation_id"], s["seq"]) for s in row["waiting"]}
    waiting = [s for s in row["waiting"] if ts - s["ts"] <= limits.window_ms]
    waiting += [s for s in sightings if (s["conversation_id"], s["seq"]) not in known]
    del waiting[: -limits.max_entries]
    reached = {c for spreader in spreaders.values() for c in spreader["conversations"]}
    if len(reached) < limits.min_conversations:
        new = CampaignRow(spreaders=spreaders, waiting=waiting, campaign=None, last_ts=ts)
        return new, None
    started = Campaign(since=ts, conversations=len(reached), messages=len(waiting))
    new = CampaignRow(spreaders=spreaders, waiting=[], campaign=started, last_ts=ts)
    return new, Verdict(waiting, _evidence(started, spreaders, waiting))


def _evidence(
    campaign: Campaign, spreaders: dict[str, Spreader], sample: list[Sighting]
) -> dict[str, object]:
    """Small (well below 1 KB): the counts, a few senders and a few of the messages."""
    return {
        "since": campaign["since"],
        "conversations": campaign["conversations"],
        "messages": campaign["messages"],
        "senders": len(spreaders),
        "sample_senders": sorted(spreaders)[:MAX_SAMPLES],
        "sample": [[s["conversation_id"], s["seq"]] for s in sample[:MAX_SAMPLES]],
    }
