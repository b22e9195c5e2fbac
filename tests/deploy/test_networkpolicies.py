"""NetworkPolicies protect the pods they mean to, admit exactly the intended clients, and let each
workload out to exactly what it needs (default-deny both ways for the whole namespace).

Every rendered workload is a client and a target, beside pods that must be refused: a stranger in the
namespace, a pod labelled app=gateway in another namespace, and a Prometheus look-alike outside the
monitoring namespace; egress is also tried towards the cluster DNS and an address outside the cluster.
"""

from __future__ import annotations

import pytest

from tests.deploy.manifests import NAMESPACE, OVERLAYS, Rendered, containers, pod_labels, render
from tests.deploy.netpol import Pod, allowed, egress_allowed, selector_matches, selects

MONITORING = "monitoring"
PROMETHEUS_LABELS = {"app.kubernetes.io/name": "prometheus"}


def ns_labels(namespace: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": namespace}


# A CloudNativePG Cluster's instance pods (the operator labels them and names their ports).
CNPG_PORTS = {"postgresql": 5432, "status": 8000, "metrics": 9187}


def workload_pods(rendered: Rendered) -> dict[str, Pod]:
    pods = {}
    for w in rendered.workloads():
        ports = {p["name"]: int(p["containerPort"]) for c in containers(w) for p in c.get("ports", [])}
        name = w["metadata"]["name"]
        pods[name] = Pod(name, NAMESPACE, pod_labels(w), ns_labels(NAMESPACE), ports)
    for cluster in rendered.of_kind("Cluster"):
        labels = {"cnpg.io/cluster": cluster["metadata"]["name"]}
        pods["postgres"] = Pod("postgres", NAMESPACE, labels, ns_labels(NAMESPACE), dict(CNPG_PORTS))
    return pods


OUTSIDERS = [
    Pod("prometheus", MONITORING, PROMETHEUS_LABELS, ns_labels(MONITORING)),
    Pod("stranger", NAMESPACE, {"app": "debug-shell"}, ns_labels(NAMESPACE)),
    Pod("gateway-elsewhere", "default", {"app": "gateway"}, ns_labels("default")),
    Pod("prometheus-lookalike", NAMESPACE, PROMETHEUS_LABELS, ns_labels(NAMESPACE)),
    Pod(
        "cnpg-operator", "cnpg-system", {"app.kubernetes.io/name": "cloudnative-pg"}, ns_labels("cnpg-system")
    ),
]

# target -> port name -> the clients admitted
EXPECTED: dict[str, dict[str, set[str]]] = {
    "redis-gateway": {
        "redis": {"gateway", "redis-gateway"},
        "sentinel": {"gateway", "redis-gateway"},
        "redis-metrics": {"prometheus"},
        "sentinel-metrics": {"prometheus"},
    },
    "redis": {"redis": {"context-api"}, "redis-metrics": {"prometheus"}},
    "postgres": {
        "postgres": {"gateway", "context-api"},
        # production's CloudNativePG instances: replication among themselves, the operator, Prometheus
        "postgresql": {"gateway", "context-api", "postgres"},
        "status": {"cnpg-operator", "postgres"},
        "metrics": {"prometheus"},
    },
}
# The services' HTTP ports stay open to clients outside the namespace (Alertmanager, the Context-API's
# consumers, Prometheus); nothing inside the namespace calls them.
OPEN = {"gateway": "http", "context-api": "http"}
DNS = Pod("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, ns_labels("kube-system"), {"dns": 53})
INTERNET = Pod("example.com", "internet", {}, {}, {"https": 443})
DNS_QUERIES = {("kube-dns", 53, "UDP"), ("kube-dns", 53, "TCP")}
# client -> (target, port, protocol) it may open, among the workloads, DNS and an outside address
EXPECTED_EGRESS: dict[str, set[tuple[str, int, str]]] = {
    "gateway": {
        *DNS_QUERIES,
        ("redis-gateway", 6379, "TCP"),
        ("redis-gateway", 26379, "TCP"),
        ("postgres", 5432, "TCP"),
    },
    "context-api": {*DNS_QUERIES, ("redis", 6379, "TCP"), ("postgres", 5432, "TCP")},
    "redis-gateway": {*DNS_QUERIES, ("redis-gateway", 6379, "TCP"), ("redis-gateway", 26379, "TCP")},
    "redis": set(),
    "postgres": set(),
}
# production's CloudNativePG instances: the other instances, and HTTPS out (the Kubernetes API, the
# backups' object store); the model's outside address listens on 443 only.
CNPG_EGRESS = {
    *DNS_QUERIES,
    ("postgres", 5432, "TCP"),
    ("postgres", 8000, "TCP"),
    ("example.com", 443, "TCP"),
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_policy_selects_exactly_the_workload_it_protects(overlay: str) -> None:
    r = render(overlay)
    pods = workload_pods(r)
    policies = r.of_kind("NetworkPolicy")
    protected = {}
    for policy in policies:
        matched = [name for name, pod in pods.items() if selects(policy, pod)]
        if policy["metadata"]["name"] == "default-deny":
            assert set(matched) == set(pods), "default-deny must select every pod"
            assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
            assert "ingress" not in policy["spec"]
            assert "egress" not in policy["spec"]
            continue
        assert len(matched) == 1, f"{policy['metadata']['name']} selects {matched}"
        protected[policy["metadata"]["name"]] = matched[0]
    assert set(protected.values()) == set(pods) == set(EXPECTED) | set(OPEN)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_intended_clients_get_in(overlay: str) -> None:
    r = render(overlay)
    pods = workload_pods(r)
    policies = r.of_kind("NetworkPolicy")
    clients = [*pods.values(), *OUTSIDERS]
    for target_name, target in pods.items():
        expected = EXPECTED.get(target_name)
        for port_name, port in target.ports.items():
            admitted = {c.name for c in clients if allowed(policies, c, target, port)}
            if expected is None:
                assert port_name == OPEN[target_name], f"{target_name}:{port_name} is unprotected"
                assert admitted == {c.name for c in OUTSIDERS if c.namespace != NAMESPACE}
            else:
                assert admitted == expected[port_name], f"{target_name}:{port_name} ({port})"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_workload_gets_out_only_to_what_it_needs(overlay: str) -> None:
    r = render(overlay)
    pods = workload_pods(r)
    policies = r.of_kind("NetworkPolicy")
    targets = [*pods.values(), DNS, INTERNET]
    for name, client in pods.items():
        reached = {
            (t.name, port, protocol)
            for t in targets
            for port in t.ports.values()
            for protocol in ("TCP", "UDP")
            if egress_allowed(policies, client, t, port, protocol)
        }
        expected = CNPG_EGRESS if name == "postgres" and r.of_kind("Cluster") else EXPECTED_EGRESS[name]
        assert reached == expected, name
    # The stranger in the namespace is shut in by default-deny: not even DNS.
    stranger = next(p for p in OUTSIDERS if p.name == "stranger")
    assert not egress_allowed(policies, stranger, DNS, 53, "UDP")


def test_the_model_reads_selectors_like_kubernetes() -> None:
    labels = {"app": "gateway", "tier": "edge"}
    assert selector_matches({}, labels)
    assert selector_matches(
        {"matchExpressions": [{"key": "app", "operator": "In", "values": ["gateway"]}]}, labels
    )
    assert not selector_matches(
        {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["gateway"]}]}, labels
    )
    assert not selector_matches({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, labels)
    assert not selector_matches({"matchLabels": {"app": "gateway", "tier": "core"}}, labels)
