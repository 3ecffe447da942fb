"""HTTP and TCP health checks and the change-only monitor, against real loopback servers."""

from __future__ import annotations

import asyncio
import shlex
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from orrery.worktrees.adapters.health import (
    HealthMonitor,
    HealthResult,
    HttpCheck,
    TcpCheck,
)
from orrery.worktrees.adapters.process_runner import EnvState, ProcessRunner


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(pred: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.05)


async def serve(status: int, *, delay_s: float = 0.0) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            if delay_s:
                await asyncio.sleep(delay_s)
            writer.write(f"HTTP/1.0 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


@pytest.fixture
async def runner() -> AsyncIterator[ProcessRunner]:
    r = ProcessRunner()
    yield r
    await r.close(grace_s=1.0)


async def test_http_status_codes_and_failures() -> None:
    ok, ok_port = await serve(204)
    bad, bad_port = await serve(503)
    slow, slow_port = await serve(200, delay_s=5.0)
    try:
        assert await HttpCheck(f"http://127.0.0.1:{ok_port}/health?x=1").check() == HealthResult(
            True, "HTTP 204"
        )
        assert await HttpCheck(f"http://127.0.0.1:{bad_port}/").check() == HealthResult(
            False, "HTTP 503"
        )
        assert await HttpCheck(f"http://127.0.0.1:{slow_port}/", 0.3).check() == HealthResult(
            False, "timeout"
        )
    finally:
        for s in (ok, bad, slow):
            s.close()
    closed = free_port()
    assert await HttpCheck(f"http://127.0.0.1:{closed}/").check() == HealthResult(
        False, "connection refused"
    )
    assert await TcpCheck("127.0.0.1", closed, 1.0).check() == HealthResult(
        False, "connection refused"
    )
    with pytest.raises(ValueError, match="http"):
        HttpCheck("ftp://example.org/")


async def test_tcp_check_healthy() -> None:
    server, port = await serve(200)
    try:
        assert await TcpCheck("127.0.0.1", port, 1.0).check() == HealthResult(True, "connected")
    finally:
        server.close()


async def test_monitor_reports_only_changes(runner: ProcessRunner, tmp_path: Path) -> None:
    port = free_port()
    cmd = f"exec {shlex.quote(sys.executable)} -u -m http.server {port} --bind 127.0.0.1"
    await runner.start("mon", cmd, cwd=tmp_path, env={}, log_path=tmp_path / "m.log")
    reports: list[HealthResult] = []

    async def on_change(result: HealthResult) -> None:
        reports.append(result)

    monitor = HealthMonitor(HttpCheck(f"http://127.0.0.1:{port}/", 0.5), 0.1, on_change)
    async with monitor:
        # The server may need a moment: an initial unhealthy report is allowed, then healthy.
        await wait_for(lambda: bool(reports) and reports[-1].healthy)
        if len(reports) == 2:
            assert not reports[0].healthy
            del reports[0]
        assert reports == [HealthResult(True, "HTTP 200")]
        seen = monitor.checks
        await wait_for(lambda: monitor.checks >= seen + 3)
        assert len(reports) == 1  # steady healthy: no new reports

        await runner.stop("mon", grace_s=5.0)
        await wait_for(lambda: len(reports) == 2)
        assert reports[1] == HealthResult(False, "connection refused")
        seen = monitor.checks
        await wait_for(lambda: monitor.checks >= seen + 3)
        assert len(reports) == 2  # unhealthy once, not on every check

        status = await runner.restart("mon", grace_s=5.0)
        assert status.state is EnvState.RUNNING
        await wait_for(lambda: len(reports) == 3)
        assert reports[2] == HealthResult(True, "HTTP 200")
        assert [r.healthy for r in reports] == [True, False, True]
    assert not monitor.running
