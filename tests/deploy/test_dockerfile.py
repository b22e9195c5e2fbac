"""The services' Dockerfile, read as text (no container engine here to build it)."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass

from tests.deploy.manifests import ROOT, container, container_port, pod_spec, render

DOCKERFILE = ROOT / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def instructions() -> list[Instruction]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            out.append(Instruction(keyword.upper(), args.strip()))
    return out


def stages() -> list[list[Instruction]]:
    """Instructions grouped by FROM (global ARGs before the first FROM are left out)."""
    groups: list[list[Instruction]] = []
    for ins in instructions():
        if ins.keyword == "FROM":
            groups.append([])
        if groups:
            groups[-1].append(ins)
    return groups


def base_image(from_args: str) -> str:
    image = from_args.split()[0]
    defaults = {
        m.group(1): m.group(2)
        for ins in instructions()
        if ins.keyword == "ARG" and (m := re.match(r"(\w+)=(\S+)", ins.args))
    }
    return re.sub(r"\$\{?(\w+)\}?", lambda m: defaults[m.group(1)], image)


def test_multi_stage_on_pinned_slim_python_311() -> None:
    groups = stages()
    assert len(groups) >= 2, "build and runtime stages"
    for group in groups:
        image = base_image(group[0].args)
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", image), image
    final = groups[-1]
    assert any(i.keyword == "COPY" and i.args.startswith("--from=") for i in final), (
        "runtime copies from build"
    )
    # the toolchain stays in the build stage
    assert not any(i.keyword == "RUN" and "pip install" in i.args for i in final)


def test_runs_as_the_unprivileged_user_the_manifests_expect() -> None:
    final = stages()[-1]
    users = [i.args for i in final if i.keyword == "USER"]
    assert users, "no USER in the runtime stage: it would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "a numeric USER lets Kubernetes verify runAsNonRoot"
    assert int(uid) != 0
    assert (gid or uid).isdigit()
    assert int(gid or uid) != 0
    for service in ("gateway", "context-api"):
        deployment = render("production").get("Deployment", service)
        assert pod_spec(deployment)["securityContext"]["runAsUser"] == int(uid)


def test_entrypoint_and_ports_match_the_manifests() -> None:
    final = stages()[-1]
    (entrypoint,) = [json.loads(i.args) for i in final if i.keyword == "ENTRYPOINT"]
    assert entrypoint == ["kubernaut"]  # exec form; the Deployments pass `gateway|context-api --config ...`
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "kubernaut" in scripts
    exposed = {int(p) for i in final if i.keyword == "EXPOSE" for p in i.args.split()}
    r = render("production")
    assert exposed == {
        container_port(container(r.get("Deployment", s), s), "http") for s in ("gateway", "context-api")
    }


def test_no_secrets_or_remote_files_in_the_image() -> None:
    for ins in instructions():
        assert ins.keyword != "ADD", "COPY only: ADD fetches URLs and unpacks archives"
        if ins.keyword in ("ENV", "ARG"):
            assert not re.search(r"PASSWORD|TOKEN|SECRET|DSN", ins.args, re.I), ins.args


def test_image_tag_is_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for service in ("gateway", "context-api"):
        image = container(render("production").get("Deployment", service), service)["image"]
        assert image.endswith(f":{version}"), image


def test_build_context_is_only_what_the_build_copies() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", "exclude everything, then allow what the build copies"
    copied = {arg for i in stages()[0] if i.keyword == "COPY" for arg in i.args.split()[:-1]}
    assert {"!" + c.rstrip("/") for c in copied} <= {p.rstrip("/") for p in ignore if p.startswith("!")}


def test_image_installs_the_services_only() -> None:
    """The image gets the services' distribution (src/kubernaut), never the operator tools (tools/)."""
    build = stages()[0]
    copied = {arg.rstrip("/") for i in build if i.keyword == "COPY" for arg in i.args.split()[:-1]}
    assert not any(c.split("/")[0] == "tools" for c in copied), copied
    targets = {
        arg
        for i in build
        if i.keyword == "RUN" and "pip install" in i.args
        for arg in i.args.split("pip install", 1)[1].split()
        if not arg.startswith("-")
    }
    assert targets == {"."}, "pip installs exactly the services' distribution in the build context"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["name"] == "kubernaut"
    assert project["tool"]["setuptools"]["packages"]["find"]["where"] == ["src"]
    assert not any(dep.startswith("kubernaut") for dep in project["project"]["dependencies"])
    assert {p.name for p in (ROOT / "src").iterdir() if not p.name.endswith(".egg-info")} == {"kubernaut"}
    moved_out = {"localstack", "drill", "demo", "bench", "send.py", "foreground.py", "contextapi/seed.py"}
    assert sorted(m for m in moved_out if (ROOT / "src" / "kubernaut" / m).exists()) == []
