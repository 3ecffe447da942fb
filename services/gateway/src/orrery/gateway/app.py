"""The Litestar application: thin controllers over the health monitor (and, later, commands)."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar, Response, get
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler
from orrery.gateway.health import HealthMonitor, HealthReport


def create_app(monitor: HealthMonitor, web_dir: Path | None) -> Litestar:
    @get("/healthz", summary="State of NATS, PostgreSQL and each service")
    async def healthz() -> Response[HealthReport]:
        report = await monitor.report()
        return Response(report, status_code=200 if report.status == "ok" else 503)

    handlers: list[ControllerRouterHandler] = [healthz]
    if web_dir is not None and (web_dir / "index.html").is_file():
        handlers.append(create_static_files_router(path="/", directories=[web_dir], html_mode=True))
    return Litestar(route_handlers=handlers, openapi_config=None, logging_config=None)
