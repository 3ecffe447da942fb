"""``orrery up``: NATS, PostgreSQL, the four services and the UI, stopped cleanly on Ctrl-C.

By default the four services run in this one process (each still talks only through NATS, like
Loki's ``-target=all``), which keeps the idle footprint small; ``--separate`` runs one process
per service, as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

from orrery.cli import state
from orrery.cli.catalog import SERVICES, spec_factory
from orrery.cli.state import fetch_health
from orrery.runtime.entrypoint import install_stop_signals
from orrery.runtime.errors import ConfigurationError
from orrery.runtime.infra.nats_server import NatsServer
from orrery.runtime.infra.ports import port_is_free
from orrery.runtime.infra.postgres_server import PostgresServer
from orrery.runtime.service import run_service
from orrery.runtime.settings import Settings

Say = Callable[[str], None]


def _check_not_running(settings: Settings) -> None:
    previous = state.read(settings.home)
    if previous and state.alive(previous.pid):
        raise ConfigurationError(
            f"Orrery is already running (pid {previous.pid}, {previous.url}); "
            "stop it with Ctrl-C in its terminal, or use another ORRERY_HOME"
        )
    if not port_is_free(settings.port, settings.host):
        raise ConfigurationError(
            f"port {settings.port} on {settings.host} is taken: set ORRERY_PORT to a free port"
        )


@contextlib.asynccontextmanager
async def _infrastructure(settings: Settings, say: Say) -> AsyncIterator[tuple[str, str]]:
    """Start NATS and PostgreSQL unless external URLs are given; stop what we started."""
    started: list[NatsServer | PostgresServer] = []
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        nats_url = settings.nats_url
        if nats_url is None:
            _need_port(settings.nats_port, "ORRERY_NATS_PORT")
            nats = NatsServer(
                settings.home / "nats", port=settings.nats_port, log_file=logs / "nats.log"
            )
            await nats.start()
            started.append(nats)
            nats_url = nats.url
            say(f"NATS JetStream   {nats_url} (data in {nats.data_dir})")
        database_url = settings.database_url
        if database_url is None:
            _need_port(settings.postgres_port, "ORRERY_POSTGRES_PORT")
            pg = PostgresServer(
                settings.home / "postgres",
                port=settings.postgres_port,
                log_file=logs / "postgres.log",
            )
            await pg.start()
            started.append(pg)
            database_url = pg.url
            say(f"PostgreSQL       {database_url} (data in {pg.data_dir})")
        yield nats_url, database_url
    finally:
        for server in reversed(started):
            await server.stop()


def _need_port(port: int, variable: str) -> None:
    if not port_is_free(port):
        raise ConfigurationError(f"port {port} is taken: set {variable} to a free port")


async def _in_process(settings: Settings, nats_url: str, db_url: str, stop: asyncio.Event) -> None:
    async with asyncio.TaskGroup() as tg:
        for name in SERVICES:
            tg.create_task(
                run_service(
                    spec_factory(name)(settings),
                    nats_url,
                    db_url,
                    stop,
                    heartbeat_interval=settings.heartbeat_interval,
                )
            )


async def _separate(
    settings: Settings,
    nats_url: str,
    db_url: str,
    stop: asyncio.Event,
    on_spawned: Callable[[dict[str, int]], None],
) -> None:
    env = {**os.environ, "ORRERY_NATS_URL": nats_url, "ORRERY_DATABASE_URL": db_url}
    bin_dir = Path(sys.executable).parent
    children: dict[str, asyncio.subprocess.Process] = {}
    try:
        for name in SERVICES:
            with (settings.home / "logs" / f"{name}.log").open("ab") as log:
                children[name] = await asyncio.create_subprocess_exec(
                    str(bin_dir / f"orrery-{name}"),
                    env=env,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
        on_spawned({name: child.pid for name, child in children.items()})
        waits = {asyncio.ensure_future(c.wait()): n for n, c in children.items()}
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({stopper, *waits}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for fut in waits:
            fut.cancel()
        dead = {waits[f]: children[waits[f]].returncode for f in done if f in waits}
        if dead and not stop.is_set():
            raise RuntimeError(f"service exited: {dead}; see {settings.home / 'logs'}")
    finally:
        await _terminate(list(children.values()))


async def _terminate(children: list[asyncio.subprocess.Process], grace: float = 10.0) -> None:
    """SIGTERM every child, then SIGKILL whatever is still there after ``grace``."""
    for child in children:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(grace):
            await asyncio.gather(*(c.wait() for c in children))
    except TimeoutError:
        for child in children:
            if child.returncode is None:
                child.kill()
        await asyncio.gather(*(c.wait() for c in children))


async def _announce_when_healthy(url: str, t0: float, say: Say, stop: asyncio.Event) -> None:
    while not stop.is_set():
        body = await asyncio.to_thread(fetch_health, url)
        if body and body.get("status") == "ok":
            say(
                f"Orrery is up at {url}  (healthy {time.monotonic() - t0:.1f}s after start;"
                " Ctrl-C stops everything)"
            )
            return
        await asyncio.sleep(0.1)


async def up(settings: Settings, *, separate: bool, say: Say) -> None:
    t0 = time.monotonic()
    _check_not_running(settings)
    stop = asyncio.Event()
    install_stop_signals(stop)
    url = f"http://{settings.host}:{settings.port}"
    async with _infrastructure(settings, say) as (nats_url, db_url):
        stack = state.StackState(
            pid=os.getpid(),
            started_at=datetime.now(UTC),
            url=url,
            nats_url=nats_url,
            database_url=db_url,
            mode="separate" if separate else "single",
        )
        state.write(settings.home, stack)

        def spawned(procs: dict[str, int]) -> None:
            stack.processes = procs
            state.write(settings.home, stack)

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_announce_when_healthy(url, t0, say, stop))
                if separate:
                    await _separate(settings, nats_url, db_url, stop, spawned)
                else:
                    await _in_process(settings, nats_url, db_url, stop)
        finally:
            state.clear(settings.home)
            say("stopping…")
    say("stopped")
