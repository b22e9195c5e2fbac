"""Kubernetes NetworkPolicy semantics (ingress and egress), for the rendered manifests (no CNI here to ask).

Implements what the manifests use and refuses what they do not (ipBlock, endPort, SCTP), so a policy
using something unmodelled fails the test instead of being silently misread. A connection needs both the
client's egress and the target's ingress to allow it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Selector = dict[str, Any]


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict[str, str]
    namespace_labels: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)  # named container ports


def selector_matches(selector: Selector, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector; the empty selector matches everything."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown selector operator {op}")
    return True


def selects(policy: dict[str, Any], pod: Pod) -> bool:
    return policy["metadata"]["namespace"] == pod.namespace and selector_matches(
        policy["spec"]["podSelector"], pod.labels
    )


def _types(policy: dict[str, Any]) -> list[str]:
    """policyTypes; when absent, Ingress always and Egress when the policy has egress rules."""
    spec = policy["spec"]
    return list(spec.get("policyTypes") or ["Ingress", *(["Egress"] if "egress" in spec else [])])


def _peer_matches(peer: dict[str, Any], policy_namespace: str, client: Pod) -> bool:
    if "ipBlock" in peer:
        raise ValueError("ipBlock peers are not modelled")
    pod_sel = peer.get("podSelector")
    ns_sel = peer.get("namespaceSelector")
    if ns_sel is None:
        # a podSelector alone means: pods of the policy's own namespace
        return client.namespace == policy_namespace and selector_matches(pod_sel or {}, client.labels)
    if not selector_matches(ns_sel, client.namespace_labels):
        return False
    return pod_sel is None or selector_matches(pod_sel, client.labels)


def _port_matches(rule_port: dict[str, Any], target: Pod, port: int, protocol: str = "TCP") -> bool:
    rule_protocol = rule_port.get("protocol", "TCP")
    if rule_protocol not in ("TCP", "UDP") or "endPort" in rule_port:
        raise ValueError(f"port rule {rule_port} is not modelled")
    if rule_protocol != protocol:
        return False
    want = rule_port.get("port")
    if want is None:
        return True
    if isinstance(want, str):
        return target.ports.get(want) == port
    return int(want) == port


def _rules_allow(
    policies: list[dict[str, Any]], subject: Pod, peer: Pod, target: Pod, port: int, protocol: str, kind: str
) -> bool:
    """Do the ``kind`` ("Ingress" or "Egress") policies selecting ``subject`` allow ``peer`` on the target's
    ``port``? No such policy: allowed."""
    relevant = [p for p in policies if selects(p, subject) and kind in _types(p)]
    if not relevant:
        return True
    direction, peers_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    for policy in relevant:
        namespace = policy["metadata"]["namespace"]
        for rule in policy["spec"].get(direction) or []:
            peers = rule.get(peers_key)
            if peers and not any(_peer_matches(p, namespace, peer) for p in peers):
                continue
            ports = rule.get("ports")
            if ports and not any(_port_matches(p, target, port, protocol) for p in ports):
                continue
            return True
    return False


def ingress_allowed(
    policies: list[dict[str, Any]], client: Pod, target: Pod, port: int, protocol: str = "TCP"
) -> bool:
    """Do the policies selecting ``target`` let ``client`` in on ``port``?"""
    return _rules_allow(policies, target, client, target, port, protocol, "Ingress")


def egress_allowed(
    policies: list[dict[str, Any]], client: Pod, target: Pod, port: int, protocol: str = "TCP"
) -> bool:
    """Do the policies selecting ``client`` let it out to ``target`` on ``port``?"""
    return _rules_allow(policies, client, target, target, port, protocol, "Egress")


def allowed(
    policies: list[dict[str, Any]], client: Pod, target: Pod, port: int, protocol: str = "TCP"
) -> bool:
    """May ``client`` open a connection to ``target`` on ``port``: its egress and the target's ingress?"""
    return egress_allowed(policies, client, target, port, protocol) and ingress_allowed(
        policies, client, target, port, protocol
    )
