"""A kept sentinel.conf is reused only when it belongs to this stack's ports."""

from __future__ import annotations

from pathlib import Path

from kubernaut.localstack import redis_servers as rs

NODES = {16379, 16380, 16381}


def test_a_fresh_config_matches_its_own_ports(tmp_path: Path) -> None:
    conf = tmp_path / "sentinel.conf"
    conf.write_text(rs.sentinel_conf("127.0.0.1", 26379, tmp_path, ("127.0.0.1", 16379)))
    assert rs.sentinel_conf_matches(conf, 26379, NODES)


def test_a_config_rewritten_after_a_failover_still_matches(tmp_path: Path) -> None:
    conf = tmp_path / "sentinel.conf"
    conf.write_text("port 26379\nsentinel monitor gateway-master 127.0.0.1 16381 2\nsentinel myid abc\n")
    assert rs.sentinel_conf_matches(conf, 26379, NODES)


def test_a_config_for_other_ports_does_not_match(tmp_path: Path) -> None:
    conf = tmp_path / "sentinel.conf"
    conf.write_text(rs.sentinel_conf("127.0.0.1", 26679, tmp_path, ("127.0.0.1", 16679)))
    assert not rs.sentinel_conf_matches(conf, 26379, NODES)
    assert not rs.sentinel_conf_matches(conf, 26679, NODES)
