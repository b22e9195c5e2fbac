"""The demo on screen: a live view of its state (rich), and the closing summary."""

from __future__ import annotations

import time

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table

from kubernaut_tools.demo.runner import DemoReport, DemoState, PhaseState

_MARK = {
    "pending": "[dim]·[/]",
    "running": "[yellow]▶[/]",
    "done": "[green]✓[/]",
    "timed out": "[red]✗[/]",
    "skipped": "[red]-[/]",
}
MAX_REQUEST_ROWS = 12


def _phase_seconds(p: PhaseState, now: float) -> str:
    if p.started is None:
        return ""
    return f"{(p.ended or now) - p.started:.1f} s"


def _phases(state: DemoState, now: float) -> Table:
    table = Table.grid(padding=(0, 1))
    for i, p in enumerate(state.phases, 1):
        status = "" if p.status in ("pending", "running", "done") else f"[red]{p.status}[/]"
        table.add_row(_MARK[p.status], f"{i}", p.phase.title, _phase_seconds(p, now), status)
    return table


def _figures(state: DemoState) -> Table:
    f = state.figures
    table = Table(title="live counters (/metrics)", title_justify="left", show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("signals in", str(f.signals_in))
    table.add_row("deduplicated", str(f.deduplicated))
    table.add_row("storm alerts folded", str(f.storm_folded))
    table.add_row("resolved", str(f.resolved))
    table.add_row("requests created", str(f.requests_created))
    table.add_row("webhooks sent", str(f.webhooks_sent))
    table.add_row("  accepted (2xx)", str(f.webhooks_accepted))
    table.add_row("  refused (503, retried)", str(f.webhooks_refused))
    return table


def _store(state: DemoState) -> Table:
    storms = [r for r in state.requests if r.storm_alerts is not None]
    table = Table(title=f"PostgreSQL: namespace {state.namespace}", title_justify="left", show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("alerts fired", str(len(state.fired)))
    table.add_row("requests", f"{len(state.requests)} ({len(storms)} storm)")
    table.add_row("alerts in storm requests", str(sum(r.storm_alerts or 0 for r in storms)))
    table.add_row("resolved", str(sum(r.resolved for r in state.requests)))
    lost = state.lost
    table.add_row("lost", f"[green]{lost}[/]" if lost == 0 else f"[yellow]{lost}[/] (not in yet)")
    dup = state.duplicate_open_requests
    table.add_row("duplicate open requests", f"[green]{dup}[/]" if dup == 0 else f"[red]{dup}[/]")
    return table


def _failover(state: DemoState, now: float) -> str:
    log, blackout = state.fault, state.blackout
    if log.old_master is None:
        return "failover: [dim]not yet[/]"
    new = log.new_master or "[yellow]waiting for Sentinel...[/]"
    line = f"failover: Redis master {log.old_master} -> {new}"
    if log.sentinel_failover_s is not None:
        line += f" · Sentinel promoted in {log.sentinel_failover_s:.1f} s"
    seconds = blackout.seconds(now)
    if blackout.ongoing:
        line += f" · [yellow]gateway not ready for {seconds:.1f} s[/]"
    elif seconds:
        line += f" · gateway blackout {seconds:.1f} s"
    if log.healed_at is not None:
        line += " · healed"
    return line


def _requests(state: DemoState) -> Table:
    table = Table(title="RemediationRequests", title_justify="left")
    for col in ("id", "alert", "resource", "occurrences", "state"):
        table.add_column(col, justify="right" if col in ("id", "occurrences") else "left")
    for r in state.requests[:MAX_REQUEST_ROWS]:
        if r.storm_alerts is not None:
            kind = f"[magenta]storm of {r.storm_alerts}[/]"
        else:
            kind = "[dim]resolved[/]" if r.resolved else "open"
        table.add_row(str(r.id), r.alertname, r.resource, str(r.occurrences), kind)
    hidden = len(state.requests) - MAX_REQUEST_ROWS
    if hidden > 0:
        table.add_row("", f"[dim]... {hidden} more[/]", "", "", "")
    return table


def render(state: DemoState) -> RenderableType:
    now = time.monotonic()
    title = f"kubernaut demo · namespace {state.namespace} · {now - state.started:.1f} s"
    figures = Table.grid(padding=(0, 2))
    figures.add_row(_figures(state), _store(state))
    return Group(
        Panel(_phases(state, now), title=title, title_align="left"),
        figures,
        _failover(state, now),
        _requests(state),
    )


def summary(report: DemoReport, context_api_url: str) -> RenderableType:
    ok = report.lost == 0 and report.duplicate_open_requests == 0
    sentinel = "-" if report.sentinel_failover_s is None else f"{report.sentinel_failover_s:.1f} s"
    healed = "yes" if report.healed else "[red]NO[/]"
    verdict = "[green]nothing lost, nothing doubled[/]" if ok else "[red]invariant broken[/]"
    lines = [
        f"{verdict}: {report.alerts_fired} alerts fired, {report.requests_created} requests "
        f"({report.storms} storm of {report.storm_alerts} alerts), {report.lost} lost, "
        f"{report.duplicate_open_requests} duplicate open requests",
        f"Alertmanager sent {report.sent} webhooks: {report.accepted} accepted, "
        f"{report.refused_503} refused with 503 during the failover and retried",
        f"failover {report.old_master} -> {report.new_master}: Sentinel promoted in {sentinel}, "
        f"gateway blackout {report.gateway_blackout_s:.1f} s; stack healed: {healed}",
        "read them: curl -s -H 'Authorization: Bearer <context_api.token of kubernaut status --json>' "
        f"'{context_api_url}/api/v1/incidents?namespace={report.namespace}'",
    ]
    if not report.passed:
        lines.append(f"[red]not passed[/]: phases {report.phases}")
    return Panel("\n".join(lines), title=f"summary ({report.duration_s:.0f} s)", title_align="left")
