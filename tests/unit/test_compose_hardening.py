"""Behind the compose nginx, clients are counted per client (#14, item 7): the edges trust the
compose network's X-Forwarded-For; and Grafana has no default admin password."""

from __future__ import annotations

import ipaddress
import subprocess
from typing import Any

import pytest

from chat.settings import load_settings, trusted_networks
from edge.app import client_ip
from tests.unit.test_deploy_files import COMPOSE_ENV, compose_doc, interpolate, service_env

EDGES = ("edge-1", "edge-2")


def network_subnet(doc: dict[str, Any], env: dict[str, str]) -> ipaddress.IPv4Network:
    (config,) = doc["networks"]["default"]["ipam"]["config"]
    return ipaddress.IPv4Network(interpolate(config["subnet"], env))


@pytest.mark.parametrize(
    "env", [COMPOSE_ENV, {**COMPOSE_ENV, "CHAT_COMPOSE_SUBNET": "10.9.8.0/24"}]
)
def test_edges_trust_the_compose_network_for_forwarded_for(env: dict[str, str]) -> None:
    doc = compose_doc()
    subnet = network_subnet(doc, env)
    nginx_address = str(next(subnet.hosts()) + 5)  # any address compose may give nginx
    for name in EDGES:
        settings = load_settings(service_env(doc["services"][name], env))
        trusted = trusted_networks(settings.trusted_proxies)
        assert any(subnet.subnet_of(n) for n in trusted if n.version == 4), name  # type: ignore[arg-type]
        # Two clients behind nginx are two addresses for the per-IP limits, not nginx's one.
        seen = {client_ip(nginx_address, f"{c}", trusted) for c in ("203.0.113.7", "198.51.100.9")}
        assert seen == {"203.0.113.7", "198.51.100.9"}
        # Outside the network, X-Forwarded-For is not believed.
        assert client_ip("203.0.113.50", "1.2.3.4", trusted) == "203.0.113.50"


def test_no_service_outside_nginx_is_a_trusted_proxy_by_default() -> None:
    """The trust reaches no further than the project's own network."""
    doc = compose_doc()
    subnet = network_subnet(doc, COMPOSE_ENV)
    assert subnet.prefixlen >= 16 and subnet.is_private


def test_grafana_admin_password_has_no_default() -> None:
    grafana = compose_doc()["services"]["grafana"]
    raw = grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert "admin" not in raw.split(":-", 1)[-1]
    assert service_env(grafana, {})["GF_SECURITY_ADMIN_PASSWORD"] == ""
    assert (
        service_env(grafana, {"GRAFANA_ADMIN_PASSWORD": "s3cret"})["GF_SECURITY_ADMIN_PASSWORD"]
        == "s3cret"
    )


@pytest.mark.parametrize(("password", "code"), [("", 1), ("s3cret", 0)])
def test_grafana_refuses_to_start_without_a_password(password: str, code: int) -> None:
    """The entrypoint guard, run by a shell as compose would (with /run.sh replaced)."""
    grafana = compose_doc()["services"]["grafana"]
    shell, flag, script = grafana["entrypoint"]
    script = script.replace("$$", "$").replace("exec /run.sh", "exit 0")
    result = subprocess.run(
        [shell, flag, script],
        env={"GF_SECURITY_ADMIN_PASSWORD": password},
        capture_output=True,
        text=True,
    )
    assert result.returncode == code
    if code:
        assert "set GRAFANA_ADMIN_PASSWORD" in result.stderr
