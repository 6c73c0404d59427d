"""The Kubernetes manifests (ops/k8s), the Prometheus config and alert rules and the Grafana
dashboard (ops/compose), and docs/operations.md, checked offline.

- Every overlay is rendered with kustomize and every object is validated against the strict
  Kubernetes schemas ``kubernetes-validate`` ships (unknown fields are errors), for the oldest
  Kubernetes the manifests support (1.28: the pod-index label) and the newest one it ships.
- ``promtool check config``, ``check rules`` and ``check metrics`` validate the Prometheus
  files and the names of the metrics the code exports.
- Then what only this project knows: the CHAT_* settings the manifests set exist and load, the
  probes and scrape annotations hit each role's port setting, scaling stays within the
  partition counts, every metric a rule or panel names is exported by the code (or is one of
  the external ones below), runbook links point at headings of docs/operations.md.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import kubernetes_validate
import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest

from chat.settings import Settings, load_settings
from edge.auth import TokenVerifier
from tests.deploy_tools import tool

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "ops" / "k8s"
OVERLAYS = {"dev": "chat-dev", "production": "chat"}  # overlay -> namespace
KUBERNETES_VERSIONS = ("1.28", kubernetes_validate.latest_version())
DASHBOARD = ROOT / "ops" / "compose" / "grafana" / "dashboards" / "chat.json"
ALERTS = ROOT / "ops" / "compose" / "prometheus" / "alerts.yml"
PROMETHEUS = ROOT / "ops" / "compose" / "prometheus.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
METRIC_PACKAGES = ("edge", "topologies", "sinks", "media", "chat")

SETTING_NAMES = {f"CHAT_{f.name.upper()}" for f in fields(Settings)}
PROJECT_UID = int(re.findall(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.M)[-1])
ROLES = {"edge", "worker", "sink", "media", "topics"}  # the image roles that run as workloads
PORT_SETTING = {"edge": "edge_port", "worker": "worker_web_port", "sink": "sink_metrics_port"}
PORT_SETTING["media"] = "media_processor_port"
SHARED_SETTINGS = ("kafka_bootstrap", "topic_prefix", "worker_app_id", "sink_group")
SHARED_SETTINGS += ("conversation_partitions", "user_partitions", "deliver_partitions")
POD_INDEX = "metadata.labels['apps.kubernetes.io/pod-index']"
MIN_LB_IDLE_TIMEOUT_S = 75  # above the edges' ping interval, with room
# Values of the Secrets production only refers to (created out of band, docs/operations.md).
EXTERNAL_SECRET_VALUES = {
    "CHAT_JWT_SECRET": "x" * 48,
    "CHAT_REDIS_URL": "rediss://chat:pw@redis.internal.example:6379/0",
    "CHAT_MONGO_URL": "mongodb+srv://chat:pw@mongo.internal.example/",
    "CHAT_KAFKA_SASL_USERNAME": "chat",
    "CHAT_KAFKA_SASL_PASSWORD": "x" * 32,
}
# Metrics named in PromQL that the code does not export, and where they come from.
EXTERNAL_METRICS = {
    "up": "Prometheus itself",
    "kafka_consumergroup_lag": "kafka-exporter",
    "kube_pod_status_ready": "kube-state-metrics",
}
GRAFANA_BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}

Doc = dict[str, Any]


# =========================================================================== rendering


def render(path: Path) -> list[Doc]:
    result = subprocess.run(
        [str(tool("kustomize")), "build", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d is not None]


@functools.cache
def _rendered(overlay: str) -> str:
    return json.dumps(render(K8S / "overlays" / overlay))


def rendered(overlay: str) -> list[Doc]:
    """A private copy of the overlay's objects (rendered once per session)."""
    docs: list[Doc] = json.loads(_rendered(overlay))
    return docs


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d.get("kind") == kind]


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    (doc,) = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    return doc


def workloads(docs: list[Doc]) -> list[Doc]:
    return [d for d in docs if d.get("kind") in {"Deployment", "StatefulSet", "Job"}]


def schema_errors(docs: list[Doc], version: str) -> list[str]:
    problems = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(map(str, exc.path))
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at /{path}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: no schema (a CRD?)")
    return problems


# =========================================================================== kubernetes


def test_every_overlay_and_component_is_rendered() -> None:
    assert {p.name for p in (K8S / "overlays").iterdir() if p.is_dir()} == set(OVERLAYS)
    used = {
        (K8S / "overlays" / overlay / ref).resolve()
        for overlay in OVERLAYS
        for ref in yaml.safe_load(
            (K8S / "overlays" / overlay / "kustomization.yaml").read_text()
        ).get("components", [])
    }
    assert {p.resolve() for p in (K8S / "components").iterdir() if p.is_dir()} == used


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_overlay_is_valid_kubernetes(overlay: str, version: str) -> None:
    docs = rendered(overlay)
    assert find(docs, "Namespace", OVERLAYS[overlay])
    assert schema_errors(docs, version) == []
    others = [d for d in docs if d["kind"] != "Namespace"]
    assert {d["metadata"].get("namespace") for d in others} == {OVERLAYS[overlay]}


def test_validators_catch_mistakes(tmp_path: Path) -> None:
    docs = rendered("production")
    container = find(docs, "StatefulSet", "chat-edge")["spec"]["template"]["spec"]
    container["containers"][0]["readinessprobe"] = {"httpGet": {"path": "/readyz"}}
    find(docs, "Deployment", "chat-sink")["spec"]["replicas"] = "two"
    errors = "\n".join(schema_errors(docs, KUBERNETES_VERSIONS[0]))
    assert "'readinessprobe' was unexpected" in errors
    assert "'two' is not of type 'integer'" in errors
    shutil.copytree(K8S, tmp_path / "k8s")
    (tmp_path / "k8s" / "base" / "sink.yaml").unlink()
    with pytest.raises(AssertionError, match=re.escape("sink.yaml")):
        render(tmp_path / "k8s" / "overlays" / "production")


def container_settings(docs: list[Doc], container: Doc) -> tuple[dict[str, str], Settings]:
    """The CHAT_* environment a container gets (Secrets that are not rendered stand for real
    values), and the settings the process would load from it (edge slot 0)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= find(docs, "ConfigMap", source["configMapRef"]["name"])["data"]
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif "secretKeyRef" in var.get("valueFrom", {}):
            env[var["name"]] = EXTERNAL_SECRET_VALUES.get(var["name"], "x" * 48)
    chat = {k: v for k, v in env.items() if k.startswith("CHAT_")}
    unknown = set(chat) - SETTING_NAMES
    assert not unknown, f"{container['name']}: {sorted(unknown)} are not settings"
    return chat, load_settings({**EXTERNAL_SECRET_VALUES, **chat, "CHAT_EDGE_SLOT": "0"})


def project_containers(docs: list[Doc]) -> Iterator[tuple[Doc, Doc, str]]:
    """(workload, container, role) of every container that runs the project's image."""
    for w in workloads(docs):
        for c in w["spec"]["template"]["spec"]["containers"]:
            if c["image"].split("@")[0].rsplit(":", 1)[0].endswith("kchat"):
                yield w, c, c["args"][0]


def port_number(container: Doc, port: Any) -> int:
    return next(
        p["containerPort"] for p in container["ports"] if port in (p["containerPort"], p["name"])
    )


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_manifests_match_the_settings(overlay: str) -> None:
    docs = rendered(overlay)
    roles = set()
    shared = set()  # what every process must agree on (docs/operations.md, "Configuration")
    pods = [w["spec"]["template"]["spec"] for w in workloads(docs)]
    env_names = {v["name"] for pod in pods for c in pod["containers"] for v in c.get("env", [])}
    assert {n for n in env_names if n.startswith("CHAT_")} <= SETTING_NAMES
    for w, c, role in project_containers(docs):
        where = f"{w['metadata']['name']}/{c['name']}"
        roles.add(role)
        assert role in ROLES and not c.get("command"), where
        env, settings = container_settings(docs, c)
        shared.add(tuple(getattr(settings, name) for name in SHARED_SETTINGS))
        assert (overlay == "dev") == settings.is_dev, where
        for backend in ("CHAT_KAFKA_BOOTSTRAP", "CHAT_REDIS_URL", "CHAT_MONGO_URL"):
            assert "127.0.0.1" not in env.get(backend, "") and "localhost" not in env.get(
                backend, ""
            ), where
        pod = w["spec"]["template"]["spec"]
        security = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
        assert security["runAsUser"] == PROJECT_UID and security["runAsNonRoot"], where
        assert security["readOnlyRootFilesystem"], where
        if role == "topics":
            continue
        port = getattr(settings, PORT_SETTING[role])
        annotations = w["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port), where
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", where
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", where
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            if probe in c:
                assert port_number(c, c[probe]["httpGet"]["port"]) == port, (where, probe)
        if role == "edge":
            slot = next(v for v in c["env"] if v["name"] == "CHAT_EDGE_SLOT")
            assert slot["valueFrom"]["fieldRef"]["fieldPath"] == POD_INDEX, where
            assert w["kind"] == "StatefulSet", where
            assert w["spec"]["replicas"] <= settings.deliver_partitions, where
            assert settings.edge_host == "0.0.0.0", where
            TokenVerifier(settings)  # the edge would start with this configuration
        else:
            assert settings.metrics_host == "0.0.0.0", where  # probes and Prometheus reach it
        if role == "worker":  # Faust's data directory, on a volume (the root fs is read-only)
            mounts = [m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")]
            assert any(settings.worker_data_dir.startswith(m) for m in mounts), where
        for hpa in by_kind(docs, "HorizontalPodAutoscaler"):
            if hpa["spec"]["scaleTargetRef"]["name"] != w["metadata"]["name"]:
                continue
            assert "replicas" not in w["spec"], f"{where}: would fight the HPA"
            bound = min(settings.conversation_partitions, settings.user_partitions)
            assert hpa["spec"]["maxReplicas"] <= bound, f"{where}: workers beyond partitions"
            for metric in hpa["spec"]["metrics"]:
                if metric["type"] == "External":
                    labels = metric["external"]["metric"]["selector"]["matchLabels"]
                    assert labels["consumergroup"] == settings.worker_app_id, where
    assert roles == ROLES
    assert len(shared) == 1, f"processes disagree: {shared}"


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_pods_meet_the_restricted_pod_security_standard(overlay: str) -> None:
    """The namespaces enforce the "restricted" Pod Security Standard at admission: its rules,
    checked before an apply would be refused; plus no API token and no service links."""
    docs = rendered(overlay)
    namespace = find(docs, "Namespace", OVERLAYS[overlay])
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for w in workloads(docs):
        pod = w["spec"]["template"]["spec"]
        where = w["metadata"]["name"]
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), where
        assert not any("hostPath" in v for v in pod.get("volumes", [])), where
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["enableServiceLinks"] is False, where
        for c in pod.get("initContainers", []) + pod["containers"]:
            sc = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
            assert sc.get("runAsNonRoot") is True and sc.get("runAsUser") != 0, (where, c["name"])
            assert not sc.get("privileged") and sc.get("allowPrivilegeEscalation") is False
            assert "ALL" in sc["capabilities"]["drop"], (where, c["name"])
            assert set(sc["capabilities"].get("add", [])) <= {"NET_BIND_SERVICE"}
            assert sc["seccompProfile"]["type"] in ("RuntimeDefault", "Localhost"), where
            assert "memory" in c["resources"]["limits"], (where, c["name"])


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_selectors_select_pods(overlay: str) -> None:
    """What the schemas cannot see: a Service, PodDisruptionBudget or workload selector that
    matches no pod template."""
    docs = rendered(overlay)
    pods = {
        w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"] for w in workloads(docs)
    }

    def selected(selector: dict[str, str]) -> list[str]:
        return [n for n, labels in pods.items() if selector.items() <= labels.items()]

    for w in by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet"):
        assert w["metadata"]["name"] in selected(w["spec"]["selector"]["matchLabels"])
    for svc in by_kind(docs, "Service"):
        assert selected(svc["spec"]["selector"]), svc["metadata"]["name"]
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        assert len(selected(pdb["spec"]["selector"]["matchLabels"])) == 1, pdb["metadata"]["name"]
    for hpa in by_kind(docs, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in pods


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_ingress_keeps_websockets_open(overlay: str) -> None:
    for ing in by_kind(rendered(overlay), "Ingress"):
        annotations = ing["metadata"].get("annotations", {})
        if ing["spec"]["ingressClassName"] == "alb":
            attrs = annotations["alb.ingress.kubernetes.io/load-balancer-attributes"]
            timeout = re.search(r"idle_timeout\.timeout_seconds=(\d+)", attrs)
            assert timeout and int(timeout[1]) >= MIN_LB_IDLE_TIMEOUT_S
        elif "metrics" not in ing["metadata"]["name"]:
            for key in ("proxy-read-timeout", "proxy-send-timeout"):
                value = annotations[f"nginx.ingress.kubernetes.io/{key}"]
                assert int(value) >= MIN_LB_IDLE_TIMEOUT_S, (ing["metadata"]["name"], key)


def test_dev_runs_the_images_compose_runs() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    compose_images = {s["image"] for s in compose["services"].values() if "image" in s}
    for w in workloads(rendered("dev")):
        for c in w["spec"]["template"]["spec"]["containers"]:
            assert c["image"] in compose_images or "kchat" in c["image"], c["image"]


# =========================================================================== prometheus


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(tool("promtool")), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_configs_and_rules(tmp_path: Path) -> None:
    # docs/operations.md's scrape configuration for Kubernetes, and the compose one.
    blocks = re.findall(r"```yaml\n(.*?)```", OPERATIONS.read_text(), re.S)
    (tmp_path / "k8s.yml").write_text(next(b for b in blocks if "scrape_configs:" in b))
    for config in (PROMETHEUS, tmp_path / "k8s.yml"):
        result = promtool("check", "config", "--syntax-only", str(config))
        assert result.returncode == 0, result.stdout + result.stderr
    result = promtool("check", "rules", "--lint=all", "--lint-fatal", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_catches_mistakes(tmp_path: Path) -> None:
    broken = tmp_path / "alerts.yml"
    broken.write_text(ALERTS.read_text().replace("for: 1m", "for: 1 minute", 1))
    result = promtool("check", "rules", str(broken))
    assert result.returncode != 0 and "1 minute" in result.stdout + result.stderr


@functools.cache
def exported_series() -> dict[str, str]:
    """Series name -> metric type, for everything the code registers with prometheus_client
    (the default process/platform/gc collectors included)."""
    for package in METRIC_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name != "__main__.py" and "prometheus_client" in path.read_text():
                module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
                importlib.import_module(module.removesuffix(".__init__"))
    out = {}
    for family in REGISTRY.collect():
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("", "_sum", "_count", "_created"),
        }.get(family.type, ("",))
        out |= {family.name + s: family.type for s in suffixes}
        out |= {s.name: family.type for s in family.samples}
    return out


@functools.cache
def code_metrics() -> frozenset[str]:
    """The names the code declares its metrics with (counters with their _total)."""
    exported_series()
    return frozenset(
        f.name + ("_total" if f.type == "counter" else "")
        for f in REGISTRY.collect()
        if f.name.startswith("chat_")
    )


def selectors(expr: str) -> Iterator[tuple[str, str | None]]:
    """(metric name, enclosing function) of every vector selector of a PromQL expression."""
    stack: list[tuple[Any, str | None]] = [(promql_parser.parse(expr), None)]
    while stack:
        node, func = stack.pop()
        if isinstance(node, promql_parser.VectorSelector):
            yield str(node.name), func
        elif isinstance(node, promql_parser.MatrixSelector):
            stack.append((node.vector_selector, func))
        elif isinstance(node, promql_parser.Call):
            stack += [(a, node.func.name) for a in node.args]
        elif isinstance(node, promql_parser.AggregateExpr):
            stack += [(n, None) for n in (node.expr, node.param) if n is not None]
        elif isinstance(node, promql_parser.BinaryExpr):
            stack += [(node.lhs, None), (node.rhs, None)]
        elif isinstance(node, promql_parser.SubqueryExpr | promql_parser.ParenExpr):
            stack.append((node.expr, func))
        elif isinstance(node, promql_parser.UnaryExpr):
            stack.append((node.expr, func))


def metric_problems(expr: str, where: str) -> list[str]:
    problems = []
    jobs = {j["job_name"] for j in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]}
    for op, job in re.findall(r'\bjob\s*(=~|=)\s*"([^"]*)"', expr):
        if not any(re.fullmatch(job, j) if op == "=~" else job == j for j in jobs):
            problems.append(f"{where}: job {job!r} is none of the scrape jobs {sorted(jobs)}")
    for name, func in selectors(expr):
        kind = exported_series().get(name)
        if kind is None and name not in EXTERNAL_METRICS:
            problems.append(f"{where}: {name} is not exported by the code")
        elif func in {"rate", "irate", "increase"} and kind == "gauge":
            problems.append(f"{where}: {func}() over the gauge {name}")
    return problems


def test_promtool_accepts_the_exported_metrics() -> None:
    """Prometheus's naming lint (base units, _total on counters, help text) over what the code
    registers."""
    exported_series()
    exposition = generate_latest(REGISTRY).decode()
    assert "# TYPE chat_edge_connections gauge" in exposition
    result = subprocess.run(
        [str(tool("promtool")), "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def alert_rules() -> list[Doc]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_alerts_use_exported_metrics_and_link_runbooks() -> None:
    anchors = {slug(m[1]) for m in re.finditer(r"^#+ (.+)$", OPERATIONS.read_text(), re.M)}
    problems = []
    for rule in alert_rules():
        where = f"alert {rule['alert']}"
        problems += metric_problems(rule["expr"], where)
        page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        if page != "docs/operations.md" or anchor not in anchors:
            problems.append(f"{where}: runbook_url is no heading of docs/operations.md")
        if rule["labels"]["severity"] not in {"critical", "warning"}:
            problems.append(f"{where}: severity {rule['labels']['severity']}")
    assert problems == []
    assert metric_problems('rate(chat_edge_connections[5m]) + up{job="edge"}', "x") == [
        "x: job 'edge' is none of the scrape jobs "
        "['chat-edge', 'chat-media', 'chat-sink', 'chat-worker']",
        "x: rate() over the gauge chat_edge_connections",
    ]
    assert metric_problems("chat_edge_sessions", "x") == [
        "x: chat_edge_sessions is not exported by the code"
    ]


def panels(dashboard: Doc) -> Iterator[Doc]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def grafana_expr(expr: str, variables: set[str]) -> tuple[str, list[str]]:
    """Grafana's built-in interval variables substituted; other $names must be variables."""
    undefined = [f"${m[1] or m[2]} is not a variable" for m in re.finditer(_GRAFANA_VAR, expr)
                 if (m[1] or m[2]) not in {*GRAFANA_BUILTINS, *variables}]  # fmt: skip
    text = re.sub(_GRAFANA_VAR, lambda m: GRAFANA_BUILTINS.get(m[1] or m[2], ".*"), expr)
    return text, undefined


_GRAFANA_VAR = r"\$\{(\w+)\}|\$(\w+)"


def test_dashboard_shows_every_exported_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    used: set[str] = set()
    problems = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            where = f"panel {panel['title']!r} {target['refId']}"
            expr, undefined = grafana_expr(target["expr"], variables)
            problems += [f"{where}: {p}" for p in undefined]
            problems += metric_problems(expr, where)
            used |= {re.sub(r"_(bucket|sum|count)$", "", name) for name, _ in selectors(expr)}
    assert problems == []
    assert grafana_expr("rate(x[$__rate_interval]) > $limit", {"limit"})[1] == []
    assert grafana_expr("rate(x[$window])", set())[1] == ["$window is not a variable"]
    unused = code_metrics() - used
    assert not unused, f"metrics on no panel: {sorted(unused)}"


# =========================================================================== docs


def test_operations_doc_covers_metrics_and_alerts() -> None:
    text = OPERATIONS.read_text()
    for name in sorted(code_metrics() | set(EXTERNAL_METRICS)):
        assert name in text, f"docs/operations.md does not explain {name}"
    for rule in alert_rules():
        assert rule["alert"] in text, f"docs/operations.md does not list {rule['alert']}"
    for path in set(re.findall(r"\bops/[\w./-]*\w", text)):
        assert (ROOT / path).exists(), f"docs/operations.md names {path}, which does not exist"
