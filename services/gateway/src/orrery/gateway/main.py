"""Composition root of the gateway: its service wiring plus the HTTP server as an extra task."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn
from orrery.events import Command, default_registry
from orrery.events import gateway as g
from orrery.gateway import auth
from orrery.gateway.app import create_app
from orrery.gateway.canvas import CanvasApi
from orrery.gateway.canvas_model import CanvasReadModel
from orrery.gateway.domain import users as d
from orrery.gateway.health import HealthMonitor
from orrery.gateway.projections.users import UsersProjection
from orrery.gateway.readmodel import WorktreesReadModel
from orrery.gateway.sessions import SessionsApi, SessionsReadModel
from orrery.gateway.users import UsersApi, UsersReadModel
from orrery.gateway.worktrees import WorktreesApi
from orrery.runtime.commands.client import CommandClient
from orrery.runtime.decider import Handler
from orrery.runtime.entrypoint import run_standalone
from orrery.runtime.errors import ConfigurationError
from orrery.runtime.projections.tracking import TrackingProjection
from orrery.runtime.secrets import Keys, master_key
from orrery.runtime.service import ServiceSpec, Wiring
from orrery.runtime.settings import Settings

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn installs its own signal handlers; inside ``orrery up`` the stack owns them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


MAX_FRAME_BYTES = 1024 * 1024  # a WebSocket message, like a request body


def cors_origins(settings: Settings) -> list[str]:
    """The UI's origin (the gateway serves it) plus ``ORRERY_CORS_ORIGINS`` (comma-separated,
    e.g. a Vite dev server's ``http://localhost:5173``)."""
    extra = [o.strip().rstrip("/") for o in os.environ.get("ORRERY_CORS_ORIGINS", "").split(",")]
    own = settings.gateway_url
    origins = [own, own.replace("127.0.0.1", "localhost")] + [o for o in extra if o]
    return list(dict.fromkeys(origins))


class LazyApp:
    """An ASGI app made in the background; requests that come first wait for it (10 s)."""

    def __init__(self, load: Callable[[contextlib.AsyncExitStack], Awaitable[Any]]) -> None:
        self._load = load
        self._app: Any = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        """Loads, then holds what it entered open until ``close()``: in this one task, as the
        SDK's task group needs."""
        async with contextlib.AsyncExitStack() as stack:
            try:
                self._app = await self._load(stack)
            except Exception:
                log.exception("the MCP server did not start")
            finally:
                self._ready.set()
            await self._stop.wait()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), 10)
        if self._app is None:
            body = (
                b'{"code":"mcp.unavailable","message":"the MCP server is not running","detail":{}}'
            )
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json")]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return
        await self._app(scope, receive, send)

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 10)
            except Exception:
                log.exception("the MCP server did not stop cleanly")


def mount(rest: Any, mcp_app: Any) -> Any:
    """One ASGI app: ``/mcp`` to the MCP server, everything else to the REST app."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/mcp" or path.startswith("/mcp/")):
            await mcp_app(scope, receive, send)
        else:
            await rest(scope, receive, send)

    return app


def default_web_dir() -> Path | None:
    """``web/dist`` of the checkout this package was installed from (editable installs)."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "web" / "dist"
        if candidate.is_dir():
            return candidate
    return None


def _on_user(decide: Any) -> Handler[Any, Any]:
    return Handler(d.USER, lambda command: command.user_id, decide)


HANDLERS: dict[type[Command], Handler[Any, Any]] = {
    g.CreateUser: _on_user(d.decide_create),
    g.UpdateUser: _on_user(d.decide_update),
    g.ChangeRole: _on_user(d.decide_role),
    g.ChangePassword: _on_user(d.decide_password),
    g.DeleteUser: _on_user(d.decide_delete),
    g.StartLogin: _on_user(d.decide_start_login),
    g.RefreshLogin: _on_user(d.decide_refresh),
    g.EndLogin: _on_user(d.decide_end_login),
    g.CreateApiKey: _on_user(d.decide_create_key),
    g.RevokeApiKey: _on_user(d.decide_revoke_key),
    g.SetSecret: _on_user(d.decide_set_secret),
    g.ClearSecret: _on_user(d.decide_clear_secret),
    g.SetDefaults: _on_user(d.decide_defaults),
}


def serve_http(settings: Settings):  # type: ignore[no-untyped-def]
    mode = auth.mode_for(settings.auth, settings.host)  # refused before anything starts

    async def serve(wiring: Wiring, stop: asyncio.Event) -> None:
        keys = Keys.from_master(master_key(settings.home))
        monitor = HealthMonitor(wiring.nc, wiring.pool)
        await monitor.start()
        client = CommandClient(wiring.nc, wiring.js, default_registry())
        worktree_model = WorktreesReadModel(wiring.pool)
        worktrees = WorktreesApi(client, worktree_model, wiring.js)
        sessions = SessionsApi(
            client,
            SessionsReadModel(wiring.pool),
            worktree_model,
            wiring.nc,
            wiring.js,
            default_registry(),
        )
        canvas = CanvasApi(
            client,
            CanvasReadModel(wiring.pool),
            worktree_model,
            wiring.nc,
            wiring.js,
            default_registry(),
        )
        authenticator = auth.Authenticator(wiring.pool, keys, mode)
        users = UsersApi(
            client, UsersReadModel(wiring.pool), worktree_model, wiring.nc, wiring.js,
            default_registry(),
        )  # fmt: skip
        users.authenticator, users.keys, users.limiter = authenticator, keys, auth.LoginLimiter()
        users.setup_lock = asyncio.Lock()
        app = create_app(
            monitor,
            settings.web_dir or default_web_dir(),
            worktrees,
            sessions,
            canvas,
            users=users,
            cors_origins=cors_origins(settings),
        )

        async def load_mcp(stack: contextlib.AsyncExitStack) -> Any:
            # The SDK takes ~1 s to import: off the start-up path, while the gateway serves.
            mcp = await asyncio.to_thread(importlib.import_module, "orrery.gateway.mcp")
            tools = mcp.Tools(app, authenticator, wiring.pool, wiring.js, default_registry())
            server = mcp.build(tools)
            asgi = mcp.asgi(server, authenticator, settings.host)
            await stack.enter_async_context(mcp.running(server))
            return asgi

        mcp_app = LazyApp(load_mcp)
        root = mount(app, mcp_app)
        config = uvicorn.Config(
            root, log_level="warning", lifespan="off", ws_max_size=MAX_FRAME_BYTES
        )
        server = _Server(config)
        # Bind here, so a port in use is a clear error rather than uvicorn's sys.exit().
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((settings.host, settings.port))
        except OSError as exc:
            sock.close()
            raise ConfigurationError(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
                " (set ORRERY_PORT to another port)"
            ) from exc
        task = asyncio.create_task(server.serve(sockets=[sock]))
        mcp_app.start()
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        await task
        stopper.cancel()
        await mcp_app.close()
        await canvas.presence.close()
        await client.close()
        if task in done and not stop.is_set():
            raise RuntimeError(f"the HTTP server on {settings.host}:{settings.port} stopped")

    return serve


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="gateway",
        context="gateway",
        handlers=HANDLERS,
        projections=[TrackingProjection.log_of("gateway"), UsersProjection()],
        extras=[serve_http(settings)],
    )


def run() -> None:
    """``orrery-gateway``: run the gateway alone against external NATS and Postgres."""
    run_standalone(spec)
