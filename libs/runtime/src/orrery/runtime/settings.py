"""Settings from the environment: one place that reads ``ORRERY_*`` variables."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import msgspec
from orrery.runtime.errors import ConfigurationError

DEFAULT_GATEWAY_PORT = 8765
DEFAULT_NATS_PORT = 14222
DEFAULT_POSTGRES_PORT = 15432

EventLoop = Literal["uvloop", "asyncio"]
T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], loop: EventLoop = "uvloop") -> T:
    """Run a process's main coroutine on uvloop (the default: its sockets, timers and callbacks
    cost the event loop less per chunk streamed, bench/README.md), or on asyncio's own loop."""
    if loop == "uvloop":
        import uvloop  # noqa: PLC0415 - only a process that runs a loop needs it

        return uvloop.run(main)
    return asyncio.run(main)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    home: Path
    nats_url: str | None
    database_url: str | None
    host: str = "127.0.0.1"
    port: int = DEFAULT_GATEWAY_PORT
    nats_port: int = DEFAULT_NATS_PORT
    postgres_port: int = DEFAULT_POSTGRES_PORT
    heartbeat_interval: float = 1.0
    web_dir: Path | None = None
    log_level: str = "INFO"
    event_loop: EventLoop = "uvloop"
    auth: str = ""  # ORRERY_AUTH: anonymous (loopback only) | required | "" (by the host)
    public_url: str | None = None  # how agents reach the gateway (its MCP server)

    @property
    def gateway_url(self) -> str:
        """Where agents and tools on this machine reach the gateway."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    def require_urls(self) -> tuple[str, str]:
        """A service run alone needs both URLs; only ``orrery up`` starts its own servers."""
        if not self.nats_url or not self.database_url:
            raise ConfigurationError(
                "set ORRERY_NATS_URL and ORRERY_DATABASE_URL (or use `orrery up`, which starts"
                " NATS and PostgreSQL itself)"
            )
        return self.nats_url, self.database_url


def _int(env: dict[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{key}={raw!r} is not a whole number") from None


def load(env: dict[str, str] | None = None) -> Settings:
    e = dict(os.environ if env is None else env)
    web = e.get("ORRERY_WEB_DIR")
    try:
        interval = float(e.get("ORRERY_HEARTBEAT_INTERVAL", "1.0"))
    except ValueError:
        raise ConfigurationError("ORRERY_HEARTBEAT_INTERVAL must be a number of seconds") from None
    event_loop = e.get("ORRERY_EVENT_LOOP") or "uvloop"
    if event_loop not in ("uvloop", "asyncio"):
        raise ConfigurationError(f"ORRERY_EVENT_LOOP={event_loop!r}: use uvloop or asyncio")
    return Settings(
        home=Path(e.get("ORRERY_HOME") or Path.home() / ".orrery").expanduser(),
        nats_url=e.get("ORRERY_NATS_URL") or None,
        database_url=e.get("ORRERY_DATABASE_URL") or None,
        host=e.get("ORRERY_HOST", "127.0.0.1"),
        port=_int(e, "ORRERY_PORT", DEFAULT_GATEWAY_PORT),
        nats_port=_int(e, "ORRERY_NATS_PORT", DEFAULT_NATS_PORT),
        postgres_port=_int(e, "ORRERY_POSTGRES_PORT", DEFAULT_POSTGRES_PORT),
        heartbeat_interval=interval,
        web_dir=Path(web) if web else None,
        log_level=e.get("ORRERY_LOG_LEVEL", "INFO").upper(),
        event_loop=cast("EventLoop", event_loop),
        auth=e.get("ORRERY_AUTH", "").strip().lower(),
        public_url=e.get("ORRERY_PUBLIC_URL") or None,
    )
