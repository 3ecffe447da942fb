"""The ``orrery`` command."""

from __future__ import annotations

import sys
import time

import typer
from orrery.cli import projections, state
from orrery.cli.auth import apikey_app, defaults_app, login, logout, secret_app, user_app, whoami
from orrery.cli.boards import board_app, zone_app
from orrery.cli.events import events_app
from orrery.cli.sessions import session_app
from orrery.cli.worktrees import env_app, repo_app, worktree_app
from orrery.runtime import settings as settings_mod
from orrery.runtime.errors import RuntimeFailure
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Orrery: a multiplayer canvas for running many AI coding agents in parallel.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(projections.app, name="projections")
app.add_typer(repo_app, name="repo")
app.add_typer(worktree_app, name="worktree")
app.add_typer(env_app, name="env")
app.add_typer(session_app, name="session")
app.add_typer(board_app, name="board")
app.add_typer(zone_app, name="zone")
app.add_typer(events_app, name="events")
app.command()(login)
app.command()(logout)
app.command()(whoami)
app.add_typer(user_app, name="user")
app.add_typer(apikey_app, name="apikey")
app.add_typer(secret_app, name="secret")
app.add_typer(defaults_app, name="defaults")
console = Console()


@app.command()
def up(
    separate: bool = typer.Option(False, help="run each service in its own process"),
) -> None:
    """Start NATS, PostgreSQL, all services and the UI; Ctrl-C stops everything."""
    from orrery.cli.stack import up as stack_up  # noqa: PLC0415 - only `up` needs the stack
    from orrery.runtime.entrypoint import configure_logging  # noqa: PLC0415

    settings = settings_mod.load()
    configure_logging(settings.log_level if settings.log_level != "INFO" else "WARNING")
    settings_mod.run(stack_up(settings, separate=separate, say=console.print), settings.event_loop)


@app.command()
def status() -> None:
    """What runs, and how healthy it is."""
    settings = settings_mod.load()
    running = state.read(settings.home)
    if running is None or not state.alive(running.pid):
        console.print(f"Orrery is not running (ORRERY_HOME={settings.home}).")
        raise typer.Exit(1)
    up_for = time.time() - running.started_at.timestamp()
    console.print(f"Orrery {running.url}  pid {running.pid}  mode {running.mode}  up {up_for:.0f}s")
    console.print(f"NATS {running.nats_url}   PostgreSQL {running.database_url}")
    health = state.fetch_health(running.url) or {}
    table = Table("component", "ok", "detail")
    for key in ("nats", "postgres"):
        part = health.get(key) or {}
        assert isinstance(part, dict)
        table.add_row(key, _ok(part.get("ok")), str(part.get("detail", "no answer")))
    services = health.get("services") or {}
    assert isinstance(services, dict)
    for name, part in services.items():
        pid = running.processes.get(name)
        table.add_row(
            f"{name}" + (f" (pid {pid})" if pid else ""),
            _ok(part.get("ok")),
            str(part.get("detail", "")),
        )
    console.print(table)
    if health.get("status") != "ok":
        raise typer.Exit(1)


def _ok(value: object) -> str:
    return "[green]yes[/]" if value is True else "[red]no[/]"


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def run() -> None:
    """Entry point: known failures become one clear line each, not a traceback."""
    try:
        app()
    except (RuntimeFailure, BaseExceptionGroup) as exc:
        leaves = _leaves(exc)
        if not all(isinstance(leaf, RuntimeFailure) for leaf in leaves):
            raise
        for leaf in leaves:
            console.print(f"[red]error:[/] {getattr(leaf, 'message', leaf)}")
        sys.exit(2)
