"""Production runs PostgreSQL as a CloudNativePG Cluster; the dev overlay keeps the single instance."""

from __future__ import annotations

from tests.deploy.manifests import NAMESPACE, container, render, resolve_env

RW = f"kubernaut-postgres-rw.{NAMESPACE}.svc.cluster.local:5432"
RO = f"kubernaut-postgres-ro.{NAMESPACE}.svc.cluster.local:5432"


def test_production_runs_a_synchronous_three_instance_cluster_on_distinct_nodes() -> None:
    r = render("production")
    spec = r.get("Cluster", "kubernaut-postgres")["spec"]
    assert spec["instances"] == 3
    sync = spec["postgresql"]["synchronous"]
    assert sync["number"] >= 1
    assert sync["dataDurability"] == "required"
    assert spec["affinity"]["enablePodAntiAffinity"] is True
    assert spec["affinity"]["podAntiAffinityType"] == "required"
    assert spec["affinity"]["topologyKey"] == "kubernetes.io/hostname"
    assert spec["backup"]["barmanObjectStore"]["destinationPath"]
    backup = r.get("ScheduledBackup", "kubernaut-postgres-daily")["spec"]
    assert backup["cluster"]["name"] == "kubernaut-postgres"
    assert spec["bootstrap"]["initdb"]["secret"]["name"] == "kubernaut-postgres-app"
    assert r.secret_value("kubernaut-postgres-app", "username") == "kubernaut"


def test_production_has_no_postgres_statefulset_and_dev_keeps_one() -> None:
    prod = render("production")
    assert not [w for w in prod.workloads() if w["metadata"]["name"] == "postgres"]
    assert not [s for s in prod.of_kind("Service") if s["metadata"]["name"] == "postgres"]
    dev = render("dev")
    assert dev.workload("postgres")["spec"]["replicas"] == 1
    assert not dev.of_kind("Cluster")


def test_services_write_to_rw_and_the_context_api_reads_from_ro() -> None:
    r = render("production")
    gateway = resolve_env(r, container(r.workload("gateway"), "gateway"))
    context = resolve_env(r, container(r.workload("context-api"), "context-api"))
    assert RW in gateway["KUBERNAUT_POSTGRES__DSN"]
    assert "KUBERNAUT_POSTGRES__READ_DSN" not in gateway
    assert RW in context["KUBERNAUT_POSTGRES__DSN"]
    assert RO in context["KUBERNAUT_POSTGRES__READ_DSN"]
    # The DSNs carry the password the Cluster bootstraps its owner with.
    password = r.secret_value("kubernaut-postgres-app", "password")
    assert f"kubernaut:{password}@" in context["KUBERNAUT_POSTGRES__READ_DSN"]
