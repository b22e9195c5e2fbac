"""``kubernaut send``: replay Kubernetes Events or Alertmanager webhooks from a file to a gateway.

Each signal is POSTed on its own, in file order; every answer is kept so the caller can show what the
gateway did with each. Problems that make every further request pointless (gateway unreachable, token
refused) stop the run with a :class:`SendError` carrying one line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

EVENTS_PATH = "/api/v1/signals/kubernetes-event"
ALERTS_PATH = "/api/v1/signals/prometheus"


class SendError(Exception):
    """A problem stated in one line."""


@dataclass(frozen=True)
class Answer:
    """The gateway's answer to one POST."""

    status: int
    body: Any  # parsed JSON, or the raw text when the body is not JSON

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300

    @property
    def rejected(self) -> bool:
        """A definitive refusal of this signal (bad input); resending it would not help."""
        return 400 <= self.status < 500 and self.status != 429

    def results(self) -> list[dict[str, Any]]:
        """The per-signal entries of the answer: the objects carrying an ``outcome``."""
        if not isinstance(self.body, dict):
            return []
        if "outcome" in self.body:
            return [self.body]
        for value in self.body.values():
            if (
                isinstance(value, list)
                and value
                and all(isinstance(v, dict) and "outcome" in v for v in value)
            ):
                return value
        return []

    def problem(self) -> str:
        """The RFC 7807 detail (or title) of an error answer, else its text."""
        if isinstance(self.body, dict):
            return str(self.body.get("detail") or self.body.get("title") or self.body)
        return str(self.body)[:200]


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SendError(f"{path}: no such file") from None
    except OSError as err:
        raise SendError(f"{path}: cannot read: {err.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SendError(f"{path}: not valid JSON: {err}") from None


def _objects(path: Path, items: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(items, list) or not items:
        raise SendError(f"{path}: expected {what}, found no items")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise SendError(f"{path}: item {i} is not a JSON object")
    return items


def load_events(path: Path) -> list[dict[str, Any]]:
    """A single Event, a JSON list of Events, or a List/EventList (``kubectl get events -o json``)."""
    doc = _load_json(path)
    if isinstance(doc, dict) and "items" in doc:
        doc = doc["items"]
    elif isinstance(doc, dict):
        doc = [doc]
    events = _objects(path, doc, "Kubernetes Event objects")
    for i, event in enumerate(events):
        if "involvedObject" not in event or "reason" not in event:
            raise SendError(f"{path}: item {i} is not a core/v1 Event (needs involvedObject and reason)")
    return events


def load_alert_payloads(path: Path) -> list[dict[str, Any]]:
    """One Alertmanager webhook payload, or a JSON list of them."""
    doc = _load_json(path)
    payloads = _objects(path, [doc] if isinstance(doc, dict) else doc, "Alertmanager webhook payloads")
    for i, payload in enumerate(payloads):
        if not isinstance(payload.get("alerts"), list):
            raise SendError(f"{path}: payload {i} has no alerts list (not an Alertmanager webhook)")
    return payloads


def describe_event(event: dict[str, Any]) -> str:
    obj = event.get("involvedObject", {})
    where = "/".join(p for p in (obj.get("namespace"), obj.get("name")) if p)
    return f"{event.get('type', '?')} {event.get('reason')} {obj.get('kind', '?')} {where}"


def describe_payload(payload: dict[str, Any]) -> str:
    names = sorted({str(a.get("labels", {}).get("alertname", "?")) for a in payload["alerts"]})
    return f"{payload.get('status', '?')} {len(payload['alerts'])} alert(s): {', '.join(names)}"


def post_each(
    base_url: str,
    path: str,
    bodies: list[dict[str, Any]],
    token: str | None,
    on_answer: Callable[[int, Answer], None] | None = None,
    timeout: float = 10.0,
) -> list[Answer]:
    """POST each body to ``base_url + path``; stop with a :class:`SendError` when going on is pointless."""
    url = base_url.rstrip("/") + path
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answers: list[Answer] = []
    with httpx.Client(headers=headers, timeout=timeout) as client:
        for i, body in enumerate(bodies):
            try:
                resp = client.post(url, json=body)
            except httpx.ConnectError:
                raise SendError(f"cannot reach the gateway at {base_url} (connection refused)") from None
            except httpx.TimeoutException:
                raise SendError(f"the gateway at {base_url} did not answer within {timeout:g}s") from None
            except httpx.HTTPError as err:
                raise SendError(f"request to {url} failed: {err}") from None
            try:
                parsed: Any = resp.json()
            except ValueError:
                parsed = resp.text
            answer = Answer(resp.status_code, parsed)
            if resp.status_code in (401, 403):
                raise SendError(f"the gateway refused the token ({resp.status_code}: {answer.problem()})")
            if resp.status_code == 404:
                raise SendError(f"{url} does not exist (404): is {base_url} a Kubernaut gateway?")
            answers.append(answer)
            if on_answer is not None:
                on_answer(i, answer)
    return answers


@dataclass(frozen=True)
class SignalFile:
    """How one kind of file is read, where its signals go, and how each is named in a report."""

    path: str
    load: Callable[[Path], list[dict[str, Any]]]
    describe: Callable[[dict[str, Any]], str]


KUBERNETES_EVENTS = SignalFile(EVENTS_PATH, load_events, describe_event)
ALERTMANAGER_WEBHOOKS = SignalFile(ALERTS_PATH, load_alert_payloads, describe_payload)
