"""Redis key names, in one place (Redis holds nothing that cannot be rebuilt from Kafka)."""

from __future__ import annotations


def presence_key(user: str) -> str:
    return f"chat:presence:{user}"


def member_of_key(user: str) -> str:
    """The set of conversation ids the user is in: two users see each other's presence only
    while their sets intersect (the router writes them, the edges read them)."""
    return f"chat:member-of:{user}"


def edge_alive_key(edge_id: str) -> str:
    return f"chat:edge-alive:{edge_id}"


def edge_slot_key(slot: int) -> str:
    return f"chat:edge-slot:{slot}"


def history_key(conversation_id: str) -> str:
    return f"chat:history:{conversation_id}"


def rate_key(scope: str, subject: str) -> str:
    return f"chat:rate:{scope}:{subject}"


def connections_key(user: str) -> str:
    return f"chat:conns:{user}"


def ws_ticket_key(ticket_hash: str) -> str:
    return f"chat:ws-ticket:{ticket_hash}"


def media_key(media_id: str) -> str:
    """A media's latest state, written by the media agent (edges resolve attachments here)."""
    return f"chat:media:{media_id}"


def media_refs_key(media_id: str) -> str:
    """The conversations a media was attached in (field: conversation id, value: seq)."""
    return f"chat:media-refs:{media_id}"


def media_quota_key(user: str, day: int) -> str:
    return f"chat:media-quota:{user}:{day}"
