"""Reading what the gateway produced, the way a downstream service does: through the Context-API."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from kubernaut_tools.demo.observe import Metrics
from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.processes import wait_until
from kubernaut_tools.localstack.signal_source import METRIC, ScenarioSeries

Json = dict[str, Any]
T = TypeVar("T")


def unique_namespace(what: str) -> str:
    """A namespace of one test: its alerts form Alertmanager groups and gateway state of their own."""
    return f"e2e-{what}-{uuid.uuid4().hex[:6]}"


class ContextApi:
    """GET requests to the Context-API of the stack, and waiting until an answer says something."""

    def __init__(self, stack: LocalStack) -> None:
        self.base = stack.url("context-api")
        self.headers = {"authorization": f"Bearer {stack.context_api_read_token}"}

    def _get(self, path: str, params: dict[str, str | int] | None = None) -> Json | None:
        """The answer's JSON, or None while the service cannot answer (e.g. PostgreSQL restarting)."""
        try:
            resp = httpx.get(self.base + path, params=params, headers=self.headers, timeout=5)
        except httpx.HTTPError:
            return None
        if resp.status_code != 200:
            return None
        assert resp.headers["x-cache"] in ("l1", "l2", "l3")
        body: Json = resp.json()
        return body

    def incidents(self, **filters: str | int) -> Json | None:
        return self._get("/api/v1/incidents", {"limit": 1000, **filters})

    def incident(self, incident_id: int) -> Json | None:
        return self._get(f"/api/v1/incidents/{incident_id}")

    def wait_incidents(
        self, until: Callable[[list[Json]], bool], *, timeout: float = 40, what: str, **filters: str | int
    ) -> list[Json]:
        """Poll ``GET /api/v1/incidents?<filters>`` until ``until(incidents)``; return those incidents."""

        def fetch() -> list[Json] | None:
            answer = self.incidents(**filters)
            return None if answer is None else list(answer["incidents"])

        return _poll(fetch, until, timeout, what)

    def wait_incident(
        self, incident_id: int, until: Callable[[Json], bool], *, timeout: float = 40, what: str
    ) -> Json:
        """Poll ``GET /api/v1/incidents/{id}`` until ``until(incident)``; return it."""
        return _poll(lambda: self.incident(incident_id), until, timeout, what)


def _poll(fetch: Callable[[], T | None], until: Callable[[T], bool], timeout: float, what: str) -> T:
    """The first answer of ``fetch`` for which ``until`` holds; fails showing the last answer seen."""
    seen: list[T] = []

    def holds() -> bool:
        answer = fetch()
        if answer is None:
            return False
        seen.append(answer)
        return until(answer)

    try:
        wait_until(holds, timeout=timeout, interval=0.25, what=what)
    except TimeoutError as err:
        raise AssertionError(f"{err}; last answer: {seen[-1] if seen else None}") from None
    return seen[-1]


def metric(url: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` matching ``labels`` on the /metrics page at ``url``."""
    page = Metrics.parse(httpx.get(url + "/metrics", timeout=5).text)
    return page.sum(name, lambda found: all(found.get(k) == v for k, v in labels.items()))


def table_rows(stdout: str) -> list[list[str]]:
    """The body rows of rich's table: cells between the vertical bars."""
    return [
        [c.strip() for c in line.split("│")[1:-1]] for line in stdout.splitlines() if line.startswith("│")
    ]


def stop_alerting_cleanly(stack: LocalStack) -> None:
    """Clear the series, wait until Prometheus has marked them stale, then stop the alerting processes.

    Prometheus keeps its samples across a restart; without the staleness markers a later start would see
    the old series for five more minutes (the lookback) and fire their alerts again.
    """
    stack.set_signals([])

    def no_series() -> bool:
        resp = httpx.get(stack.url("prometheus") + "/api/v1/query", params={"query": METRIC}, timeout=5)
        return resp.status_code == 200 and resp.json()["data"]["result"] == []

    wait_until(no_series, timeout=30, interval=0.25, what="Prometheus to mark the signal series stale")
    stack.stop_alerting()


class Alerts:
    """The signal source's series of one test; each set makes its alerts fire or resolve (~2 s)."""

    def __init__(self, stack: LocalStack) -> None:
        self._stack = stack
        self._series: dict[tuple[str, str, str], ScenarioSeries] = {}

    def set(self, *signals: ScenarioSeries) -> None:
        for s in signals:
            self._series[(s.scenario, s.namespace, s.pod)] = s
        self._stack.set_signals(list(self._series.values()))

    def clear(self) -> None:
        self._series.clear()
        self._stack.set_signals([])
