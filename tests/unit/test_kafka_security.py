"""The Kafka security settings: what is refused at start, and the client arguments made of them."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from faust.auth import SASLCredentials, SSLCredentials

from chat.kafka_security import aiokafka_kwargs, faust_broker_credentials, ssl_context
from chat.settings import SettingsError, load_settings


def settings_of(**env: str):
    return load_settings({f"CHAT_{k.upper()}": v for k, v in env.items()})


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA certificate and a client certificate with its key (self-signed), as PEM files."""
    d = tmp_path_factory.mktemp("pki")
    for name in ("ca", "client"):
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
                *("-subj", f"/CN={name}", "-keyout", str(d / f"{name}.key")),
                *("-out", str(d / f"{name}.crt")),
            ],
            check=True,
            capture_output=True,
        )
    return d


def test_plaintext_by_default_and_nothing_extra() -> None:
    settings = load_settings({})
    assert aiokafka_kwargs(settings) == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert faust_broker_credentials(settings) is None
    assert ssl_context(settings) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"kafka_security_protocol": "sasl_ssl"}, "must be one of PLAINTEXT, SSL"),
        ({"kafka_security_protocol": "SASL_SSL"}, "needs CHAT_KAFKA_SASL_USERNAME"),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "u"},
            "needs CHAT_KAFKA_SASL_USERNAME and CHAT_KAFKA_SASL_PASSWORD",
        ),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_username": "u",
                "kafka_sasl_password": "p",
                "kafka_sasl_mechanism": "GSSAPI",
            },
            "CHAT_KAFKA_SASL_MECHANISM='GSSAPI' must be one of PLAIN",
        ),
        # Set but unused: the operator believes the connection is secured, it would not be.
        ({"kafka_sasl_password": "p"}, "sends no credentials"),
        ({"kafka_ssl_cafile": "/ca.pem"}, "does not use TLS"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "/c.pem"},
            "must be set together",
        ),
    ],
)
def test_inconsistent_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        settings_of(**env)


def test_sasl_ssl_arguments(pki: Path) -> None:
    settings = settings_of(
        kafka_bootstrap="k1:9094,k2:9094",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="chat",
        kafka_sasl_password="pw",
        kafka_ssl_cafile=str(pki / "ca.crt"),
    )
    kwargs = aiokafka_kwargs(settings)
    context = kwargs.pop("ssl_context")
    assert kwargs == {
        "bootstrap_servers": "k1:9094,k2:9094",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "chat",
        "sasl_plain_password": "pw",
    }
    # Verification stays on: the broker must present a certificate from the CA, for its name.
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "ca"),),)]

    credentials = faust_broker_credentials(settings)
    assert isinstance(credentials, SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-256"
    assert (credentials.username, credentials.password) == ("chat", "pw")
    assert credentials.ssl_context is context  # one context per file set, shared
    assert "pw" not in repr(credentials)


def test_sasl_plaintext_and_ssl_only(pki: Path) -> None:
    sasl = settings_of(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="chat",
        kafka_sasl_password="pw",
    )
    assert "ssl_context" not in aiokafka_kwargs(sasl)
    credentials = faust_broker_credentials(sasl)
    assert credentials.protocol.value == "SASL_PLAINTEXT"
    assert credentials.mechanism.value == "PLAIN"

    tls = settings_of(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=str(pki / "ca.crt"),
        kafka_ssl_certfile=str(pki / "client.crt"),
        kafka_ssl_keyfile=str(pki / "client.key"),
    )
    kwargs = aiokafka_kwargs(tls)
    assert kwargs["security_protocol"] == "SSL" and "sasl_mechanism" not in kwargs
    assert isinstance(faust_broker_credentials(tls), SSLCredentials)


def test_unreadable_files_are_named(pki: Path, tmp_path: Path) -> None:
    missing = settings_of(kafka_security_protocol="SSL", kafka_ssl_cafile="/nonexistent/ca.pem")
    with pytest.raises(SettingsError, match=r"CHAT_KAFKA_SSL_CAFILE=/nonexistent/ca\.pem: no such"):
        aiokafka_kwargs(missing)
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(SettingsError, match="not a readable PEM CA bundle"):
        ssl_context(settings_of(kafka_security_protocol="SSL", kafka_ssl_cafile=str(garbage)))
    wrong_key = settings_of(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=str(pki / "ca.crt"),
        kafka_ssl_certfile=str(pki / "client.crt"),
        kafka_ssl_keyfile=str(pki / "ca.key"),  # not the certificate's key
    )
    with pytest.raises(SettingsError, match="CHAT_KAFKA_SSL_CERTFILE/CHAT_KAFKA_SSL_KEYFILE"):
        ssl_context(wrong_key)


@pytest.mark.parametrize("module", ["edge", "sinks"])
def test_a_missing_ca_file_stops_the_process_with_its_name(module: str) -> None:
    """Checked before anything connects (no broker needed): exit 2 and one line naming it."""
    env = {
        **os.environ,
        "CHAT_ENV": "dev",
        "CHAT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CHAT_KAFKA_SASL_USERNAME": "chat",
        "CHAT_KAFKA_SASL_PASSWORD": "secret-password",
        "CHAT_KAFKA_SSL_CAFILE": "/nonexistent/kafka-ca.pem",
    }
    out = subprocess.run(
        [sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "cannot start: CHAT_KAFKA_SSL_CAFILE=/nonexistent/kafka-ca.pem: no such file" in (
        out.stderr
    )
    assert "secret-password" not in out.stderr
