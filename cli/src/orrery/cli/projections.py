"""``orrery projections list|status|rebuild``.

NATS, asyncpg and the services load inside the commands: every other ``orrery`` command (they
all import this module to register it) starts without them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import typer
from orrery.runtime import settings as settings_mod
from orrery.runtime.errors import ConfigurationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(help="Read models: list them, see their lag, rebuild them from the log.")
console = Console()


if TYPE_CHECKING:
    from orrery.runtime.projections.base import Projection


def _find(name: str) -> Projection:
    from orrery.cli.catalog import projections as all_projections  # noqa: PLC0415

    found = all_projections(settings_mod.load())
    if name in found:
        return found[name]
    matches = [p for qualified, p in found.items() if qualified.endswith(f".{name}")]
    if len(matches) == 1:
        return matches[0]
    raise ConfigurationError(
        f"no projection {name!r}"
        + (" (ambiguous)" if matches else "")
        + f"; known: {', '.join(sorted(found))}"
    )


@app.command("list")
def list_() -> None:
    """Every projection, its version, stream and tables."""
    from orrery.cli.catalog import projections as all_projections  # noqa: PLC0415

    table = Table("projection", "version", "stream", "subjects", "tables")
    for name, p in sorted(all_projections(settings_mod.load()).items()):
        table.add_row(
            name, str(p.version), p.stream, ", ".join(p.subjects), ", ".join(p.tables) or "—"
        )
    console.print(table)


@app.command()
def status() -> None:
    """Checkpoint, version and lag of every projection (needs a running stack)."""
    import nats.js.errors  # noqa: PLC0415 - see the module's docstring
    from orrery.cli.catalog import projections as all_projections  # noqa: PLC0415
    from orrery.cli.connect import connections  # noqa: PLC0415
    from orrery.runtime.projections import checkpoints  # noqa: PLC0415
    from orrery.runtime.projections.runner import consumer_name  # noqa: PLC0415

    async def main() -> None:
        settings = settings_mod.load()
        table = Table("projection", "code v", "stored v", "checkpoint", "lag", "state")
        async with connections(settings) as (js, pool):
            for name, p in sorted(all_projections(settings).items()):
                async with pool.acquire() as conn:
                    stored = await checkpoints.read(conn, p)
                lag, state = "?", "running"
                try:
                    info = await js.consumer_info(p.stream, consumer_name(p))
                    lag = str(info.num_pending + info.num_ack_pending)
                except nats.js.errors.NotFoundError:
                    state = "not started"
                if stored is None:
                    state = "never ran"
                elif stored[0] != p.version:
                    state = "needs rebuild"
                table.add_row(
                    name,
                    str(p.version),
                    str(stored[0]) if stored else "—",
                    str(stored[1]) if stored else "—",
                    lag,
                    state,
                )
        console.print(table)

    asyncio.run(main())


@app.command("rebuild")
def rebuild_(name: str = typer.Argument(help="projection, e.g. canvas.boards")) -> None:
    """Replay the log into fresh tables, then switch them in (reads keep working meanwhile)."""
    from orrery.cli.connect import connections  # noqa: PLC0415 - see the module's docstring
    from orrery.events import default_registry  # noqa: PLC0415
    from orrery.runtime.projections.rebuild import rebuild  # noqa: PLC0415

    projection = _find(name)

    async def main() -> int:
        async with connections(settings_mod.load()) as (js, pool):
            with Progress(
                TextColumn(f"rebuilding {projection.schema}.{projection.name}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("stream seq"),
                TimeRemainingColumn(),
                console=console,
            ) as progress:
                task = progress.add_task("replay", total=None)

                def on_progress(seq: int, until: int) -> None:
                    progress.update(task, completed=seq, total=until)

                return await rebuild(pool, js, projection, default_registry(), on_progress)

    count = asyncio.run(main())
    console.print(f"[green]rebuilt[/] {projection.schema}.{projection.name} from {count} events")
