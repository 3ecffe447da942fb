"""Health checks for environments: HTTP (2xx = healthy) and TCP (connect = healthy).

The HTTP check is a minimal HTTP/1.0 GET over ``asyncio.open_connection`` (TLS for
``https://``), with no dependency beyond the standard library. Every check is bounded by its
``timeout_s`` and never raises: the outcome is a :class:`HealthResult` whose detail reads
``"HTTP 200"``, ``"HTTP 503"``, ``"timeout"``, ``"connection refused"`` or the OS error.

:class:`HealthMonitor` runs one check every ``interval_s`` and reports through
``on_change`` only when the healthy/unhealthy status changes (the first result always).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

_MAX_STATUS_LINE = 8192


@dataclass(frozen=True, slots=True)
class HealthResult:
    healthy: bool
    detail: str


class HealthCheck(Protocol):
    async def check(self) -> HealthResult: ...


def _os_error_detail(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return exc.strerror or str(exc) or type(exc).__name__


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await writer.wait_closed()


class HttpCheck:
    """``GET url``; healthy on a 2xx status line within ``timeout_s``."""

    def __init__(self, url: str, timeout_s: float = 1.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self.timeout_s = timeout_s
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        path = parts.path or "/"
        self._target = f"{path}?{parts.query}" if parts.query else path
        host_header = parts.netloc.rsplit("@", 1)[-1]
        self._request = (
            f"GET {self._target} HTTP/1.0\r\n"
            f"Host: {host_header}\r\n"
            "User-Agent: orrery-health/1\r\n"
            "Accept: */*\r\n"
            "Connection: close\r\n\r\n"
        ).encode("ascii", errors="strict")

    async def check(self) -> HealthResult:
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                ctx = ssl.create_default_context() if self._tls else None
                reader, writer = await asyncio.open_connection(self._host, self._port, ssl=ctx)
                writer.write(self._request)
                await writer.drain()
                status_line = await reader.readline()
        except TimeoutError:
            return HealthResult(False, "timeout")
        except OSError as exc:
            return HealthResult(False, _os_error_detail(exc))
        except ValueError as exc:  # a status line longer than the stream's limit
            return HealthResult(False, f"bad response: {exc}")
        finally:
            if writer is not None:
                await _close(writer)
        parts = status_line[:_MAX_STATUS_LINE].decode("latin-1").split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            return HealthResult(False, "bad response" if status_line else "empty response")
        code = int(parts[1])
        return HealthResult(200 <= code < 300, f"HTTP {code}")


class TcpCheck:
    """Healthy when a TCP connection to ``host:port`` opens within ``timeout_s``."""

    def __init__(self, host: str, port: int, timeout_s: float = 1.0) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s

    async def check(self) -> HealthResult:
        try:
            async with asyncio.timeout(self.timeout_s):
                _, writer = await asyncio.open_connection(self.host, self.port)
        except TimeoutError:
            return HealthResult(False, "timeout")
        except OSError as exc:
            return HealthResult(False, _os_error_detail(exc))
        await _close(writer)
        return HealthResult(True, "connected")


ChangeCallback = Callable[[HealthResult], Awaitable[None]]


class HealthMonitor:
    """Checks every ``interval_s`` until stopped; ``on_change`` only when status flips."""

    def __init__(
        self,
        check: HealthCheck,
        interval_s: float,
        on_change: ChangeCallback,
        *,
        initial_delay_s: float = 0.0,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.check = check
        self.interval_s = interval_s
        self.initial_delay_s = initial_delay_s
        self._on_change = on_change
        self._task: asyncio.Task[None] | None = None
        self.last: HealthResult | None = None
        self.checks = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        self.last = None
        self._task = asyncio.create_task(self._loop(), name="health-monitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def __aenter__(self) -> HealthMonitor:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _loop(self) -> None:
        if self.initial_delay_s > 0:
            await asyncio.sleep(self.initial_delay_s)
        while True:
            try:
                result = await self.check.check()
            except Exception as exc:  # a check should not raise; treat it as unhealthy
                log.exception("health check raised")
                result = HealthResult(False, f"check failed: {exc}")
            self.checks += 1
            previous, self.last = self.last, result
            if previous is None or previous.healthy != result.healthy:
                try:
                    await self._on_change(result)
                except Exception:
                    log.exception("health on_change callback failed")
            await asyncio.sleep(self.interval_s)
