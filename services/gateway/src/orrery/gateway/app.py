"""The Litestar application: thin controllers over the health monitor, the command client and
the read models."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from litestar import Litestar, Response, get
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler
from orrery.gateway import auth, errors
from orrery.gateway.canvas import ROUTES as CANVAS_ROUTES
from orrery.gateway.canvas import CanvasApi
from orrery.gateway.health import HealthMonitor, HealthReport
from orrery.gateway.sessions import ROUTES as SESSION_ROUTES
from orrery.gateway.sessions import SessionsApi
from orrery.gateway.users import ROUTES as USER_ROUTES
from orrery.gateway.users import UsersApi
from orrery.gateway.worktrees import ReposController, WorktreesApi, WorktreesController

MAX_BODY_BYTES = 1024 * 1024


def create_app(
    monitor: HealthMonitor,
    web_dir: Path | None,
    worktrees: WorktreesApi | None = None,
    sessions: SessionsApi | None = None,
    canvas: CanvasApi | None = None,
    *,
    users: UsersApi | None = None,
    cors_origins: Sequence[str] = (),
) -> Litestar:
    @get(
        "/healthz",
        summary="State of NATS, PostgreSQL and each service",
        tags=["health"],
        opt={"public": True},
    )
    async def healthz() -> Response[HealthReport]:
        report = await monitor.report()
        return Response(report, status_code=200 if report.status == "ok" else 503)

    handlers: list[ControllerRouterHandler] = [healthz]
    dependencies = {}
    if worktrees is not None:
        handlers += [ReposController, WorktreesController]
        dependencies["api"] = Provide(lambda: worktrees, use_cache=True, sync_to_thread=False)
    if sessions is not None:
        handlers += SESSION_ROUTES
        dependencies["sessions"] = Provide(lambda: sessions, use_cache=True, sync_to_thread=False)
    if canvas is not None:
        handlers += CANVAS_ROUTES
        dependencies["canvas"] = Provide(lambda: canvas, use_cache=True, sync_to_thread=False)
    guards = []
    if users is not None:
        handlers += USER_ROUTES
        dependencies["users"] = Provide(lambda: users, use_cache=True, sync_to_thread=False)
        guards.append(auth.make_guard(users.authenticator))
    if web_dir is not None and (web_dir / "index.html").is_file():
        handlers.append(
            create_static_files_router(
                path="/", directories=[web_dir], html_mode=True, opt={"public": True}
            )
        )
    return Litestar(
        route_handlers=handlers,
        dependencies=dependencies,
        guards=guards,
        before_request=errors.check_request,  # NUL and depth: what no read model can hold
        exception_handlers=errors.HANDLERS,  # type: ignore[arg-type]
        openapi_config=OpenAPIConfig(
            title="Orrery",
            version="0.1.0",
            path="/schema",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="an access token (POST /api/auth/login) or an API key",
                    )
                }
            ),
            security=[{"bearer": []}],
        ),
        # Only the UI's own origin (and a dev server's, when configured) may call from a browser.
        cors_config=CORSConfig(allow_origins=list(cors_origins)) if cors_origins else None,
        request_max_body_size=MAX_BODY_BYTES,
        logging_config=None,
    )
