"""The moderators' REST API (docs/moderation.md): the queue, the audit trail, and actions.

Only tokens whose ``roles`` claim holds ``moderator`` get in (others: 403). Every action is a
command on ``chat.commands`` that the router applies and records on ``chat.moderation`` with
who did it, so a replay rebuilds moderation like everything else; the answer is ``202`` with
the action's id, found in the audit trail once the sink has written it.

    GET  /v1/moderation/queue?status=open|redacted|resolved&limit=
    GET  /v1/moderation/audit?limit=&before=<ms>
    GET  /v1/moderation/policy              PUT (the rules, replaced as a whole)
    POST /v1/moderation/messages/{conversation_id}/{seq}/redact|restore|dismiss  {"reason"}
    POST /v1/moderation/users/{user}/mute|ban|unban   {"minutes", "reason"}
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal, cast

from aiohttp import web
from pymongo import DESCENDING

from chat import protocol, records
from chat.settings import Settings
from edge.auth import Identity
from edge.kafka_io import KafkaIO, KafkaUnavailable
from edge.store import Store

MAX_PAGE = 200
MAX_REASON = 200
MAX_TERM_CHARS = 100
MAX_MUTE_MINUTES = 7 * 24 * 60
QUEUE_STATUSES = ("open", "redacted", "resolved")
MESSAGE_ACTIONS = {
    "redact": "moderation.redact",
    "restore": "moderation.restore",
    "dismiss": "moderation.dismiss",
}
USER_ACTIONS = ("mute", "ban", "unban")

Identify = Callable[[web.Request], Awaitable[Identity]]


def error(status: int, code: str, message: str) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 403: web.HTTPForbidden, 404: web.HTTPNotFound}[status]
    return cls(
        text=records.dumps({"error": code, "message": message}).decode(),
        content_type="application/json",
    )


def add_routes(
    app: web.Application, store: Store, kafka: KafkaIO, settings: Settings, identify: Identify
) -> None:
    db = store.db

    async def moderator(request: web.Request) -> Identity:
        identity = await identify(request)
        if not identity.is_moderator:
            raise error(403, "forbidden", "the token has no moderator role")
        return identity

    async def send(command: records.ModerationCommand) -> None:
        try:
            await kafka.send_command(command)
        except KafkaUnavailable:
            raise web.HTTPServiceUnavailable(
                text='{"error":"unavailable"}', content_type="application/json"
            ) from None

    async def queue(request: web.Request) -> web.Response:
        await moderator(request)
        status = request.query.get("status", "open")
        if status not in QUEUE_STATUSES:
            raise error(400, "bad_request", f"status is one of {', '.join(QUEUE_STATUSES)}")
        limit = page_size(request)
        entries = [
            entry
            async for entry in db.moderation_queue.find({"status": status})
            .sort("last_at", DESCENDING)
            .limit(limit)
        ]
        for entry in entries:
            entry["id"] = entry.pop("_id")
            # What was sent, hidden or not: the moderator judges the original.
            entry["message"] = await store.message(entry["conversation_id"], entry["seq"])
        return web.json_response({"queue": entries}, dumps=json_text)

    async def audit(request: web.Request) -> web.Response:
        await moderator(request)
        query: dict[str, Any] = {}
        before = request.query.get("before")
        if before is not None:
            if not before.isdigit() or len(before) > 16:
                raise error(400, "bad_request", "before is a time in ms")
            query["at"] = {"$lt": int(before)}
        cursor = db.moderation.find(query).sort("at", DESCENDING).limit(page_size(request))
        entries = [{**{k: v for k, v in e.items() if k != "_id"}} async for e in cursor]
        return web.json_response({"audit": entries}, dumps=json_text)

    async def get_policy(request: web.Request) -> web.Response:
        await moderator(request)
        latest = await db.moderation.find_one({"kind": "policy"}, sort=[("at", DESCENDING)])
        rules = (
            latest["evidence"]
            if latest
            else records.PolicyRules(terms=[], domains=[], new_account_s=0, version=0)
        )
        return web.json_response({"rules": rules}, dumps=json_text)

    async def put_policy(request: web.Request) -> web.Response:
        identity = await moderator(request)
        rules = parse_rules(await json_body(request), settings)
        action_id = new_action_id()
        for key in records.policy_keys(settings.conversation_partitions):
            await send(
                records.PolicyCommand(
                    op="moderation.policy",
                    conversation_id=key,
                    rules=rules,
                    by=identity.user,
                    action_id=action_id,
                )
            )
        return web.json_response({"action_id": action_id, "rules": rules}, status=202)

    async def message_action(request: web.Request) -> web.Response:
        identity = await moderator(request)
        cid = request.match_info["conversation_id"]
        seq_text = request.match_info["seq"]
        op = MESSAGE_ACTIONS.get(request.match_info["action"])
        if op is None:
            raise error(404, "not_found", "the actions are redact, restore and dismiss")
        if not protocol.is_conversation_id(cid) or not seq_text.isdigit() or len(seq_text) > 16:
            raise error(404, "not_found", "no such message")
        seq = int(seq_text)
        message = await store.message(cid, seq)
        if message is None:
            raise error(404, "not_found", "no such message")
        body = await json_body(request)
        command = records.ModeratorAction(
            op=cast(Literal["moderation.redact"], op),
            conversation_id=cid,
            seq=seq,
            by=identity.user,
            reason=reason_of(body),
            action_id=new_action_id(),
        )
        if op == "moderation.restore":
            command["message"] = cast(records.Message, message)
        await send(command)
        return web.json_response({"action_id": command["action_id"]}, status=202)

    async def user_action(request: web.Request) -> web.Response:
        identity = await moderator(request)
        user, action = request.match_info["user"], request.match_info["action"]
        if action not in USER_ACTIONS:
            raise error(404, "not_found", "the actions are mute, ban and unban")
        if not protocol.is_user_id(user):
            raise error(404, "not_found", "no such user")
        body = await json_body(request)
        now = int(time.time() * 1000)
        until = 0
        if action == "mute" or (action == "ban" and "minutes" in body):
            minutes = body.get("minutes")
            if (
                isinstance(minutes, bool)
                or not isinstance(minutes, int)
                or not 1 <= minutes <= MAX_MUTE_MINUTES
            ):
                raise error(400, "bad_request", f"minutes is 1..{MAX_MUTE_MINUTES}")
            until = now + minutes * 60_000
        action_id = new_action_id()
        sanction = records.SanctionCommand(
            op="moderation.sanction",
            conversation_id="",
            user=user,
            kind=cast(records.SanctionKind, action),
            until=until,
            strikes=0 if action == "unban" else -1,
            at=now,
            by=identity.user,
            reason=reason_of(body),
            action_id=action_id,
        )
        for key in records.policy_keys(settings.conversation_partitions):
            await send({**sanction, "conversation_id": key})
        return web.json_response({"action_id": action_id, "until": until}, status=202)

    app.router.add_get("/v1/moderation/queue", queue)
    app.router.add_get("/v1/moderation/audit", audit)
    app.router.add_get("/v1/moderation/policy", get_policy)
    app.router.add_put("/v1/moderation/policy", put_policy)
    app.router.add_post("/v1/moderation/messages/{conversation_id}/{seq}/{action}", message_action)
    app.router.add_post("/v1/moderation/users/{user}/{action}", user_action)


def json_text(value: Any) -> str:
    return records.dumps(value).decode()


def new_action_id() -> str:
    return f"action:{uuid.uuid4().hex}"


def page_size(request: web.Request) -> int:
    raw = request.query.get("limit", "50")
    if not raw.isdigit() or len(raw) > 4 or not 1 <= int(raw) <= MAX_PAGE:
        raise error(400, "bad_request", f"limit is 1..{MAX_PAGE}")
    return int(raw)


async def json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json(loads=records.loads)
    except ValueError:
        raise error(400, "bad_request", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise error(400, "bad_request", "the body is a JSON object")
    return body


def reason_of(body: dict[str, Any]) -> str:
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise error(400, "bad_request", f"reason is a string of at most {MAX_REASON} characters")
    return reason


def parse_rules(body: dict[str, Any], settings: Settings) -> records.PolicyRules:
    def strings(name: str, limit: int) -> list[str]:
        value = body.get(name, [])
        if (
            not isinstance(value, list)
            or len(value) > limit
            or not all(isinstance(v, str) and 0 < len(v.strip()) <= MAX_TERM_CHARS for v in value)
        ):
            raise error(
                400,
                "bad_request",
                f"{name} is a list of at most {limit} strings of 1..{MAX_TERM_CHARS} characters",
            )
        return [v.strip() for v in value]

    hours = body.get("new_account_hours", 0)
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 <= hours <= 24 * 365:
        raise error(400, "bad_request", "new_account_hours is 0..8760")
    domains = [d.lower().lstrip(".") for d in strings("domains", settings.moderation_max_domains)]
    return records.PolicyRules(
        terms=strings("terms", settings.moderation_max_terms),
        domains=domains,
        new_account_s=int(hours * 3600),
        version=int(time.time() * 1000),
    )
