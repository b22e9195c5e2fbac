"""A kept sentinel.conf is reused only when it belongs to this stack's ports and passwords."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubernaut_tools.localstack import redis_servers as rs

NODES = {16379, 16380, 16381}
PW = ("sentinel-pw", "node-pw")


def test_a_fresh_config_matches_its_own_ports(tmp_path: Path) -> None:
    conf = tmp_path / "sentinel.conf"
    conf.write_text(rs.sentinel_conf("127.0.0.1", 26379, tmp_path, ("127.0.0.1", 16379), *PW))
    assert rs.sentinel_conf_matches(conf, 26379, NODES, *PW)


def test_a_config_rewritten_after_a_failover_still_matches(tmp_path: Path) -> None:
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        'port 26379\nrequirepass "sentinel-pw"\nsentinel monitor gateway-master 127.0.0.1 16381 2\n'
        "sentinel auth-pass gateway-master node-pw\nsentinel myid abc\n"
        "user default on #2e2893e4b128d6c0 ~* &* +@all\n"
    )
    assert rs.sentinel_conf_matches(conf, 26379, NODES, *PW)


def test_a_config_for_other_ports_does_not_match(tmp_path: Path) -> None:
    conf = tmp_path / "sentinel.conf"
    conf.write_text(rs.sentinel_conf("127.0.0.1", 26679, tmp_path, ("127.0.0.1", 16679), *PW))
    assert not rs.sentinel_conf_matches(conf, 26379, NODES, *PW)
    assert not rs.sentinel_conf_matches(conf, 26679, NODES, *PW)


def test_a_config_without_the_current_passwords_does_not_match(tmp_path: Path) -> None:
    conf = tmp_path / "sentinel.conf"
    conf.write_text("port 26379\nsentinel monitor gateway-master 127.0.0.1 16381 2\n")
    assert not rs.sentinel_conf_matches(conf, 26379, NODES, *PW)
    conf.write_text(rs.sentinel_conf("127.0.0.1", 26379, tmp_path, ("127.0.0.1", 16379), "old", "node-pw"))
    assert not rs.sentinel_conf_matches(conf, 26379, NODES, *PW)


def test_every_server_config_requires_a_password(tmp_path: Path) -> None:
    node = rs.gateway_node_conf("127.0.0.1", 16380, tmp_path, ("127.0.0.1", 16379), "pw", "gw-pw")
    assert 'requirepass "pw"' in node
    assert 'masterauth "pw"' in node
    assert f"user gateway on >gw-pw ~* resetchannels &* {rs.GATEWAY_COMMANDS}" in node
    ctx = rs.context_conf("127.0.0.1", 16390, tmp_path, "pw", "ctx-pw")
    assert 'requirepass "pw"' in ctx
    assert "user context-api on >ctx-pw" in ctx
    with pytest.raises(ValueError, match="password"):
        rs.context_conf("127.0.0.1", 16390, tmp_path, "pw", "a b")
