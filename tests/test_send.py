"""`kubernaut send`: bad arguments, bad files and an unreachable gateway each give one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ports import free_port

CORPUS = Path(__file__).parent / "data" / "kubernetes-events.json"


def send(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubernaut", "send", *args, "--run-dir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_corpus_is_a_kubectl_list_of_realistic_events() -> None:
    doc = json.loads(CORPUS.read_text())
    assert doc["kind"] == "List"
    reasons = {e["reason"] for e in doc["items"]}
    assert {
        "OOMKilled",
        "BackOff",
        "FailedScheduling",
        "FailedMount",
        "Evicted",
        "NodeNotReady",
        "Unhealthy",
    } <= (reasons)
    assert [e["type"] for e in doc["items"]].count("Normal") == 1
    for event in doc["items"]:
        assert event["apiVersion"] == "v1"
        assert event["kind"] == "Event"
        assert event["involvedObject"]["kind"]
        assert event["involvedObject"]["name"]
        assert event["metadata"]["namespace"]


@pytest.mark.parametrize(
    "args",
    [[], ["--kubernetes-events", str(CORPUS), "--alerts", str(CORPUS)]],
    ids=["no-file", "both-files"],
)
def test_exactly_one_file_kind(args: list[str], tmp_path: Path) -> None:
    line = one_error_line(send(*args, tmp_path=tmp_path))
    assert "exactly one of --kubernetes-events FILE or --alerts FILE" in line


def test_missing_file(tmp_path: Path) -> None:
    line = one_error_line(send("--kubernetes-events", str(tmp_path / "nope.json"), tmp_path=tmp_path))
    assert line.endswith("nope.json: no such file")


def test_file_that_is_not_json(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.json", "{not json")
    assert "bad.json: not valid JSON" in one_error_line(
        send("--kubernetes-events", str(bad), tmp_path=tmp_path)
    )


def test_json_that_is_not_events_or_webhooks(tmp_path: Path) -> None:
    other = write(tmp_path / "other.json", json.dumps([{"kind": "Pod", "metadata": {"name": "x"}}]))
    line = one_error_line(send("--kubernetes-events", str(other), tmp_path=tmp_path))
    assert "item 0 is not a core/v1 Event" in line
    line = one_error_line(send("--alerts", str(other), tmp_path=tmp_path))
    assert "payload 0 has no alerts list" in line
    empty = write(tmp_path / "empty.json", '{"kind": "List", "items": []}')
    assert "found no items" in one_error_line(send("--kubernetes-events", str(empty), tmp_path=tmp_path))


def test_url_must_be_http(tmp_path: Path) -> None:
    line = one_error_line(
        send("--kubernetes-events", str(CORPUS), "--url", "localhost:8080", tmp_path=tmp_path)
    )
    assert "is not an http:// or https:// URL" in line


def test_unreachable_gateway(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    line = one_error_line(send("--kubernetes-events", str(CORPUS), "--url", url, tmp_path=tmp_path))
    assert line == f"error: cannot reach the gateway at {url} (connection refused)"
