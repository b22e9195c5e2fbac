"""The ACL users allow every command the services' Lua scripts and pipelines send: a command missing
from the list fails only at run time, under the ACL (NOPERM), and looks like an unanswered master."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from kubernaut.contextapi.cache import l1
from kubernaut_tools.localstack import redis_servers as rs


def _allowed(commands: str) -> set[str]:
    return {c[1:].lower() for c in commands.split() if c.startswith("+")}


def test_gateway_user_allows_every_command_of_its_scripts() -> None:
    scripts = resources.files("kubernaut.gateway") / "scripts"
    called = {
        name.lower()
        for entry in scripts.iterdir()
        if entry.name.endswith(".lua")
        for name in re.findall(r"redis\.call\('([A-Za-z]+)'", entry.read_text())
    }
    assert called, "no redis.call found: the pattern no longer matches the scripts"
    assert called - _allowed(rs.GATEWAY_COMMANDS) == set()


def test_gateway_user_allows_the_replica_wait_of_counting_calls() -> None:
    assert "wait" in _allowed(rs.GATEWAY_COMMANDS)


def test_context_api_user_allows_every_command_of_its_scripts_and_no_pub_sub() -> None:
    called = {
        name.lower()
        for script in (l1._SET_IF_CURRENT, l1._INVALIDATE)
        for name in re.findall(r"redis\.call\('([A-Za-z]+)'", script)
    }
    assert called, "no redis.call found: the pattern no longer matches the scripts"
    allowed = _allowed(rs.CONTEXT_API_COMMANDS)
    assert called - allowed == set()
    # Invalidations reach other replicas through PostgreSQL: the Context-API neither publishes nor listens.
    assert not {"publish", "subscribe"} & allowed


def test_context_api_user_is_the_same_in_the_kubernetes_manifest() -> None:
    manifest = (Path(__file__).parents[2] / "deploy/kubernetes/base/redis.yaml").read_text()
    found = re.search(r'- name: CONTEXT_API_COMMANDS\n\s+value: "([^"]*)"', manifest)
    assert found is not None
    assert found.group(1) == rs.CONTEXT_API_COMMANDS
    assert "&ctx:*" not in manifest
