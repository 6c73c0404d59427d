"""CHAT_* environment parsing (chat/settings.py)."""

from __future__ import annotations

import dataclasses

import pytest

from chat.settings import DEV_JWT_SECRET, Settings, SettingsError, describe, load_settings


def test_defaults() -> None:
    settings = load_settings({})
    assert settings == Settings()
    # Production unless told otherwise: the dev secret and dev sign-in stay off by default.
    assert settings.env == "production" and not settings.is_dev
    assert settings.jwt_secret == DEV_JWT_SECRET
    assert settings.edge_slot == -1
    assert settings.max_frame_bytes == 64 * 1024
    assert settings.max_group_members == 1000
    assert settings.messages_per_s == 20.0 and settings.messages_burst == 40
    assert settings.upgrades_per_min == 30
    assert settings.allowed_origins == ()


def test_ints_floats_strings() -> None:
    settings = load_settings(
        {
            "CHAT_EDGE_PORT": "9000",
            "CHAT_MAX_GROUP_MEMBERS": " 50 ",
            "CHAT_MESSAGES_PER_S": "2.5",
            "CHAT_PING_INTERVAL_S": "5",
            "CHAT_EDGE_HOST": "0.0.0.0",
            "CHAT_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
            "CHAT_EDGE_SLOT": "3",
        }
    )
    assert settings.edge_port == 9000 and type(settings.edge_port) is int
    assert settings.max_group_members == 50
    assert settings.messages_per_s == 2.5
    assert settings.ping_interval_s == 5.0 and type(settings.ping_interval_s) is float
    assert settings.edge_host == "0.0.0.0"
    assert settings.kafka_bootstrap == "k1:9092,k2:9092"  # a str field stays a str
    assert settings.edge_slot == 3


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://a.example", ("https://a.example",)),
        ("https://a.example, https://b.example", ("https://a.example", "https://b.example")),
        (" a ,, b ,", ("a", "b")),
        ("", ()),
        (" , ", ()),
    ],
)
def test_tuples(raw: str, expected: tuple[str, ...]) -> None:
    assert load_settings({"CHAT_ALLOWED_ORIGINS": raw}).allowed_origins == expected


def test_jwt_algorithms_tuple() -> None:
    settings = load_settings({"CHAT_JWT_ALGORITHMS": "RS256,ES256"})
    assert settings.jwt_algorithms == ("RS256", "ES256")
    assert settings.resolved_jwt_algorithms() == ["RS256", "ES256"]


def test_resolved_jwt_algorithms_defaults() -> None:
    assert load_settings({}).resolved_jwt_algorithms() == ["HS256"]
    assert load_settings({"CHAT_JWT_PUBLIC_KEY": "pem"}).resolved_jwt_algorithms() == [
        "RS256",
        "ES256",
    ]


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("CHAT_EDGE_PORT", "80a"),
        ("CHAT_EDGE_PORT", ""),
        ("CHAT_EDGE_PORT", "1.5"),
        ("CHAT_MAX_GROUP_MEMBERS", "many"),
        ("CHAT_MESSAGES_PER_S", "fast"),
        ("CHAT_PING_INTERVAL_S", ""),
        ("CHAT_EDGE_SLOT", "two"),
        ("CHAT_DELIVER_PARTITIONS", "0x10"),
    ],
)
def test_invalid_numbers_name_the_variable(name: str, raw: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({name: raw})
    assert name in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unknown_and_unrelated_variables_ignored() -> None:
    settings = load_settings({"CHAT_NOT_A_SETTING": "x", "PATH": "/bin", "chat_edge_port": "1"})
    assert settings == Settings()


def test_overrides_win_over_environment() -> None:
    settings = load_settings({"CHAT_EDGE_PORT": "9000"}, edge_port=9100)
    assert settings.edge_port == 9100


def test_reads_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_EDGE_PORT", "8123")
    monkeypatch.setenv("CHAT_TOPIC_PREFIX", "unit")
    settings = load_settings()
    assert settings.edge_port == 8123
    assert settings.topic("commands") == "unit.commands"


@pytest.mark.parametrize(("slot", "partitions"), [(8, 8), (9, 8), (4, 4), (1, 1)])
def test_edge_slot_must_be_below_deliver_partitions(slot: int, partitions: int) -> None:
    env = {"CHAT_EDGE_SLOT": str(slot), "CHAT_DELIVER_PARTITIONS": str(partitions)}
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    assert "CHAT_EDGE_SLOT" in str(info.value)
    with pytest.raises(SettingsError):
        load_settings({}, edge_slot=slot, deliver_partitions=partitions)


@pytest.mark.parametrize(("slot", "partitions"), [(-1, 8), (0, 1), (7, 8), (3, 4)])
def test_edge_slot_below_partitions_accepted(slot: int, partitions: int) -> None:
    env = {"CHAT_EDGE_SLOT": str(slot), "CHAT_DELIVER_PARTITIONS": str(partitions)}
    settings = load_settings(env)
    assert (settings.edge_slot, settings.deliver_partitions) == (slot, partitions)


@pytest.mark.parametrize("partitions", ["0", "-2"])
def test_deliver_partitions_at_least_one(partitions: str) -> None:
    with pytest.raises(SettingsError):
        load_settings({"CHAT_DELIVER_PARTITIONS": partitions})


def test_tls_cert_and_key_together() -> None:
    with pytest.raises(SettingsError):
        load_settings({"CHAT_TLS_CERT": "/c.pem"})
    with pytest.raises(SettingsError):
        load_settings({"CHAT_TLS_KEY": "/k.pem"})
    settings = load_settings({"CHAT_TLS_CERT": "/c.pem", "CHAT_TLS_KEY": "/k.pem"})
    assert (settings.tls_cert, settings.tls_key) == ("/c.pem", "/k.pem")


def test_public_key_file(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "pub.pem"  # type: ignore[operator]
    path.write_text("-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n")
    settings = load_settings({"CHAT_JWT_PUBLIC_KEY_FILE": str(path)})
    assert settings.jwt_public_key.startswith("-----BEGIN PUBLIC KEY-----")
    # The inline variable wins over the file.
    settings = load_settings({"CHAT_JWT_PUBLIC_KEY_FILE": str(path), "CHAT_JWT_PUBLIC_KEY": "x"})
    assert settings.jwt_public_key == "x"


def test_env_and_is_dev() -> None:
    assert not load_settings({"CHAT_ENV": "prod"}).is_dev
    assert load_settings({"CHAT_ENV": "dev"}).is_dev


def test_settings_are_frozen() -> None:
    settings = load_settings({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.edge_port = 1  # type: ignore[misc]


def test_describe_lists_every_variable() -> None:
    described = dict(describe())
    assert len(described) == len(dataclasses.fields(Settings))
    assert all(name.startswith("CHAT_") and name == name.upper() for name in described)
    assert described["CHAT_EDGE_PORT"] == "8080"
    assert described["CHAT_ALLOWED_ORIGINS"] == ""
    assert described["CHAT_JWT_ALGORITHMS"] == ""


def test_every_field_round_trips_through_its_variable() -> None:
    """Each CHAT_<FIELD> variable parses back into a value of the field's type."""
    for name, default in describe():
        settings = load_settings({name: default})
        field = name[len("CHAT_") :].lower()
        assert getattr(settings, field) == getattr(Settings(), field), name


def test_trusted_proxies_take_addresses_and_cidr_ranges() -> None:
    from chat.settings import trusted_networks
    from edge.app import client_ip

    trusted = trusted_networks(("127.0.0.1", "10.0.0.0/8", "fd00::/8"))
    # A trusted proxy's last X-Forwarded-For hop is the client; earlier hops are not believed.
    assert client_ip("10.1.2.3", "6.6.6.6, 203.0.113.9", trusted) == "203.0.113.9"
    assert client_ip("127.0.0.1", "203.0.113.9", trusted) == "203.0.113.9"
    assert client_ip("fd00::1", "2001:db8::7", trusted) == "2001:db8::7"
    # Anyone else's header is ignored.
    assert client_ip("11.0.0.1", "203.0.113.9", trusted) == "11.0.0.1"
    assert client_ip("10.1.2.3", None, trusted) == "10.1.2.3"
    assert client_ip(None, "203.0.113.9", trusted) == "?"


def test_a_bad_trusted_proxy_entry_is_refused_at_start() -> None:
    with pytest.raises(SettingsError, match="CHAT_TRUSTED_PROXIES"):
        load_settings({"CHAT_TRUSTED_PROXIES": "10.0.0.0/33"})


def test_the_readme_settings_table_lists_exactly_the_settings() -> None:
    """Every CHAT_* setting has a row in the README's table, and every row names a setting
    (or CHAT_JWT_PUBLIC_KEY_FILE, the alias load_settings reads the public key from)."""
    import re
    from pathlib import Path

    from chat.settings import describe

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    documented: set[str] = set()
    for row in readme.splitlines():
        if row.startswith("| `CHAT_"):
            documented |= set(re.findall(r"`(CHAT_[A-Z0-9_]+)`", row.split("|")[1]))
    settings = {name for name, _ in describe()}
    assert settings - documented == set()
    assert documented - settings == {"CHAT_JWT_PUBLIC_KEY_FILE"}
