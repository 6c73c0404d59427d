"""How every Kafka client of the project authenticates and checks the brokers: the one place
that turns the ``CHAT_KAFKA_SECURITY_PROTOCOL`` / ``CHAT_KAFKA_SASL_*`` / ``CHAT_KAFKA_SSL_*``
settings into client arguments.

- :func:`aiokafka_kwargs` for every aiokafka producer, consumer and admin client (edges, sink,
  ``chatctl``, ``ops.topics``, the table rebuild, the bench): ``AIOKafkaConsumer(...,
  **aiokafka_kwargs(settings))``.
- :func:`faust_broker_credentials` for the stream workers' ``faust.App(broker_credentials=...)``,
  which Faust hands to every client it makes (consumers, producers, topic creation).
- :func:`check_kafka_access` at process start: one connection to a bootstrap server with those
  settings, so a wrong password or an untrusted certificate stops the process with a sentence
  naming the cause, instead of aiokafka's generic "Unable to bootstrap" retried forever.

The settings themselves are declared and checked for consistency in ``chat/settings.py``;
the files they name are read here, when a client is made, so a missing CA file is reported
by the process that needs it (``load_settings`` also runs where the files do not exist, e.g.
when the Kubernetes manifests are checked).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import sys
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError

from chat.settings import Settings, SettingsError


class KafkaAccessRefused(Exception):
    """The brokers answered, and refused this client: bad credentials or TLS trust."""


def uses_tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def uses_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of every Kafka connection (None without TLS); one per file set."""
    if not uses_tls(settings):
        return None
    return _ssl_context(
        settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile
    )


@functools.lru_cache(maxsize=4)
def _ssl_context(cafile: str, certfile: str, keyfile: str) -> ssl.SSLContext:
    # Hostname checking and certificate verification stay on (create_default_context): a
    # broker is trusted through CHAT_KAFKA_SSL_CAFILE, or the system's store without it.
    try:
        context = ssl.create_default_context(cafile=cafile or None)
    except FileNotFoundError:
        raise SettingsError(f"CHAT_KAFKA_SSL_CAFILE={cafile}: no such file") from None
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(
            f"CHAT_KAFKA_SSL_CAFILE={cafile}: not a readable PEM CA bundle ({exc})"
        ) from None
    if certfile:
        try:
            context.load_cert_chain(certfile, keyfile)
        except FileNotFoundError:
            raise SettingsError(
                f"CHAT_KAFKA_SSL_CERTFILE={certfile} or CHAT_KAFKA_SSL_KEYFILE={keyfile}: "
                "no such file"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(
                f"CHAT_KAFKA_SSL_CERTFILE/CHAT_KAFKA_SSL_KEYFILE: not a PEM certificate and "
                f"its unencrypted key ({exc})"
            ) from None
    return context


def aiokafka_kwargs(settings: Settings) -> dict[str, Any]:
    """``bootstrap_servers`` and the security arguments of an aiokafka client."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if uses_sasl(settings):
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = settings.kafka_sasl_password
    return kwargs


def faust_broker_credentials(settings: Settings) -> Any:
    """``broker_credentials`` for ``faust.App``: None for PLAINTEXT."""
    # Imported here: only the workers import Faust (the edges and tools never load it).
    from faust.auth import SASLCredentials, SSLCredentials

    context = ssl_context(settings)
    if uses_sasl(settings):
        # Faust picks SASL_SSL when it is given a context, SASL_PLAINTEXT otherwise.
        return SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return SSLCredentials(context)
    return None


def describe(settings: Settings) -> str:
    """How this process talks to Kafka, for log lines (never the password)."""
    out = f"{settings.kafka_bootstrap} over {settings.kafka_security_protocol}"
    if uses_sasl(settings):
        out += f" as {settings.kafka_sasl_username!r} ({settings.kafka_sasl_mechanism})"
    return out


async def check_kafka_access(settings: Settings, timeout_s: float = 10.0) -> None:
    """Connect once to the first bootstrap server that answers, with this process's settings.

    Raises :class:`KafkaAccessRefused` when a broker refuses the credentials or the TLS
    handshake fails (untrusted certificate, wrong host name, TLS against a plaintext port), and
    ``SettingsError`` for unreadable files. A broker that cannot be reached at all is not this
    check's business: the clients retry that as they always do.
    """
    kwargs = aiokafka_kwargs(settings)
    del kwargs["bootstrap_servers"]
    for server in settings.kafka_bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        host = host.strip("[]")
        try:
            conn = await asyncio.wait_for(
                create_conn(host, int(port), request_timeout_ms=int(timeout_s * 1000), **kwargs),
                timeout_s,
            )
        except (SaslAuthenticationFailed, UnsupportedSaslMechanismError) as exc:
            raise KafkaAccessRefused(
                f"Kafka at {server} refused the SASL credentials of user "
                f"{settings.kafka_sasl_username!r} ({settings.kafka_sasl_mechanism}): {exc}. "
                "Check CHAT_KAFKA_SASL_USERNAME, CHAT_KAFKA_SASL_PASSWORD and "
                "CHAT_KAFKA_SASL_MECHANISM."
            ) from None
        except ssl.SSLError as exc:
            raise KafkaAccessRefused(
                f"TLS with Kafka at {server} failed: {exc}. Check CHAT_KAFKA_SSL_CAFILE (the CA "
                "that signed the broker certificate), that the certificate names this host, and "
                "that the port is the broker's SSL/SASL_SSL listener."
            ) from None
        except (TimeoutError, OSError, KafkaError, ValueError):
            continue  # not reachable (or not answering): try the next one
        conn.close()
        return


def exit_unless_kafka_accepts(settings: Settings, process: str) -> None:
    """At a process's start: stop it (exit 2, a configuration error, like a bad CHAT_* value)
    with one log line naming the cause when Kafka refuses its credentials or TLS.

    Runs on a loop of its own, so the loop the process then creates (Faust's, aiohttp's) is
    untouched. PLAINTEXT has nothing to refuse: no check, and a start exactly as before.
    """
    if settings.kafka_security_protocol == "PLAINTEXT":
        return
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(check_kafka_access(settings))
    except (KafkaAccessRefused, SettingsError) as exc:
        logging.getLogger(f"chat.{process}").error("%s cannot start: %s", process, exc)
        sys.exit(2)
    finally:
        loop.close()
