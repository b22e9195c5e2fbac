"""The ``kubernaut`` command: the services' own commands (serve, migrate, check a configuration).

Other installed distributions add theirs through the ``kubernaut.cli`` entry-point group: each entry point
is a callable that receives this Typer app (the operator tools add `up`, `drill`, `bench`, ... this way).
The services' image installs no such distribution, so there the command is exactly the services'.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

import typer
from rich.console import Console

from kubernaut.config import ConfigError, Settings, load_settings

PLUGIN_GROUP = "kubernaut.cli"

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Kubernaut signal plane: alert-ingestion gateway and remediation-context service.",
)
console = Console()
err_console = Console(stderr=True)

ConfigOption = typer.Option(None, "--config", envvar="KUBERNAUT_CONFIG", help="YAML configuration file.")
RequireRolesOption = typer.Option(
    False, "--require-roles", help="Fail, changing nothing, while a service role is missing."
)


def fail(message: str) -> typer.Exit:
    """Print one clear line to stderr and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


def settings_or_exit(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as err:
        raise fail(str(err)) from None


def migrate_with(settings: Settings, require_roles: bool) -> None:
    """Apply pending migrations to ``settings``' PostgreSQL and list them (`kubernaut migrate`)."""
    from kubernaut.store.migrate import RolesMissing, migrate_dsn

    try:
        applied = asyncio.run(
            migrate_dsn(settings.postgres.dsn.get_secret_value(), require_roles=require_roles)
        )
    except OSError as err:
        raise fail(f"cannot reach PostgreSQL: {err}") from None
    except RolesMissing as err:
        raise fail(str(err)) from None
    console.print(
        f"applied {len(applied)} migration(s)" + "".join(f"\n  {m.version:03d} {m.name}" for m in applied)
    )


@app.command("migrate")
def migrate(config: Path | None = ConfigOption, require_roles: bool = RequireRolesOption) -> None:
    """Apply pending PostgreSQL schema migrations."""
    migrate_with(settings_or_exit(config), require_roles)


@app.command("gateway")
def gateway(config: Path | None = ConfigOption) -> None:
    """Serve the gateway: Alertmanager webhooks and Kubernetes Warning events in, RemediationRequests out."""
    from kubernaut.gateway.app import serve

    settings = settings_or_exit(config)
    try:
        serve(settings)
    except ConfigError as err:
        raise fail(str(err)) from None


@app.command("check-config")
def check_config(config: Path | None = ConfigOption) -> None:
    """Validate a configuration file and print the effective settings (secrets hidden)."""
    settings = settings_or_exit(config)
    typer.echo(settings.model_dump_json(indent=2))


@app.command("context-api")
def context_api(config: Path | None = ConfigOption) -> None:
    """Serve the Context-API (remediation history through the L1/L2/L3 cache)."""
    from kubernaut.contextapi.app import serve

    try:
        serve(settings_or_exit(config))
    except ConfigError as err:
        raise fail(str(err)) from None


_loaded_plugins: set[str] = set()


def with_plugins() -> typer.Typer:
    """The app with every installed ``kubernaut.cli`` entry point's commands added (each once)."""
    for entry in entry_points(group=PLUGIN_GROUP):
        if entry.name not in _loaded_plugins:
            register: Callable[[typer.Typer], None] = entry.load()
            register(app)
            _loaded_plugins.add(entry.name)
    return app


def main() -> None:
    """The console script."""
    with_plugins()(prog_name="kubernaut")
