"""The process runner: one environment's start command as a process group, with a rolling log.

Each environment (``env_id``) runs its rendered start command through ``/bin/sh -c`` in its
own session and process group (``start_new_session=True``), so a stop reaches every process
the command spawned. Output (stdout and stderr together) is copied by a reader task into a
rolling log file (rotated at ``max_log_bytes``, keeping ``log_backups`` old files) and each
line is handed to ``on_output(env_id, line)``. State changes go to
``on_state(env_id, old, new, detail)``, called only when the state really changes.

States: ``stopped`` → ``starting`` → ``running`` (as soon as the process is spawned; being
*ready* is the health monitor's business) → ``stopping`` → ``stopped``; ``error`` when the
start command fails to spawn or exits non-zero on its own (the detail holds the exit code and
the last log lines). A start command that exits 0 on its own stays ``running`` while its
process group still has live processes (a command that backgrounds a server) and becomes
``stopped`` once the group is empty.

Stop: the stop command (if given; its output goes to the same log, bounded by a timeout),
else SIGTERM to the group; SIGKILL to the group when anything is left after the grace period.
Every wait is bounded by an asyncio timeout; every task is kept and cancelled on stop/close.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from orrery.runtime.infra.ports import group_alive, signal_pgid

log = logging.getLogger(__name__)

SHELL = "/bin/sh"
_READ_CHUNK = 64 * 1024
_MAX_LINE = 64 * 1024  # a longer line is cut into pieces for the callback and the log
_POLL_S = 0.05
_GROUP_POLL_S = 0.5


class EnvState(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    ERROR = "error"


OutputCallback = Callable[[str, str], Awaitable[None]]
StateCallback = Callable[[str, EnvState, EnvState, str], Awaitable[None]]


class ProcessRunnerError(Exception):
    """A start that cannot happen (already running, spawn failure) or an unknown env."""


@dataclass(frozen=True, slots=True)
class EnvStatus:
    env_id: str
    state: EnvState
    detail: str
    pid: int | None
    started_at: datetime | None
    exit_code: int | None
    log_path: Path | None


class RollingLog:
    """An append-only log file rotated at ``max_bytes`` into ``.1`` … ``.<backups>``."""

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")
        self._size = self._file.tell()

    def write(self, data: bytes) -> None:
        if self._file.closed:
            return
        if self._size > 0 and self._size + len(data) > self.max_bytes:
            self._rotate()
        self._file.write(data)
        self._file.flush()
        self._size += len(data)

    def _rotate(self) -> None:
        self._file.close()
        if self.backups <= 0:
            self.path.unlink(missing_ok=True)
        else:
            for i in range(self.backups - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    src.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._file = self.path.open("ab")
        self._size = 0

    def close(self) -> None:
        self._file.close()


@dataclass(eq=False)
class _Env:
    env_id: str
    command: str
    cwd: Path
    env: dict[str, str]
    log_path: Path
    state: EnvState = EnvState.STOPPED
    detail: str = ""
    process: asyncio.subprocess.Process | None = None
    pid: int | None = None
    started_at: datetime | None = None
    exit_code: int | None = None
    stopping: bool = False
    log: RollingLog | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    reader: asyncio.Task[None] | None = None
    watcher: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ProcessRunner:
    """Runs environments' start commands; one live process group per ``env_id``."""

    def __init__(
        self,
        *,
        on_output: OutputCallback | None = None,
        on_state: StateCallback | None = None,
        max_log_bytes: int = 5 * 1024 * 1024,
        log_backups: int = 2,
        stop_command_timeout_s: float = 30.0,
        kill_wait_s: float = 5.0,
        base_env: Mapping[str, str] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._on_output = on_output
        self._on_state = on_state
        self._max_log_bytes = max_log_bytes
        self._log_backups = log_backups
        self._stop_command_timeout_s = stop_command_timeout_s
        self._kill_wait_s = kill_wait_s
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._now = now
        self._envs: dict[str, _Env] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # -- queries -----------------------------------------------------------------------

    def status(self, env_id: str) -> EnvStatus:
        e = self._envs.get(env_id)
        if e is None:
            return EnvStatus(env_id, EnvState.STOPPED, "", None, None, None, None)
        return EnvStatus(env_id, e.state, e.detail, e.pid, e.started_at, e.exit_code, e.log_path)

    def state(self, env_id: str) -> EnvState:
        return self.status(env_id).state

    async def logs(
        self, env_id: str, lines: int = 100, *, max_bytes: int = 256 * 1024
    ) -> list[str]:
        """The last ``lines`` lines of the env's log (current file, then ``.1``), bounded."""
        e = self._envs.get(env_id)
        if e is None or lines <= 0:
            return []
        return await asyncio.to_thread(tail_log, e.log_path, lines, max_bytes)

    # -- commands ----------------------------------------------------------------------

    async def start(
        self,
        env_id: str,
        command: str,
        *,
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
    ) -> EnvStatus:
        lock = self._locks.setdefault(env_id, asyncio.Lock())
        async with lock:
            old = self._envs.get(env_id)
            if old is not None and old.state in {
                EnvState.STARTING,
                EnvState.RUNNING,
                EnvState.STOPPING,
            }:
                raise ProcessRunnerError(f"environment {env_id!r} is already {old.state}")
            if old is not None:
                await self._release(old)
            e = _Env(env_id, command, Path(cwd), dict(env), Path(log_path), lock=lock)
            if old is not None:
                e.state, e.detail = old.state, old.detail
            self._envs[env_id] = e
            await self._spawn(e)
            return self.status(env_id)

    async def stop(
        self, env_id: str, *, stop_command: str | None = None, grace_s: float = 10.0
    ) -> EnvStatus:
        e = self._envs.get(env_id)
        if e is None:
            if stop_command is None:
                return self.status(env_id)
            raise ProcessRunnerError(f"unknown environment {env_id!r}")
        async with e.lock:
            await self._stop(e, stop_command=stop_command, grace_s=grace_s)
            return self.status(env_id)

    async def restart(
        self, env_id: str, *, stop_command: str | None = None, grace_s: float = 10.0
    ) -> EnvStatus:
        """Stop (if live), then start again with the last start's command, cwd, env and log."""
        e = self._envs.get(env_id)
        if e is None:
            raise ProcessRunnerError(f"unknown environment {env_id!r}")
        async with e.lock:
            await self._stop(e, stop_command=stop_command, grace_s=grace_s)
            await self._release(e)
            e.exit_code = None
            await self._spawn(e)
            return self.status(env_id)

    async def close(self, *, grace_s: float = 5.0) -> None:
        """Stop every environment (SIGTERM, then SIGKILL after ``grace_s``)."""
        envs = list(self._envs.values())
        await asyncio.gather(
            *(self.stop(e.env_id, grace_s=grace_s) for e in envs), return_exceptions=True
        )
        for e in envs:
            await self._release(e)

    # -- internals ---------------------------------------------------------------------

    async def _set_state(self, e: _Env, new: EnvState, detail: str = "") -> None:
        old = e.state
        e.detail = detail
        if old == new:
            return
        e.state = new
        if self._on_state is not None:
            try:
                await self._on_state(e.env_id, old, new, detail)
            except Exception:
                log.exception("on_state callback failed for %s", e.env_id)

    async def _spawn(self, e: _Env) -> None:
        e.stopping = False
        e.tail.clear()
        await self._set_state(e, EnvState.STARTING)
        try:
            e.log = RollingLog(e.log_path, max_bytes=self._max_log_bytes, backups=self._log_backups)
            e.process = await asyncio.create_subprocess_exec(
                SHELL,
                "-c",
                e.command,
                cwd=e.cwd,
                env={**self._base_env, **e.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            if e.log is not None:
                e.log.close()
                e.log = None
            await self._set_state(e, EnvState.ERROR, f"failed to start: {exc}")
            raise ProcessRunnerError(f"cannot start {e.env_id!r}: {exc}") from exc
        e.pid = e.process.pid
        e.started_at = self._now()
        e.exit_code = None
        assert e.process.stdout is not None
        e.reader = asyncio.create_task(self._read(e, e.process.stdout), name=f"log:{e.env_id}")
        e.watcher = asyncio.create_task(self._watch(e, e.process), name=f"watch:{e.env_id}")
        await self._set_state(e, EnvState.RUNNING, f"pid {e.pid}")

    async def _emit(self, e: _Env, raw: bytes) -> None:
        if e.log is not None:
            e.log.write(raw if raw.endswith(b"\n") else raw + b"\n")
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        e.tail.append(line)
        if self._on_output is not None:
            try:
                await self._on_output(e.env_id, line)
            except Exception:
                log.exception("on_output callback failed for %s", e.env_id)

    async def _read(self, e: _Env, stream: asyncio.StreamReader) -> None:
        buf = b""
        while True:
            chunk = await stream.read(_READ_CHUNK)
            if not chunk:
                break
            buf += chunk
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    break
                line, buf = buf[: nl + 1], buf[nl + 1 :]
                await self._emit(e, line)
            while len(buf) > _MAX_LINE:
                piece, buf = buf[:_MAX_LINE], buf[_MAX_LINE:]
                await self._emit(e, piece)
        if buf:
            await self._emit(e, buf)

    async def _drain_reader(self, e: _Env, timeout_s: float) -> None:
        """Let the reader reach EOF (bounded), then cancel it."""
        if e.reader is None:
            return
        await asyncio.wait({e.reader}, timeout=timeout_s)
        if not e.reader.done():
            e.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await e.reader

    async def _watch(self, e: _Env, process: asyncio.subprocess.Process) -> None:
        """Follow the start command on its own: exit code, then the rest of its group."""
        rc = await process.wait()
        e.exit_code = rc
        if e.stopping:
            return
        pgid = process.pid
        if rc != 0:
            signal_pgid(pgid, signal.SIGKILL)  # no orphans left behind by a failed start
            await self._drain_reader(e, 1.0)
            if e.stopping:
                return
            last = "\n".join(e.tail)
            await self._set_state(e, EnvState.ERROR, f"exited with code {rc}\n{last}".strip())
            self._close_log(e)
            return
        while await asyncio.to_thread(group_alive, pgid):
            await asyncio.sleep(_GROUP_POLL_S)
            if e.stopping:
                return
        await self._drain_reader(e, 1.0)
        if e.stopping:
            return
        await self._set_state(e, EnvState.STOPPED, "exited with code 0")
        self._close_log(e)

    async def _wait_group_gone(self, pgid: int, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                # Polling: a process group's end has no notification to wait on.
                while await asyncio.to_thread(group_alive, pgid):  # noqa: ASYNC110
                    await asyncio.sleep(_POLL_S)
        except TimeoutError:
            return False
        return True

    async def _run_stop_command(self, e: _Env, command: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            SHELL,
            "-c",
            command,
            cwd=e.cwd,
            env={**self._base_env, **e.env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.stdout is not None
        reader = asyncio.create_task(self._read(e, proc.stdout), name=f"stoplog:{e.env_id}")
        try:
            async with asyncio.timeout(self._stop_command_timeout_s):
                rc = await proc.wait()
                await reader
            if rc != 0:
                log.warning("stop command of %s exited with code %s", e.env_id, rc)
        except TimeoutError:
            log.warning("stop command of %s timed out; killing it", e.env_id)
            signal_pgid(proc.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._kill_wait_s):
                    await proc.wait()
        finally:
            if not reader.done():
                reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _stop(self, e: _Env, *, stop_command: str | None, grace_s: float) -> None:
        process = e.process
        live = process is not None and e.state in {EnvState.STARTING, EnvState.RUNNING}
        if not live and stop_command is None:
            return
        # The start command already failed on its own: the stop keeps that error.
        failed = process is not None and process.returncode not in {None, 0}
        failed_detail = e.detail if e.state is EnvState.ERROR else ""
        e.stopping = True
        await self._set_state(e, EnvState.STOPPING)
        if e.log is None:  # a stop command after the process ended still logs to the file
            e.log = RollingLog(e.log_path, max_bytes=self._max_log_bytes, backups=self._log_backups)
        if stop_command is not None:
            try:
                await self._run_stop_command(e, stop_command)
            except OSError as exc:
                log.warning("stop command of %s failed to run: %s", e.env_id, exc)
        elif process is not None:
            signal_pgid(process.pid, signal.SIGTERM)
        if process is not None:
            pgid = process.pid
            if not await self._wait_group_gone(pgid, grace_s):
                signal_pgid(pgid, signal.SIGKILL)
                await self._wait_group_gone(pgid, self._kill_wait_s)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._kill_wait_s):
                    e.exit_code = await process.wait()
        await self._cancel_watcher(e)
        await self._drain_reader(e, 1.0)
        self._close_log(e)
        if failed:
            detail = (
                failed_detail or (f"exited with code {e.exit_code}\n" + "\n".join(e.tail)).strip()
            )
            await self._set_state(e, EnvState.ERROR, detail)
        else:
            await self._set_state(e, EnvState.STOPPED, "stopped")

    async def _cancel_watcher(self, e: _Env) -> None:
        if e.watcher is not None:
            if not e.watcher.done():
                e.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await e.watcher
            e.watcher = None

    def _close_log(self, e: _Env) -> None:
        if e.log is not None:
            e.log.close()
            e.log = None

    async def _release(self, e: _Env) -> None:
        """Drop an ended env's tasks and log handle (kills leftovers of its group, if any)."""
        if e.process is not None and e.process.returncode is None:
            signal_pgid(e.process.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._kill_wait_s):
                    await e.process.wait()
        await self._cancel_watcher(e)
        if e.reader is not None:
            e.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await e.reader
            e.reader = None
        self._close_log(e)


def tail_log(path: Path, lines: int, max_bytes: int = 256 * 1024) -> list[str]:
    """The last ``lines`` lines of ``path`` (then ``path.1``), reading ``max_bytes`` at most."""
    out: list[str] = []
    budget = max_bytes
    for candidate in (path, path.with_name(f"{path.name}.1")):
        if len(out) >= lines or budget <= 0:
            break
        try:
            with candidate.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                start = max(0, size - budget)
                f.seek(start)
                data = f.read(budget)
        except OSError:
            continue
        budget -= len(data)
        chunk = data.decode("utf-8", errors="replace").splitlines()
        if start > 0 and chunk:
            chunk = chunk[1:]  # the first line was cut by the byte bound
        out = chunk[-(lines - len(out)) :] + out if lines > len(out) else out
    return out[-lines:]
