"""The Kubernetes manifests (ops/k8s), the Grafana dashboard and the Prometheus alert rules
(ops/compose) and docs/operations.md, checked offline.

- Every overlay is rendered with kustomize (a pinned version, installed with ``go install`` into
  the cache outside the clone when missing) and every object is validated against the strict
  Kubernetes JSON schemas shipped by the ``kubernetes-validate`` package (unknown fields are
  errors), for the oldest supported Kubernetes (1.28: the pod-index label) and the newest one
  the package ships.
- Project rules run on the rendered objects: images, CHAT_* settings (every key a real setting,
  every process's settings accepted by ``chat.settings.load_settings``), probes, ports, drain,
  scaling bounds against the partition counts, selectors, security context, Ingress settings.
- PromQL of the dashboard and the rules is parsed (``promql-parser``) and every metric it names
  must be exported by the code (names found in the Counter/Gauge/Histogram calls, cross-checked
  with prometheus_client's registry), be a prometheus_client default metric, or be one of the
  external metrics listed below.

Each check is a function returning a list of problems, so the tests also show that it rejects a
broken copy.
"""

from __future__ import annotations

import ast
import base64
import copy
import functools
import importlib
import importlib.resources
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from referencing import Registry, Resource

from chat.settings import Settings, SettingsError, load_settings
from edge.auth import TokenVerifier

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "ops" / "k8s"
OVERLAYS = {"dev": "chat-dev", "production": "chat"}  # overlay -> namespace
DASHBOARD = ROOT / "ops" / "compose" / "grafana" / "dashboards" / "chat.json"
DASHBOARD_PROVIDERS = ROOT / "ops" / "compose" / "grafana" / "provisioning" / "dashboards"
GRAFANA_DASHBOARDS_PATH = "/etc/grafana/dashboards"
ALERTS = ROOT / "ops" / "compose" / "prometheus" / "alerts.yml"
PROMETHEUS = ROOT / "ops" / "compose" / "prometheus.yml"
PROMETHEUS_RULES_PATH = "/etc/prometheus/rules"
OPERATIONS = ROOT / "docs" / "operations.md"
COMPOSE = ROOT / "docker-compose.yml"
METRIC_SOURCES = ("edge", "topologies", "sinks", "chat")

KUSTOMIZE_VERSION = "v5.7.1"
CACHE_DIR = Path(os.environ.get("CHAT_CACHE_DIR") or Path.home() / ".cache" / "kchat")
KUSTOMIZE = CACHE_DIR / "bin" / f"kustomize-{KUSTOMIZE_VERSION}" / "kustomize"
OLDEST_KUBERNETES = "1.28"

SETTING_NAMES = {f"CHAT_{f.name.upper()}" for f in fields(Settings)}
DEFAULTS = Settings()
PROJECT_UID = int(re.findall(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.M)[-1])
# Roles of the image (ops/docker-entrypoint.sh) that run as workloads, by component label.
ROLE_OF_COMPONENT = {"edge": "edge", "worker": "worker", "sink": "sink", "topics": "topics"}
LONG_RUNNING = {"edge", "worker", "sink"}
WORKLOAD_KIND = {
    "edge": "StatefulSet",
    "worker": "Deployment",
    "sink": "Deployment",
    "topics": "Job",
}
# The port setting each long-running role serves /healthz, /readyz and /metrics on.
PORT_SETTING = {"edge": "edge_port", "worker": "worker_web_port", "sink": "sink_metrics_port"}
# The backends each role connects to: they must be set explicitly (the defaults are loopback).
BACKENDS = {
    "edge": ("kafka_bootstrap", "redis_url", "mongo_url"),
    "worker": ("kafka_bootstrap", "redis_url"),
    "sink": ("kafka_bootstrap", "mongo_url"),
    "topics": ("kafka_bootstrap",),
}
POD_INDEX_FIELD = "metadata.labels['apps.kubernetes.io/pod-index']"
# Third-party images, allowed in the dev overlay only: the same ones docker-compose.yml runs.
THIRD_PARTY = {"apache/kafka", "redis", "mongo"}
# Secrets an overlay refers to without rendering them: created out of band (docs/operations.md).
# A key mapped to None may be absent (optional refs); the others stand for real values here.
EXTERNAL_SECRETS: dict[str, dict[str, dict[str, str | None]]] = {
    "dev": {},
    "production": {
        "chat-jwt": {"jwt-secret": "x" * 48, "jwt-public-key": None},
        "chat-backends": {
            "CHAT_REDIS_URL": "rediss://chat:password@redis.internal.example:6379/0",
            "CHAT_MONGO_URL": "mongodb+srv://chat:password@mongo.internal.example/",
        },
        "chat-kafka": {"CHAT_KAFKA_SASL_USERNAME": "chat", "CHAT_KAFKA_SASL_PASSWORD": "x" * 32},
        "chat-kafka-ca": {"ca.crt": "-----BEGIN CERTIFICATE-----"},
    },
}
# Metrics named in PromQL that the code does not export, and where they come from.
EXTERNAL_METRICS = {
    "up": "Prometheus itself: 1 when the last scrape of a target succeeded",
    "kafka_consumergroup_lag": "kafka-exporter: records behind, per consumergroup/topic/partition",
    "kube_pod_status_ready": "kube-state-metrics: pod readiness condition",
}
# The HPA's External metrics (served by prometheus-adapter from the Prometheus series above).
HPA_EXTERNAL_METRICS = {"kafka_consumergroup_lag"}
# The Prometheus jobs the rules and dashboard select: chat-<component label>.
JOBS = {f"chat-{c}" for c in LONG_RUNNING}
# Labels Prometheus attaches to every scraped series (static configs and the k8s scrape config).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container"}
MIN_LB_IDLE_TIMEOUT_S = 75
GRAFANA_BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
REQUIRED_ALERTS = {
    "ChatEdgeDown",
    "ChatReadinessFailing",
    "ChatConsumerLagGrowing",
    "ChatSinkRetrying",
    "ChatEdgeErrorRate",
    "ChatAckLatencyHigh",
    "ChatKafkaProduceLatencyHigh",
}
RUNBOOKS = (
    "worker-killed",
    "edge-killed",
    "kafka-broker-restart",
    "mongodb-down",
    "redis-down",
    "replaying-and-rebuilding-state",
)

Doc = dict[str, Any]


# =========================================================================== kustomize


def kustomize() -> Path:
    """The pinned kustomize, installed with the Go toolchain into the cache when missing."""
    if KUSTOMIZE.is_file() and os.access(KUSTOMIZE, os.X_OK):
        return KUSTOMIZE
    go = shutil.which("go") or next(
        (p for p in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go") if os.access(p, os.X_OK)), None
    )
    if go is None:
        pytest.fail(f"kustomize {KUSTOMIZE_VERSION} is not in {KUSTOMIZE} and there is no Go")
    KUSTOMIZE.parent.parent.mkdir(parents=True, exist_ok=True)
    # Build into a private directory, then rename: concurrent runs never see half a binary.
    staging = Path(tempfile.mkdtemp(prefix=".kustomize-", dir=KUSTOMIZE.parent.parent))
    try:
        result = subprocess.run(
            [go, "install", f"sigs.k8s.io/kustomize/kustomize/v5@{KUSTOMIZE_VERSION}"],
            cwd=staging,
            env={**os.environ, "GOBIN": str(staging), "CGO_ENABLED": "0"},
            capture_output=True,
            text=True,
            timeout=1200,
        )
        if result.returncode != 0:
            pytest.fail(f"go install kustomize {KUSTOMIZE_VERSION} failed:\n{result.stderr}")
        KUSTOMIZE.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / "kustomize", KUSTOMIZE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return KUSTOMIZE


class RenderError(Exception):
    pass


def render(path: Path) -> list[Doc]:
    result = subprocess.run(
        [str(kustomize()), "build", str(path)], capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise RenderError(result.stderr.strip())
    return [d for d in yaml.safe_load_all(result.stdout) if d is not None]


@functools.cache
def _rendered(overlay: str) -> tuple[Doc, ...]:
    return tuple(render(K8S / "overlays" / overlay))


def rendered(overlay: str) -> list[Doc]:
    """A private copy of the overlay's objects (rendered once per session)."""
    return copy.deepcopy(list(_rendered(overlay)))


def kustomization(overlay: str) -> Doc:
    doc: Doc = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())
    return doc


def project_image(overlay: str) -> str:
    """The image the overlay's `images:` entry makes of `kchat`."""
    entries = [i for i in kustomization(overlay).get("images", []) if i["name"] == "kchat"]
    assert len(entries) == 1, f"{overlay}: one images entry for kchat expected"
    entry = entries[0]
    name = entry.get("newName", "kchat")
    if "digest" in entry:
        return f"{name}@{entry['digest']}"
    return f"{name}:{entry['newTag']}"


# =========================================================================== schemas


@functools.cache
def _schema_dirs() -> dict[str, Any]:
    root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    out = {}
    for d in root.iterdir():
        m = re.fullmatch(r"v(\d+)\.(\d+)\.\d+-local-strict", d.name)
        if m:
            out[f"{m[1]}.{m[2]}"] = d
    return out


def schema_versions() -> list[str]:
    versions = sorted(_schema_dirs(), key=lambda v: tuple(map(int, v.split("."))))
    assert OLDEST_KUBERNETES in versions, versions
    return [OLDEST_KUBERNETES, versions[-1]]


@functools.cache
def _definitions(version: str) -> Registry:
    contents = json.loads((_schema_dirs()[version] / "_definitions.json").read_text())
    registry: Registry = Resource.from_contents(contents) @ Registry()
    return registry


@functools.cache
def _validator(version: str, kind: str, api_version: str) -> jsonschema.Draft202012Validator | None:
    # rbac.authorization.k8s.io/v1 -> rbac-v1, apps/v1 -> apps-v1, v1 -> v1
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = _schema_dirs()[version] / f"{kind.lower()}-{group_version}.json"
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    return jsonschema.Draft202012Validator(schema, registry=_definitions(version))


def schema_problems(docs: list[Doc], version: str) -> list[str]:
    problems = []
    for doc in docs:
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        validator = _validator(version, str(doc.get("kind")), str(doc.get("apiVersion")))
        if validator is None:
            problems.append(
                f"{where}: no Kubernetes {version} schema for {doc.get('apiVersion')} "
                f"{doc.get('kind')} (a CRD needs its own check)"
            )
            continue
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            path = "/".join(str(p) for p in error.absolute_path)
            problems.append(f"{where}: schema {version}: {error.message} (at /{path})")
    return problems


# =========================================================================== object helpers


def name_of(doc: Doc) -> str:
    return str(doc["metadata"]["name"])


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d.get("kind") == kind]


def find(docs: list[Doc], kind: str, name: str) -> Doc | None:
    return next((d for d in by_kind(docs, kind) if name_of(d) == name), None)


def workloads(docs: list[Doc]) -> list[Doc]:
    kinds = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}
    return [d for d in docs if d.get("kind") in kinds]


def pod_spec(doc: Doc) -> Doc:
    spec: Doc = doc["spec"]["template"]["spec"]
    return spec


def pod_labels(doc: Doc) -> dict[str, str]:
    labels: dict[str, str] = doc["spec"]["template"].get("metadata", {}).get("labels", {})
    return labels


def component(doc: Doc) -> str | None:
    return pod_labels(doc).get("app.kubernetes.io/component")


def matches_map(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    """A Service's selector (a plain map) against pod labels."""
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against pod labels."""
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return False
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and labels.get(key) in values)
            or (op == "Exists" and key not in labels)
            or (op == "DoesNotExist" and key in labels)
        ):
            return False
    return True


def is_project_image(image: str, overlay: str) -> bool:
    return image == project_image(overlay)


def image_repository(image: str) -> str:
    name = image.split("@")[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    return name


def containers(doc: Doc) -> list[Doc]:
    spec = pod_spec(doc)
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


_QUANTITY = re.compile(r"^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_SCALE = {
    None: 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}


def quantity(value: Any) -> float:
    m = _QUANTITY.match(str(value))
    if not m:
        raise ValueError(f"not a quantity: {value!r}")
    return float(m[1]) * _SCALE[m[2]]


def port_number(container: Doc, port: Any) -> int | None:
    """A probe's or Service's port (number or name) as the container's port number."""
    for p in container.get("ports", []):
        if port == p["containerPort"] or port == p.get("name"):
            return int(p["containerPort"])
    return None


# =========================================================================== effective settings


@dataclass
class Env:
    """A container's CHAT_* environment as the kubelet would build it."""

    values: dict[str, str]
    field_refs: dict[str, str]
    problems: list[str]


def container_env(docs: list[Doc], overlay: str, container: Doc, where: str) -> Env:
    values: dict[str, str] = {}
    field_refs: dict[str, str] = {}
    problems: list[str] = []
    external = EXTERNAL_SECRETS[overlay]

    def secret_data(name: str) -> dict[str, str | None] | None:
        secret = find(docs, "Secret", name)
        if secret is not None:
            data = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
            return {**data, **secret.get("stringData", {})}
        return external.get(name)

    def config_data(name: str) -> dict[str, str | None] | None:
        config_map = find(docs, "ConfigMap", name)
        return None if config_map is None else dict(config_map.get("data", {}))

    for source in container.get("envFrom", []):
        kind, ref = (
            ("ConfigMap", source["configMapRef"])
            if "configMapRef" in source
            else ("Secret", source["secretRef"])
        )
        data = (config_data if kind == "ConfigMap" else secret_data)(ref["name"])
        if data is None:
            if not ref.get("optional"):
                problems.append(f"{where}: envFrom {kind} {ref['name']} not found")
            continue
        if source.get("prefix"):
            problems.append(f"{where}: envFrom {ref['name']} with a prefix")
        for key, value in data.items():
            if key not in SETTING_NAMES:
                problems.append(f"{where}: {kind} {ref['name']}: {key} is not a setting")
            if value is not None:
                values[key] = value
    for var in container.get("env", []):
        name = var["name"]
        if name.startswith("CHAT_") and name not in SETTING_NAMES:
            problems.append(f"{where}: env {name} is not a setting")
        if "value" in var:
            values[name] = str(var["value"])
            continue
        source = var.get("valueFrom", {})
        if "fieldRef" in source:
            field_refs[name] = source["fieldRef"]["fieldPath"]
            continue
        kind, ref = (
            ("ConfigMap", source["configMapKeyRef"])
            if "configMapKeyRef" in source
            else ("Secret", source.get("secretKeyRef"))
        )
        if ref is None:
            problems.append(f"{where}: env {name}: unsupported valueFrom {sorted(source)}")
            continue
        data = (config_data if kind == "ConfigMap" else secret_data)(ref["name"])
        if data is None or (ref["key"] not in data and not ref.get("optional")):
            missing = f"{kind} {ref['name']}" + ("" if data is None else f" key {ref['key']}")
            if data is None and ref.get("optional"):
                continue
            problems.append(f"{where}: env {name}: {missing} not found")
            continue
        if data.get(ref["key"]) is not None:
            values[name] = str(data[ref["key"]])
    return Env(values, field_refs, problems)


def settings_for(env: Env, where: str, **fields_from_refs: str) -> tuple[Settings | None, str]:
    environ = {k: v for k, v in env.values.items() if k.startswith("CHAT_")}
    environ.update(fields_from_refs)
    try:
        return load_settings(environ), ""
    except (SettingsError, ValueError, OSError) as exc:
        return None, f"{where}: settings rejected: {exc}"


# =========================================================================== project rules


def k8s_problems(docs: list[Doc], overlay: str) -> list[str]:
    problems: list[str] = []
    namespace = OVERLAYS[overlay]
    seen: set[tuple[str, str]] = set()
    for doc in docs:
        key = (doc["kind"], name_of(doc))
        if key in seen:
            problems.append(f"{key[0]}/{key[1]} rendered twice")
        seen.add(key)
        if doc["kind"] not in {"Namespace"} and doc["metadata"].get("namespace") != namespace:
            problems.append(f"{key[0]}/{key[1]}: not in namespace {namespace}")
    if find(docs, "Namespace", namespace) is None:
        problems.append(f"Namespace {namespace} is not rendered")

    per_role: dict[str, list[Doc]] = {}
    topology: dict[str, set[Any]] = {}
    for doc in workloads(docs):
        where = f"{doc['kind']}/{name_of(doc)}"
        problems += pod_security_problems(doc, overlay, where)
        project = [c for c in containers(doc) if is_project_image(c.get("image", ""), overlay)]
        if not project:
            continue
        role = component(doc)
        if role not in ROLE_OF_COMPONENT:
            problems.append(
                f"{where}: project pods need the label app.kubernetes.io/component, one of "
                f"{sorted(ROLE_OF_COMPONENT)}"
            )
            continue
        per_role.setdefault(role, []).append(doc)
        if doc["kind"] != WORKLOAD_KIND[role]:
            problems.append(f"{where}: role {role} must run as a {WORKLOAD_KIND[role]}")
        for c in project:
            cwhere = f"{where}/{c['name']}"
            if c.get("command"):
                problems.append(f"{cwhere}: sets command (the image's entrypoint picks the role)")
            if (c.get("args") or [None])[0] != ROLE_OF_COMPONENT[role]:
                problems.append(f"{cwhere}: args {c.get('args')} do not start with role {role}")
            problems += role_problems(docs, overlay, doc, c, role, cwhere, topology)
    for role in ROLE_OF_COMPONENT:
        if len(per_role.get(role, [])) != 1:
            problems.append(f"expected one {role} workload, found {len(per_role.get(role, []))}")
    for setting, values in topology.items():
        if len(values) > 1:
            problems.append(f"processes disagree on {setting}: {sorted(map(str, values))}")

    problems += service_problems(docs)
    problems += pdb_problems(docs, per_role)
    problems += hpa_problems(docs, overlay)
    problems += ingress_problems(docs)
    problems += secret_problems(docs, overlay)
    return problems


def pod_security_problems(doc: Doc, overlay: str, where: str) -> list[str]:
    problems = []
    spec = pod_spec(doc)
    pod_sc = spec.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            problems.append(f"{where}: {flag}")
    if any("hostPath" in v for v in spec.get("volumes", [])):
        problems.append(f"{where}: hostPath volume")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: automountServiceAccountToken must be false (no API access)")
    if spec.get("enableServiceLinks") is not False:
        problems.append(f"{where}: enableServiceLinks must be false")
    for c in containers(doc):
        cwhere = f"{where}/{c['name']}"
        sc = {**pod_sc, **c.get("securityContext", {})}
        image = c.get("image", "")
        project = is_project_image(image, overlay)
        if not project:
            repository = image_repository(image)
            if repository not in THIRD_PARTY:
                problems.append(
                    f"{cwhere}: image {image} is neither the project image "
                    f"{project_image(overlay)} nor a known third-party one"
                )
            elif overlay != "dev":
                problems.append(f"{cwhere}: third-party image {image} outside the dev overlay")
            elif image not in compose_images():
                problems.append(f"{cwhere}: {image} is not the image docker-compose.yml runs")
        if image.endswith(":latest") or ("@" not in image and ":" not in image.rsplit("/")[-1]):
            problems.append(f"{cwhere}: image {image} is not pinned")
        if sc.get("runAsNonRoot") is not True:
            problems.append(f"{cwhere}: runAsNonRoot is not true")
        if project and sc.get("runAsUser") != PROJECT_UID:
            problems.append(f"{cwhere}: runs as uid {sc.get('runAsUser')}, not {PROJECT_UID}")
        if project and sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{cwhere}: readOnlyRootFilesystem is not true")
        if sc.get("privileged") or sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{cwhere}: allowPrivilegeEscalation is not false")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problems.append(f"{cwhere}: capabilities are not dropped (ALL)")
        if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{cwhere}: seccompProfile is not RuntimeDefault")
        resources = c.get("resources", {})
        requests, limits = resources.get("requests", {}), resources.get("limits", {})
        for res in ("cpu", "memory"):
            if res not in requests:
                problems.append(f"{cwhere}: no {res} request")
        if "memory" not in limits:
            problems.append(f"{cwhere}: no memory limit")
        for res in set(requests) & set(limits):
            if quantity(limits[res]) < quantity(requests[res]):
                problems.append(f"{cwhere}: {res} limit below its request")
    return problems


def writable_paths(doc: Doc, container: Doc) -> list[str]:
    volumes = {v["name"]: v for v in pod_spec(doc).get("volumes", [])}
    templates = {t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])}
    out = []
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        writable = "emptyDir" in volume or "persistentVolumeClaim" in volume
        if (writable or mount["name"] in templates) and not mount.get("readOnly"):
            out.append(mount["mountPath"].rstrip("/"))
    return out


def role_problems(
    docs: list[Doc],
    overlay: str,
    doc: Doc,
    container: Doc,
    role: str,
    where: str,
    topology: dict[str, set[Any]],
) -> list[str]:
    env = container_env(docs, overlay, container, where)
    problems = list(env.problems)
    for name, path in env.field_refs.items():
        if name != "CHAT_EDGE_SLOT" or role != "edge":
            problems.append(f"{where}: {name} from field {path}")
    if role == "edge":
        if env.field_refs.get("CHAT_EDGE_SLOT") != POD_INDEX_FIELD:
            problems.append(
                f"{where}: CHAT_EDGE_SLOT must come from the pod index ({POD_INDEX_FIELD})"
            )
        # Every pod of the StatefulSet, with its ordinal as the slot.
        attempts = [
            (f"{where} (pod {i})", {"CHAT_EDGE_SLOT": str(i)})
            for i in range(int(doc["spec"].get("replicas", 1)))
        ]
    else:
        attempts = []
    settings, problem = settings_for(env, where, **({"CHAT_EDGE_SLOT": "0"} if attempts else {}))
    if settings is None:
        return [*problems, problem]
    for attempt_where, extra in attempts[1:]:
        problems += [p for p in settings_for(env, attempt_where, **extra)[1:] if p]

    for setting in (
        "kafka_bootstrap",
        "topic_prefix",
        "conversation_partitions",
        "user_partitions",
        "deliver_partitions",
        "worker_app_id",
        "sink_group",
        "replication_factor",
        "env",
    ):
        topology.setdefault(setting, set()).add(getattr(settings, setting))
    for backend in BACKENDS[role]:
        variable = f"CHAT_{backend.upper()}"
        value = getattr(settings, backend)
        if variable not in env.values:
            problems.append(f"{where}: {variable} is not set (the default is loopback)")
            continue
        hosts = {
            urlsplit(part if "://" in part else f"tcp://{part}").hostname
            for part in value.split(",")
        }
        if hosts & {"127.0.0.1", "localhost", "::1", None}:
            problems.append(f"{where}: {variable}={value} points at the pod itself")
    if overlay != "dev" and settings.is_dev:
        problems.append(f"{where}: CHAT_ENV=dev outside the dev overlay")

    if role == "edge":
        problems += edge_problems(doc, container, settings, where)
    if role in ("worker", "sink") and settings.metrics_host != "0.0.0.0":
        problems.append(f"{where}: CHAT_METRICS_HOST must be 0.0.0.0 for Prometheus and probes")
    if role == "worker":
        data_dir = settings.worker_data_dir.rstrip("/")
        if not data_dir.startswith("/") or not any(
            data_dir == p or data_dir.startswith(p + "/") for p in writable_paths(doc, container)
        ):
            problems.append(
                f"{where}: CHAT_WORKER_DATA_DIR {settings.worker_data_dir} is not on a "
                "writable volume"
            )
    if role in LONG_RUNNING:
        port = int(getattr(settings, PORT_SETTING[role]))
        problems += probe_problems(doc, container, port, where)
    return problems


def edge_problems(doc: Doc, container: Doc, settings: Settings, where: str) -> list[str]:
    problems = []
    if settings.edge_host != "0.0.0.0":
        problems.append(f"{where}: CHAT_EDGE_HOST must be 0.0.0.0")
    replicas = int(doc["spec"].get("replicas", 1))
    if replicas > settings.deliver_partitions:
        problems.append(
            f"{where}: replicas {replicas} > CHAT_DELIVER_PARTITIONS "
            f"{settings.deliver_partitions} (one chat.deliver slot per edge)"
        )
    try:
        TokenVerifier(settings)
    except SettingsError as exc:
        problems.append(f"{where}: the edge would refuse to start: {exc}")
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    sleep_s = 0
    if pre_stop and pre_stop[0] == "sleep" and len(pre_stop) == 2 and pre_stop[1].isdigit():
        sleep_s = int(pre_stop[1])
    if sleep_s < 5:
        problems.append(f"{where}: no preStop sleep of >= 5 s (the load balancer must let go)")
    grace = int(pod_spec(doc).get("terminationGracePeriodSeconds", 30))
    if grace < sleep_s + edge_shutdown_timeout() + 10:
        problems.append(
            f"{where}: terminationGracePeriodSeconds {grace} leaves too little time after the "
            f"{sleep_s} s preStop for closing sessions ({edge_shutdown_timeout():g} s + 10 s)"
        )
    return problems


@functools.cache
def edge_shutdown_timeout() -> float:
    source = (ROOT / "edge" / "__main__.py").read_text()
    found = re.findall(r"shutdown_timeout=([0-9.]+)", source)
    assert found, "edge/__main__.py: no shutdown_timeout"
    return float(found[0])


def probe_problems(doc: Doc, container: Doc, port: int, where: str) -> list[str]:
    problems = []
    ports = {p["containerPort"] for p in container.get("ports", [])}
    if port not in ports:
        problems.append(f"{where}: no containerPort {port} (its port setting)")
    annotations = doc["spec"]["template"].get("metadata", {}).get("annotations", {})
    if annotations.get("prometheus.io/scrape") != "true":
        problems.append(f"{where}: pods not annotated prometheus.io/scrape=true")
    if annotations.get("prometheus.io/port") != str(port):
        problems.append(f"{where}: prometheus.io/port is not {port}")
    if annotations.get("prometheus.io/path", "/metrics") != "/metrics":
        problems.append(f"{where}: prometheus.io/path is not /metrics")
    for probe_name, paths in (
        ("readinessProbe", {"/readyz"}),
        ("livenessProbe", {"/healthz"}),
        ("startupProbe", {"/healthz", "/readyz"}),
    ):
        probe = container.get(probe_name)
        if probe is None:
            if probe_name != "startupProbe":
                problems.append(f"{where}: no {probe_name}")
            continue
        get = probe.get("httpGet")
        if get is None or get.get("path") not in paths:
            problems.append(f"{where}: {probe_name} must GET {' or '.join(sorted(paths))}")
            continue
        if port_number(container, get.get("port")) != port:
            problems.append(f"{where}: {probe_name} port {get.get('port')} is not {port}")
        if get.get("scheme", "HTTP") != "HTTP":
            problems.append(f"{where}: {probe_name} is not plain HTTP")
    return problems


def service_problems(docs: list[Doc]) -> list[str]:
    problems = []
    pods = [(w, pod_labels(w)) for w in workloads(docs)]
    for svc in by_kind(docs, "Service"):
        where = f"Service/{name_of(svc)}"
        selector = svc["spec"].get("selector")
        matched = [w for w, labels in pods if matches_map(selector, labels)]
        if not matched:
            problems.append(f"{where}: selector {selector} selects no pods")
        for port in svc["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            for w in matched:
                if not any(port_number(c, target) for c in containers(w)):
                    problems.append(f"{where}: targetPort {target} is no port of {name_of(w)}")
    for sts in by_kind(docs, "StatefulSet"):
        where = f"StatefulSet/{name_of(sts)}"
        governing = find(docs, "Service", sts["spec"].get("serviceName", ""))
        if governing is None or governing["spec"].get("clusterIP") != "None":
            problems.append(f"{where}: serviceName is not a headless Service")
        elif not matches_map(governing["spec"].get("selector"), pod_labels(sts)):
            problems.append(f"{where}: its headless Service does not select its pods")
        if not selects(sts["spec"]["selector"], pod_labels(sts)):
            problems.append(f"{where}: selector does not match its pod template")
    for dep in by_kind(docs, "Deployment"):
        if not selects(dep["spec"]["selector"], pod_labels(dep)):
            problems.append(f"Deployment/{name_of(dep)}: selector does not match its pods")
    return problems


def pdb_problems(docs: list[Doc], per_role: dict[str, list[Doc]]) -> list[str]:
    problems = []
    covered: set[str] = set()
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        where = f"PodDisruptionBudget/{name_of(pdb)}"
        matched = [w for w in workloads(docs) if selects(pdb["spec"]["selector"], pod_labels(w))]
        if len(matched) != 1:
            problems.append(f"{where}: selects {len(matched)} workloads' pods, not one")
        covered.update(name_of(w) for w in matched)
        min_available = pdb["spec"].get("minAvailable")
        for w in matched:
            replicas = w["spec"].get("replicas", 1)
            if isinstance(min_available, int) and min_available >= replicas:
                problems.append(f"{where}: minAvailable {min_available} blocks every eviction")
    for role in ("edge", "worker"):
        for w in per_role.get(role, []):
            if name_of(w) not in covered:
                problems.append(f"{w['kind']}/{name_of(w)}: no PodDisruptionBudget")
    return problems


def hpa_problems(docs: list[Doc], overlay: str) -> list[str]:
    problems = []
    for hpa in by_kind(docs, "HorizontalPodAutoscaler"):
        where = f"HorizontalPodAutoscaler/{name_of(hpa)}"
        ref = hpa["spec"]["scaleTargetRef"]
        target = find(docs, ref["kind"], ref["name"])
        if target is None:
            problems.append(f"{where}: scaleTargetRef {ref['kind']}/{ref['name']} not found")
            continue
        if "replicas" in target["spec"]:
            problems.append(f"{where}: {ref['name']} sets replicas (apply would fight the HPA)")
        settings = None
        for c in containers(target):
            env = container_env(docs, overlay, c, where)
            settings, _ = settings_for(env, where)
        if settings is None:
            problems.append(f"{where}: cannot read the target's settings")
            continue
        bound = min(settings.conversation_partitions, settings.user_partitions)
        max_replicas = hpa["spec"]["maxReplicas"]
        if max_replicas > bound:
            problems.append(
                f"{where}: maxReplicas {max_replicas} > {bound} partitions "
                "(CHAT_CONVERSATION_PARTITIONS/CHAT_USER_PARTITIONS): extra workers sit idle"
            )
        if not 1 <= hpa["spec"].get("minReplicas", 1) <= max_replicas:
            problems.append(f"{where}: minReplicas outside 1..maxReplicas")
        metrics = hpa["spec"].get("metrics", [])
        if not any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in metrics):
            problems.append(f"{where}: no CPU metric")
        for m in metrics:
            if m["type"] != "External":
                continue
            metric = m["external"]["metric"]
            if metric["name"] not in HPA_EXTERNAL_METRICS:
                problems.append(f"{where}: external metric {metric['name']} is not documented")
            group = metric.get("selector", {}).get("matchLabels", {}).get("consumergroup")
            if group != settings.worker_app_id:
                problems.append(
                    f"{where}: lag selector consumergroup={group}, not CHAT_WORKER_APP_ID "
                    f"{settings.worker_app_id}"
                )
        if overlay == "production" and not any(m["type"] == "External" for m in metrics):
            problems.append(f"{where}: production scales on consumer lag too")
    return problems


def alb_idle_timeout(annotations: dict[str, str]) -> int | None:
    attrs = annotations.get("alb.ingress.kubernetes.io/load-balancer-attributes", "")
    for item in attrs.split(","):
        key, _, value = item.strip().partition("=")
        if key == "idle_timeout.timeout_seconds":
            return int(value) if value.isdigit() else None
    return None


def ingress_problems(docs: list[Doc]) -> list[str]:
    problems = []
    ingresses = by_kind(docs, "Ingress")
    if not ingresses:
        return ["no Ingress"]
    edge_services = {
        name_of(s)
        for s in by_kind(docs, "Service")
        if s["spec"].get("clusterIP") != "None"
        and any(
            matches_map(s["spec"].get("selector"), pod_labels(w)) and component(w) == "edge"
            for w in workloads(docs)
        )
    }
    metrics_blocked = False
    for ing in ingresses:
        where = f"Ingress/{name_of(ing)}"
        annotations = ing["metadata"].get("annotations", {})
        cls = ing["spec"].get("ingressClassName")
        if cls == "alb":
            a = "alb.ingress.kubernetes.io/"
            timeout = alb_idle_timeout(annotations)
            if timeout is None or timeout < MIN_LB_IDLE_TIMEOUT_S:
                problems.append(
                    f"{where}: ALB idle timeout {timeout} s < {MIN_LB_IDLE_TIMEOUT_S} "
                    "(load-balancer-attributes idle_timeout.timeout_seconds)"
                )
            if annotations.get(a + "target-type") != "ip":
                problems.append(f"{where}: target-type is not ip")
            if annotations.get(a + "healthcheck-path") != "/readyz":
                problems.append(f"{where}: healthcheck-path is not /readyz")
            if not annotations.get(a + "certificate-arn", "").startswith("arn:aws:acm:"):
                problems.append(f"{where}: no ACM certificate-arn")
            listen = json.loads(annotations.get(a + "listen-ports", "[]"))
            if {"HTTPS": 443} not in listen:
                problems.append(f"{where}: does not listen on HTTPS 443")
        elif cls == "nginx":
            a = "nginx.ingress.kubernetes.io/"
            for key in ("proxy-read-timeout", "proxy-send-timeout"):
                value = annotations.get(a + key)
                routes_edges = any(
                    p["backend"]["service"]["name"] in edge_services and p["path"] != "/metrics"
                    for r in ing["spec"].get("rules", [])
                    for p in r.get("http", {}).get("paths", [])
                )
                seconds = int(value) if value and value.isdigit() else 0
                if routes_edges and seconds < MIN_LB_IDLE_TIMEOUT_S:
                    problems.append(f"{where}: {key} {value} < {MIN_LB_IDLE_TIMEOUT_S} s")
        else:
            problems.append(f"{where}: ingressClassName {cls} is neither alb nor nginx")
        for rule in ing["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                svc = path["backend"]["service"]
                port = svc["port"].get("name", svc["port"].get("number"))
                if cls == "alb" and port == "use-annotation":
                    action = annotations.get(f"alb.ingress.kubernetes.io/actions.{svc['name']}")
                    if action is None:
                        problems.append(f"{where}: no ALB action {svc['name']}")
                        continue
                    parsed = json.loads(action)
                    if path["path"] == "/metrics" and parsed.get("fixedResponseConfig", {}).get(
                        "statusCode"
                    ) in {"403", "404"}:
                        metrics_blocked = True
                    continue
                service = find(docs, "Service", svc["name"])
                if service is None:
                    problems.append(f"{where}: backend Service {svc['name']} not found")
                    continue
                if not any(port in (p["port"], p.get("name")) for p in service["spec"]["ports"]):
                    problems.append(f"{where}: Service {svc['name']} has no port {port}")
                if path["path"] == "/metrics":
                    deny = annotations.get("nginx.ingress.kubernetes.io/denylist-source-range", "")
                    if "0.0.0.0/0" in deny.split(","):
                        metrics_blocked = True
                elif svc["name"] not in edge_services:
                    problems.append(f"{where}: {path['path']} goes to {svc['name']}, not the edges")
    if not metrics_blocked:
        problems.append("the Ingress exposes the edges' /metrics")
    return problems


def secret_problems(docs: list[Doc], overlay: str) -> list[str]:
    """Secret values live in git for dev only (the well-known dev secret, which the edge accepts
    only with CHAT_ENV=dev: checked by building its TokenVerifier)."""
    if overlay == "dev":
        return []
    return [
        f"Secret/{name_of(s)}: {overlay} keeps Secrets out of git (refer to an external one)"
        for s in by_kind(docs, "Secret")
    ]


@functools.cache
def compose_images() -> frozenset[str]:
    doc = yaml.safe_load(COMPOSE.read_text())
    return frozenset(s["image"] for s in doc["services"].values() if "image" in s)


def all_problems(docs: list[Doc], overlay: str) -> list[str]:
    """Schemas first: the project rules read objects of the right shape only."""
    problems = []
    for version in schema_versions():
        problems += schema_problems(docs, version)
    return problems or k8s_problems(docs, overlay)


# =========================================================================== tests: kubernetes


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_overlay_renders_and_is_valid(overlay: str) -> None:
    docs = rendered(overlay)
    assert docs
    assert all_problems(docs, overlay) == []


def test_overlays_render_what_the_docs_promise() -> None:
    dev, production = rendered("dev"), rendered("production")
    for docs in (dev, production):
        kinds = {d["kind"] for d in docs}
        assert {
            "StatefulSet",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
            "Job",
            "ConfigMap",
            "Ingress",
        } <= kinds
        edges = find(docs, "Service", "chat-edge-headless")
        assert edges is not None and edges["spec"]["clusterIP"] == "None"
        cluster_ip = find(docs, "Service", "chat-edge")
        assert cluster_ip is not None and cluster_ip["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert {i["spec"]["ingressClassName"] for i in by_kind(dev, "Ingress")} == {"nginx"}
    assert {i["spec"]["ingressClassName"] for i in by_kind(production, "Ingress")} == {"alb"}
    # dev: the JWT secret is generated; production only refers to it.
    assert [s for s in by_kind(dev, "Secret") if name_of(s).startswith("chat-jwt-")]
    assert by_kind(production, "Secret") == []
    # Third-party services run in dev only.
    assert {image_repository(c["image"]) for w in workloads(dev) for c in containers(w)} == {
        image_repository(project_image("dev")),
        *THIRD_PARTY,
    }


def test_every_overlay_and_component_is_rendered() -> None:
    overlays = {p.name for p in (K8S / "overlays").iterdir() if p.is_dir()}
    assert overlays == set(OVERLAYS)
    used = set()
    for overlay in OVERLAYS:
        for ref in kustomization(overlay).get("components", []):
            used.add((K8S / "overlays" / overlay / ref).resolve())
    components = {p.resolve() for p in (K8S / "components").iterdir() if p.is_dir()}
    assert components == used, "a component no overlay uses is never validated"


def test_roles_are_the_images_roles() -> None:
    entrypoint = (ROOT / "ops" / "docker-entrypoint.sh").read_text()
    roles = set(re.findall(r"^\s+(\w+)\)\s+module=", entrypoint, re.M))
    assert set(ROLE_OF_COMPONENT.values()) <= roles, roles


def test_schema_check_covers_both_kubernetes_versions() -> None:
    versions = schema_versions()
    assert versions[0] == OLDEST_KUBERNETES
    assert tuple(map(int, versions[1].split("."))) >= (1, 30)


def _container(docs: list[Doc], kind: str, name: str) -> Doc:
    doc = find(docs, kind, name)
    assert doc is not None, (kind, name)
    container: Doc = pod_spec(doc)["containers"][0]
    return container


def _config_map(docs: list[Doc]) -> Doc:
    maps = [d for d in by_kind(docs, "ConfigMap") if name_of(d).startswith("chat-config")]
    assert len(maps) == 1
    return maps[0]


def _set(path: str, value: Any, kind: str, name: str) -> Callable[[list[Doc]], None]:
    """Set (or with value None, delete) a JSON-pointer-like path (~1 for /) in one object."""

    def mutate(docs: list[Doc]) -> None:
        node: Any = find(docs, kind, name)
        assert node is not None, (kind, name)
        *parents, last = (part.replace("~1", "/") for part in path.split("/"))
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is None:
            del node[int(last) if isinstance(node, list) else last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


C0 = "spec/template/spec/containers/0"


def _config(key: str, value: str | None) -> Callable[[list[Doc]], None]:
    def mutate(docs: list[Doc]) -> None:
        data = _config_map(docs)["data"]
        if value is None:
            data.pop(key)
        else:
            data[key] = value

    return mutate


def _fixed_slot(docs: list[Doc]) -> None:
    env = _container(docs, "StatefulSet", "chat-edge")["env"]
    env[0] = {"name": "CHAT_EDGE_SLOT", "value": "0"}


def _servicemonitor(docs: list[Doc]) -> None:
    docs.append(
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "chat", "namespace": "chat"},
            "spec": {"selector": {}},
        }
    )


def _unknown_secret(docs: list[Doc]) -> None:
    env = _container(docs, "StatefulSet", "chat-edge")["env"]
    env[1]["valueFrom"]["secretKeyRef"]["name"] = "chat-jwtx"
    env[1]["valueFrom"]["secretKeyRef"]["optional"] = False


def _no_pre_stop(docs: list[Doc]) -> None:
    _container(docs, "StatefulSet", "chat-edge").pop("lifecycle")


def _unmounted_data_dir(docs: list[Doc]) -> None:
    mounts = _container(docs, "Deployment", "chat-worker")["volumeMounts"]
    mounts[:] = [m for m in mounts if m["name"] != "faust-data"]


def _alb_idle(seconds: int) -> Callable[[list[Doc]], None]:
    def mutate(docs: list[Doc]) -> None:
        ing = find(docs, "Ingress", "chat-edge")
        assert ing is not None
        ing["metadata"]["annotations"]["alb.ingress.kubernetes.io/load-balancer-attributes"] = (
            f"idle_timeout.timeout_seconds={seconds}"
        )

    return mutate


def _expose_metrics(docs: list[Doc]) -> None:
    denied = find(docs, "Ingress", "chat-edge-metrics-denied")
    assert denied is not None
    docs.remove(denied)


def _worker_replicas(docs: list[Doc]) -> None:
    dep = find(docs, "Deployment", "chat-worker")
    assert dep is not None
    dep["spec"]["replicas"] = 3


def _dev_in_production(docs: list[Doc]) -> None:
    _config_map(docs)["data"]["CHAT_ENV"] = "dev"


def _production_in_dev(docs: list[Doc]) -> None:
    _config_map(docs)["data"]["CHAT_ENV"] = "production"


def _secret_in_production(docs: list[Doc]) -> None:
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "chat-jwt", "namespace": "chat"},
            "stringData": {"jwt-secret": "x" * 40},
        }
    )


def _root_edge(docs: list[Doc]) -> None:
    sts = find(docs, "StatefulSet", "chat-edge")
    assert sts is not None
    pod_spec(sts)["securityContext"]["runAsUser"] = 0
    pod_spec(sts)["securityContext"]["runAsNonRoot"] = False


def _wrong_lag_group(docs: list[Doc]) -> None:
    hpa = find(docs, "HorizontalPodAutoscaler", "chat-worker")
    assert hpa is not None
    selector = hpa["spec"]["metrics"][1]["external"]["metric"]["selector"]
    selector["matchLabels"]["consumergroup"] = "chat-mongo-sink"


def _loopback_kafka(docs: list[Doc]) -> None:
    _config_map(docs)["data"]["CHAT_KAFKA_BOOTSTRAP"] = "127.0.0.1:9092"


def _topics_drift(docs: list[Doc]) -> None:
    job = find(docs, "Job", "chat-topics")
    assert job is not None
    pod_spec(job)["containers"][0]["env"] = [{"name": "CHAT_USER_PARTITIONS", "value": "16"}]


@pytest.mark.parametrize(
    ("overlay", "mutate", "expected"),
    [
        (
            "production",
            _set(
                f"{C0}/readinessprobe",
                {"httpGet": {"path": "/readyz"}},
                "StatefulSet",
                "chat-edge",
            ),
            "Additional properties are not allowed ('readinessprobe' was unexpected)",
        ),
        ("production", _set("spec/replicas", "two", "StatefulSet", "chat-edge"), "schema 1.28"),
        ("production", _servicemonitor, "no Kubernetes 1.28 schema for monitoring.coreos.com/v1"),
        (
            "production",
            _set(f"{C0}/readinessProbe/httpGet/path", "/healthz", "StatefulSet", "chat-edge"),
            "readinessProbe must GET /readyz",
        ),
        (
            "production",
            _set(f"{C0}/livenessProbe/httpGet/path", "/readyz", "Deployment", "chat-worker"),
            "livenessProbe must GET /healthz",
        ),
        (
            "production",
            _set(f"{C0}/livenessProbe/httpGet/port", 8080, "Deployment", "chat-sink"),
            "livenessProbe port 8080 is not 6070",
        ),
        (
            "production",
            _set("spec/maxReplicas", 9, "HorizontalPodAutoscaler", "chat-worker"),
            "maxReplicas 9 > 8 partitions",
        ),
        (
            "production",
            _set("spec/replicas", 9, "StatefulSet", "chat-edge"),
            "replicas 9 > CHAT_DELIVER_PARTITIONS 8",
        ),
        ("production", _config("CHAT_DELIVER_PARTITIONS", "3"), "CHAT_EDGE_SLOT=3 must be below"),
        (
            "production",
            _set(
                "spec/selector/matchLabels/app.kubernetes.io~1component",
                "edges",
                "PodDisruptionBudget",
                "chat-edge",
            ),
            "PodDisruptionBudget/chat-edge: selects 0 workloads",
        ),
        (
            "production",
            _set("spec/selector", {"app.kubernetes.io/component": "edges"}, "Service", "chat-edge"),
            "Service/chat-edge: selector {'app.kubernetes.io/component': 'edges'} selects no pods",
        ),
        (
            "production",
            _set("spec/ports/0/targetPort", "web", "Service", "chat-edge"),
            "targetPort web is no port of chat-edge",
        ),
        (
            "production",
            _config("CHAT_SINK_METRIC_PORT", "6070"),
            "CHAT_SINK_METRIC_PORT is not a setting",
        ),
        ("production", _config("CHAT_EDGE_PORT", "eighty"), "settings rejected"),
        ("production", _fixed_slot, "CHAT_EDGE_SLOT must come from the pod index"),
        (
            "production",
            _set(f"{C0}/image", "nginx:1.27", "StatefulSet", "chat-edge"),
            "image nginx:1.27 is neither the project image",
        ),
        (
            "dev",
            _set(f"{C0}/image", "mongo:6", "StatefulSet", "mongo"),
            "mongo:6 is not the image docker-compose.yml runs",
        ),
        (
            "production",
            _set(f"{C0}/args", ["server"], "StatefulSet", "chat-edge"),
            "do not start with role edge",
        ),
        ("production", _config("CHAT_METRICS_HOST", None), "CHAT_METRICS_HOST must be 0.0.0.0"),
        ("production", _unmounted_data_dir, "CHAT_WORKER_DATA_DIR /var/lib/chat/faust is not on"),
        ("production", _alb_idle(60), "ALB idle timeout 60 s < 75"),
        (
            "production",
            _set(
                "metadata/annotations/alb.ingress.kubernetes.io~1target-type",
                "instance",
                "Ingress",
                "chat-edge",
            ),
            "target-type is not ip",
        ),
        (
            "dev",
            _set(
                "metadata/annotations/nginx.ingress.kubernetes.io~1proxy-read-timeout",
                "60",
                "Ingress",
                "chat-edge",
            ),
            "proxy-read-timeout 60 < 75 s",
        ),
        ("dev", _expose_metrics, "exposes the edges' /metrics"),
        (
            "dev",
            _set(
                "spec/rules/0/http/paths/0/backend/service/name",
                "chat-edge-x",
                "Ingress",
                "chat-edge",
            ),
            "backend Service chat-edge-x not found",
        ),
        ("dev", _unknown_secret, "env CHAT_JWT_SECRET: Secret chat-jwtx not found"),
        ("production", _no_pre_stop, "no preStop sleep"),
        (
            "production",
            _set(
                "spec/template/spec/terminationGracePeriodSeconds", 20, "StatefulSet", "chat-edge"
            ),
            "terminationGracePeriodSeconds 20 leaves too little time",
        ),
        ("production", _root_edge, "runs as uid 0, not 10001"),
        (
            "production",
            _set(f"{C0}/securityContext/readOnlyRootFilesystem", False, "Deployment", "chat-sink"),
            "readOnlyRootFilesystem is not true",
        ),
        ("production", _dev_in_production, "CHAT_ENV=dev outside the dev overlay"),
        ("dev", _production_in_dev, "would refuse to start: CHAT_JWT_SECRET is the public"),
        ("production", _secret_in_production, "production keeps Secrets out of git"),
        ("production", _worker_replicas, "sets replicas (apply would fight the HPA)"),
        ("production", _wrong_lag_group, "lag selector consumergroup=chat-mongo-sink"),
        ("production", _loopback_kafka, "CHAT_KAFKA_BOOTSTRAP=127.0.0.1:9092 points at the pod"),
        ("production", _topics_drift, "processes disagree on user_partitions"),
    ],
)
def test_k8s_check_rejects_broken_copies(
    overlay: str, mutate: Callable[[list[Doc]], None], expected: str
) -> None:
    docs = rendered(overlay)
    mutate(docs)
    problems = all_problems(docs, overlay)
    assert any(expected in p for p in problems), problems


def test_kustomize_refuses_a_broken_tree(tmp_path: Path) -> None:
    shutil.copytree(K8S, tmp_path / "k8s")
    (tmp_path / "k8s" / "base" / "sink.yaml").unlink()
    with pytest.raises(RenderError, match=re.escape("sink.yaml")):
        render(tmp_path / "k8s" / "overlays" / "production")


def test_base_config_keys_are_settings() -> None:
    lines = (K8S / "base" / "chat.env").read_text().splitlines()
    keys = [ln.split("=", 1)[0] for ln in lines if ln.strip() and not ln.startswith("#")]
    assert keys and set(keys) <= SETTING_NAMES, set(keys) - SETTING_NAMES
    for overlay in OVERLAYS:
        for gen in kustomization(overlay).get("configMapGenerator", []):
            for literal in gen.get("literals", []):
                assert literal.split("=", 1)[0] in SETTING_NAMES, (overlay, literal)


# =========================================================================== metrics of the code


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # Counter, Gauge, Histogram, Summary
    labels: tuple[str, ...]
    source: str

    def series(self) -> set[str]:
        if self.kind == "Counter":
            base = self.name.removesuffix("_total")
            return {base + "_total", base + "_created"}
        if self.kind == "Histogram":
            return {self.name + s for s in ("_bucket", "_sum", "_count", "_created")}
        if self.kind == "Summary":
            return {self.name, *(self.name + s for s in ("_sum", "_count", "_created"))}
        return {self.name}


def _str_list(node: ast.AST | None) -> tuple[str, ...]:
    if isinstance(node, ast.List | ast.Tuple):
        return tuple(
            e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
        )
    return ()


def metrics_in_source(text: str, source: str) -> list[Metric]:
    out = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        kind = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if kind not in {"Counter", "Gauge", "Histogram", "Summary"}:
            continue
        keywords = {k.arg: k.value for k in node.keywords}
        if len(node.args) < 2 and "documentation" not in keywords:
            continue  # not prometheus_client's (e.g. collections.Counter)
        name_node = node.args[0] if node.args else keywords.get("name")
        if not (isinstance(name_node, ast.Constant) and isinstance(name_node.value, str)):
            continue
        label_node = node.args[2] if len(node.args) > 2 else keywords.get("labelnames")
        out.append(Metric(name_node.value, kind, _str_list(label_node), source))
    return out


@functools.cache
def code_metrics() -> dict[str, Metric]:
    found: dict[str, Metric] = {}
    for package in METRIC_SOURCES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            for metric in metrics_in_source(path.read_text(), rel):
                found[metric.name] = metric
    return found


@functools.cache
def default_series() -> frozenset[str]:
    """What prometheus_client's default registry exports besides the code's metrics."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    names = {s.name for family in registry.collect() for s in family.samples}
    # Counters without samples still declare their _total series.
    names |= {f.name + "_total" for f in registry.collect() if f.type == "counter"}
    return frozenset(names)


def series_index() -> dict[str, Metric | None]:
    """Every series name a query may select -> the code metric it belongs to (None: default or
    external)."""
    index: dict[str, Metric | None] = {}
    for metric in code_metrics().values():
        for series in metric.series():
            index[series] = metric
    for name in default_series() | set(EXTERNAL_METRICS):
        index.setdefault(name, None)
    return index


def test_metric_extraction_matches_the_registry() -> None:
    metrics = code_metrics()
    assert {"chat_edge_connections", "chat_sink_retries_total"} <= set(metrics)
    modules = {m.source.removesuffix(".py").replace("/", ".") for m in metrics.values()}
    for module in modules:
        importlib.import_module(module)
    registered = {family.name: family.type for family in REGISTRY.collect()}
    expected = {
        (m.name.removesuffix("_total") if m.kind == "Counter" else m.name): m.kind.lower()
        for m in metrics.values()
    }
    assert {n: registered.get(n) for n in expected} == expected
    chat_registered = {n for n in registered if n.startswith("chat_")}
    assert chat_registered <= set(expected), (
        f"missed by the scan: {chat_registered - set(expected)}"
    )
    assert "process_cpu_seconds_total" in default_series()


def test_metric_extraction_reads_calls() -> None:
    text = (
        "from prometheus_client import Counter, Histogram\n"
        "import prometheus_client as pc\n"
        "a = Counter('x_total', 'doc', ['code'])\n"
        "b = pc.Histogram(name='y_seconds', documentation='d', labelnames=('agent',))\n"
        "c = Counter(NAME, 'dynamic')\n"
        "d = collections.Counter('abc')\n"
    )
    assert metrics_in_source(text, "m.py") == [
        Metric("x_total", "Counter", ("code",), "m.py"),
        Metric("y_seconds", "Histogram", ("agent",), "m.py"),
    ]
    assert Metric("x_total", "Counter", (), "").series() == {"x_total", "x_created"}


# =========================================================================== PromQL


def selectors(expr: Any) -> Iterator[tuple[Any, str | None, bool]]:
    """Every vector selector in an expression, with the function it is the argument of and
    whether it is inside histogram_quantile()."""
    stack: list[tuple[Any, str | None, bool]] = [(expr, None, False)]
    while stack:
        node, func, quantile = stack.pop()
        if isinstance(node, promql_parser.VectorSelector):
            yield node, func, quantile
        elif isinstance(node, promql_parser.MatrixSelector):
            stack.append((node.vector_selector, func, quantile))
        elif isinstance(node, promql_parser.Call):
            name = node.func.name
            stack += [(a, name, quantile or name == "histogram_quantile") for a in node.args]
        elif isinstance(node, promql_parser.AggregateExpr):
            stack.append((node.expr, None, quantile))
            if node.param is not None:
                stack.append((node.param, None, quantile))
        elif isinstance(node, promql_parser.BinaryExpr):
            stack += [(node.lhs, None, quantile), (node.rhs, None, quantile)]
        elif isinstance(node, promql_parser.SubqueryExpr):
            stack.append((node.expr, func, quantile))
        elif isinstance(node, promql_parser.ParenExpr | promql_parser.UnaryExpr):
            stack.append((node.expr, func, quantile))


COUNTER_FUNCS = {"rate", "irate", "increase", "resets"}
GAUGE_FUNCS = {"deriv", "delta", "idelta", "predict_linear"}


def promql_problems(expr: str, where: str) -> list[str]:
    try:
        tree = promql_parser.parse(expr)
    except ValueError as exc:
        return [f"{where}: PromQL does not parse: {exc}"]
    problems = []
    index = series_index()
    for selector, func, quantile in selectors(tree):
        matchers = [(m.name, m.op, m.value) for m in selector.matchers.matchers]
        name = selector.name or next(
            (v for n, op, v in matchers if n == "__name__" and op == promql_parser.MatchOp.Equal),
            None,
        )
        if name is None:
            problems.append(f"{where}: a selector without a metric name")
            continue
        if name not in index:
            problems.append(f"{where}: unknown metric {name}")
            continue
        metric = index[name]
        counter_like = name.endswith(("_total", "_bucket", "_sum", "_count", "_created"))
        if func in COUNTER_FUNCS and not counter_like:
            problems.append(f"{where}: {func}() over {name}, which is not a counter")
        if func in GAUGE_FUNCS and counter_like:
            problems.append(f"{where}: {func}() over the counter {name} (use rate)")
        if quantile and not name.endswith("_bucket"):
            problems.append(f"{where}: histogram_quantile over {name}, not a _bucket series")
        for label, op, value in matchers:
            if label == "__name__":
                continue
            if metric is not None:
                allowed = set(metric.labels) | TARGET_LABELS
                if name.endswith("_bucket"):
                    allowed.add("le")
                if label not in allowed:
                    problems.append(f"{where}: label {label} is not a label of {metric.name}")
            regex = op in (promql_parser.MatchOp.Re, promql_parser.MatchOp.NotRe)
            if label == "job" and op in (promql_parser.MatchOp.Equal, promql_parser.MatchOp.Re):
                if not any((re.fullmatch(value, j) if regex else value == j) for j in JOBS):
                    problems.append(f"{where}: job {value!r} matches none of {sorted(JOBS)}")
            if label == "consumergroup" and op in (
                promql_parser.MatchOp.Equal,
                promql_parser.MatchOp.Re,
            ):
                groups = {DEFAULTS.worker_app_id, DEFAULTS.sink_group}
                if set(value.split("|") if regex else [value]) - groups:
                    problems.append(f"{where}: consumergroup {value!r} is not {sorted(groups)}")
    return problems


def grafana_expr(expr: str, variables: set[str]) -> tuple[str, list[str]]:
    """Substitute Grafana's built-in interval variables; other $variables are problems."""
    problems = []

    def sub(m: re.Match[str]) -> str:
        name = m[1] or m[2]
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        if name not in variables:
            problems.append(f"variable ${name} is not defined")
        return ".*"

    text = re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, expr)
    return text, problems


# =========================================================================== dashboard


def dashboard_panels(dashboard: Doc) -> Iterator[Doc]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(dashboard: Doc) -> Iterator[tuple[str, str]]:
    for panel in dashboard_panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel.get('title')!r} {target.get('refId')}", target.get("expr", "")


def dashboard_problems(dashboard: Doc) -> list[str]:
    problems = []
    for key in ("uid", "title", "schemaVersion", "panels", "templating"):
        if key not in dashboard:
            problems.append(f"dashboard: no {key}")
    if problems:
        return problems
    variables = {v["name"]: v for v in dashboard["templating"].get("list", [])}
    datasource = variables.get("datasource", {})
    if datasource.get("type") != "datasource" or datasource.get("query") != "prometheus":
        problems.append("dashboard: no datasource variable of type prometheus")
    ids: set[Any] = set()
    for panel in dashboard_panels(dashboard):
        where = f"panel {panel.get('title')!r}"
        if panel.get("id") in ids:
            problems.append(f"{where}: duplicate id {panel.get('id')}")
        ids.add(panel.get("id"))
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in "xywh") or grid["x"] + grid["w"] > 24:
            problems.append(f"{where}: bad gridPos {grid}")
        if panel.get("type") == "row":
            continue
        if panel.get("datasource") != {"type": "prometheus", "uid": "${datasource}"}:
            problems.append(f"{where}: datasource is not the $datasource variable")
        targets = panel.get("targets", [])
        if not targets:
            problems.append(f"{where}: no query")
        ref_ids = [t.get("refId") for t in targets]
        if len(set(ref_ids)) != len(ref_ids) or None in ref_ids:
            problems.append(f"{where}: refIds {ref_ids} are not unique")
        if not panel.get("description"):
            problems.append(f"{where}: no description (what the panel means)")
    for where, expr in dashboard_exprs(dashboard):
        text, var_problems = grafana_expr(expr, set(variables))
        problems += [f"{where}: {p}" for p in var_problems]
        problems += promql_problems(text, where)
    used = {name for _, expr in dashboard_exprs(dashboard) for name in metric_names(expr)}
    for metric in code_metrics().values():
        if not metric.series() & used:
            problems.append(f"dashboard: metric {metric.name} ({metric.source}) is on no panel")
    return problems


def metric_names(expr: str) -> set[str]:
    text, _ = grafana_expr(expr, set())
    try:
        tree = promql_parser.parse(text)
    except ValueError:
        return set()
    return {s.name for s, _, _ in selectors(tree) if s.name}


def dashboard_doc() -> Doc:
    doc: Doc = json.loads(DASHBOARD.read_text())
    return doc


def test_dashboard_is_valid_and_uses_exported_metrics() -> None:
    assert dashboard_problems(dashboard_doc()) == []


def test_dashboard_is_provisioned() -> None:
    providers = [yaml.safe_load(p.read_text()) for p in sorted(DASHBOARD_PROVIDERS.glob("*.yml"))]
    assert providers and all(p["apiVersion"] == 1 for p in providers)
    paths = {pr["options"]["path"] for p in providers for pr in p["providers"]}
    assert paths == {GRAFANA_DASHBOARDS_PATH}
    assert all(pr["type"] == "file" for p in providers for pr in p["providers"])
    # When docker-compose.yml mounts the dashboards, it must be at the provider's path.
    grafana = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    for volume in grafana.get("volumes", []):
        source, _, target = str(volume).partition(":")
        if Path(ROOT / source).resolve() == DASHBOARD.parent.resolve():
            assert target.split(":")[0] == GRAFANA_DASHBOARDS_PATH


def _panel_expr(expr: str) -> Callable[[Doc], None]:
    def mutate(dashboard: Doc) -> None:
        panel = next(p for p in dashboard_panels(dashboard) if p.get("targets"))
        panel["targets"][0]["expr"] = expr

    return mutate


def _drop_panel_of(metric: str) -> Callable[[Doc], None]:
    def mutate(dashboard: Doc) -> None:
        for panel in dashboard_panels(dashboard):
            panel["targets"] = [
                t for t in panel.get("targets", []) if metric not in t.get("expr", "")
            ]

    return mutate


def _duplicate_ids(dashboard: Doc) -> None:
    dashboard["panels"][2]["id"] = dashboard["panels"][1]["id"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_panel_expr("sum(chat_edge_sessions)"), "unknown metric chat_edge_sessions"),
        (_panel_expr("sum(rte(chat_edge_frames_in_total[5m]))"), "does not parse"),
        (_panel_expr("rate(chat_edge_connections[5m])"), "rate() over chat_edge_connections"),
        (
            _panel_expr("histogram_quantile(0.9, rate(chat_edge_ack_latency_seconds_sum[5m]))"),
            "not a _bucket series",
        ),
        (
            _panel_expr('sum(rate(chat_edge_errors_total{kind="x"}[5m]))'),
            "label kind is not a label of chat_edge_errors_total",
        ),
        (_panel_expr('up{job="edge"}'), "job 'edge' matches none"),
        (_panel_expr("rate(chat_edge_frames_in_total[$window])"), "variable $window"),
        (_panel_expr("chat_sink_documents_total_total"), "unknown metric"),
        (_drop_panel_of("chat_sink_retries_total"), "metric chat_sink_retries_total"),
        (_duplicate_ids, "duplicate id"),
    ],
)
def test_dashboard_check_rejects_broken_copies(
    mutate: Callable[[Doc], None], expected: str
) -> None:
    dashboard = dashboard_doc()
    mutate(dashboard)
    problems = dashboard_problems(dashboard)
    assert any(expected in p for p in problems), problems


# =========================================================================== alert rules

_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
RULE_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@functools.cache
def operations_anchors() -> frozenset[str]:
    text = OPERATIONS.read_text()
    return frozenset(slug(m[1]) for m in re.finditer(r"^#+ (.+)$", text, re.M))


def rules_problems(doc: Doc) -> list[str]:
    problems = []
    groups = doc.get("groups")
    if not isinstance(groups, list) or not groups:
        return ["rules: no groups"]
    names: set[str] = set()
    group_names = [g.get("name") for g in groups]
    if len(set(group_names)) != len(group_names):
        problems.append(f"rules: duplicate group names {group_names}")
    for group in groups:
        for rule in group.get("rules", []):
            name = rule.get("alert")
            where = f"alert {name}"
            if name is None:
                problems.append(f"rules: a rule without alert: {rule}")
                continue
            if name in names:
                problems.append(f"{where}: defined twice")
            names.add(name)
            if set(rule) - RULE_KEYS:
                problems.append(f"{where}: unknown keys {sorted(set(rule) - RULE_KEYS)}")
            for key in ("for", "keep_firing_for"):
                if key in rule and not _DURATION.match(str(rule[key])):
                    problems.append(f"{where}: {key} {rule[key]!r} is not a duration")
            if rule.get("labels", {}).get("severity") not in {"critical", "warning"}:
                problems.append(f"{where}: severity is not critical or warning")
            annotations = rule.get("annotations", {})
            for key in ("summary", "description", "runbook_url"):
                if not annotations.get(key):
                    problems.append(f"{where}: no {key} annotation")
            runbook = annotations.get("runbook_url", "")
            page, _, anchor = runbook.partition("#")
            if page != "docs/operations.md" or anchor not in operations_anchors():
                problems.append(f"{where}: runbook_url {runbook} is no heading of {page}")
            problems += promql_problems(str(rule.get("expr", "")), where)
    for required in sorted(REQUIRED_ALERTS - names):
        problems.append(f"rules: no alert {required}")
    return problems


def alerts_doc() -> Doc:
    doc: Doc = yaml.safe_load(ALERTS.read_text())
    return doc


def test_alert_rules_are_valid_and_use_exported_metrics() -> None:
    assert rules_problems(alerts_doc()) == []


def test_prometheus_loads_the_rules() -> None:
    prom = yaml.safe_load(PROMETHEUS.read_text())
    assert {job["job_name"] for job in prom["scrape_configs"]} <= JOBS
    patterns = prom.get("rule_files", [])
    assert any(
        Path(p).parent == Path(PROMETHEUS_RULES_PATH) and Path(ALERTS.name).match(Path(p).name)
        for p in patterns
    ), patterns


def _rule(index: int, **changes: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        rules = [r for g in doc["groups"] for r in g["rules"]]
        for key, value in changes.items():
            target = rules[index]
            *parents, last = key.split("__")
            for part in parents:
                target = target[part]
            if value is None:
                target.pop(last)
            else:
                target[last] = value

    return mutate


def _drop_alert(name: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        for group in doc["groups"]:
            group["rules"] = [r for r in group["rules"] if r.get("alert") != name]

    return mutate


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_rule(0, expr="chat_edge_up == 0"), "unknown metric chat_edge_up"),
        (_rule(0, expr='up{job="chat-edge"} =='), "does not parse"),
        (_rule(0, labels__severity="page"), "severity is not critical or warning"),
        (_rule(0, annotations__runbook_url="docs/operations.md#nowhere"), "is no heading"),
        (_rule(0, annotations__summary=None), "no summary annotation"),
        (_rule(0, **{"for": "5 minutes"}), "is not a duration"),
        (_rule(0, fire_for="5m"), "unknown keys ['fire_for']"),
        (_rule(1, expr="increase(chat_edge_connections[5m]) > 0"), "not a counter"),
        (_rule(1, expr="deriv(chat_sink_retries_total[5m]) > 0"), "over the counter"),
        (_rule(1, expr="chat_sink_batch_size > 100"), "unknown metric chat_sink_batch_size"),
        (
            _rule(1, expr='kafka_consumergroup_lag{consumergroup=~"chat-workers"} > 0'),
            "consumergroup 'chat-workers'",
        ),
        (_drop_alert("ChatSinkRetrying"), "no alert ChatSinkRetrying"),
    ],
)
def test_rules_check_rejects_broken_copies(mutate: Callable[[Doc], None], expected: str) -> None:
    doc = alerts_doc()
    mutate(doc)
    problems = rules_problems(doc)
    assert any(expected in p for p in problems), problems


# =========================================================================== docs


def test_operations_doc_covers_metrics_alerts_and_runbooks() -> None:
    text = OPERATIONS.read_text()
    anchors = operations_anchors()
    for runbook in RUNBOOKS:
        assert runbook in anchors, f"docs/operations.md: no section #{runbook}"
    for metric in code_metrics():
        assert metric in text, f"docs/operations.md does not explain {metric}"
    for metric in EXTERNAL_METRICS:
        assert metric in text, f"docs/operations.md does not say where {metric} comes from"
    alerts = {r["alert"] for g in alerts_doc()["groups"] for r in g["rules"]}
    for alert in alerts:
        assert alert in text, f"docs/operations.md does not list the alert {alert}"
    for secret in {s for ext in EXTERNAL_SECRETS.values() for s in ext}:
        assert secret in text, f"docs/operations.md does not say how to create {secret}"
    for command in ("chatctl replay store", "chatctl topics", "CHAT_WORKER_APP_ID"):
        assert command in text
    for path in set(re.findall(r"\bops/[\w./-]*\w", text)):
        assert (ROOT / path).exists(), f"docs/operations.md names {path}, which does not exist"
