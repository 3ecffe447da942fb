"""`orrery up` as a user runs it: a real process tree, healthy within 5 s, stopped by Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import psutil
import pytest
from orrery.events import EventMeta, codec, subjects
from orrery.events.canvas import CreateBoard
from orrery.runtime import bus

if TYPE_CHECKING:  # mypy sees the repo root; pytest puts this directory on sys.path
    from tests.system.stackctl import ORRERY, orrery, start, stop, wait_healthy
else:
    from stackctl import ORRERY, orrery, start, stop, wait_healthy

pytestmark = pytest.mark.system


@pytest.mark.parametrize("mode", [[], ["--separate"]], ids=["single", "separate"])
def test_up_is_healthy_quickly_and_stops_cleanly(tmp_path: Path, mode: list[str]) -> None:
    home = tmp_path / "home"
    # The first start initialises PostgreSQL's data directory, the second reuses it. How fast
    # is bench/startup.py's business (timed tests lie on shared machines); this checks it works.
    for _ in range(2):
        proc, env = start(home, *mode)
        port = int(env["ORRERY_PORT"])
        try:
            body = wait_healthy(proc, port, timeout=60)
            children = psutil.Process(proc.pid).children(recursive=True)
            names = " ".join(" ".join(c.cmdline()) for c in children)
            assert "nats-server" in names and "postgres" in names
            status = subprocess.run(
                [ORRERY, "status"], env=env, capture_output=True, text=True, timeout=30
            )
            assert status.returncode == 0, status.stdout + status.stderr
            assert "gateway" in status.stdout and "canvas" in status.stdout
        finally:
            out = stop(proc)
        assert "Orrery is up at" in out and "stopped" in out
        assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
        services = body["services"]
        assert isinstance(services, dict)
        assert set(services) == {"canvas", "sessions", "worktrees", "gateway"}


def test_status_when_not_running(tmp_path: Path) -> None:
    env = {**os.environ, "ORRERY_HOME": str(tmp_path)}
    result = subprocess.run([ORRERY, "status"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "not running" in result.stdout


def test_service_alone_needs_urls(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORRERY_")}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "orrery-canvas")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "ORRERY_NATS_URL" in result.stderr


async def create_boards(nats_url: str, board_ids: list[str]) -> None:
    nc = await bus.connect(nats_url, "system-test")
    try:
        for board_id in board_ids:
            command = CreateBoard(
                command_id=f"cmd-{board_id}", board_id=board_id, name=board_id, slug=board_id
            )
            await nc.jetstream().publish(
                subjects.command_subject("canvas", "CreateBoard"),
                codec.encode(command),
                headers=codec.command_headers(command, EventMeta(occurred_at=datetime.now(UTC))),
            )
    finally:
        await nc.close()


async def board_rows(db_url: str, expect: int) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(db_url)
    try:
        async with asyncio.timeout(20):
            while True:
                rows = await conn.fetch("SELECT * FROM canvas.boards ORDER BY board_id")
                if len(rows) >= expect:
                    return [tuple(r) for r in rows]
                await asyncio.sleep(0.05)
    finally:
        await conn.close()


def test_projection_commands_against_a_running_stack(tmp_path: Path) -> None:
    """list, status and rebuild as an operator runs them; a rebuild keeps the rows."""
    proc, env = start(tmp_path / "home")
    try:
        wait_healthy(proc, int(env["ORRERY_PORT"]), timeout=30)
        listed = orrery(env, "projections", "list")
        assert listed.returncode == 0, listed.stderr
        for name in ("canvas.boards", "sessions.catalog", "worktrees.catalog", "gateway.log"):
            assert name in listed.stdout

        status = orrery(env, "projections", "status")
        assert status.returncode == 0, status.stderr
        assert "canvas.boards" in status.stdout and "running" in status.stdout

        nats_url = f"nats://127.0.0.1:{env['ORRERY_NATS_PORT']}"
        db_url = f"postgresql://postgres@127.0.0.1:{env['ORRERY_POSTGRES_PORT']}/orrery"
        asyncio.run(create_boards(nats_url, ["b1", "b2", "b3"]))
        before = asyncio.run(board_rows(db_url, expect=3))

        rebuilt = orrery(env, "projections", "rebuild", "canvas.boards")
        assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
        assert "rebuilt canvas.boards from 3 events" in rebuilt.stdout
        assert asyncio.run(board_rows(db_url, expect=3)) == before

        unknown = orrery(env, "projections", "rebuild", "nope")
        assert unknown.returncode == 2
        assert "no projection 'nope'" in unknown.stdout
    finally:
        stop(proc)
