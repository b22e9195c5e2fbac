"""Every overlay renders, and every rendered object validates offline.

Built-in kinds: strictly (unknown fields refused) against the Kubernetes 1.30 schemas that the PyPI
package kubernetes-validate ships. The Prometheus Operator's kinds (ServiceMonitor, PrometheusRule) and
CloudNativePG's (Cluster, ScheduledBackup) are CRDs with no schema there: they validate against
tests/deploy/schemas/, which types every field these manifests use as the operator's CRD does and
refuses any other.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from referencing import Registry, Resource

from tests.deploy.manifests import NAMESPACE, OVERLAYS, Obj, render

KUBERNETES_VERSION = "1.30.0"
CRD_GROUPS = ("monitoring.coreos.com/", "postgresql.cnpg.io/")
SCHEMAS = Path(__file__).parent / "schemas"
CRD_SCHEMAS = {
    "ServiceMonitor": "servicemonitor.json",
    "PrometheusRule": "prometheusrule.json",
    "Cluster": "cnpg-cluster.json",
    "ScheduledBackup": "cnpg-scheduledbackup.json",
}


def crd_validator(kind: str) -> jsonschema.Draft202012Validator:
    schemas = {file: json.loads((SCHEMAS / file).read_text()) for file in CRD_SCHEMAS.values()}
    registry: Registry[Any] = Registry().with_resources(
        (file, Resource.from_contents(schema)) for file, schema in schemas.items()
    )
    return jsonschema.Draft202012Validator(schemas[CRD_SCHEMAS[kind]], registry=registry)


def validate(obj: Obj) -> None:
    if obj["apiVersion"].startswith(CRD_GROUPS):
        crd_validator(obj["kind"]).validate(obj)
    else:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("target", ["base", *OVERLAYS])
def test_renders_and_every_object_validates_strictly(target: str) -> None:
    rendered = render(target)
    assert rendered.objects, f"{target} rendered nothing"
    for obj in rendered.objects:
        validate(obj)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_lives_in_the_kubernaut_namespace(overlay: str) -> None:
    rendered = render(overlay)
    assert rendered.get("Namespace", NAMESPACE)
    for obj in rendered.objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_carry_the_monitoring_objects(overlay: str) -> None:
    kinds = {o["kind"] for o in render(overlay).objects}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds


def test_strict_validation_refuses_what_it_should() -> None:
    """Negative controls: the validators are not vacuous."""
    rendered = render("production")
    deployment = copy.deepcopy(rendered.get("Deployment", "gateway"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)

    monitor = copy.deepcopy(rendered.get("ServiceMonitor", "gateway"))
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)

    cluster = copy.deepcopy(rendered.get("Cluster", "kubernaut-postgres"))
    cluster["spec"]["postgresql"]["synchronous"]["method"] = "all"
    with pytest.raises(jsonschema.ValidationError):
        validate(cluster)

    rule = copy.deepcopy(rendered.get("PrometheusRule", "gateway-redis"))
    rule["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    with pytest.raises(jsonschema.ValidationError):
        validate(rule)
