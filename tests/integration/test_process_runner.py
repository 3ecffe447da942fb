"""The process runner against real processes on loopback (no mocks, bounded polling only)."""

from __future__ import annotations

import asyncio
import shlex
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from orrery.worktrees.adapters.health import HttpCheck, TcpCheck
from orrery.worktrees.adapters.process_runner import (
    EnvState,
    ProcessRunner,
    ProcessRunnerError,
    tail_log,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pid_gone(pid: int) -> bool:
    """No such process, or only a zombie left for an init that does not reap."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 :].split()[0] in {"Z", "X"}


async def wait_for(pred: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.05)
    assert pred(), what


def http_server_cmd(port: int) -> str:
    return f"exec {shlex.quote(sys.executable)} -u -m http.server {port} --bind 127.0.0.1"


@dataclass
class Recorder:
    lines: list[tuple[str, str]] = field(default_factory=list)
    states: list[tuple[str, EnvState, EnvState, str]] = field(default_factory=list)

    async def on_output(self, env_id: str, line: str) -> None:
        self.lines.append((env_id, line))

    async def on_state(self, env_id: str, old: EnvState, new: EnvState, detail: str) -> None:
        self.states.append((env_id, old, new, detail))

    def transitions(self, env_id: str) -> list[tuple[EnvState, EnvState]]:
        return [(o, n) for e, o, n, _ in self.states if e == env_id]

    def text(self, env_id: str) -> list[str]:
        return [line for e, line in self.lines if e == env_id]


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
async def runner(rec: Recorder) -> AsyncIterator[ProcessRunner]:
    r = ProcessRunner(on_output=rec.on_output, on_state=rec.on_state)
    yield r
    await r.close(grace_s=1.0)


async def test_http_server_runs_logs_is_healthy_and_sigterm_stops_it(
    runner: ProcessRunner, rec: Recorder, tmp_path: Path
) -> None:
    port = free_port()
    log_path = tmp_path / "logs" / "env.log"
    status = await runner.start(
        "web", http_server_cmd(port), cwd=tmp_path, env={"PORT": str(port)}, log_path=log_path
    )
    assert status.state is EnvState.RUNNING
    assert status.pid is not None
    assert status.started_at is not None
    assert rec.transitions("web") == [
        (EnvState.STOPPED, EnvState.STARTING),
        (EnvState.STARTING, EnvState.RUNNING),
    ]
    http = HttpCheck(f"http://127.0.0.1:{port}/", timeout_s=1.0)
    async with asyncio.timeout(15):
        while not (result := await http.check()).healthy:
            await asyncio.sleep(0.1)
    assert result.detail == "HTTP 200"
    tcp = await TcpCheck("127.0.0.1", port, timeout_s=1.0).check()
    assert tcp.healthy

    # The startup banner (stdout) and the request log (stderr) both reach callback and file.
    await wait_for(lambda: any("GET / HTTP" in ln for ln in rec.text("web")), what="access log")
    assert any("Serving HTTP" in ln for ln in rec.text("web"))
    logged = await runner.logs("web", lines=50)
    assert any("GET / HTTP" in ln for ln in logged)
    assert any("Serving HTTP" in ln for ln in log_path.read_text().splitlines())

    pid = status.pid
    stopped = await runner.stop("web", grace_s=5.0)
    assert stopped.state is EnvState.STOPPED
    assert rec.transitions("web")[-2:] == [
        (EnvState.RUNNING, EnvState.STOPPING),
        (EnvState.STOPPING, EnvState.STOPPED),
    ]
    assert pid_gone(pid)
    assert port_free(port)
    after = await TcpCheck("127.0.0.1", port, timeout_s=1.0).check()
    assert (after.healthy, after.detail) == (False, "connection refused")
    # Logs stay readable after the stop.
    assert await runner.logs("web", lines=5)


async def test_sigterm_ignoring_group_is_killed_after_grace(
    runner: ProcessRunner, tmp_path: Path
) -> None:
    await runner.start(
        "stubborn",
        "trap '' TERM; echo ready; sleep 60",
        cwd=tmp_path,
        env={},
        log_path=tmp_path / "s.log",
    )
    await wait_for(lambda: "ready" in tail_log(tmp_path / "s.log", 5))
    pid = runner.status("stubborn").pid
    assert pid is not None
    t0 = time.monotonic()
    status = await runner.stop("stubborn", grace_s=0.5)
    elapsed = time.monotonic() - t0
    assert status.state is EnvState.STOPPED
    assert 0.4 <= elapsed < 5.0
    assert pid_gone(pid)


async def test_children_in_the_group_die_with_it(
    runner: ProcessRunner, rec: Recorder, tmp_path: Path
) -> None:
    await runner.start(
        "kids",
        "sleep 60 & echo child=$!; wait",
        cwd=tmp_path,
        env={},
        log_path=tmp_path / "k.log",
    )
    await wait_for(lambda: any(ln.startswith("child=") for ln in rec.text("kids")))
    child = int(next(ln for ln in rec.text("kids") if ln.startswith("child="))[6:])
    assert not pid_gone(child)
    await runner.stop("kids", grace_s=2.0)
    await wait_for(lambda: pid_gone(child), timeout=5.0, what="child killed")


async def test_start_command_that_backgrounds_stays_running_until_group_is_empty(
    runner: ProcessRunner, rec: Recorder, tmp_path: Path
) -> None:
    await runner.start(
        "bg",
        "sleep 60 >/dev/null 2>&1 & echo child=$!",
        cwd=tmp_path,
        env={},
        log_path=tmp_path / "bg.log",
    )
    await wait_for(lambda: runner.status("bg").exit_code == 0, what="leader exited 0")
    child = int(next(ln for ln in rec.text("bg") if ln.startswith("child="))[6:])
    assert runner.state("bg") is EnvState.RUNNING  # the group still has the sleep
    await runner.stop("bg", grace_s=2.0)
    assert runner.state("bg") is EnvState.STOPPED
    await wait_for(lambda: pid_gone(child), timeout=5.0)


async def test_command_that_finishes_with_zero_ends_stopped(
    runner: ProcessRunner, tmp_path: Path
) -> None:
    await runner.start("once", "echo done", cwd=tmp_path, env={}, log_path=tmp_path / "o.log")
    await wait_for(lambda: runner.state("once") is EnvState.STOPPED)
    assert tail_log(tmp_path / "o.log", 10) == ["done"]


async def test_failing_start_command_ends_in_error_with_last_lines(
    runner: ProcessRunner, rec: Recorder, tmp_path: Path
) -> None:
    await runner.start(
        "bad",
        "echo about to fail; echo boom >&2; exit 3",
        cwd=tmp_path,
        env={},
        log_path=tmp_path / "b.log",
    )
    await wait_for(lambda: runner.state("bad") is EnvState.ERROR)
    status = runner.status("bad")
    assert status.exit_code == 3
    assert "exited with code 3" in status.detail
    assert "boom" in status.detail
    assert rec.states[-1][2] is EnvState.ERROR
    assert "boom" in rec.states[-1][3]
    # A stop without a stop command leaves the error as it is; a new start is allowed.
    assert (await runner.stop("bad")).state is EnvState.ERROR
    # A stop command still runs, and the env keeps its error and detail.
    after = await runner.stop("bad", stop_command="echo cleanup")
    assert after.state is EnvState.ERROR
    assert "exited with code 3" in after.detail
    assert "cleanup" in tail_log(tmp_path / "b.log", 5)
    await runner.start("bad", "exec sleep 60", cwd=tmp_path, env={}, log_path=tmp_path / "b.log")
    assert runner.state("bad") is EnvState.RUNNING


async def test_spawn_failure_is_error(runner: ProcessRunner, tmp_path: Path) -> None:
    with pytest.raises(ProcessRunnerError):
        await runner.start(
            "nocwd", "true", cwd=tmp_path / "missing", env={}, log_path=tmp_path / "n.log"
        )
    assert runner.state("nocwd") is EnvState.ERROR


async def test_double_start_is_refused(runner: ProcessRunner, tmp_path: Path) -> None:
    await runner.start("dup", "exec sleep 60", cwd=tmp_path, env={}, log_path=tmp_path / "d.log")
    with pytest.raises(ProcessRunnerError, match="already running"):
        await runner.start(
            "dup", "exec sleep 60", cwd=tmp_path, env={}, log_path=tmp_path / "d.log"
        )


async def test_stop_command_is_used_when_given(runner: ProcessRunner, tmp_path: Path) -> None:
    marker = tmp_path / "stop-ran"
    await runner.start(
        "withstop",
        "echo $$ > pidfile; trap 'echo got-term; kill $!; exit 0' TERM; sleep 60 & wait",
        cwd=tmp_path,
        env={"MARKER": str(marker)},
        log_path=tmp_path / "w.log",
    )
    await wait_for(
        lambda: (tmp_path / "pidfile").exists() and (tmp_path / "pidfile").stat().st_size > 0
    )
    t0 = time.monotonic()
    status = await runner.stop(
        "withstop",
        stop_command='touch "$MARKER"; echo stopping-via-command; kill -TERM $(cat pidfile)',
        grace_s=5.0,
    )
    assert status.state is EnvState.STOPPED
    assert marker.exists()
    logged = tail_log(tmp_path / "w.log", 20)
    assert "stopping-via-command" in logged
    assert "got-term" in logged
    # The stop command stopped it: the grace period (5 s) was not waited out.
    assert time.monotonic() - t0 < 4.0


async def test_log_rotates_past_the_size_limit(rec: Recorder, tmp_path: Path) -> None:
    runner = ProcessRunner(on_output=rec.on_output, max_log_bytes=2000, log_backups=2)
    try:
        log_path = tmp_path / "r.log"
        script = "for i in range(500): print('line', i, 'x' * 40)"
        await runner.start(
            "rot",
            f"exec {shlex.quote(sys.executable)} -c {shlex.quote(script)}",
            cwd=tmp_path,
            env={},
            log_path=log_path,
        )
        await wait_for(lambda: runner.state("rot") is EnvState.STOPPED)
        files = sorted(p.name for p in tmp_path.glob("r.log*"))
        assert files == ["r.log", "r.log.1", "r.log.2"]
        for name in files:
            assert (tmp_path / name).stat().st_size <= 2000
        last = await runner.logs("rot", lines=3)
        assert last[-1].startswith("line 499")
        assert len(last) == 3
        assert len(rec.text("rot")) == 500
        # Asking for more lines than the current file holds spills over into ``.1``.
        current = len(log_path.read_text().splitlines())
        more = await runner.logs("rot", lines=current + 5)
        assert len(more) == current + 5
        assert more[-1].startswith("line 499")
    finally:
        await runner.close()


async def test_restart_and_close(runner: ProcessRunner, rec: Recorder, tmp_path: Path) -> None:
    port = free_port()
    await runner.start(
        "re", http_server_cmd(port), cwd=tmp_path, env={}, log_path=tmp_path / "re.log"
    )
    first = runner.status("re").pid
    status = await runner.restart("re", grace_s=5.0)
    assert status.state is EnvState.RUNNING
    assert status.pid != first
    assert first is not None
    assert pid_gone(first)
    http = HttpCheck(f"http://127.0.0.1:{port}/", timeout_s=1.0)
    async with asyncio.timeout(15):
        while not (await http.check()).healthy:
            await asyncio.sleep(0.1)
    await runner.close(grace_s=2.0)
    assert runner.state("re") is EnvState.STOPPED
    assert status.pid is not None
    assert pid_gone(status.pid)
