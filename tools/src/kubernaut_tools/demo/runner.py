"""Run the demo on the running local stack: fire the script phase by phase, fail the gateway's Redis master
over in the middle, watch everything, heal, and prove that nothing was lost or doubled.

Each phase acts, then waits on real state (PostgreSQL, /metrics) with its own bound, cut to what is left
of ``DEADLINE_S``; past it, phases are skipped (the failover's thread, once started, is always waited for:
it heals the stack). The signal source gets back the series it had before the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg
import httpx

from kubernaut_tools.demo.observe import (
    Blackout,
    Figures,
    Metrics,
    Request,
    gateway_ready,
    namespace_requests,
    scrape,
)
from kubernaut_tools.demo.scenario import (
    FAILOVER,
    FIRE,
    PHASES,
    REPEATS_SHOWN,
    RESOLVE,
    SETTLE,
    STORM,
    Phase,
    Script,
    alert_fingerprint,
    new_namespace,
)
from kubernaut_tools.drill.faults import FaultLog, master_kill
from kubernaut_tools.drill.verify import duplicate_open_requests, untraced
from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.signal_source import ScenarioSeries, read_signals

DEADLINE_S = 90.0
REFRESH_S = 0.25
READY_PROBE_S = 0.1


class DemoError(Exception):
    """The demo cannot run on this stack (one line for the CLI)."""


@dataclass
class PhaseState:
    phase: Phase
    status: str = "pending"  # pending | running | done | timed out | skipped
    started: float | None = None
    ended: float | None = None


@dataclass
class DemoState:
    """Everything the live view shows; updated about four times a second."""

    namespace: str
    started: float
    phases: list[PhaseState]
    fired: dict[str, ScenarioSeries] = field(default_factory=dict)  # fingerprint -> the series that fires it
    figures: Figures = field(default_factory=Figures)
    requests: list[Request] = field(default_factory=list)
    lost: int = 0
    duplicate_open_requests: int = 0
    fault: FaultLog = field(default_factory=FaultLog)
    blackout: Blackout = field(default_factory=Blackout)

    def phase(self, phase: Phase) -> PhaseState:
        return next(p for p in self.phases if p.phase == phase)


@dataclass(frozen=True)
class DemoReport:
    namespace: str
    alerts_fired: int
    sent: int  # webhooks Alertmanager sent the gateway during the demo (retries included)
    accepted: int  # answered 2xx
    refused_503: int  # answered 503 (Alertmanager retried them)
    signals_in: int
    deduplicated: int
    storm_folded: int
    resolved: int
    requests_created: int  # RemediationRequests of the demo's namespace
    storms: int
    storm_alerts: int
    open_requests: int
    context_api_incidents: int | None
    lost: int
    duplicate_open_requests: int
    old_master: str | None
    new_master: str | None
    sentinel_failover_s: float | None
    gateway_blackout_s: float
    phases: dict[str, str]
    healed: bool
    duration_s: float
    passed: bool

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Demo:
    # Open while run() runs.
    _client: httpx.AsyncClient
    _conn: asyncpg.Connection
    _baseline: tuple[Metrics, Metrics]

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.script = Script(new_namespace())
        self.state = DemoState(self.script.namespace, time.monotonic(), [PhaseState(p) for p in PHASES])
        self._series: dict[tuple[str, str, str], ScenarioSeries] = {}
        self._others: list[ScenarioSeries] = []
        self._gateway = stack.url("gateway")
        self._alertmanager = stack.url("alertmanager")

    # -- acting --------------------------------------------------------------------------------------

    def _set(self, *signals: ScenarioSeries) -> None:
        for s in signals:
            self._series[(s.scenario, s.namespace, s.pod)] = s
            if s.active:
                self.state.fired[alert_fingerprint(s)] = s
        self.stack.set_signals([*self._others, *self._series.values()])

    async def run(self) -> DemoReport:
        self._others = read_signals(self.stack.run.signals_file)
        async with httpx.AsyncClient(timeout=2.0) as client:
            gw0, am0 = await scrape(client, self._gateway), await scrape(client, self._alertmanager)
            if gw0 is None or am0 is None:
                raise DemoError("the gateway's or Alertmanager's /metrics does not answer")
            try:
                conn = await asyncpg.connect(self.stack.postgres_dsn, timeout=5)
            except (OSError, asyncpg.PostgresError) as err:
                raise DemoError(f"cannot reach PostgreSQL: {err}") from None
            self._client, self._conn, self._baseline = client, conn, (gw0, am0)
            probe = asyncio.create_task(self._probe_readiness())
            try:
                await self._play()
                await self._refresh()
                healed = await self._healed()
                incidents = await self._context_api_total()
            finally:
                self.stack.set_signals(self._others)
                probe.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await probe
                await conn.close()
        return self._report(healed, incidents)

    async def _play(self) -> None:
        s = self.script
        await self._phase(FIRE, lambda: self._set(*s.first()), self._all_traced)
        await self._phase(STORM, lambda: self._set(*s.storm()), self._all_traced)
        await self._failover()
        await self._phase(RESOLVE, lambda: self._set(s.resolved()), self._resolution_landed)
        await self._phase(SETTLE, lambda: None, lambda: self._all_traced() and self._repeats_counted())

    def _begin(self, phase: Phase) -> tuple[PhaseState, float] | None:
        """Mark ``phase`` running and return how long it may wait; None (skipped) past the deadline."""
        ps = self.state.phase(phase)
        remaining = DEADLINE_S - (time.monotonic() - self.state.started)
        if remaining <= 0:
            ps.status = "skipped"
            return None
        ps.status, ps.started = "running", time.monotonic()
        return ps, min(phase.timeout_s, remaining)

    @staticmethod
    def _end(ps: PhaseState, ok: bool) -> None:
        ps.status, ps.ended = ("done" if ok else "timed out"), time.monotonic()

    async def _phase(self, phase: Phase, act: Callable[[], None], done: Callable[[], bool]) -> None:
        begun = self._begin(phase)
        if begun is None:
            return
        ps, within_s = begun
        act()
        self._end(ps, await self._until(done, within_s))

    async def _failover(self) -> None:
        """Kill the master while a new alert is on its way: Alertmanager meets the blackout and retries."""
        begun = self._begin(FAILOVER)
        if begun is None:
            return
        ps, within_s = begun
        self._set(*self.script.during_failover())
        # The drill's building block: SIGKILL, wait for Sentinel's promotion, then heal (`up`).
        fault = asyncio.create_task(asyncio.to_thread(master_kill, self.stack, self.state.fault))
        ok = await self._until(lambda: fault.done() and self._all_traced(), within_s)
        await fault  # a thread cannot be abandoned, and it heals the stack: wait for it, errors included
        self._end(ps, ok)

    # -- watching ------------------------------------------------------------------------------------

    async def _until(self, done: Callable[[], bool], within_s: float) -> bool:
        deadline = time.monotonic() + within_s
        while True:
            await self._refresh()
            if done():
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(REFRESH_S)

    async def _refresh(self) -> None:
        gw, am = await scrape(self._client, self._gateway), await scrape(self._client, self._alertmanager)
        if gw is not None and am is not None:
            gw0, am0 = self._baseline
            self.state.figures = Figures.between(gw0, gw, am0, am)
        st, conn = self.state, self._conn
        st.requests = await namespace_requests(conn, st.namespace)
        st.lost = await untraced(conn, sorted(st.fired))
        st.duplicate_open_requests = await duplicate_open_requests(conn, st.namespace)

    async def _probe_readiness(self) -> None:
        while True:
            ready = await gateway_ready(self._client, self._gateway)
            self.state.blackout.record(time.monotonic(), ready)
            await asyncio.sleep(READY_PROBE_S)

    def _request(self, signal: ScenarioSeries) -> Request | None:
        fp = alert_fingerprint(signal)
        return next((r for r in self.state.requests if r.fingerprint == fp), None)

    def _all_traced(self) -> bool:
        return self.state.lost == 0

    def _resolution_landed(self) -> bool:
        request = self._request(self.script.resolving())
        return request is not None and request.resolved

    def _repeats_counted(self) -> bool:
        request = self._request(self.script.repeating())
        return request is not None and request.occurrences >= REPEATS_SHOWN

    async def _healed(self) -> bool:
        return await asyncio.to_thread(self.stack.group_ready) and await gateway_ready(
            self._client, self._gateway
        )

    async def _context_api_total(self) -> int | None:
        """What a downstream service sees: the namespace's incidents through the Context-API."""
        url = self.stack.url("context-api") + "/api/v1/incidents"
        try:
            resp = await self._client.get(
                url,
                params={"namespace": self.state.namespace, "limit": 1},
                headers={"authorization": f"Bearer {self.stack.context_api_read_token}"},
            )
        except httpx.HTTPError:
            return None
        return int(resp.json()["total"]) if resp.status_code == 200 else None

    # -- the summary ---------------------------------------------------------------------------------

    def _report(self, healed: bool, incidents: int | None) -> DemoReport:
        st, f, log = self.state, self.state.figures, self.state.fault
        storms = [r for r in st.requests if r.storm_alerts is not None]
        phases = {p.phase.title: p.status for p in st.phases}
        failed_over = log.new_master is not None and log.new_master != log.old_master
        lost, duplicates = st.lost, st.duplicate_open_requests
        return DemoReport(
            namespace=st.namespace,
            alerts_fired=len(st.fired),
            sent=f.webhooks_sent,
            accepted=f.webhooks_accepted,
            refused_503=f.webhooks_refused,
            signals_in=f.signals_in,
            deduplicated=f.deduplicated,
            storm_folded=f.storm_folded,
            resolved=f.resolved,
            requests_created=len(st.requests),
            storms=len(storms),
            storm_alerts=sum(r.storm_alerts or 0 for r in storms),
            open_requests=sum(1 for r in st.requests if not r.resolved),
            context_api_incidents=incidents,
            lost=lost,
            duplicate_open_requests=duplicates,
            old_master=log.old_master,
            new_master=log.new_master,
            sentinel_failover_s=log.sentinel_failover_s,
            gateway_blackout_s=st.blackout.seconds(time.monotonic()),
            phases=phases,
            healed=healed,
            duration_s=round(time.monotonic() - st.started, 2),
            passed=lost == 0
            and duplicates == 0
            and failed_over
            and healed
            and all(s == "done" for s in phases.values()),
        )
