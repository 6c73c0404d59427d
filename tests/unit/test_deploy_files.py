"""The deployment files, checked by parsing (no Docker engine needed): docker-compose.yml,
Dockerfile, .dockerignore, ops/docker-entrypoint.sh, ops/nginx/nginx.conf(.template) and the
optional monitoring configs under ops/compose/.

Each check is a function that returns a list of problems, so the tests can also show that it
rejects a broken copy of the real file. Where nginx is installed, the local variant of the
nginx config also goes through ``nginx -t``.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib
import importlib.util
import json
import re
import shlex
import shutil
import stat
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from chat.settings import Settings, load_settings
from ops.nginx_local import render_nginx

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENTRYPOINT = ROOT / "ops" / "docker-entrypoint.sh"
NGINX_TEMPLATE = ROOT / "ops" / "nginx" / "nginx.conf.template"
NGINX_CONF = ROOT / "ops" / "nginx" / "nginx.conf"
PROMETHEUS = ROOT / "ops" / "compose" / "prometheus.yml"
GRAFANA_DATASOURCES = ROOT / "ops" / "compose" / "grafana" / "provisioning" / "datasources"

SETTING_NAMES = {f"CHAT_{f.name.upper()}" for f in fields(Settings)}
DEFAULTS = Settings()
ROLES = {"edge", "worker", "sink", "topics", "chatctl"}
DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
# Host ports of the local stack and `make run`: the compose stack must not take them.
LOCAL_PORTS = {8080, 8081, 6066, 6067, 6070, 9092, 9093, 6379, 27017}
# What compose sees when it interpolates the file in these tests.
COMPOSE_ENV = {"CHAT_JWT_SECRET": "compose-test-secret-0123456789abcdef"}
# The values that render ops/nginx/nginx.conf (compose) from the template.
NGINX_COMPOSE_VARS = {
    "LISTEN": "80",
    "EDGE_A": "edge-1:8080",
    "EDGE_B": "edge-2:8080",
    "RUN_DIR": "/var/cache/nginx",
}


# --------------------------------------------------------------------------- helpers


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose_doc() -> dict[str, Any]:
    doc = load_yaml(COMPOSE)
    assert isinstance(doc, dict)
    return doc


def unshared_compose_doc() -> dict[str, Any]:
    """The compose file with every YAML alias/merge copied out, for tests that change it."""
    doc: dict[str, Any] = json.loads(json.dumps(compose_doc()))
    return doc


_VAR = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


class InterpolationError(ValueError):
    pass


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's substitution: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e}."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        expr = m.group("braced") if m.group("braced") is not None else m.group("plain")
        name = re.match(r"[A-Za-z_][A-Za-z0-9_]*", expr)
        if name is None:
            raise InterpolationError(f"bad variable {m.group(0)!r}")
        var, rest = name.group(0), expr[name.end() :]
        current = env.get(var)
        if rest == "":
            return current or ""
        for op in (":-", "-", ":?", "?"):
            if rest.startswith(op):
                arg = rest[len(op) :]
                unset = current is None or (op.startswith(":") and current == "")
                if op.endswith("-"):
                    return arg if unset else str(current)
                if unset:
                    raise InterpolationError(f"{var}: {arg}")
                return str(current)
        raise InterpolationError(f"unsupported substitution {m.group(0)!r}")

    return _VAR.sub(one, value)


def service_env(svc: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, str]:
    raw = svc.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    out = {}
    for key, value in raw.items():
        text = "" if value is None else str(value)
        if isinstance(value, bool):
            text = text.lower()
        out[str(key)] = interpolate(text, COMPOSE_ENV if env is None else env)
    return out


def depends_on(svc: dict[str, Any]) -> dict[str, str]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def command_of(svc: dict[str, Any]) -> list[str]:
    cmd = svc.get("command")
    if cmd is None:
        return []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def published_ports(svc: dict[str, Any]) -> list[int]:
    """Host ports a service publishes (short and long syntax, ranges expanded)."""
    out: list[int] = []
    for entry in svc.get("ports") or []:
        if isinstance(entry, dict):
            published = entry.get("published")
            spec = "" if published is None else str(published)
        else:
            parts = str(entry).split("/")[0].rsplit(":", 2)
            spec = parts[-2] if len(parts) >= 2 else ""  # a lone container port: ephemeral
        if not spec:
            continue
        low, _, high = spec.partition("-")
        out.extend(range(int(low), int(high or low) + 1))
    return out


def has_healthcheck(svc: dict[str, Any]) -> bool:
    hc: dict[str, Any] = svc.get("healthcheck") or {}
    return not hc.get("disable") and bool(hc.get("test")) and hc["test"] != ["NONE"]


def is_app(svc: dict[str, Any]) -> bool:
    """A service that runs the project's image (built from the Dockerfile)."""
    return "build" in svc


# --------------------------------------------------------------------------- compose checks


def compose_problems(doc: dict[str, Any], base: Path = ROOT) -> list[str]:
    """Generic checks of a compose file: what `docker compose config` and `up` would reject."""
    problems: list[str] = []
    services = doc.get("services")
    if not isinstance(services, dict) or not services:
        return ["no services"]
    seen_ports: dict[int, str] = {}
    declared_volumes = set((doc.get("volumes") or {}).keys())
    for name, svc in services.items():
        if not isinstance(svc, dict):
            problems.append(f"{name}: not a mapping")
            continue
        if not svc.get("image") and not svc.get("build"):
            problems.append(f"{name}: neither image nor build")
        for dep, condition in depends_on(svc).items():
            if dep not in services:
                problems.append(f"{name}: depends_on unknown service {dep}")
                continue
            if condition not in DEPENDS_CONDITIONS:
                problems.append(f"{name}: invalid depends_on condition {condition!r} for {dep}")
            target = services[dep]
            if condition == "service_healthy" and not has_healthcheck(target):
                problems.append(f"{name}: waits for {dep} to be healthy, which has no healthcheck")
            if condition == "service_completed_successfully" and target.get("restart") not in (
                None,
                "no",
            ):
                problems.append(f"{name}: waits for {dep} to complete, but {dep} restarts")
            if target.get("profiles") and not svc.get("profiles"):
                problems.append(f"{name}: depends on {dep}, which only runs in a profile")
        for port in published_ports(svc):
            if port in seen_ports:
                problems.append(f"{name}: host port {port} already published by {seen_ports[port]}")
            seen_ports[port] = name
            if port in LOCAL_PORTS:
                problems.append(f"{name}: host port {port} collides with the local stack")
        for volume in svc.get("volumes") or []:
            source = (
                volume.get("source")
                if isinstance(volume, dict)
                else str(volume).split(":")[0]
                if ":" in str(volume)
                else None
            )
            if not source:
                continue
            if source.startswith((".", "/")):
                if not (base / source).exists():
                    problems.append(f"{name}: bind mount source {source} does not exist")
            elif source not in declared_volumes:
                problems.append(f"{name}: volume {source} is not declared")
    problems.extend(_cycles(services))
    return problems


def _cycles(services: dict[str, Any]) -> list[str]:
    state: dict[str, int] = {}
    problems: list[str] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in depends_on(services[name]):
            if dep not in services:
                continue
            if state.get(dep) == 1:
                problems.append("depends_on cycle: " + " -> ".join([*path, name, dep]))
            elif dep not in state:
                visit(dep, [*path, name])
        state[name] = 2

    for name in services:
        if name not in state:
            visit(name, [])
    return problems


def _backend(services: dict[str, Any], image_prefix: str) -> str | None:
    names = [n for n, s in services.items() if str(s.get("image", "")).startswith(image_prefix)]
    return names[0] if len(names) == 1 else None


def app_problems(doc: dict[str, Any]) -> list[str]:
    """Project-specific checks: settings, backends, roles, edge slots, the topics job, nginx."""
    problems: list[str] = []
    services: dict[str, Any] = doc.get("services") or {}
    kafka = _backend(services, "apache/kafka:")
    redis = _backend(services, "redis:")
    mongo = _backend(services, "mongo:")
    for label, found in (("kafka", kafka), ("redis", redis), ("mongo", mongo)):
        if found is None:
            problems.append(f"no single {label} service")
    apps = {n: s for n, s in services.items() if is_app(s)}
    topics_jobs = [n for n, s in apps.items() if command_of(s)[:1] == ["topics"]]
    if len(topics_jobs) != 1:
        problems.append(f"expected one topics job, found {topics_jobs}")
    slots: dict[int, str] = {}
    edges: dict[str, int] = {}
    for name, svc in apps.items():
        try:
            env = service_env(svc)
        except InterpolationError as exc:
            problems.append(f"{name}: {exc}")
            continue
        for key in env:
            if key not in SETTING_NAMES:
                problems.append(f"{name}: {key} is not a setting")
        try:
            settings = load_settings(environ=env)
        except ValueError as exc:
            problems.append(f"{name}: settings rejected: {exc}")
            continue
        cmd = command_of(svc)
        role = cmd[0] if cmd else "edge"  # the image's CMD
        if role not in ROLES:
            problems.append(f"{name}: unknown role {role!r}")
        bootstrap_hosts = {hp.rsplit(":", 1)[0] for hp in settings.kafka_bootstrap.split(",")}
        if kafka and bootstrap_hosts != {kafka}:
            problems.append(
                f"{name}: CHAT_KAFKA_BOOTSTRAP points at {bootstrap_hosts}, not {kafka}"
            )
        if redis and urlsplit(settings.redis_url).hostname != redis:
            problems.append(f"{name}: CHAT_REDIS_URL does not point at the {redis} service")
        if mongo and urlsplit(settings.mongo_url).hostname != mongo:
            problems.append(f"{name}: CHAT_MONGO_URL does not point at the {mongo} service")
        raw_env = svc.get("environment") or {}
        if "${CHAT_JWT_SECRET:?" not in str(raw_env.get("CHAT_JWT_SECRET", "")):
            problems.append(f"{name}: CHAT_JWT_SECRET must be required (${{CHAT_JWT_SECRET:?...}})")
        deps = depends_on(svc)
        if kafka and deps.get(kafka) != "service_healthy":
            problems.append(f"{name}: does not wait for {kafka} to be healthy")
        if role == "topics":
            continue
        for backend in (redis, mongo):
            if backend and deps.get(backend) != "service_healthy":
                problems.append(f"{name}: does not wait for {backend} to be healthy")
        for job in topics_jobs:
            if deps.get(job) != "service_completed_successfully":
                problems.append(f"{name}: does not wait for {job} to complete successfully")
        if not has_healthcheck(svc):
            problems.append(f"{name}: no healthcheck")
        if role == "edge":
            edges[name] = settings.edge_port
            if settings.edge_host != "0.0.0.0":
                problems.append(f"{name}: CHAT_EDGE_HOST must be 0.0.0.0 in a container")
            if "CHAT_EDGE_SLOT" not in env:
                problems.append(f"{name}: no fixed CHAT_EDGE_SLOT")
            elif not 0 <= settings.edge_slot < DEFAULTS.deliver_partitions:
                problems.append(
                    f"{name}: CHAT_EDGE_SLOT {settings.edge_slot} outside "
                    f"0..{DEFAULTS.deliver_partitions - 1}"
                )
            elif settings.edge_slot in slots:
                problems.append(
                    f"{name}: CHAT_EDGE_SLOT {settings.edge_slot} also used by "
                    f"{slots[settings.edge_slot]}"
                )
            else:
                slots[settings.edge_slot] = name
        if role == "worker" and "CHAT_WORKER_WEB_PORT" not in env:
            problems.append(f"{name}: CHAT_WORKER_WEB_PORT not set")
    if len(edges) < 2:
        problems.append(f"expected at least two edges, found {sorted(edges)}")
    problems.extend(_nginx_service_problems(services, edges))
    return problems


def _nginx_service_problems(services: dict[str, Any], edges: dict[str, int]) -> list[str]:
    proxies = [n for n, s in services.items() if str(s.get("image", "")).startswith("nginx:")]
    if len(proxies) != 1:
        return [f"expected one nginx service, found {proxies}"]
    name, svc = proxies[0], services[proxies[0]]
    problems = []
    if published_ports(svc) != [8000]:
        problems.append(f"{name}: must publish host port 8000, publishes {published_ports(svc)}")
    mounts = [str(v) for v in svc.get("volumes") or []]
    if "./ops/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" not in mounts:
        problems.append(f"{name}: does not mount ops/nginx/nginx.conf as /etc/nginx/nginx.conf")
    deps = depends_on(svc)
    for edge in edges:
        if deps.get(edge) != "service_healthy":
            problems.append(f"{name}: does not wait for {edge} to be healthy")
    tree = parse_nginx(NGINX_CONF.read_text())
    upstream = set(nginx_upstream_servers(tree))
    wanted = {f"{edge}:{port}" for edge, port in edges.items()}
    if upstream != wanted:
        problems.append(f"{name}: nginx upstream {sorted(upstream)} != edges {sorted(wanted)}")
    return problems


# --------------------------------------------------------------------------- nginx


@dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] | None = None
    children: list[Directive] = field(default_factory=list)

    def find(self, name: str) -> list[Directive]:
        return [d for d in self.block or [] if d.name == name]


# Comments, quoted strings, braces and semicolons, words (in which ${name} is one piece, as in
# nginx itself and in the template's placeholders).
_NGINX_TOKEN = re.compile(
    r"""#[^\n]*|"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|[{};]|(?:\$\{[^}\s]*\}|[^\s{};])+"""
)


class NginxSyntaxError(ValueError):
    pass


def parse_nginx(text: str) -> Directive:
    """A small nginx.conf parser: directives, arguments (quotes removed) and blocks."""
    tokens = [t for t in _NGINX_TOKEN.findall(text) if not t.startswith("#")]
    pos = 0

    def block(top: bool) -> list[Directive]:
        nonlocal pos
        out: list[Directive] = []
        words: list[str] = []
        while pos < len(tokens):
            tok = tokens[pos]
            pos += 1
            if tok == ";":
                if not words:
                    raise NginxSyntaxError("empty directive")
                out.append(Directive(words[0], words[1:]))
                words = []
            elif tok == "{":
                if not words:
                    raise NginxSyntaxError("block without a name")
                out.append(Directive(words[0], words[1:], block(top=False)))
                words = []
            elif tok == "}":
                if top:
                    raise NginxSyntaxError("unexpected }")
                if words:
                    raise NginxSyntaxError(f"directive {words[0]!r} not ended with ;")
                return out
            else:
                words.append(tok[1:-1] if tok[:1] in "\"'" else tok)
        if words:
            raise NginxSyntaxError(f"directive {words[0]!r} not ended with ;")
        if not top:
            raise NginxSyntaxError("missing }")
        return out

    return Directive("main", [], block(top=True))


def nginx_upstream_servers(tree: Directive) -> list[str]:
    return [
        s.args[0]
        for http in tree.find("http")
        for up in http.find("upstream")
        for s in up.find("server")
    ]


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", value)
    if m is None:
        raise ValueError(value)
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def nginx_problems(text: str) -> list[str]:
    """What the edges need from the proxy: a complete config, least_conn over the edges, the
    WebSocket upgrade and a read timeout longer than the edge's ping interval."""
    try:
        tree = parse_nginx(text)
    except NginxSyntaxError as exc:
        return [f"syntax: {exc}"]
    problems = []
    if len(tree.find("events")) != 1:
        problems.append("no events {} block: not a complete nginx.conf")
    https = tree.find("http")
    if len(https) != 1:
        return [*problems, "no http {} block: not a complete nginx.conf"]
    http = https[0]
    maps = [m for m in http.find("map") if m.args == ["$http_upgrade", "$connection_upgrade"]]
    if (
        not maps
        or not {"default": "upgrade"}.items()
        <= {d.name: " ".join(d.args) for d in maps[0].block or []}.items()
    ):
        problems.append("no map $http_upgrade $connection_upgrade { default upgrade; ... }")
    upstreams = {u.args[0]: u for u in http.find("upstream") if u.args}
    for name, up in upstreams.items():
        if not up.find("least_conn"):
            problems.append(f"upstream {name}: not least_conn")
        if len(up.find("server")) < 2:
            problems.append(f"upstream {name}: fewer than two servers")
    if not upstreams:
        problems.append("no upstream")
    roots = [
        loc for srv in http.find("server") for loc in srv.find("location") if loc.args == ["/"]
    ]
    if not any(srv.find("listen") for srv in http.find("server")):
        problems.append("no server with a listen directive")
    if len(roots) != 1:
        return [*problems, "no single location /"]
    loc = roots[0]
    headers = {tuple(d.args[:1]): d.args[1:] for d in loc.find("proxy_set_header")}
    passes = [d.args for d in loc.find("proxy_pass")]
    if len(passes) != 1 or passes[0][0].removeprefix("http://") not in upstreams:
        problems.append("location / does not proxy_pass to a defined upstream")
    if [d.args for d in loc.find("proxy_http_version")] != [["1.1"]]:
        problems.append("proxy_http_version 1.1 missing")
    if headers.get(("Upgrade",)) != ["$http_upgrade"]:
        problems.append("proxy_set_header Upgrade $http_upgrade missing")
    if headers.get(("Connection",)) != ["$connection_upgrade"]:
        problems.append("proxy_set_header Connection $connection_upgrade missing")
    timeouts = [seconds(d.args[0]) for d in loc.find("proxy_read_timeout")]
    minimum = max(75.0, 3 * DEFAULTS.ping_interval_s)
    if not timeouts or timeouts[0] < minimum:
        problems.append(f"proxy_read_timeout must be at least {minimum:.0f}s, is {timeouts}")
    return problems


_TEMPLATE_VAR = re.compile(r"\$\{([A-Z_]+)\}")


# --------------------------------------------------------------------------- Dockerfile


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse_dockerfile(text: str) -> list[Stage]:
    joined = re.sub(r"\\\n", " ", text)
    stages: list[Stage] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, rest = line.partition(" ")
        instr, rest = instr.upper(), rest.strip()
        if instr == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            if m is None:
                raise ValueError(f"bad FROM {rest!r}")
            stages.append(Stage(m.group(1), m.group(2)))
        elif not stages:
            if instr != "ARG":
                raise ValueError(f"{instr} before FROM")
        else:
            stages[-1].instructions.append((instr, rest))
    return stages


def _exec_form(rest: str) -> list[str] | None:
    try:
        value = json.loads(rest)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def _env_pairs(rest: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in shlex.split(rest) if "=" in part)


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [ln.strip().rstrip("/") for ln in lines if ln.strip() and not ln.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.removeprefix("**/")) for p in prefixes
        ):
            result = not negate
    return result


def dockerfile_problems(text: str, patterns: list[str]) -> list[str]:
    try:
        stages = parse_dockerfile(text)
    except ValueError as exc:
        return [str(exc)]
    problems: list[str] = []
    if len(stages) < 2:
        return ["not a multi-stage build"]
    if not stages[0].base.startswith("node:20-slim"):
        problems.append(f"first stage is {stages[0].base}, not node:20-slim")
    final = stages[-1]
    if final.base != "python:3.11-slim":
        problems.append(f"final stage is {final.base}, not python:3.11-slim")
    web_runs = " && ".join(rest for instr, rest in stages[0].instructions if instr == "RUN")
    for step in ("npm ci", "npm run build"):
        if step not in web_runs:
            problems.append(f"web stage does not run {step}")
    all_runs = [rest for st in stages for instr, rest in st.instructions if instr == "RUN"]
    if not any(re.search(r"pip install (?:[-\w ]+ )?\.(?:\s|$)", run) for run in all_runs):
        problems.append("no `pip install .`")
    for index, stage in enumerate(stages):
        earlier = {s.name for s in stages[:index] if s.name} | {str(i) for i in range(index)}
        for instr, rest in stage.instructions:
            if instr not in ("COPY", "ADD"):
                continue
            words = shlex.split(rest)
            flags = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            source_stage = next(
                (f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None
            )
            if source_stage is not None:
                if source_stage not in earlier:
                    problems.append(f"COPY --from={source_stage}: no such earlier stage")
                continue
            for src in paths[:-1]:
                matches = [p for p in ROOT.glob(src.rstrip("/")) if p.exists()]
                if not matches:
                    problems.append(f"COPY source {src} does not exist")
                elif all(ignored(str(m.relative_to(ROOT)), patterns) for m in matches):
                    problems.append(f"COPY source {src} is excluded by .dockerignore")
    envs: dict[str, str] = {}
    users = []
    for instr, rest in final.instructions:
        if instr == "ENV":
            envs.update(_env_pairs(rest))
        elif instr == "USER":
            users.append(rest.split(":")[0])
    for key in envs:
        if key.startswith("CHAT_") and key not in SETTING_NAMES:
            problems.append(f"ENV {key} is not a setting")
    if envs.get("CHAT_WEB_DIST") != "/app/web/dist":
        problems.append("ENV CHAT_WEB_DIST=/app/web/dist missing")
    if not users or users[-1] != "10001":
        problems.append(f"final stage does not run as uid 10001 (USER {users})")
    exposed = [rest for instr, rest in final.instructions if instr == "EXPOSE"]
    if str(DEFAULTS.edge_port) not in " ".join(exposed).split():
        problems.append(f"EXPOSE {DEFAULTS.edge_port} missing")
    healthchecks = [rest for instr, rest in final.instructions if instr == "HEALTHCHECK"]
    if len(healthchecks) != 1 or "CMD" not in healthchecks[0]:
        problems.append("no HEALTHCHECK CMD")
    elif "healthcheck" not in healthchecks[0] and "/healthz" not in healthchecks[0]:
        problems.append("HEALTHCHECK does not probe /healthz")
    entry = [_exec_form(rest) for instr, rest in final.instructions if instr == "ENTRYPOINT"]
    cmd = [_exec_form(rest) for instr, rest in final.instructions if instr == "CMD"]
    if len(entry) != 1 or not entry[0]:
        problems.append("ENTRYPOINT missing or not in exec form")
    elif entry[0][0] != "/app/" + str(ENTRYPOINT.relative_to(ROOT)):
        problems.append(f"ENTRYPOINT {entry[0][0]} is not ops/docker-entrypoint.sh")
    if len(cmd) != 1 or not cmd[0] or cmd[0][0] not in ROLES:
        problems.append(f"CMD {cmd} is not one role")
    return problems


# --------------------------------------------------------------------------- entry point


_ROLE_LINE = re.compile(r"^\s*([a-z][a-z-]*)\)\s*module=([A-Za-z_][\w.]*)\s*;;", re.MULTILINE)


def entrypoint_roles(text: str) -> dict[str, str]:
    return dict(_ROLE_LINE.findall(text))


def role_problems(text: str) -> list[str]:
    """Every role exists and `python -m <module>` of it has something to run."""
    roles = entrypoint_roles(text)
    problems = [f"role {r} missing" for r in sorted(ROLES - set(roles))]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("scripts", {})
    for role, module in sorted(roles.items()):
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            spec = None
        if spec is None or spec.origin is None:
            problems.append(f"role {role}: module {module} not found")
            continue
        if spec.submodule_search_locations is not None:  # a package: needs __main__
            if importlib.util.find_spec(f"{module}.__main__") is None:
                problems.append(f"role {role}: package {module} has no __main__")
        elif 'if __name__ == "__main__":' not in Path(spec.origin).read_text():
            problems.append(f"role {role}: {module} has no __main__ guard")
        try:
            importlib.import_module(module)
        except Exception as exc:
            problems.append(f"role {role}: import {module} failed: {exc!r}")
        if role in scripts and scripts[role].split(":")[0] != module:
            problems.append(f"role {role}: pyproject's script runs {scripts[role]}, not {module}")
    return problems


def healthcheck_source(text: str) -> str:
    m = re.search(r"<<'PY'\n(.*?)\nPY\n", text, re.DOTALL)
    assert m, "no healthcheck heredoc"
    return m.group(1)


# =========================================================================== tests: compose


def test_compose_is_valid() -> None:
    assert compose_problems(compose_doc()) == []


def test_compose_matches_the_project() -> None:
    assert app_problems(compose_doc()) == []


def test_compose_has_the_whole_cluster() -> None:
    services = compose_doc()["services"]
    for name in (
        "kafka",
        "redis",
        "mongo",
        "topics",
        "worker-1",
        "worker-2",
        "sink",
        "edge-1",
        "edge-2",
        "nginx",
    ):
        assert name in services, name
    assert services["kafka"]["image"] == "apache/kafka:4.1.0"
    assert services["redis"]["image"] == "redis:7-alpine"
    assert services["mongo"]["image"] == "mongo:7"
    assert services["nginx"]["image"] == "nginx:1.27-alpine"
    for name in ("kafka", "redis", "mongo"):
        assert has_healthcheck(services[name]), name
    roles = {n: command_of(s)[0] for n, s in services.items() if is_app(s)}
    assert roles == {
        "topics": "topics",
        "worker-1": "worker",
        "worker-2": "worker",
        "sink": "sink",
        "edge-1": "edge",
        "edge-2": "edge",
    }


def test_compose_uses_one_anchor_for_the_app() -> None:
    text = COMPOSE.read_text()
    assert re.search(r"^x-app: &app$", text, re.MULTILINE)
    services = compose_doc()["services"]
    apps = [s for s in services.values() if is_app(s)]
    assert len({json.dumps(s["build"], sort_keys=True) for s in apps}) == 1
    assert len({s["image"] for s in apps}) == 1
    assert text.count("<<: *app\n") == len(apps)


def test_compose_env_defaults() -> None:
    services = compose_doc()["services"]
    raw = services["edge-1"]["environment"]
    assert raw["CHAT_ENV"] == "${CHAT_ENV:-production}"
    assert service_env(services["edge-1"])["CHAT_ENV"] == "production"
    assert service_env(services["edge-1"], {**COMPOSE_ENV, "CHAT_ENV": "dev"})["CHAT_ENV"] == "dev"
    with pytest.raises(InterpolationError, match="set CHAT_JWT_SECRET"):
        service_env(services["edge-1"], {})
    env = service_env(services["worker-1"])
    assert env["CHAT_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["CHAT_REDIS_URL"] == "redis://redis:6379/0"
    assert env["CHAT_MONGO_URL"] == "mongodb://mongo:27017/"


def test_kafka_is_a_single_kraft_node() -> None:
    services = compose_doc()["services"]
    env = service_env(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])
    for key, value in env.items():
        if key.endswith(("REPLICATION_FACTOR", "MIN_ISR", "MIN_INSYNC_REPLICAS")):
            assert value == "1", key
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
    ):
        assert key in env
    node = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:9093"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    assert listeners == {"PLAINTEXT": ":9092", "CONTROLLER": ":9093"}
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    protocol_map = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) <= set(protocol_map)
    # The app's bootstrap is the advertised listener.
    app_env = service_env(services["worker-1"])
    assert "PLAINTEXT://" + app_env["CHAT_KAFKA_BOOTSTRAP"] == env["KAFKA_ADVERTISED_LISTENERS"]
    assert any(str(v).endswith(":" + env["KAFKA_LOG_DIRS"]) for v in services["kafka"]["volumes"])


def test_monitoring_configs_are_valid_and_scrape_every_app_process() -> None:
    services = compose_doc()["services"]
    prom = load_yaml(PROMETHEUS)
    targets = {
        t
        for job in prom["scrape_configs"]
        for sc in job.get("static_configs", [])
        for t in sc["targets"]
    }
    metrics_port = {
        "edge": "CHAT_EDGE_PORT",
        "worker": "CHAT_WORKER_WEB_PORT",
        "sink": "CHAT_SINK_METRICS_PORT",
    }
    expected = {
        f"{n}:{service_env(s)[metrics_port[command_of(s)[0]]]}"
        for n, s in services.items()
        if is_app(s) and command_of(s)[0] in metrics_port
    }
    assert targets == expected
    # Workers and the sink bind their metrics port to localhost unless told otherwise.
    for n, s in services.items():
        if is_app(s) and command_of(s)[0] in ("worker", "sink"):
            assert service_env(s).get("CHAT_METRICS_HOST") == "0.0.0.0", n
    # The alert rules and the dashboard are mounted where the configs look for them.
    volumes = {v.split(":")[1] for v in services["prometheus"]["volumes"] if v.startswith("./")}
    assert "/etc/prometheus/rules" in volumes
    grafana = {v.split(":")[1] for v in services["grafana"]["volumes"] if v.startswith("./")}
    assert "/etc/grafana/dashboards" in grafana
    for job in prom["scrape_configs"]:
        assert job["job_name"] and job.get("metrics_path", "/metrics") == "/metrics"
    datasources = [load_yaml(p) for p in sorted(GRAFANA_DATASOURCES.glob("*.yml"))]
    assert datasources and all(d["apiVersion"] == 1 for d in datasources)
    urls = {urlsplit(ds["url"]) for d in datasources for ds in d["datasources"]}
    assert {(u.hostname, u.port) for u in urls} == {("prometheus", 9090)}
    assert "prometheus" in services and services["prometheus"].get("profiles")


def _drop_image(doc: dict[str, Any]) -> None:
    svc = doc["services"]["redis"]
    svc.pop("image")


def _unknown_dep(doc: dict[str, Any]) -> None:
    doc["services"]["sink"]["depends_on"]["zookeeper"] = {"condition": "service_started"}


def _bad_condition(doc: dict[str, Any]) -> None:
    doc["services"]["sink"]["depends_on"]["kafka"] = {"condition": "service_ready"}


def _duplicate_port(doc: dict[str, Any]) -> None:
    doc["services"]["edge-1"]["ports"] = ["8000:8080"]


def _local_port(doc: dict[str, Any]) -> None:
    doc["services"]["kafka"]["ports"] = ["9092:9092"]


def _cycle(doc: dict[str, Any]) -> None:
    doc["services"]["kafka"]["depends_on"] = {"sink": {"condition": "service_started"}}


def _healthy_without_check(doc: dict[str, Any]) -> None:
    doc["services"]["redis"].pop("healthcheck")


def _restarting_job(doc: dict[str, Any]) -> None:
    doc["services"]["topics"]["restart"] = "always"


def _profile_dep(doc: dict[str, Any]) -> None:
    doc["services"]["nginx"]["depends_on"]["grafana"] = {"condition": "service_started"}


def _missing_bind_source(doc: dict[str, Any]) -> None:
    doc["services"]["nginx"]["volumes"] = ["./ops/nginx/missing.conf:/etc/nginx/nginx.conf:ro"]


def _undeclared_volume(doc: dict[str, Any]) -> None:
    doc["volumes"].pop("mongo-data")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_drop_image, "redis: neither image nor build"),
        (_unknown_dep, "depends_on unknown service zookeeper"),
        (_bad_condition, "invalid depends_on condition 'service_ready'"),
        (_duplicate_port, "host port 8000 already published"),
        (_local_port, "host port 9092 collides with the local stack"),
        (_cycle, "depends_on cycle"),
        (_healthy_without_check, "waits for redis to be healthy, which has no healthcheck"),
        (_restarting_job, "but topics restarts"),
        (_profile_dep, "grafana, which only runs in a profile"),
        (_missing_bind_source, "bind mount source ./ops/nginx/missing.conf does not exist"),
        (_undeclared_volume, "volume mongo-data is not declared"),
    ],
)
def test_compose_check_rejects_broken_copies(
    mutate: Callable[[dict[str, Any]], None],
    expected: str,
) -> None:
    doc = unshared_compose_doc()
    mutate(doc)
    problems = compose_problems(doc)
    assert any(expected in p for p in problems), problems


def _env(service: str, **values: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        env = doc["services"][service]["environment"]
        for key, value in values.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value

    return mutate


def _command(service: str, command: list[str]) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        doc["services"][service]["command"] = command

    return mutate


def _no_topics_wait(doc: dict[str, Any]) -> None:
    doc["services"]["worker-2"]["depends_on"].pop("topics")


def _rename_redis(doc: dict[str, Any]) -> None:
    doc["services"]["cache"] = doc["services"].pop("redis")
    for svc in doc["services"].values():
        deps = svc.get("depends_on")
        if isinstance(deps, dict) and "redis" in deps:
            deps["cache"] = deps.pop("redis")


def _nginx_misses_an_edge(doc: dict[str, Any]) -> None:
    doc["services"]["edge-3"] = copy.deepcopy(doc["services"]["edge-2"])
    doc["services"]["edge-3"]["environment"]["CHAT_EDGE_SLOT"] = "2"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            _env("sink", CHAT_SINK_METRIC_PORT="6070"),
            "sink: CHAT_SINK_METRIC_PORT is not a setting",
        ),
        (_env("edge-2", CHAT_EDGE_SLOT="0"), "edge-2: CHAT_EDGE_SLOT 0 also used by edge-1"),
        (_env("edge-2", CHAT_EDGE_SLOT="8"), "edge-2: settings rejected: CHAT_EDGE_SLOT=8"),
        (_env("edge-2", CHAT_EDGE_SLOT="-1"), "edge-2: CHAT_EDGE_SLOT -1 outside 0..7"),
        (_env("edge-1", CHAT_EDGE_SLOT=None), "edge-1: no fixed CHAT_EDGE_SLOT"),
        (_env("edge-1", CHAT_EDGE_HOST="127.0.0.1"), "edge-1: CHAT_EDGE_HOST must be 0.0.0.0"),
        (_env("edge-1", CHAT_EDGE_PORT="eighty"), "edge-1: settings rejected"),
        (_env("worker-1", CHAT_KAFKA_BOOTSTRAP="broker:9092"), "points at {'broker'}, not kafka"),
        (
            _env("worker-1", CHAT_MONGO_URL="mongodb://localhost:27017/"),
            "CHAT_MONGO_URL does not point at the mongo service",
        ),
        (
            _env("worker-1", CHAT_JWT_SECRET="hard-coded"),
            "worker-1: CHAT_JWT_SECRET must be required",
        ),
        (_env("worker-1", CHAT_WORKER_WEB_PORT=None), "worker-1: CHAT_WORKER_WEB_PORT not set"),
        (_command("sink", ["mongo-sink"]), "sink: unknown role 'mongo-sink'"),
        (_command("topics", ["worker"]), "expected one topics job"),
        (_no_topics_wait, "worker-2: does not wait for topics to complete successfully"),
        (_rename_redis, "CHAT_REDIS_URL does not point at the cache service"),
        (_nginx_misses_an_edge, "nginx: does not wait for edge-3 to be healthy"),
        (_nginx_misses_an_edge, "nginx upstream"),
    ],
)
def test_app_check_rejects_broken_copies(
    mutate: Callable[[dict[str, Any]], None],
    expected: str,
) -> None:
    doc = unshared_compose_doc()
    mutate(doc)
    problems = app_problems(doc)
    assert any(expected in p for p in problems), problems


def test_published_ports_syntaxes() -> None:
    svc = {
        "ports": [
            "8000:80",
            "127.0.0.1:9090:9090/tcp",
            "6000",
            "7000-7001:70-71",
            {"target": 80, "published": "8443"},
            {"target": 81},
        ]
    }
    assert published_ports(svc) == [8000, 9090, 7000, 7001, 8443]


def test_interpolation() -> None:
    env = {"A": "a", "E": ""}
    assert interpolate("$A ${A} ${B:-b} ${E:-e} ${E-e} $$A ${A:?x}", env) == "a a b e  $A a"
    with pytest.raises(InterpolationError, match="need B"):
        interpolate("${B:?need B}", env)


# =========================================================================== tests: Dockerfile


def test_dockerfile() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text(), dockerignore_patterns()) == []


def test_dockerignore_keeps_host_builds_out() -> None:
    patterns = dockerignore_patterns()
    for path in (
        "web/node_modules",
        "web/dist",
        ".venv",
        ".git",
        ".data",
        "chat-worker-data",
        "chat/__pycache__/x.pyc",
    ):
        assert ignored(path, patterns), path
    for path in (
        "web/package.json",
        "web/package-lock.json",
        "web/src",
        "chat/settings.py",
        "pyproject.toml",
        "ops/topics.py",
        "ops/docker-entrypoint.sh",
    ):
        assert not ignored(path, patterns), path


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "COPY --from=web ",
            "COPY --from=frontend ",
            "COPY --from=frontend: no such earlier stage",
        ),
        ("USER 10001:10001", "USER root", "does not run as uid 10001"),
        ("CHAT_WEB_DIST=/app/web/dist", "CHAT_WEB_DIR=/app/web/dist", "ENV CHAT_WEB_DIR is not a"),
        ('CMD ["edge"]', 'CMD ["server"]', "is not one role"),
        ("RUN npm ci --no-audit --no-fund", "RUN npm install", "web stage does not run npm ci"),
        ("COPY tables/ tables/", "COPY tabels/ tables/", "COPY source tabels/ does not exist"),
        (
            'ENTRYPOINT ["/app/ops/docker-entrypoint.sh"]',
            "ENTRYPOINT /app/ops/docker-entrypoint.sh",
            "ENTRYPOINT missing or not in exec form",
        ),
        ("FROM node:20-slim AS web", "FROM node:18 AS web", "first stage is node:18"),
    ],
)
def test_dockerfile_check_rejects_broken_copies(old: str, new: str, expected: str) -> None:
    text = DOCKERFILE.read_text()
    assert old in text
    problems = dockerfile_problems(text.replace(old, new), dockerignore_patterns())
    assert any(expected in p for p in problems), problems


def test_dockerfile_check_rejects_ignored_sources() -> None:
    problems = dockerfile_problems(DOCKERFILE.read_text(), [*dockerignore_patterns(), "sinks"])
    assert "COPY source sinks/ is excluded by .dockerignore" in problems


# =========================================================================== tests: entry point


def test_entrypoint_roles_are_runnable_modules() -> None:
    text = ENTRYPOINT.read_text()
    assert entrypoint_roles(text) == {
        "edge": "edge",
        "worker": "topologies",
        "sink": "sinks",
        "topics": "ops.topics",
        "chatctl": "ops.chatctl",
    }
    assert role_problems(text) == []


def test_entrypoint_check_rejects_a_missing_module() -> None:
    text = ENTRYPOINT.read_text().replace("module=sinks ", "module=sinks_gone ")
    assert "role sink: module sinks_gone not found" in role_problems(text)
    text = ENTRYPOINT.read_text().replace("  topics)   module=ops.topics ;;\n", "")
    assert "role topics missing" in role_problems(text)


def test_entrypoint_script_is_valid_sh() -> None:
    text = ENTRYPOINT.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert ENTRYPOINT.stat().st_mode & stat.S_IXUSR, "ops/docker-entrypoint.sh is not executable"
    subprocess.run(["sh", "-n", str(ENTRYPOINT)], check=True)
    assert 'exec python -m "$module" "$@"' in text


def test_entrypoint_healthcheck_probes_each_role_on_its_setting() -> None:
    source = healthcheck_source(ENTRYPOINT.read_text())
    compile(source, "healthcheck", "exec")
    ports = dict(
        (m, (env, default))
        for m, env, default in re.findall(r'"(\w+)": \("(CHAT_\w+)", "(\d+)"\)', source)
    )
    roles = entrypoint_roles(ENTRYPOINT.read_text())
    assert set(ports) == {roles["edge"], roles["worker"], roles["sink"]}
    for env, default in ports.values():
        assert env in SETTING_NAMES
        assert int(default) == getattr(DEFAULTS, env.removeprefix("CHAT_").lower())
    assert "/healthz" in source and "urllib.request" in source


# =========================================================================== tests: nginx


def test_nginx_template_has_both_edges_and_the_upgrade() -> None:
    template = NGINX_TEMPLATE.read_text()
    assert set(_TEMPLATE_VAR.findall(template)) == set(NGINX_COMPOSE_VARS)
    tree = parse_nginx(template)
    assert nginx_upstream_servers(tree) == ["${EDGE_A}", "${EDGE_B}"]
    for name in NGINX_COMPOSE_VARS:  # only the braced form, so envsubst and render agree
        assert not re.search(rf"\${name}\b", template), name
    assert nginx_problems(template) == []


def test_nginx_conf_is_the_template_rendered_for_compose() -> None:
    rendered = render_nginx(NGINX_TEMPLATE.read_text(), NGINX_COMPOSE_VARS)
    assert NGINX_CONF.read_text() == rendered, (
        "ops/nginx/nginx.conf is stale: render the template with " + repr(NGINX_COMPOSE_VARS)
    )
    assert nginx_problems(rendered) == []
    assert nginx_upstream_servers(parse_nginx(rendered)) == ["edge-1:8080", "edge-2:8080"]


def test_nginx_local_variant(tmp_path: Path) -> None:
    values = {
        "LISTEN": "127.0.0.1:8000",
        "EDGE_A": "127.0.0.1:8080",
        "EDGE_B": "127.0.0.1:8081",
        "RUN_DIR": str(tmp_path),
    }
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx(NGINX_TEMPLATE.read_text(), values))
    text = conf.read_text()
    assert "${" not in text
    assert nginx_problems(text) == []
    assert nginx_upstream_servers(parse_nginx(text)) == ["127.0.0.1:8080", "127.0.0.1:8081"]
    nginx = shutil.which("nginx")
    if nginx is None:
        return  # no nginx binary here: the text checks above are all that can run
    result = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", f"{tmp_path}/", "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "proxy_set_header Connection $connection_upgrade;",
            "",
            "proxy_set_header Connection $connection_upgrade missing",
        ),
        (
            "proxy_set_header Upgrade $http_upgrade;",
            "proxy_set_header Upgrade websocket;",
            "proxy_set_header Upgrade $http_upgrade missing",
        ),
        ("proxy_http_version 1.1;", "", "proxy_http_version 1.1 missing"),
        ("least_conn;", "ip_hash;", "upstream chat_edges: not least_conn"),
        (
            "proxy_read_timeout 90s;",
            "proxy_read_timeout 30s;",
            "proxy_read_timeout must be at least",
        ),
        ("server ${EDGE_B} max_fails=3 fail_timeout=10s;", "", "fewer than two servers"),
        ("default upgrade;", "default close;", "no map $http_upgrade $connection_upgrade"),
        ("events {", "#events {", "syntax: unexpected }"),
        ("proxy_pass http://chat_edges;", "proxy_pass http://edges;", "does not proxy_pass"),
        ("proxy_buffering off;\n        }", "proxy_buffering off;\n", "syntax: missing }"),
        ("keepalive 32;", "keepalive 32", "syntax: directive 'keepalive' not ended with ;"),
    ],
)
def test_nginx_check_rejects_broken_templates(old: str, new: str, expected: str) -> None:
    template = NGINX_TEMPLATE.read_text()
    assert old in template
    problems = nginx_problems(template.replace(old, new, 1))
    assert any(expected in p for p in problems), problems


def test_nginx_render_refuses_missing_values() -> None:
    values = {k: v for k, v in NGINX_COMPOSE_VARS.items() if k != "EDGE_B"}
    with pytest.raises(KeyError, match="EDGE_B"):
        render_nginx(NGINX_TEMPLATE.read_text(), values)
