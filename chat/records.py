"""Shapes of the JSON values on the internal topics (see docs/topology.md).

Values are orjson-encoded JSON objects. Each record the edge produces or consumes is declared
here once, with the one constructor or codec that both its producer and its consumer use:

- the commands the edge puts on ``chat.commands`` and the events it puts on ``chat.users`` are
  TypedDicts built by typed constructors (the stream agents read them as the plain dicts
  they are on the wire, so a handler needs no decoding step);
- the ``chat.deliver`` entries are :class:`FrameDelivery` and :class:`SyncDelivery`, written by
  the workers with :func:`encode_delivery` and read by the edge with :func:`decode_delivery`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Literal, NotRequired, TypedDict, cast, final

import orjson
from aiokafka.partitioner import murmur2

# A client frame's ``id``, echoed in the reply (chat.protocol.FrameId; chat.protocol is not
# imported here so that every process can read records without the protocol module).
FrameId = str | int | None


class Origin(TypedDict):
    """Where a command came from, so that replies go straight back to that session."""

    slot: int
    session: str
    id: FrameId


class Attachment(TypedDict):
    """A media attached to a message: what recipients need to show it without fetching it
    (docs/media.md); the bytes are fetched through ``GET /v1/media/{id}``."""

    media_id: str
    name: str
    type: str  # sniffed from the bytes by the media processor
    size: int
    width: NotRequired[int]  # images
    height: NotRequired[int]
    thumbnail: NotRequired[bool]  # a thumbnail is stored (GET /v1/media/{id}?variant=thumb)
    placeholder: NotRequired[str]  # a blurhash to paint before the thumbnail arrives


class Message(TypedDict):
    conversation_id: str
    seq: int
    sender: str
    body: str
    ts: int
    client_msg_id: str
    attachments: NotRequired[list[Attachment]]
    # Hidden by moderation: the body is "" and this says why (docs/moderation.md).
    redacted: NotRequired[Redaction]
    # The sender's account was younger than the rules' new-account age (spam detectors read it).
    new_account: NotRequired[bool]


class Redaction(TypedDict):
    reason: str


def redacted_copy(message: Message, reason: str) -> Message:
    """The placeholder that stands at a hidden message's seq, so seqs stay gapless."""
    return Message(
        conversation_id=message["conversation_id"],
        seq=message["seq"],
        sender=message["sender"],
        body="",
        ts=message["ts"],
        client_msg_id=message["client_msg_id"],
        redacted=Redaction(reason=reason),
    )


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def loads(raw: bytes | str) -> Any:
    return orjson.loads(raw)


def message_frame(message: Message) -> dict[str, Any]:
    return {"type": "message", **message}


def ack_frame(message: Message, frame_id: str | int | None) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "message.ack",
        "conversation_id": message["conversation_id"],
        "client_msg_id": message["client_msg_id"],
        "seq": message["seq"],
        "ts": message["ts"],
    }
    if frame_id is not None:
        frame["id"] = frame_id
    return frame


# --------------------------------------------------------------------------- bundles
#
# The internal topics (chat.commands, chat.users, chat.deliver) carry *bundles*: one record holds
# every event a producer had for that partition at that moment, as a JSON array. A stream agent
# pays Faust's per-record cost once per bundle instead of once per event; replaying a bundle
# gives the same outputs as replaying its events one by one, in order. The public topics
# (chat.messages, chat.conversations, chat.receipts, chat.activity) stay one record per event.
#
#   chat.commands  [[conversation_id, command], ...]
#   chat.users     [[user_id, event], ...]
#   chat.deliver   [{"sessions": [...], "frame": {...}} | {"sessions": [...], "sync": {...}}, ...]


@functools.lru_cache(maxsize=262_144)
def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (murmur2 of its UTF-8 bytes).

    Bundles are produced to an explicit partition, so every producer must agree with the
    partitioner that placed the single-event records before them and the table rows after.
    Cached: aiokafka's murmur2 is pure Python (8 % of a saturated worker's CPU), and the same
    user and conversation ids come back with every message."""
    hashed: int = murmur2(key.encode())
    return (hashed & 0x7FFFFFFF) % partitions


def bundle(items: list[bytes]) -> bytes:
    """A bundle from events already encoded with :func:`dumps` (no second encoding)."""
    return b"[" + b",".join(items) + b"]"


def split_bundles(items: list[bytes], max_bytes: int) -> list[bytes]:
    """Bundles of at most ``max_bytes`` each (a single larger item gets a bundle of its own;
    whoever writes it finds out it is too large)."""
    out: list[bytes] = []
    current: list[bytes] = []
    size = 2
    for item in items:
        if current and size + len(item) + 1 > max_bytes:
            out.append(bundle(current))
            current, size = [], 2
        current.append(item)
        size += len(item) + 1
    if current:
        out.append(bundle(current))
    return out


def keyed_event(key: str, event: Mapping[str, Any]) -> bytes:
    """One entry of a ``chat.commands`` or ``chat.users`` bundle: ``[key, event]``, the key
    being the conversation id or the user id the event is about."""
    return dumps([key, event])


def decode_bundle(raw: bytes) -> list[Any]:
    value = loads(raw)
    if not isinstance(value, list):
        raise ValueError("an internal record must be a JSON array (a bundle)")
    return value


# --------------------------------------------------------------------------- chat.commands
#
# What an edge puts on chat.commands for a client frame: ``op`` (the frame's type), the
# conversation, the authenticated sender and where the reply goes, plus the frame's own fields.


def origin(slot: int, session: str, frame_id: FrameId) -> Origin:
    return {"slot": slot, "session": session, "id": frame_id}


class _CommandBase(TypedDict):
    conversation_id: str
    user: str
    origin: Origin


class CreateCommand(_CommandBase):
    op: Literal["conversation.create"]
    kind: Literal["direct", "group"]
    members: list[str]  # the others: the creator is always a member
    title: NotRequired[str]  # groups only


class MembersCommand(_CommandBase):
    op: Literal["conversation.add_members", "conversation.remove_members"]
    members: list[str]


class SendCommand(_CommandBase):
    op: Literal["message.send"]
    client_msg_id: str
    body: str
    # Resolved by the edge (owned by the sender, ready); the router copies them.
    attachments: NotRequired[list[Attachment]]
    # When the sender's account was created (ms), from the token: the new-account rule.
    account_created: NotRequired[int]


class CursorCommand(_CommandBase):
    op: Literal["message.delivered", "receipt.read"]
    seq: int


class TypingCommand(_CommandBase):
    op: Literal["typing"]
    state: str


Command = CreateCommand | MembersCommand | SendCommand | CursorCommand | TypingCommand


def create_direct(cid: str, user: str, at: Origin, other: str) -> CreateCommand:
    return {
        "op": "conversation.create",
        "conversation_id": cid,
        "user": user,
        "origin": at,
        "kind": "direct",
        "members": [other],
    }


def create_group(cid: str, user: str, at: Origin, others: list[str], title: str) -> CreateCommand:
    return {
        "op": "conversation.create",
        "conversation_id": cid,
        "user": user,
        "origin": at,
        "kind": "group",
        "members": others,
        "title": title,
    }


def change_members(
    op: Literal["conversation.add_members", "conversation.remove_members"],
    cid: str,
    user: str,
    at: Origin,
    members: list[str],
) -> MembersCommand:
    return {"op": op, "conversation_id": cid, "user": user, "origin": at, "members": members}


def send_message(
    cid: str,
    user: str,
    at: Origin,
    client_msg_id: str,
    body: str,
    account_created: int | None = None,
) -> SendCommand:
    command: SendCommand = {
        "op": "message.send",
        "conversation_id": cid,
        "user": user,
        "origin": at,
        "client_msg_id": client_msg_id,
        "body": body,
    }
    if account_created is not None:
        command["account_created"] = account_created
    return command


def move_cursor(
    op: Literal["message.delivered", "receipt.read"], cid: str, user: str, at: Origin, seq: int
) -> CursorCommand:
    return {"op": op, "conversation_id": cid, "user": user, "origin": at, "seq": seq}


def report(cid: str, user: str, at: Origin, seq: int, reason: str, note: str) -> ReportCommand:
    return {
        "op": "message.report",
        "conversation_id": cid,
        "user": user,
        "origin": at,
        "seq": seq,
        "reason": reason,
        "note": note,
    }


def typing(cid: str, user: str, at: Origin, state: str) -> TypingCommand:
    return {"op": "typing", "conversation_id": cid, "user": user, "origin": at, "state": state}


# --------------------------------------------------------------------------- moderation
#
# Moderation travels on chat.commands like everything the router decides on (docs/moderation.md):
# so a table rebuild replays it in the same order as the messages it judged.
#
# - conversation-keyed: a detector's decision, a moderator's redact / restore / dismiss, a
#   member's report (the client frame ``message.report``);
# - deployment-wide (the rules, a user's mute or ban): broadcast, one record per partition of
#   chat.commands, keyed by :func:`policy_key` of that partition, because every router
#   partition checks them inline before it sequences a message.
#
# What the router applied goes to chat.moderation (key: conversation_id, or ``user:<id>`` for a
# sanction, ``policy`` for the rules), one :class:`ModerationRecord` per decision: the audit
# trail and the moderators' queue, persisted by the sink.

ModerationAction = Literal["redact", "flag"]
ModerationReason = Literal["offensive", "spam", "link_only", "burst", "reported", "moderator"]


class ModerationDecision(TypedDict):
    """A detector's verdict on one message (written by the classifier and spam agents)."""

    op: Literal["moderation.decision"]
    conversation_id: str
    seq: int
    sender: str
    action: ModerationAction
    reason: ModerationReason
    source: str  # the agent that decided: "classifier", "spam"
    evidence: dict[str, Any]  # small (< 1 KB): score, signature, counts
    strike: bool  # counts against the sender: repeat offenders are muted, escalating


class ModeratorAction(TypedDict):
    """A moderator's action on one message (REST, by a token with the moderator role)."""

    op: Literal["moderation.redact", "moderation.restore", "moderation.dismiss"]
    conversation_id: str
    seq: int
    by: str
    reason: str
    action_id: str  # unique per action: the audit record's id
    # restore: the message as stored, so members (and inboxes) get it back whole.
    message: NotRequired[Message]


class ReportCommand(_CommandBase):
    op: Literal["message.report"]
    seq: int
    reason: str
    note: str


class PolicyRules(TypedDict):
    """The deployment's inline rules, replaced as a whole by a moderator."""

    terms: list[str]  # blocked words and phrases (case- and accent-insensitive, whole words)
    domains: list[str]  # blocked link domains (and their subdomains)
    new_account_s: int  # accounts younger than this may not send links; 0 disables the rule
    version: int  # the time of the change (ms): a later one wins


class PolicyCommand(TypedDict):
    op: Literal["moderation.policy"]
    conversation_id: str  # the partition's policy key (the field every command is keyed by)
    rules: PolicyRules
    by: str
    action_id: str


SanctionKind = Literal["mute", "ban", "unban"]


class SanctionCommand(TypedDict):
    """A user's mute, ban or unban, from a moderator or from the router's escalation."""

    op: Literal["moderation.sanction"]
    conversation_id: str  # the partition's policy key
    user: str
    kind: SanctionKind
    until: int  # ms; 0 = no end (a ban); ignored for unban
    strikes: int  # the user's strike count after this sanction; -1 keeps the count
    at: int  # ms, when it was decided: on every partition, a later sanction wins
    by: str
    reason: str
    action_id: str


class ModerationRecord(TypedDict):
    """One applied decision on chat.moderation (the audit trail and the moderators' queue)."""

    id: str  # unique and deterministic: the sink upserts by it
    kind: Literal[
        "blocked", "flagged", "reported", "redacted", "restored", "dismissed", "sanction", "policy"
    ]
    conversation_id: str | None
    seq: int | None
    user: str | None  # whom it is about: the sender, or the sanctioned user
    reason: str
    source: str  # "rules", "classifier", "spam", "report", "moderator", "escalation"
    by: str | None  # the moderator or reporter
    evidence: dict[str, Any]
    at: int


# What the edge's moderation API puts on chat.commands.
ModerationCommand = ModeratorAction | PolicyCommand | SanctionCommand | ReportCommand

# Which queue entries a record opens or closes (the sink keeps the queue, docs/moderation.md).
QUEUE_OPENS = {"flagged": "open", "reported": "open", "redacted": "redacted"}
QUEUE_CLOSES = {"restored", "dismissed"}


@functools.lru_cache(maxsize=64)
def policy_keys(partitions: int) -> tuple[str, ...]:
    """For each partition of chat.commands, the key of its copy of the moderation policy: the
    first ``moderation-policy:<n>`` that the default partitioner places there. Broadcasting a
    policy change is producing one record per key; each router partition keeps its own row."""
    keys: list[str | None] = [None] * partitions
    n = 0
    while None in keys:
        key = f"moderation-policy:{n}"
        p = partition_for(key, partitions)
        if keys[p] is None:
            keys[p] = key
        n += 1
    return tuple(k for k in keys if k is not None)


def policy_key_of(conversation_id: str, partitions: int) -> str:
    """The policy row the router reads for a conversation: the copy on its partition."""
    return policy_keys(partitions)[partition_for(conversation_id, partitions)]


# --------------------------------------------------------------------------- chat.users (edge)
#
# The events an edge puts on chat.users, keyed by the user they are about.


class SessionOpen(TypedDict):
    op: Literal["session.open"]
    session: str
    slot: int
    edge: str


class SessionClose(TypedDict):
    op: Literal["session.close"]
    session: str
    edge: str


class SyncRequest(TypedDict):
    op: Literal["sync"]
    session: str
    slot: int
    id: FrameId
    cursors: dict[str, int] | None


class PresenceSubscribe(TypedDict):
    op: Literal["presence.subscribe"]
    session: str
    slot: int


class PresenceUnsubscribe(TypedDict):
    op: Literal["presence.unsubscribe"]
    session: str


EdgeUserEvent = SessionOpen | SessionClose | SyncRequest | PresenceSubscribe | PresenceUnsubscribe


def session_open(session: str, slot: int, edge: str) -> SessionOpen:
    return {"op": "session.open", "session": session, "slot": slot, "edge": edge}


def session_close(session: str, edge: str) -> SessionClose:
    return {"op": "session.close", "session": session, "edge": edge}


def sync_request(
    session: str, slot: int, frame_id: FrameId, cursors: dict[str, int] | None
) -> SyncRequest:
    return {"op": "sync", "session": session, "slot": slot, "id": frame_id, "cursors": cursors}


def presence_subscribe(session: str, slot: int) -> PresenceSubscribe:
    return {"op": "presence.subscribe", "session": session, "slot": slot}


def presence_unsubscribe(session: str) -> PresenceUnsubscribe:
    return {"op": "presence.unsubscribe", "session": session}


# --------------------------------------------------------------------------- chat.deliver
#
# An entry of a chat.deliver bundle is a frame for some sessions of the edge, or the answer to
# one session's sync; on the wire they differ by which key is present:
#   {"sessions": [...], "frame": {...}}   |   {"sessions": [...], "sync": {...}}


class SyncAnswer(TypedDict):
    """What the sessions agent answers a ``sync`` with; the edge reads the ``fetch`` ranges
    (``[conversation_id, first seq, last seq]``, older than the inbox keeps) from the store."""

    id: FrameId
    messages: list[Message]
    fetch: list[tuple[str, int, int]]  # JSON arrays on the wire: lists after decoding
    conversations: dict[str, int]  # conversation id -> its last seq
    truncated: bool


# Typed dicts rather than dataclasses: the edge reads an entry for every delivery, and
# typing the decoded dict costs nothing, where building an object per entry would add a
# quarter of a microsecond to its hot path. ``final`` lets the type checker tell the two apart
# by which key is present, as the edge does.
@final
class FrameDelivery(TypedDict):
    sessions: list[str]
    frame: dict[str, Any]


@final
class SyncDelivery(TypedDict):
    sessions: list[str]
    sync: SyncAnswer


Delivery = FrameDelivery | SyncDelivery


def encode_delivery(delivery: Delivery) -> bytes:
    """One entry of a ``chat.deliver`` bundle."""
    return orjson.dumps(delivery)


def decode_delivery(entry: Any) -> Delivery:
    """One decoded entry of a ``chat.deliver`` bundle as its type (``"frame" in delivery``
    tells which); ValueError if it is neither."""
    if isinstance(entry, dict) and ("frame" in entry or "sync" in entry):
        return cast(Delivery, entry)
    raise ValueError("a delivery holds a frame or a sync answer")


def frame_delivery(sessions: list[str], frame: dict[str, Any]) -> bytes:
    """A frame for some sessions of the edge, encoded."""
    return encode_delivery(FrameDelivery(sessions=sessions, frame=frame))


def sync_delivery(session: str, sync: Mapping[str, Any]) -> bytes:
    """The answer to a session's ``sync``, encoded (the sessions agent builds it as a dict)."""
    return encode_delivery(SyncDelivery(sessions=[session], sync=cast(SyncAnswer, sync)))


def deliveries(entries: list[bytes]) -> bytes:
    """A whole ``chat.deliver`` record (tests and tools inject deliveries with it)."""
    return bundle(entries)


# --------------------------------------------------------------------------- media
#
# ``chat.media-commands`` (key: media id) carries what the media agent applies to its table
# (docs/media.md): upload requests and completions from the edges, verdicts from the media
# processor (which does the I/O, so a table rebuild replays verdicts and never re-runs it),
# references from the router and expiries from the agent's timer.


class MediaRequested(TypedDict):
    op: Literal["media.requested"]
    media_id: str
    user: str
    name: str
    type: str  # declared by the client; the processor checks the bytes against it
    size: int  # declared; the presigned policy holds the upload to it
    expires_at: int  # ms: the upload URL's end; a pending upload expires after it


class MediaUploaded(TypedDict):
    op: Literal["media.uploaded"]
    media_id: str
    user: str


class MediaVerified(TypedDict):
    op: Literal["media.verified"]
    media_id: str
    type: str
    size: int
    width: int  # 0 for files that are not images
    height: int
    thumbnail: bool
    placeholder: str


class MediaRejected(TypedDict):
    op: Literal["media.rejected"]
    media_id: str
    reason: str


class MediaReferenced(TypedDict):
    """Sent by the edge that resolved the attachment: a media once attached is never
    collected as unreferenced."""

    op: Literal["media.referenced"]
    media_id: str
    conversation_id: str


class MediaExpire(TypedDict):
    op: Literal["media.expire"]
    media_id: str


MediaCommand = (
    MediaRequested | MediaUploaded | MediaVerified | MediaRejected | MediaReferenced | MediaExpire
)


class MediaState(TypedDict):
    """A media's latest state on ``chat.media`` (and in MongoDB's ``media`` collection)."""

    id: str
    owner: str
    status: str  # pending, verifying, ready, rejected, expired, deleted
    name: str
    type: str
    size: int
    width: int
    height: int
    thumbnail: bool
    placeholder: str
    reason: str  # why it was rejected, expired or deleted
    created_at: int
    updated_at: int
