"""Production runs PostgreSQL as a CloudNativePG Cluster; the dev overlay keeps the single instance."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from kubernaut.store import roles
from tests.deploy.manifests import NAMESPACE, ROOT, Rendered, container, render, resolve_env

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
    assert spec["bootstrap"]["initdb"]["owner"] == roles.OWNER
    assert spec["bootstrap"]["initdb"]["secret"]["name"] == "kubernaut-postgres-app"


def role_secrets(r: Rendered) -> dict[str, str]:
    """role -> the basic-auth Secret its password comes from, for the owner and the managed roles."""
    spec = r.get("Cluster", "kubernaut-postgres")["spec"]
    found = {spec["bootstrap"]["initdb"]["owner"]: spec["bootstrap"]["initdb"]["secret"]["name"]}
    for role in spec["managed"]["roles"]:
        found[role["name"]] = role["passwordSecret"]["name"]
    return found


def test_the_cluster_creates_each_service_role_unprivileged() -> None:
    """The operator creates the services' roles (managed.roles); the owner's migrations grant them."""
    managed = render("production").get("Cluster", "kubernaut-postgres")["spec"]["managed"]["roles"]
    assert {m["name"] for m in managed} == set(roles.SERVICE_ROLES)
    for m in managed:
        assert m["ensure"] == "present"
        assert m["login"] is True
        for attr in ("superuser", "createdb", "createrole", "replication", "bypassrls"):
            assert m[attr] is False, (m["name"], attr)
        assert m.get("inRoles", []) == []


def test_production_has_no_postgres_statefulset_and_dev_keeps_one() -> None:
    prod = render("production")
    assert not [w for w in prod.workloads() if w["metadata"]["name"] == "postgres"]
    assert not [s for s in prod.of_kind("Service") if s["metadata"]["name"] == "postgres"]
    dev = render("dev")
    assert dev.workload("postgres")["spec"]["replicas"] == 1
    assert not dev.of_kind("Cluster")


def test_each_container_reaches_the_cluster_as_its_own_role() -> None:
    """Migrations as the owner and the gateway on -rw; the Context-API writes on -rw and reads on -ro;
    each DSN carries the password the Cluster sets for that role (from the same Secret)."""
    r = render("production")
    secrets = role_secrets(r)
    gateway = r.workload("gateway")
    [migrate] = gateway["spec"]["template"]["spec"]["initContainers"]
    context = resolve_env(r, container(r.workload("context-api"), "context-api"))
    dsns = {
        ("migrate", "KUBERNAUT_POSTGRES__DSN"): (resolve_env(r, migrate), roles.OWNER, RW),
        ("gateway", "KUBERNAUT_POSTGRES__GATEWAY_DSN"): (
            resolve_env(r, container(gateway, "gateway")),
            roles.GATEWAY,
            RW,
        ),
        ("context-api", "KUBERNAUT_POSTGRES__CONTEXT_API_DSN"): (context, roles.CONTEXT_API, RW),
        ("context-api", "KUBERNAUT_POSTGRES__READ_DSN"): (context, roles.CONTEXT_API, RO),
    }
    for (where, name), (env, role, host) in dsns.items():
        dsn = urlsplit(env[name])
        assert dsn.netloc.endswith("@" + host), (where, name)
        assert dsn.username == role, (where, name)
        assert dsn.password == r.secret_value(secrets[role], "password"), (where, name)
        assert r.secret_value(secrets[role], "username") == role
        assert dsn.path == "/kubernaut"
    gateway_env = resolve_env(r, container(gateway, "gateway"))
    assert "KUBERNAUT_POSTGRES__READ_DSN" not in gateway_env
    assert "KUBERNAUT_POSTGRES__DSN" not in gateway_env  # the owner's DSN stays in the init container
    assert "KUBERNAUT_POSTGRES__DSN" not in context
    # No container still points at the base's StatefulSet or its Secret.
    assert "postgres-credentials" not in str(r.of_kind("Deployment"))


def _documented_secrets() -> dict[str, dict[str, str | None]]:
    """Secret -> key -> literal value (None when generated) created by docs/kubernetes.md's commands for
    production ("Before you apply", item 3)."""
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    section = text[text.index("3. **Secrets.**") : text.index("4. **Monitoring.**")]
    commands = " ".join(section.split("\\\n")).splitlines()
    found: dict[str, dict[str, str | None]] = {}
    for line in commands:
        if m := re.search(r"create secret generic (\S+)(.*)", line):
            keys = re.findall(r"--from-literal=([^=\s]+)=", m.group(2))
            found[m.group(1).strip('"')] = dict.fromkeys(keys)
        elif m := re.match(r"\s*basic (\S+) (\S+)\s*$", line):
            found[m.group(1)] = {"username": m.group(2), "password": None}
    return found


def test_the_documented_commands_create_every_secret_production_reads() -> None:
    r = render("production")
    documented = _documented_secrets()
    wanted: set[tuple[str, str | None]] = set()
    for w in r.workloads():
        spec = w["spec"]["template"]["spec"]
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            for e in c.get("env", []):
                if ref := e.get("valueFrom", {}).get("secretKeyRef"):
                    wanted.add((ref["name"], ref["key"]))
        for v in spec.get("volumes", []):
            if "secret" in v:
                wanted.add((v["secret"]["secretName"], None))
    cluster = r.get("Cluster", "kubernaut-postgres")["spec"]
    for role, secret in role_secrets(r).items():
        wanted |= {(secret, "username"), (secret, "password")}
        assert documented[secret]["username"] == role, secret  # CloudNativePG checks the user name
    for cred in cluster["backup"]["barmanObjectStore"]["s3Credentials"].values():
        wanted.add((cred["name"], cred["key"]))
    missing = {
        (name, key) for name, key in wanted if name not in documented or (key and key not in documented[name])
    }
    assert not missing
    assert "postgres-credentials" not in {name for name, _ in wanted}
