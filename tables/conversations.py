"""Table ``conversations`` (key: conversation_id): who is in a conversation and who administers it.

Owned by the router. Only conversation.create / add_members / remove_members change a row.
"""

from __future__ import annotations

from typing import Any, TypedDict

from chat import protocol

TABLE = "conversations"


class ConversationRow(TypedDict):
    id: str
    kind: str
    title: str
    members: list[str]
    admins: list[str]
    created_at: int


class Rejected(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def public(row: ConversationRow, last_seq: int) -> dict[str, Any]:
    """The protocol's ``conversation`` object."""
    return {
        "id": row["id"],
        "kind": row["kind"],
        "title": row["title"],
        "members": list(row["members"]),
        "admins": list(row["admins"]),
        "last_seq": last_seq,
    }


def new_direct(conversation_id: str, creator: str, at: int) -> ConversationRow:
    a, b = protocol.direct_members(conversation_id)
    if creator not in (a, b):
        raise Rejected(
            protocol.FORBIDDEN, "a direct conversation can only be created by its members"
        )
    return ConversationRow(
        id=conversation_id, kind="direct", title="", members=[a, b], admins=[], created_at=at
    )


def new_group(
    conversation_id: str, creator: str, others: list[str], title: str, at: int, max_members: int
) -> ConversationRow:
    members = [creator] + [m for m in others if m != creator]
    if len(members) > max_members:
        raise Rejected(protocol.BAD_REQUEST, f"a group holds at most {max_members} members")
    return ConversationRow(
        id=conversation_id,
        kind="group",
        title=title,
        members=members,
        admins=[creator],
        created_at=at,
    )


def check_member(row: ConversationRow | None, conversation_id: str, user: str) -> ConversationRow:
    """Membership check used by every command.

    ``not_found`` for a conversation that does not exist, ``not_member`` for one the user is not
    in. A direct id that does not name the user is always ``not_member`` (whether it exists or not),
    so nobody can probe whether two other people talk to each other.
    """
    if conversation_id.startswith("dm:") and user not in protocol.direct_members(conversation_id):
        raise Rejected(protocol.NOT_MEMBER, "you are not a member of this conversation")
    if row is None:
        raise Rejected(protocol.NOT_FOUND, "no such conversation")
    if user not in row["members"]:
        raise Rejected(protocol.NOT_MEMBER, "you are not a member of this conversation")
    return row


def add_members(
    row: ConversationRow, actor: str, members: list[str], max_members: int
) -> tuple[ConversationRow, list[str]]:
    if row["kind"] != "group":
        raise Rejected(protocol.FORBIDDEN, "members of a direct conversation cannot change")
    if actor not in row["admins"]:
        raise Rejected(protocol.FORBIDDEN, "only admins may add members")
    added = [m for m in members if m not in row["members"]]
    if len(row["members"]) + len(added) > max_members:
        raise Rejected(protocol.BAD_REQUEST, f"a group holds at most {max_members} members")
    new = ConversationRow(**{**row, "members": row["members"] + added})
    return new, added


def remove_members(
    row: ConversationRow, actor: str, members: list[str]
) -> tuple[ConversationRow, list[str]]:
    if row["kind"] != "group":
        raise Rejected(protocol.FORBIDDEN, "members of a direct conversation cannot change")
    if actor not in row["admins"] and members != [actor]:
        raise Rejected(protocol.FORBIDDEN, "only admins may remove other members")
    removed = [m for m in members if m in row["members"]]
    remaining = [m for m in row["members"] if m not in removed]
    admins = [a for a in row["admins"] if a in remaining]
    if not admins and remaining:
        # A group never stays without an admin: the longest-standing member takes over.
        admins = [remaining[0]]
    new = ConversationRow(**{**row, "members": remaining, "admins": admins})
    return new, removed
