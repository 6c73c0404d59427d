"""Structured logging: one JSON object per line on stderr, for every process."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson

QUIET_LOGGERS = ("aiokafka", "kafka", "faust", "mode", "aiohttp.access")
# Credentials that must never reach a log line, whichever library writes it: a query
# parameter (access_token=, ticket=), an Authorization header value, a bare JWT.
_SECRETS = re.compile(
    r"((?:access_token|ticket|token)=)[^&\s\"'\\]+"
    r"|((?:Bearer|bearer|BEARER)\s+)[A-Za-z0-9._~+/=-]+"
    r"|eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"
)


def redact(text: str) -> str:
    """``text`` with every token, ticket and JWT replaced by ``[redacted]``."""
    return _SECRETS.sub(lambda m: (m.group(1) or m.group(2) or "") + "[redacted]", text)


_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # On the whole line: the message, every extra field and any traceback.
        return redact(orjson.dumps(entry, default=str).decode())


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Chatty third-party loggers: their warnings still come through.
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def json_logging_config(service: str, level: str = "INFO") -> dict[str, Any]:
    """The same setup as :func:`setup_logging`, as a dictConfig (Faust's worker wants one)."""
    quiet = "WARNING" if level.upper() in ("INFO", "DEBUG") else level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "service": service}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {name: {"level": quiet} for name in QUIET_LOGGERS},
    }
