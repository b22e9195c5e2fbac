"""The operator tools' commands of ``kubernaut``: the local stack, send, drills, the demo, benchmarks.

`register` (the ``kubernaut.cli`` entry point) adds them to the services' app (kubernaut.cli), and
replaces its `migrate` with one that defaults to the local stack's configuration.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.live import Live
from rich.table import Table

from kubernaut.cli import (
    ConfigOption,
    RequireRolesOption,
    console,
    err_console,
    fail,
    migrate_with,
    settings_or_exit,
)
from kubernaut.config import Settings
from kubernaut_tools import send as client
from kubernaut_tools.foreground import StopRequested, line_writer, stop_on_signals, survive_closed_output
from kubernaut_tools.localstack import LocalStack, Topology
from kubernaut_tools.localstack.stack import default_run_dir
from kubernaut_tools.localstack.status import Proc, StackStatus
from kubernaut_tools.localstack.topology import RunDir

tools = typer.Typer()  # holds the commands until `register` moves them onto the `kubernaut` app

RunDirOption = typer.Option(
    None, "--run-dir", envvar="KUBERNAUT_RUN_DIR", help="Local stack state directory."
)
OffsetOption = typer.Option(0, "--port-offset", envvar="KUBERNAUT_PORT_OFFSET", help="Shift every port.")


def client_settings(config: Path | None, run_dir: Path | None) -> Settings:
    """Settings for a command that talks to the services or PostgreSQL: ``--config`` (or
    $KUBERNAUT_CONFIG) when given, else the local stack's own configuration when it has one."""
    if config is None:
        local = RunDir((run_dir or default_run_dir()).resolve()).config_file
        if local.is_file():
            err_console.print(
                f"[dim]using the local stack's configuration {local}[/]", highlight=False, soft_wrap=True
            )
            config = local
    return settings_or_exit(config)


@tools.command("migrate")
def migrate(
    config: Path | None = ConfigOption,
    run_dir: Path | None = RunDirOption,
    require_roles: bool = RequireRolesOption,
) -> None:
    """Apply pending PostgreSQL schema migrations (to the local stack's PostgreSQL without --config)."""
    migrate_with(client_settings(config, run_dir), require_roles)


def _stack(run_dir: Path | None, offset: int, quiet: bool = False) -> LocalStack:
    log = None if quiet else (lambda msg: err_console.print(f"[dim]{msg}[/]", highlight=False))
    return LocalStack(run_dir=run_dir, topology=Topology(offset=offset), log=log)


def _status_table(status: StackStatus) -> Table:
    table = Table(title="kubernaut local stack", title_justify="left")
    for col in ("component", "address", "pid", "state"):
        table.add_column(col)

    def row(name: str, addr: str, proc: Proc, extra: str = "") -> None:
        state = "[green]up[/]" if proc.alive else "[red]down[/]"
        table.add_row(name, addr, str(proc.pid or "-"), f"{state} {extra}".strip())

    gw = status.redis_gateway
    for name, node in gw.nodes.items():
        role = "master" if node.addr == gw.master else "replica"
        row(name, node.addr, node.proc, role if node.proc.alive else "")
    for i, s in enumerate(gw.sentinels):
        row(f"sentinel-{i}", s.addr, s.proc, f"quorum {gw.quorum}")
    row("redis-context", status.redis_context.addr, status.redis_context.proc)
    pg = status.postgres
    if pg.mode == "ha":
        for m in pg.members:
            role = m.role or ""
            row(m.name, m.addr, Proc(m.pid, m.pid is not None), f"{role} sync" if m.sync else role)
        if pg.etcd is not None:
            row("etcd", pg.etcd.addr, pg.etcd.proc)
    else:
        row("postgres", pg.addr or "-", pg.proc)
    row("gateway", status.gateway.url, status.gateway.proc)
    row("context-api", status.context_api.url, status.context_api.proc)
    for name, part in status.alerting.items():
        row(name, part.url, part.proc)
    return table


@tools.command("up")
def up(
    foreground: bool = typer.Option(False, "--foreground", help="Stay attached; Ctrl-C stops the stack."),
    with_alerting: bool = typer.Option(
        False, "--with-alerting", help="Also start Prometheus and Alertmanager, routed to the gateway."
    ),
    postgres_ha: bool = typer.Option(
        False,
        "--postgres-ha",
        help="PostgreSQL as a Patroni cluster (etcd + 2 nodes, synchronous standby, automatic failover).",
    ),
    chaos_proxy: bool = typer.Option(
        False,
        "--chaos-proxy",
        help="The gateway reaches its Redis nodes through TCP proxies (partition faults of `drill chaos`).",
    ),
    run_dir: Path | None = RunDirOption,
    port_offset: int = OffsetOption,
    timeout: float = typer.Option(90.0, help="Seconds to wait for each part to become ready."),
) -> None:
    """Start the local stack (only what is not running yet) and wait until it is ready."""
    if not foreground:
        _start(_stack(run_dir, port_offset), with_alerting, timeout, postgres_ha, chaos_proxy)
        return
    stack = LocalStack(run_dir=run_dir, topology=Topology(offset=port_offset), log=line_writer(2))
    # Attached: the first SIGINT/SIGHUP/SIGTERM (even during start-up) tears the stack down, and nothing
    # (a second signal, a closed terminal or pipe) can cut that teardown short.
    try:
        with stop_on_signals():
            status = _start(stack, with_alerting, timeout, postgres_ha, chaos_proxy)
            with Live(_status_table(status), console=console, refresh_per_second=1) as live:
                while True:
                    time.sleep(1)
                    live.update(_status_table(stack.status()))
    except (KeyboardInterrupt, StopRequested):
        pass
    except (OSError, SystemExit):  # the terminal or pipe we print to is gone (rich exits on EPIPE)
        survive_closed_output()
    finally:
        stack.down()


def _start(
    stack: LocalStack, alerting: bool, timeout: float, postgres_ha: bool, chaos_proxy: bool
) -> StackStatus:
    try:
        stack.up(alerting=alerting, timeout=timeout, postgres_ha=postgres_ha, chaos_proxy=chaos_proxy)
    except (TimeoutError, RuntimeError, OSError) as err:
        raise fail(f"{err} (logs in {stack.run.logs})") from None
    status = stack.status()
    console.print(_status_table(status))
    console.print(f"gateway      {status.gateway.url}  (token in {stack.run.gateway_tokens_file})")
    console.print(f"context-api  {status.context_api.url}")
    console.print(f"postgres     {status.postgres.addr}  (password in {stack.run.postgres_password_file})")
    for name in ("prometheus", "alertmanager"):
        if name in status.alerting:
            console.print(f"{name:<12} {status.alerting[name].url}")
    return status


@tools.command("down")
def down(
    purge: bool = typer.Option(False, "--purge", help="Also delete the run directory and all its data."),
    run_dir: Path | None = RunDirOption,
    port_offset: int = OffsetOption,
) -> None:
    """Stop exactly the processes `kubernaut up` started, and wait for them to exit."""
    stack = _stack(run_dir, port_offset)
    stopped = stack.destroy() if purge else stack.down()
    console.print(f"stopped {len(stopped)} process(es)" + (f": {', '.join(stopped)}" if stopped else ""))
    if purge:
        console.print(f"deleted {stack.run.root}")


@tools.command("status")
def status(
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
    run_dir: Path | None = RunDirOption,
    port_offset: int = OffsetOption,
) -> None:
    """Show each component of the local stack and the gateway group's current master."""
    st = _stack(run_dir, port_offset, quiet=True).status()
    if as_json:
        typer.echo(json.dumps(st.as_json(), indent=2))
    else:
        console.print(_status_table(st))


def _outcome_cells(answer: client.Answer) -> tuple[str, str]:
    """(outcome, detail) cells for one answer: per-signal outcomes, or the problem when refused."""
    if not answer.accepted:
        return "[red]rejected[/]" if answer.rejected else "[red]failed[/]", answer.problem()
    results = answer.results()
    outcomes: dict[str, int] = {}
    for r in results:
        outcomes[str(r["outcome"])] = outcomes.get(str(r["outcome"]), 0) + 1
    cell = ", ".join(f"{o} x{n}" if n > 1 else o for o, n in outcomes.items()) or "accepted"
    ids = sorted({int(r["request_id"]) for r in results if r.get("request_id") is not None})
    return (
        f"[green]{cell}[/]",
        f"request{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}" if ids else "",
    )


@tools.command("send")
def send(
    kubernetes_events: Path | None = typer.Option(
        None, "--kubernetes-events", help="JSON file of core/v1 Events (a list, or kubectl's List)."
    ),
    alerts: Path | None = typer.Option(
        None, "--alerts", help="JSON file of an Alertmanager webhook payload (or a list of them)."
    ),
    url: str | None = typer.Option(None, "--url", help="Gateway base URL [default: the local stack's]."),
    token: str | None = typer.Option(
        None, "--token", envvar="KUBERNAUT_GATEWAY_TOKEN", help="Bearer token [default: the local stack's]."
    ),
    run_dir: Path | None = RunDirOption,
    port_offset: int = OffsetOption,
) -> None:
    """POST each signal of FILE to the gateway and show what it did with each."""
    if kubernetes_events is not None and alerts is None:
        kind, file = client.KUBERNETES_EVENTS, kubernetes_events
    elif alerts is not None and kubernetes_events is None:
        kind, file = client.ALERTMANAGER_WEBHOOKS, alerts
    else:
        raise fail("give exactly one of --kubernetes-events FILE or --alerts FILE")
    stack = _stack(run_dir, port_offset, quiet=True)
    base_url = url or stack.url("gateway")
    if not base_url.startswith(("http://", "https://")):
        raise fail(f"--url {base_url!r} is not an http:// or https:// URL")
    if token is None and url is None and stack.run.gateway_tokens_file.exists():
        token = stack.gateway_token
    try:
        bodies = kind.load(file)
    except client.SendError as err:
        raise fail(str(err)) from None

    table = Table(title=f"POST {base_url}{kind.path}", title_justify="left")
    for col in ("#", "signal", "HTTP", "outcome", "detail"):
        table.add_column(col, overflow="fold")

    def row(i: int, answer: client.Answer) -> None:
        table.add_row(str(i + 1), kind.describe(bodies[i]), str(answer.status), *_outcome_cells(answer))

    try:
        answers = client.post_each(base_url, kind.path, bodies, token, on_answer=row)
    except client.SendError as err:
        if table.row_count:
            console.print(table)
        raise fail(str(err)) from None
    console.print(table)
    accepted = sum(a.accepted for a in answers)
    rejected = sum(a.rejected for a in answers)
    failed = len(answers) - accepted - rejected
    console.print(f"sent {len(answers)}: {accepted} accepted, {rejected} rejected, {failed} failed")
    if failed:
        raise typer.Exit(code=1)


@tools.command("bench")
def bench(
    name: str = typer.Argument(..., help="The benchmark: gateway-ingest, context-api or isolation."),
    quick: bool = typer.Option(False, "--quick", help="A few seconds per measurement instead of ten."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    results: Path | None = typer.Option(
        None, help="Markdown file the run is appended to [default: benchmarks/RESULTS.md of this checkout]."
    ),
    run_dir: Path | None = typer.Option(
        None, "--run-dir", help="The benchmark's own stack [default: .run/bench]."
    ),
    port_offset: int = typer.Option(
        300, "--port-offset", envvar="KUBERNAUT_BENCH_PORT_OFFSET", help="Shift every port of its stack."
    ),
    postgres_ha: bool = typer.Option(
        False,
        "--postgres-ha",
        help="Its stack's PostgreSQL as the Patroni cluster (Context-API reads a standby).",
    ),
    gateway_workers: int | None = typer.Option(
        None,
        "--gateway-workers",
        min=1,
        help="gateway-ingest: worker processes per gateway [default: its own].",
    ),
    gateway_instances: int = typer.Option(
        1, "--gateway-instances", min=1, max=4, help="gateway-ingest: gateway processes sharing the port."
    ),
) -> None:
    """Run a benchmark on a stack of its own, print its figures and append them to RESULTS.md."""
    from kubernaut_tools.bench import BENCHMARKS
    from kubernaut_tools.bench import report as bench_report
    from kubernaut_tools.bench.errors import BenchError

    if name not in BENCHMARKS:
        raise fail(f"unknown benchmark {name!r}; choose one of: {', '.join(BENCHMARKS)}")
    scaled = gateway_workers is not None or gateway_instances != 1
    if scaled and name != "gateway-ingest":
        raise fail("--gateway-workers and --gateway-instances apply to gateway-ingest only")
    results = results or bench_report.find_results_file(Path.cwd())
    if results is None:
        raise fail("no benchmarks/ directory here: run from the repository or pass --results FILE")
    stack = LocalStack(run_dir or default_run_dir() / "bench", Topology(offset=port_offset))

    def progress(msg: str) -> None:
        err_console.print(f"[dim]{msg}[/]", highlight=False)

    try:
        if postgres_ha:
            progress("starting the Patroni cluster")
            stack.up(services=False, postgres_ha=True, timeout=120)
        if scaled:
            from kubernaut_tools.bench import gateway_ingest
            from kubernaut_tools.bench.gateway_target import Scale

            scale = Scale(workers=gateway_workers, instances=gateway_instances)
            report = gateway_ingest.run(stack, quick=quick, log=progress, scale=scale)
        else:
            report = BENCHMARKS[name](stack, quick=quick, log=progress)
    except (BenchError, TimeoutError, RuntimeError, OSError) as err:
        raise fail(f"{name}: {err} (logs in {stack.run.logs})") from None
    finally:
        stack.down()
    stack.destroy()  # only after success: a failed run's logs stay for reading
    report.command = shlex.join(["kubernaut", *sys.argv[1:]])
    bench_report.append(results, report)
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
        return
    for table in report.tables:
        console.print(table.rich())
    for note in report.notes:
        console.print(f"[dim]- {note}[/]", highlight=False)
    console.print(f"appended to {results}")


@tools.command("drill")
def drill(
    scenario: str = typer.Argument(
        ..., help="A scenario name, 'all' to run every one in turn, or 'chaos' (seeded random faults)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report(s) as JSON."),
    rate: float = typer.Option(20.0, help="Webhooks per second sent to the gateway during the drill."),
    duration: float = typer.Option(60.0, min=10.0, help="chaos: seconds of load and faults."),
    seed: int = typer.Option(1, help="chaos: the fault schedule is a function of the seed and the duration."),
    faults: str | None = typer.Option(
        None,
        help="chaos: only these fault kinds, comma-separated (e.g. master-pause,partition); default all.",
    ),
    run_dir: Path | None = RunDirOption,
    port_offset: int = OffsetOption,
) -> None:
    """Inject a failure into the running local stack under a steady alert load, and prove the invariants."""
    from kubernaut_tools.drill.faults import SCENARIOS
    from kubernaut_tools.drill.runner import DrillReport, run_drill

    if scenario not in ("all", "chaos") and scenario not in SCENARIOS:
        raise fail(f"unknown scenario {scenario!r}; choose one of: all, chaos, {', '.join(SCENARIOS)}")
    stack = _stack(run_dir, port_offset, quiet=True)
    names = [n for n, s in SCENARIOS.items() if s.runs_on(stack)] if scenario == "all" else [scenario]
    if scenario in SCENARIOS and not SCENARIOS[scenario].runs_on(stack):
        mode = (
            "`kubernaut up --postgres-ha`" if SCENARIOS[scenario].postgres == "ha" else "a single PostgreSQL"
        )
        raise fail(f"scenario {scenario!r} needs a stack with {mode}")
    if not stack.status().services_running:
        raise fail("the local stack is not running: start it with `kubernaut up`")
    if scenario == "chaos":
        if not stack.chaos_proxy:
            raise fail(
                "drill chaos also partitions the gateway from its master: "
                "start the stack with `kubernaut up --chaos-proxy`"
            )
        _chaos(stack, seed, duration, as_json, _fault_kinds(faults))
        return
    reports: list[DrillReport] = []
    for name in names:
        if not as_json:
            err_console.print(f"[bold]drill {name}[/]: {SCENARIOS[name].summary} ...")
        reports.append(asyncio.run(run_drill(stack, name, rate_per_s=rate)))
        if not as_json:
            console.print(_drill_table(reports[-1]))
    if as_json:
        data = [r.as_json() for r in reports]
        typer.echo(json.dumps(data if scenario == "all" else data[0], indent=2))
    if not all(r.passed for r in reports):
        raise typer.Exit(code=1)


def _fault_kinds(faults: str | None) -> tuple[str, ...]:
    from kubernaut_tools.drill.chaos_schedule import KINDS

    if faults is None:
        return KINDS
    kinds = tuple(k.strip() for k in faults.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise fail(
            f"--faults: unknown fault kind(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(KINDS)}"
        )
    return kinds


def _chaos(stack: LocalStack, seed: int, duration: float, as_json: bool, kinds: tuple[str, ...]) -> None:
    from kubernaut_tools.drill.chaos import run_chaos

    def progress(line: str) -> None:
        if not as_json:
            err_console.print(line, highlight=False)

    report = asyncio.run(run_chaos(stack, seed, duration, progress, kinds))
    data = report.as_json()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        verdict = "[green]passed[/]" if report.passed else "[red]FAILED[/]"
        table = Table(title=f"drill chaos (seed {seed}): {verdict}", title_justify="left", show_header=False)
        table.add_column("figure")
        table.add_column("value", justify="right")
        for key, value in data.items():
            if key not in ("faults", "violations"):
                table.add_row(key, str(value))
        table.add_row("faults", str(len(report.faults)))
        table.add_row("violations", str(len(report.violations)))
        console.print(table)
        for violation in report.violations[:20]:
            console.print(json.dumps(violation), highlight=False)
    if not report.passed:
        raise typer.Exit(code=1)


def _drill_table(report: Any) -> Table:
    verdict = "[green]passed[/]" if report.passed else "[red]FAILED[/]"
    table = Table(title=f"drill {report.scenario}: {verdict}", title_justify="left", show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in report.as_json().items():
        if key != "scenario":
            table.add_row(key, "-" if value is None else str(value))
    return table


@tools.command("demo")
def demo(
    as_json: bool = typer.Option(False, "--json", help="Print only the closing summary, as JSON."),
    run_dir: Path | None = RunDirOption,
    port_offset: int = OffsetOption,
) -> None:
    """Fire a scripted scenario through Prometheus and Alertmanager (a storm, repeats, a resolution) with a
    failover of the gateway's Redis master in the middle; show it live and prove nothing was lost."""
    from kubernaut_tools.demo.runner import Demo, DemoError
    from kubernaut_tools.demo.view import render, summary

    stack = _stack(run_dir, port_offset, quiet=True)
    st = stack.status()
    if not (st.services_running and st.alerting_running):
        raise fail(
            "the local stack with alerting is not running: start it with `kubernaut up --with-alerting`"
        )
    run = Demo(stack)
    try:
        if as_json:
            report = asyncio.run(run.run())
        else:
            with Live(get_renderable=lambda: render(run.state), console=console, refresh_per_second=4):
                report = asyncio.run(run.run())
    except (DemoError, TimeoutError, RuntimeError, OSError) as err:
        raise fail(f"demo: {err} (logs in {stack.run.logs})") from None
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
    else:
        console.print()
        console.print(summary(report, stack.url("context-api")))
    if not report.passed:
        raise typer.Exit(code=1)


@tools.command("seed-history")
def seed_history(
    incidents: int = typer.Option(10_000, "--incidents", min=1, max=10_000_000, help="How many incidents."),
    days: int = typer.Option(90, "--days", min=1, max=3650, help="Spread them over this many days."),
    seed: int = typer.Option(1, "--seed", help="Random seed (same seed, same history)."),
    config: Path | None = ConfigOption,
    run_dir: Path | None = RunDirOption,
) -> None:
    """Fill PostgreSQL with realistic remediation history (the local stack's without --config)."""
    import asyncpg

    from kubernaut.store.migrate import migrate_dsn
    from kubernaut_tools.seed import seed_dsn

    settings = client_settings(config, run_dir)
    dsn = settings.postgres.dsn.get_secret_value()
    try:
        asyncio.run(migrate_dsn(dsn))
        report = asyncio.run(seed_dsn(dsn, incidents, seed=seed, days=days))
    except (OSError, asyncpg.PostgresError) as err:
        raise fail(f"cannot seed PostgreSQL: {err}") from None
    typer.echo(
        f"inserted {report.incidents} incidents ({report.outcomes} outcomes, {report.storms} storms, "
        f"{report.open} open) over {days} days in {report.seconds:.1f}s"
    )


def register(app: typer.Typer) -> None:
    """The ``kubernaut.cli`` entry point: add these commands to ``app``, each in place of a namesake."""
    for info in tools.registered_commands:
        app.registered_commands = [c for c in app.registered_commands if c.name != info.name]
        app.registered_commands.append(info)
