"""The NetworkPolicies of both overlays, evaluated: who may talk to whom.

Every policy is read the way the API server defines it (a pod selected by no policy of a
direction is open in that direction; selected, it allows the union of the rules), for the pods
the overlays actually run, with their rendered labels. Checked: the namespace denies by default;
only the kchat roles that use Kafka, Redis and MongoDB reach them (dev: the overlay's own pods;
production: the managed services' ports in the VPC); edges take clients from the ingress only;
nothing else reaches any pod but Prometheus.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from tests.unit.test_k8s_and_dashboards import by_kind, rendered, workloads

Doc = dict[str, Any]
# Ports of the backends, as the overlays serve or reach them.
KAFKA_PORT = {"dev": 9092, "production": 9096}
REDIS, MONGO = 6379, 27017
USES = {  # role -> backends it connects to
    "edge": {"kafka", "redis", "mongo"},
    "worker": {"kafka", "redis"},
    "sink": {"kafka", "mongo"},
    "topics": {"kafka"},
    "media": {"kafka", "s3"},
}
S3_PORT = {"dev": 8333, "production": 443}


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] in ("In", "NotIn", "Exists"), expr
        present = expr["key"] in labels
        if expr["operator"] == "Exists" and not present:
            return False
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
        if expr["operator"] == "NotIn" and labels.get(expr["key"]) in expr["values"]:
            return False
    return True


def pods(docs: list[Doc]) -> dict[str, dict[str, str]]:
    """Workload name -> its pods' labels."""
    return {
        w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"] for w in workloads(docs)
    }


def peer_matches(
    peer: Doc, *, labels: dict[str, str] | None, namespace: str | None, ip: str | None
) -> bool:
    """Whether one `from`/`to` entry admits a peer: a pod (labels) of this namespace or, with
    `namespace`, of another one; or an address outside the cluster (ip)."""
    if "ipBlock" in peer:
        return ip is not None and ipaddress.ip_address(ip) in ipaddress.ip_network(
            peer["ipBlock"]["cidr"]
        )
    if ip is not None:
        return False
    if "namespaceSelector" in peer:
        if namespace is None:
            return False
        ns_labels = {"kubernetes.io/metadata.name": namespace}
        return selects(peer["namespaceSelector"], ns_labels) and selects(
            peer.get("podSelector", {}), labels or {}
        )
    return namespace is None and labels is not None and selects(peer["podSelector"], labels)


def allowed(
    docs: list[Doc],
    direction: str,
    pod: dict[str, str],
    port: int,
    *,
    labels: dict[str, str] | None = None,
    namespace: str | None = None,
    ip: str | None = None,
) -> bool:
    """Whether `pod` may send (Egress) to / receive (Ingress) from the peer on `port` (TCP)."""
    key = "egress" if direction == "Egress" else "ingress"
    side = "to" if direction == "Egress" else "from"
    policies = [
        p
        for p in by_kind(docs, "NetworkPolicy")
        if direction in p["spec"].get("policyTypes", ["Ingress"])
        and selects(p["spec"]["podSelector"], pod)
    ]
    if not policies:
        return True
    for policy in policies:
        for rule in policy["spec"].get(key, []):
            ports = rule.get("ports")
            if ports is not None and not any(
                p.get("protocol", "TCP") == "TCP" and p.get("port") == port for p in ports
            ):
                continue
            peers = rule.get(side)
            if peers is None or any(
                peer_matches(peer, labels=labels, namespace=namespace, ip=ip) for peer in peers
            ):
                return True
    return False


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_default_deny_covers_every_pod(overlay: str) -> None:
    docs = rendered(overlay)
    deny = [
        p
        for p in by_kind(docs, "NetworkPolicy")
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, "no default-deny NetworkPolicy"
    for name, labels in pods(docs).items():
        # A stranger in the namespace, another namespace, the internet: nothing gets in.
        for port in (80, 8080, 6066, 6070, 9092, 9093, REDIS, MONGO):
            assert not allowed(docs, "Ingress", labels, port, labels={"app": "other"}), (name, port)
            assert not allowed(docs, "Ingress", labels, port, namespace="default"), (name, port)
            assert not allowed(docs, "Ingress", labels, port, ip="203.0.113.7"), (name, port)
        # ... and nothing gets out to the internet.
        assert not allowed(docs, "Egress", labels, 443, ip="203.0.113.7"), name
        # DNS works for every pod.
        dns = {"k8s-app": "kube-dns"}
        assert allowed(docs, "Egress", labels, 53, labels=dns, namespace="kube-system"), name


def test_dev_backends_only_for_the_roles_that_use_them() -> None:
    docs = rendered("dev")
    everything = pods(docs)
    backends = {
        "kafka": (everything["kafka"], KAFKA_PORT["dev"]),
        "redis": (everything["redis"], REDIS),
        "mongo": (everything["mongo"], MONGO),
        "s3": (everything["s3"], S3_PORT["dev"]),
    }
    roles = {
        labels["app.kubernetes.io/component"]: labels
        for name, labels in everything.items()
        if name.startswith("chat-")
    }
    assert set(roles) == set(USES)
    for role, labels in roles.items():
        for backend, (backend_labels, port) in backends.items():
            expected = backend in USES[role]
            out = allowed(docs, "Egress", labels, port, labels=backend_labels)
            into = allowed(docs, "Ingress", backend_labels, port, labels=labels)
            assert (out and into) == expected, (role, backend, out, into)
    stranger = {"app.kubernetes.io/name": "debug"}
    for backend, (backend_labels, port) in backends.items():
        assert not allowed(docs, "Ingress", backend_labels, port, labels=stranger), backend
        assert not allowed(docs, "Ingress", backend_labels, port, namespace="default"), backend
    # The broker reaches itself (its advertised listener is its inter-broker listener).
    kafka, port = backends["kafka"]
    assert allowed(docs, "Egress", kafka, port, labels=kafka)
    assert allowed(docs, "Ingress", kafka, port, labels=kafka)


def test_production_backends_only_for_the_roles_that_use_them() -> None:
    docs = rendered("production")
    vpc = "10.0.42.7"
    ports = {"kafka": KAFKA_PORT["production"], "redis": REDIS, "mongo": MONGO}
    ports["s3"] = S3_PORT["production"]  # the VPC's S3 interface endpoint
    roles = {labels["app.kubernetes.io/component"]: labels for labels in pods(docs).values()}
    assert set(roles) == set(USES)
    for role, labels in roles.items():
        for backend, port in ports.items():
            assert allowed(docs, "Egress", labels, port, ip=vpc) == (backend in USES[role]), (
                role,
                backend,
            )
        assert not allowed(docs, "Egress", labels, ports["kafka"], ip="203.0.113.7"), role


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_edges_take_clients_from_the_ingress_only(overlay: str) -> None:
    docs = rendered(overlay)
    roles = {labels.get("app.kubernetes.io/component"): labels for labels in pods(docs).values()}
    edge = roles["edge"]
    if overlay == "dev":
        assert allowed(docs, "Ingress", edge, 8080, namespace="ingress-nginx")
    else:
        assert allowed(docs, "Ingress", edge, 8080, ip="10.0.3.9")  # the ALB's nodes, in the VPC
    for role in ("worker", "sink", "media", "topics"):
        assert not allowed(docs, "Ingress", roles[role], 8080, namespace="ingress-nginx"), role
        assert not allowed(docs, "Ingress", roles[role], 8080, ip="10.0.3.9"), role
    # Prometheus scrapes every long-running role's metrics port.
    for role, port in (("edge", 8080), ("worker", 6066), ("sink", 6070), ("media", 6072)):
        assert allowed(docs, "Ingress", roles[role], port, namespace="monitoring"), role
