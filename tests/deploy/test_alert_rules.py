"""The PrometheusRules pass `promtool check rules` and the unit tests in tests/deploy/promtool/.

A PrometheusRule's spec has the shape of a Prometheus rule file, so each one is written out as
<name>.rules.yaml beside the unit tests that load it (Debian's prometheus package ships promtool).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import render

PROMTOOL_TESTS = Path(__file__).parent / "promtool"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    if path is None:
        raise RuntimeError("promtool is missing: `make install` installs Debian's prometheus package")
    return subprocess.run([path, *args], capture_output=True, text=True, check=False, timeout=120)


def write_rule_files(directory: Path) -> list[Path]:
    files = []
    for rule in render("production").of_kind("PrometheusRule"):
        path = directory / f"{rule['metadata']['name']}.rules.yaml"
        path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
        files.append(path)
    return files


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    write_rule_files(tmp_path)
    for test in PROMTOOL_TESTS.glob("*.test.yaml"):
        shutil.copy(test, tmp_path / test.name)
    return tmp_path


def test_promtool_check_rules(rules_dir: Path) -> None:
    files = sorted(rules_dir.glob("*.rules.yaml"))
    assert [f.name for f in files] == ["context-api.rules.yaml", "gateway-redis.rules.yaml"]
    result = promtool("check", "rules", *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_file_has_unit_tests_and_they_pass(rules_dir: Path) -> None:
    tests = sorted(rules_dir.glob("*.test.yaml"))
    tested = {f for t in tests for f in yaml.safe_load(t.read_text())["rule_files"]}
    assert tested == {f.name for f in rules_dir.glob("*.rules.yaml")}
    result = promtool("test", "rules", *map(str, tests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    """Each alert has a promtool case where it fires and one where it stays silent."""
    alerts = {
        r["alert"]
        for rule in render("production").of_kind("PrometheusRule")
        for g in rule["spec"]["groups"]
        for r in g["rules"]
    }
    fired: set[str] = set()
    silent: set[str] = set()
    for test_file in PROMTOOL_TESTS.glob("*.test.yaml"):
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check["exp_alerts"] else silent).add(check["alertname"])
    assert fired == alerts
    assert silent == alerts


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    """Negative control: promtool check rules does fail on a bad expression."""
    bad = tmp_path / "bad.rules.yaml"
    bad.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [{"alert": "A", "expr": "sum(("}]}]}))
    assert promtool("check", "rules", str(bad)).returncode != 0
