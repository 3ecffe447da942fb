"""Connecting to NATS with the settings every service shares."""

from __future__ import annotations

import nats
from nats.aio.client import Client
from orrery.runtime.errors import InfrastructureError


async def connect(url: str, name: str, *, connect_timeout: float = 5.0) -> Client:
    """Connect and keep reconnecting for ever: a NATS restart is survived, not fatal."""
    try:
        return await nats.connect(
            url,
            name=name,
            connect_timeout=connect_timeout,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            allow_reconnect=True,
        )
    except (OSError, TimeoutError, nats.errors.NoServersError) as exc:
        raise InfrastructureError(f"cannot reach NATS at {url}: {exc!r}") from exc
