"""Composition root of the gateway: its service wiring plus the HTTP server as an extra task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from orrery.events import Command, default_registry
from orrery.events import gateway as g
from orrery.gateway import auth, mcp
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
    keys = Keys.from_master(master_key(settings.home))

    async def serve(wiring: Wiring, stop: asyncio.Event) -> None:
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
        app = create_app(
            monitor,
            settings.web_dir or default_web_dir(),
            worktrees,
            sessions,
            canvas,
            users=users,
        )
        mcp_server = mcp.build(
            mcp.Tools(app, authenticator, wiring.pool, wiring.js, default_registry())
        )
        root = mcp.mount(app, mcp.asgi(mcp_server, authenticator, settings.host))
        config = uvicorn.Config(root, log_level="warning", lifespan="off")
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
        mcp_running = mcp.running(mcp_server)
        await mcp_running.__aenter__()
        task = asyncio.create_task(server.serve(sockets=[sock]))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        await task
        stopper.cancel()
        await mcp_running.__aexit__(None, None, None)
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
