"""The ACL users allow every command the services' Lua scripts and pipelines send: a command missing
from the list fails only at run time, under the ACL (NOPERM), and looks like an unanswered master."""

from __future__ import annotations

import re
from importlib import resources

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
