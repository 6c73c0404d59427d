"""Tokens never reach a log line (#14, item 5) and what the edge tells browsers (item 4):
chat/logs.py, edge/web_security.py, CHAT_WEB_EDGES."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import jwt
import pytest

from chat.logs import JsonFormatter, redact
from chat.settings import SettingsError, load_settings
from edge.web_security import content_security_policy, security_headers, with_allowed_edges

TOKEN = jwt.encode({"sub": "alice", "exp": 2_000_000_000}, "k" * 32, algorithm="HS256")
TICKET = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5"


@pytest.mark.parametrize(
    "line",
    [
        f"GET /v1/ws?access_token={TOKEN} HTTP/1.1",
        f"GET /v1/ws?x=1&access_token={TOKEN}&y=2",
        f"GET /v1/ws?ticket={TICKET}",
        f"Authorization: Bearer {TOKEN}",
        f"authorization: bearer {TOKEN}",
        f"token {TOKEN} refused",
        f'{{"url": "ws://h/v1/ws?access_token={TOKEN}"}}',
    ],
)
def test_redact(line: str) -> None:
    out = redact(line)
    assert TOKEN not in out and TICKET not in out
    assert "[redacted]" in out


def test_redact_leaves_ordinary_text() -> None:
    for text in ("user alice sent seq 7", "GET /v1/conversations?limit=5", "eyJ alone"):
        assert redact(text) == text


def test_every_log_line_is_redacted() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("edge"))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    try:
        logger.warning("upgrade %s", f"/v1/ws?access_token={TOKEN}", extra={"auth": TOKEN})
        try:
            raise ValueError(f"bad token {TOKEN}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert TOKEN not in text and text.count("[redacted]") >= 3


def test_nginx_logs_no_query_string() -> None:
    template = (Path(__file__).parents[2] / "ops/nginx/nginx.conf.template").read_text()
    (log_format,) = re.findall(r"log_format edge (.*?);", template, re.S)
    for leaky in ("$request ", '$request"', "$request_uri", "$args", "$query_string", "$arg_"):
        assert leaky not in log_format, leaky
    assert "$uri" in log_format


def test_csp_limits_connect_src_to_the_edges() -> None:
    settings = load_settings({"CHAT_WEB_EDGES": "https://a.example:8443, http://[::1]:8080"})
    csp = content_security_policy(settings)
    assert "connect-src 'self' https://a.example:8443 wss://a.example:8443 " in csp
    # The object store, where the web client uploads to and shows images from (docs/media.md).
    assert "http://[::1]:8080 ws://[::1]:8080 http://127.0.0.1:8333;" in csp
    assert "img-src 'self' data: blob: http://127.0.0.1:8333;" in csp
    public = load_settings({"CHAT_MEDIA_S3_PUBLIC_ENDPOINT": "https://media.example/chat"})
    assert "connect-src 'self' https://media.example;" in content_security_policy(public)
    assert "frame-ancestors 'none'" in csp
    headers = security_headers(settings)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Strict-Transport-Security" not in headers
    assert "Strict-Transport-Security" in security_headers(
        load_settings({}, tls_cert="c.pem", tls_key="k.pem")
    )


def test_page_lists_the_edges() -> None:
    settings = load_settings({"CHAT_WEB_EDGES": "https://a.example"})
    page = with_allowed_edges("<html><head><title>x</title></head></html>", settings)
    assert '<meta name="chat-edges" content="https://a.example" />\n  </head>' in page
    assert 'content=""' in with_allowed_edges("<head></head>", load_settings({}))


BAD_ORIGINS = [
    "evil.example",
    "ftp://a.example",
    "https://a.example/path",
    "https://a.example/",
    "https://a.example:99999999",
    "https://a b",
    "https://a.example; script-src *",
    "https://a.example'",
    'https://a.example"',
    "javascript:alert(1)",
    "https://",
    "*",
    "'self'",
    "https://user@a.example",
    "https://a.example?x=1",
    "https://a.example#f",
    "https://a.example:",
    "https://[::1",
    "\x00",
    "https://a.example\n",
]


@pytest.mark.parametrize("origin", BAD_ORIGINS)
def test_web_edges_must_be_origins(origin: str) -> None:
    with pytest.raises(SettingsError, match="CHAT_WEB_EDGES"):
        load_settings({}, web_edges=(origin,))


def test_web_edges_accepts_origins() -> None:
    edges = "http://127.0.0.1:8080,https://chat.example,http://[::1]:8081"
    assert len(load_settings({"CHAT_WEB_EDGES": edges}).web_edges) == 3


class FakeTicketRedis:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def set(self, key: str, value: str, ex: int, nx: bool) -> bool:
        self.data[key] = value.encode()
        return True

    async def getdel(self, key: str) -> bytes | None:
        return self.data.pop(key, None)


async def test_ticket_is_good_once_and_not_past_the_tokens_expiry() -> None:
    import time

    from edge.auth import Identity, Unauthorized
    from edge.tickets import Tickets

    redis = FakeTicketRedis()
    tickets = Tickets(redis, ttl_s=30)  # type: ignore[arg-type]
    ticket, expires_at = await tickets.issue(Identity("alice", time.time() + 600))
    assert expires_at > time.time() * 1000 and len(ticket) == 43
    assert all(ticket not in key for key in redis.data)  # stored as its hash only
    assert (await tickets.redeem(ticket)).user == "alice"
    with pytest.raises(Unauthorized):
        await tickets.redeem(ticket)
    # Issued for a token that expires before the ticket is used: refused.
    stale, _ = await tickets.issue(Identity("alice", time.time() - 1))
    with pytest.raises(Unauthorized, match="expired"):
        await tickets.redeem(stale)
