"""Running one service alone (``orrery-canvas`` ...), against external NATS and Postgres."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from orrery.runtime import settings as settings_mod
from orrery.runtime.errors import RuntimeFailure
from orrery.runtime.service import ServiceSpec, run_service
from orrery.runtime.settings import Settings


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def run_standalone(spec_factory: Callable[[Settings], ServiceSpec]) -> None:
    try:
        settings = settings_mod.load()
        nats_url, database_url = settings.require_urls()
    except RuntimeFailure as exc:
        sys.exit(f"error: {exc.message}")
    configure_logging(settings.log_level)

    async def main() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await run_service(
            spec_factory(settings),
            nats_url,
            database_url,
            stop,
            heartbeat_interval=settings.heartbeat_interval,
        )

    try:
        settings_mod.run(main(), settings.event_loop)
    except RuntimeFailure as exc:
        sys.exit(f"error: {exc.message}")
