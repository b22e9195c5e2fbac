"""The seed's values (DD-INFRASTRUCTURE-001), asserted from the rendered YAML of each overlay."""

from __future__ import annotations

import re

import pytest

from tests.deploy.manifests import (
    OVERLAYS,
    Obj,
    container,
    containers,
    env_value,
    mebibytes,
    millicores,
    pod_labels,
    pod_spec,
    redis_mebibytes,
    render,
)

PINNED_IMAGE = re.compile(r"^[a-z0-9./_-]+:(?!latest$)[\w.-]+$")


def sentinel_directives(text: str) -> dict[str, str]:
    """``sentinel <directive> gateway-master <value>`` lines of the static sentinel.conf."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "sentinel" and parts[2] == "gateway-master":
            out[parts[1]] = parts[3]
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_group_is_three_pods_of_redis_and_sentinel(overlay: str) -> None:
    r = render(overlay)
    sts = r.get("StatefulSet", "redis-gateway")
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["serviceName"] == "redis-gateway"
    names = [c["name"] for c in containers(sts)]
    assert names[:2] == ["redis", "sentinel"]
    for name in ("redis", "sentinel"):
        c = container(sts, name)
        # the start-up script enumerates its peers from REPLICAS: it must match the StatefulSet
        assert env_value(c, "REPLICAS") == str(sts["spec"]["replicas"])
        assert env_value(c, "MASTER_NAME") == "gateway-master"
        assert env_value(c, "QUORUM") == "2"
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    mounts = {m["name"]: m["mountPath"] for m in container(sts, "redis")["volumeMounts"]}
    assert mounts["data"] == "/data"
    # the preStop failover (redis-gateway.sh, at most 30 s by default) must fit in the grace period
    assert container(sts, "redis")["lifecycle"]["preStop"]["exec"]["command"][-1] == "prestop"
    assert pod_spec(sts)["terminationGracePeriodSeconds"] > 30


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_sentinel_and_redis_settings_are_the_seeds(overlay: str) -> None:
    r = render(overlay)
    directives = sentinel_directives(r.config_file("redis-gateway-config", "sentinel.conf"))
    assert directives == {
        "down-after-milliseconds": "5000",
        "failover-timeout": "10000",
        "parallel-syncs": "1",
    }
    redis_conf = r.config_file("redis-gateway-config", "redis.conf").splitlines()
    assert "save 900 1 300 10 60 10000" in redis_conf  # RDB snapshots
    assert "maxmemory-policy noeviction" in redis_conf
    assert "min-replicas-to-write 1" in redis_conf
    script = r.config_file("redis-gateway-config", "redis-gateway.sh")
    assert "sentinel announce-hostnames yes" in script
    assert "sentinel resolve-hostnames yes" in script
    assert "replica-announce-ip" in script


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_names_and_ports_are_the_seeds(overlay: str) -> None:
    r = render(overlay)
    headless = r.get("Service", "redis-gateway")["spec"]
    assert headless["clusterIP"] == "None"
    assert headless["publishNotReadyAddresses"] is True
    ha = r.get("Service", "redis-gateway-ha")["spec"]
    # Sentinel discovery only: no plain Redis port that would reach read-only replicas.
    assert [p["port"] for p in ha["ports"]] == [26379]
    assert ha["selector"] == {"app": "redis-gateway"}
    cache = r.get("Service", "redis")["spec"]
    assert cache["selector"] == {"app": "redis"}
    assert {p["name"]: p["port"] for p in cache["ports"]}["redis"] == 6379
    assert r.get("Service", "gateway")
    assert r.get("Service", "context-api")
    assert r.get("ConfigMap", "gateway-config")
    assert r.get("ConfigMap", "context-api-config")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_context_cache_is_one_unpersisted_pod_evicting_only_ttl_keys(overlay: str) -> None:
    r = render(overlay)
    deployment = r.get("Deployment", "redis")
    assert deployment["spec"]["replicas"] == 1
    assert "volumeClaimTemplates" not in deployment["spec"]
    conf = r.config_file("redis-config", "redis.conf").splitlines()
    assert 'save ""' in conf
    assert "appendonly no" in conf
    assert "maxmemory-policy volatile-lru" in conf


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_and_replicas(overlay: str) -> None:
    r = render(overlay)
    budgets = {p["metadata"]["name"]: p["spec"] for p in r.of_kind("PodDisruptionBudget")}
    assert budgets["redis-gateway"] == {
        "minAvailable": 2,
        "selector": {"matchLabels": {"app": "redis-gateway"}},
    }
    assert r.get("Deployment", "gateway")["spec"]["replicas"] == 2
    for name, budget in budgets.items():
        target = r.workload(name)
        assert budget["selector"]["matchLabels"].items() <= pod_labels(target).items()
        assert budget["minAvailable"] < target["spec"]["replicas"], (
            f"{name}: a budget that blocks every drain"
        )


def anti_affinity(workload: Obj) -> Obj:
    affinity: Obj = pod_spec(workload)["affinity"]["podAntiAffinity"]
    return affinity


def test_production_spreads_the_gateway_group_over_nodes_strictly() -> None:
    sts = render("production").get("StatefulSet", "redis-gateway")
    terms = anti_affinity(sts)
    assert "preferredDuringSchedulingIgnoredDuringExecution" not in terms
    (term,) = terms["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= pod_labels(sts).items()


def test_dev_prefers_spreading_so_a_single_node_cluster_works() -> None:
    terms = anti_affinity(render("dev").get("StatefulSet", "redis-gateway"))
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in terms
    assert terms["preferredDuringSchedulingIgnoredDuringExecution"]


def resources(workload: Obj, name: str) -> tuple[int, float, int, float]:
    res = container(workload, name)["resources"]
    return (
        millicores(res["requests"]["cpu"]),
        mebibytes(res["requests"]["memory"]),
        millicores(res["limits"]["cpu"]),
        mebibytes(res["limits"]["memory"]),
    )


def test_production_resources_are_the_seeds_table() -> None:
    r = render("production")
    sts, cache = r.get("StatefulSet", "redis-gateway"), r.get("Deployment", "redis")
    n = sts["spec"]["replicas"]
    group = tuple(n * v for v in resources(sts, "redis"))
    sentinels = tuple(n * v for v in resources(sts, "sentinel"))
    single = resources(cache, "redis")
    assert group == (300, 384, 1500, 1536)  # redis-gateway-ha (3 pods)
    assert sentinels == (150, 192, 300, 384)  # redis-gateway-sentinel (3 containers)
    assert single == (100, 256, 500, 512)  # redis (1 pod, Context-API)
    total = tuple(sum(col) for col in zip(group, sentinels, single, strict=True))
    assert total == (550, 832, 2300, 2432)  # the seed's TOTAL row


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(overlay: str) -> None:
    for workload in render(overlay).workloads():
        for c in containers(workload):
            req, mem_req, lim, mem_lim = resources(workload, c["name"])
            where = f"{workload['metadata']['name']}/{c['name']}"
            assert 0 < req <= lim, where
            assert 0 < mem_req <= mem_lim, where


def test_dev_is_smaller_than_production() -> None:
    dev, prod = render("dev"), render("production")
    for workload in prod.workloads():
        name = workload["metadata"]["name"]
        for c in containers(workload):
            d, p = resources(dev.workload(name), c["name"]), resources(workload, c["name"])
            assert all(a <= b for a, b in zip(d, p, strict=True)), f"{name}/{c['name']}: {d} > {p}"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize(("workload", "name"), [("redis-gateway", "redis"), ("redis", "redis")])
def test_redis_maxmemory_fits_under_the_memory_limit(overlay: str, workload: str, name: str) -> None:
    c = container(render(overlay).workload(workload), name)
    maxmemory = redis_mebibytes(env_value(c, "REDIS_MAXMEMORY"))
    limit = mebibytes(c["resources"]["limits"]["memory"])
    # the gateway group forks for RDB snapshots: copy-on-write needs room beside the dataset
    assert maxmemory <= limit * (0.5 if workload == "redis-gateway" else 0.75)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_locked_down(overlay: str) -> None:
    for workload in render(overlay).workloads():
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for c in containers(workload):
            sc = c["securityContext"]
            where = f"{workload['metadata']['name']}/{c['name']}"
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert sc.get("runAsUser", spec["securityContext"].get("runAsUser", 0)) != 0, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_probes_and_pinned_images(overlay: str) -> None:
    for workload in render(overlay).workloads():
        for c in containers(workload):
            where = f"{workload['metadata']['name']}/{c['name']}"
            assert "livenessProbe" in c, where
            assert PINNED_IMAGE.match(c["image"]), f"{where}: image {c['image']} is not pinned"
            if not c["name"].endswith("exporter"):
                assert "readinessProbe" in c, where


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", ["gateway", "context-api"])
def test_services_probe_healthz_and_readyz(overlay: str, service: str) -> None:
    c = container(render(overlay).get("Deployment", service), service)
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["args"][0] == service
