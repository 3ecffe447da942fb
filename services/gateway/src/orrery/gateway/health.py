"""What /healthz reports: NATS, PostgreSQL, and each service's last heartbeat."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from orrery.events import subjects
from orrery.events.common import Heartbeat

SERVICES = ("canvas", "sessions", "worktrees", "gateway")
# A service is up if its last heartbeat is younger than this many intervals.
MISSED_BEATS = 3.0


class Component(msgspec.Struct, frozen=True):
    ok: bool
    detail: str


class ServiceHealth(msgspec.Struct, frozen=True):
    ok: bool
    last_seen_ms_ago: int | None
    detail: str
    instance_id: str | None = None
    projections: dict[str, int] = {}


class HealthReport(msgspec.Struct, frozen=True):
    status: str
    nats: Component
    postgres: Component
    services: dict[str, ServiceHealth]


class HealthMonitor:
    def __init__(self, nc: Client, pool: asyncpg.Pool) -> None:
        self._nc = nc
        self._pool = pool
        self._seen: dict[str, tuple[float, Heartbeat]] = {}
        self._decoder = msgspec.json.Decoder(Heartbeat)

    async def start(self) -> None:
        await self._nc.subscribe(subjects.heartbeat_subjects(), cb=self._on_beat)

    async def _on_beat(self, msg: Msg) -> None:
        try:
            beat = self._decoder.decode(msg.data)
        except msgspec.DecodeError:
            return  # a foreign or malformed beat says nothing about our services
        self._seen[beat.service] = (time.monotonic(), beat)

    async def _nats(self) -> Component:
        if not self._nc.is_connected:
            return Component(False, f"not connected ({self._nc.connected_url or 'no server'})")
        try:
            async with asyncio.timeout(1.0):
                info = await self._nc.jetstream().account_info()
        except Exception as exc:  # noqa: BLE001 - any failure is the answer here
            return Component(False, f"JetStream not answering: {exc!r}")
        return Component(True, f"JetStream up, {info.streams} streams")

    async def _postgres(self) -> Component:
        try:
            async with asyncio.timeout(1.0):
                version = await self._pool.fetchval("SHOW server_version")
        except Exception as exc:  # noqa: BLE001 - any failure is the answer here
            return Component(False, f"not answering: {exc!r}")
        return Component(True, f"PostgreSQL {version}")

    def _service(self, name: str, now: float) -> ServiceHealth:
        seen = self._seen.get(name)
        if seen is None:
            return ServiceHealth(False, None, "no heartbeat yet")
        at, beat = seen
        age = now - at
        ok = age <= beat.interval_s * MISSED_BEATS
        detail = beat.detail or ("running" if ok else f"silent for {age:.1f}s")
        return ServiceHealth(
            ok and not beat.detail,
            int(age * 1000),
            detail,
            beat.instance_id,
            dict(beat.projections),
        )

    async def report(self) -> HealthReport:
        nats_state, pg_state = await asyncio.gather(self._nats(), self._postgres())
        now = time.monotonic()
        services = {name: self._service(name, now) for name in SERVICES}
        ok = nats_state.ok and pg_state.ok and all(s.ok for s in services.values())
        return HealthReport("ok" if ok else "degraded", nats_state, pg_state, services)
