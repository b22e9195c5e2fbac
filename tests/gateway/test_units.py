"""Pure functions: fingerprint, resource and namespace choice, priority matrix, field paths, auth."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kubernaut.config import ConfigError
from kubernaut.gateway.adapters import alertmanager, kubernetes_event
from kubernaut.gateway.auth import AuthFailure, TokenAuth, load_tokens
from kubernaut.gateway.pipeline import storm_fingerprint
from kubernaut.gateway.signal import (
    environment,
    fingerprint,
    namespace_from_labels,
    priority,
    resource_from_labels,
)
from kubernaut.problems import Problem
from kubernaut.validation import field_path


def test_fingerprint_is_sha256_of_the_length_prefixed_identity() -> None:
    expected = hashlib.sha256(b"7:HighCPU4:shop3:Pod5:api-0").hexdigest()
    assert fingerprint("HighCPU", "shop", "Pod", "api-0") == expected


def test_resource_is_the_first_label_in_design_order() -> None:
    assert resource_from_labels({"service": "s", "pod": "p", "node": "n"}) == ("Pod", "p")
    assert resource_from_labels({"node": "n", "service": "s"}) == ("Node", "n")
    assert resource_from_labels({"statefulset": "db", "daemonset": "d"}) == ("StatefulSet", "db")
    assert resource_from_labels({"instance": "x"}) == ("", "")


def test_namespace_falls_back_to_exported_namespace_then_default() -> None:
    assert namespace_from_labels({"namespace": "a", "exported_namespace": "b"}) == "a"
    assert namespace_from_labels({"exported_namespace": "b"}) == "b"
    assert namespace_from_labels({}) == "default"


@pytest.mark.parametrize(
    ("severity", "env", "expected"),
    [
        ("critical", "production", "P0"),
        ("critical", "staging", "P1"),
        ("warning", "production", "P1"),
        ("critical", "development", "P2"),
        ("critical", "unknown", "P2"),
        ("warning", "staging", "P2"),
        ("info", "production", "P3"),
        ("unknown", "production", "P2"),
    ],
)
def test_priority_matrix(severity: str, env: str, expected: str) -> None:
    assert priority(severity, env) == expected


def test_environment_from_namespace_map() -> None:
    assert environment("shop", {"shop": "production"}) == "production"
    assert environment("lab", {"shop": "production"}) == "unknown"


def test_field_path() -> None:
    assert field_path(("alerts", 3, "labels", "alertname")) == "alerts[3].labels.alertname"
    assert field_path(()) == "(body)"


def test_webhook_alerts_are_all_normalised() -> None:
    body = (
        b'{"alerts": ['
        b'{"status": "firing", "labels": {"alertname": "A", "exported_namespace": "n", "deployment": "d",'
        b' "severity": "CRITICAL"}},'
        b'{"status": "resolved", "labels": {"alertname": "B"}}]}'
    )
    first, second = alertmanager.parse(body, max_alerts=10).signals
    assert (first.name, first.namespace, first.resource, first.severity, first.firing) == (
        "A",
        "n",
        "Deployment/d",
        "critical",
        True,
    )
    assert first.fingerprint == fingerprint("A", "n", "Deployment", "d")
    assert (second.namespace, second.resource, second.severity, second.firing) == (
        "default",
        "",
        "unknown",
        False,
    )


def test_event_uses_the_reason_in_its_fingerprint() -> None:
    body = (
        b'{"type": "Warning", "reason": "Evicted", "involvedObject": {"kind": "Pod", "name": "p"},'
        b' "metadata": {"namespace": "m"}}'
    )
    (signal,) = kubernetes_event.parse(body).signals
    assert signal.fingerprint == fingerprint("Evicted", "m", "Pod", "p")
    assert signal.severity == "critical"


def test_storm_fingerprint_differs_per_window() -> None:
    assert storm_fingerprint("rate", "A", "n", 1) != storm_fingerprint("rate", "A", "n", 2)
    assert storm_fingerprint("rate", "A", "n", 1) != storm_fingerprint("pattern", "A", "n", 1)


def test_auth_names_the_token_and_refuses_others(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("alertmanager: s3cret\nops: other\n")
    auth = TokenAuth(load_tokens(path))
    assert auth.identify(["Bearer s3cret"]) == "alertmanager"
    assert auth.identify(["bearer other"]) == "ops"
    assert auth.identify(["Bearer \ts3cret \t"]) == "alertmanager"
    for header, reason in [
        ([], "missing"),
        ([""], "missing"),
        (["Basic s3cret"], "missing"),
        (["Bearer nope"], "invalid"),
        (["Bearer s3cret\xa0"], "invalid"),
        (["Bearer s3cret\x85"], "invalid"),
        (["Bearer s3cret", "Bearer s3cret"], "duplicate"),
    ]:
        with pytest.raises(AuthFailure) as err:
            auth.identify(header)
        assert err.value.reason == reason
        assert isinstance(err.value, Problem)
        assert err.value.status == 401


# A token with blanks around it could never match (the header's are stripped): refused, as the
# Context-API refuses it.
@pytest.mark.parametrize("content", ["", "- a\n- b\n", "name: 5\n", "name: ''\n", "name: ' s3cret'\n"])
def test_bad_tokens_files_are_config_errors(tmp_path: Path, content: str) -> None:
    path = tmp_path / "tokens"
    path.write_text(content)
    with pytest.raises(ConfigError):
        load_tokens(path)
