"""``ScriptedModelServer``: the app on a real socket, as an async or a sync context manager."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Self

import uvicorn
from orrery.modelserver.app import ServerState, create_app
from orrery.modelserver.recorder import RecordedRequest
from orrery.modelserver.script import ScriptSource, default_script, load_script

STOP_TIMEOUT_S = 10.0


class _QuietServer(uvicorn.Server):
    """Signals belong to whoever runs the server (a test runner, the console script), not to
    uvicorn, which would re-raise them after shutdown and turn a clean stop into a kill."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """A listening socket: connections made before uvicorn starts wait in the backlog, so the
    server is usable as soon as this returns, with no readiness polling."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return sock


class ScriptedModelServer:
    """A model server replaying ``script`` on ``host:port`` (port 0: any free port).

    ``async with`` runs it on the current event loop; ``with`` runs it on a thread of its own.
    """

    def __init__(
        self,
        script: ScriptSource | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._state = ServerState(load_script(script) if script is not None else default_script())
        self._state.clock = clock
        self._host = host
        self._port = port
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._tasks: contextlib.AsyncExitStack | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:41234``."""
        if self._sock is None:
            raise RuntimeError("the model server is not running")
        host, port = self._sock.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._state.recorder.snapshot()

    def clear_requests(self) -> None:
        self._state.recorder.clear()

    def set_script(self, script: ScriptSource) -> None:
        """Replace the rules; requests already being answered finish with the old ones."""
        self._state.script = load_script(script)

    def _start(self) -> uvicorn.Server:
        config = uvicorn.Config(
            create_app(self._state),
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self._server = _QuietServer(config)
        self._sock = bind(self._host, self._port)
        return self._server

    def _sockets(self) -> list[socket.socket]:
        assert self._sock is not None
        return [self._sock]

    def _stopped(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._server = None

    async def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve until SIGINT or SIGTERM, then stop gracefully (for the console script)."""
        server = self._start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        if on_ready is not None:
            on_ready(self.url)
        try:
            await server.serve(sockets=self._sockets())
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            self._stopped()

    async def __aenter__(self) -> Self:
        server = self._start()
        self._tasks = contextlib.AsyncExitStack()
        group = await self._tasks.enter_async_context(asyncio.TaskGroup())
        group.create_task(server.serve(sockets=self._sockets()), name="orrery-model-server")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        assert self._tasks is not None
        self._server.should_exit = True  # uvicorn polls this flag, then drains connections
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await self._tasks.aclose()
        finally:
            self._tasks = None
            self._stopped()

    def __enter__(self) -> Self:
        server = self._start()
        sockets = self._sockets()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=sockets)),
            name="orrery-model-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._server.should_exit = True  # uvicorn polls this flag on its own loop
        self._thread.join(STOP_TIMEOUT_S)
        alive = self._thread.is_alive()
        self._thread = None
        self._stopped()
        if alive:
            raise RuntimeError(f"the model server did not stop within {STOP_TIMEOUT_S} s")
