"""One error body for the whole API, ``{code, message, detail}``, and the table that maps a
domain error code to an HTTP status. Nothing reaches a client as a bare 500."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.status_codes import (
    HTTP_202_ACCEPTED,
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from orrery.runtime.commands.client import CommandFailed, CommandTimeout
from orrery.runtime.errors import InfrastructureError

log = logging.getLogger(__name__)


class ErrorBody(msgspec.Struct, frozen=True):
    code: str
    message: str
    detail: dict[str, Any] = {}


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, detail: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail or {}


# Suffix of a domain code -> status. The first match wins; the default is 422 (the request was
# understood and refused).
_BY_SUFFIX: tuple[tuple[str, int], ...] = (
    ("not_found", HTTP_404_NOT_FOUND),
    ("exists", HTTP_409_CONFLICT),
    ("taken", HTTP_409_CONFLICT),
    ("busy", HTTP_409_CONFLICT),
    ("already_running", HTTP_409_CONFLICT),
    ("not_running", HTTP_409_CONFLICT),
    ("has_worktrees", HTTP_409_CONFLICT),
    ("has_children", HTTP_409_CONFLICT),
    ("not_pending", HTTP_409_CONFLICT),
    ("not_interrupted", HTTP_409_CONFLICT),
    ("archived", HTTP_409_CONFLICT),
    ("files_deleted", HTTP_409_CONFLICT),
    ("adopted", HTTP_409_CONFLICT),
    ("not_configured", HTTP_409_CONFLICT),
    ("not_active", HTTP_409_CONFLICT),
    ("missing", HTTP_409_CONFLICT),
    ("no_ports", HTTP_409_CONFLICT),
    ("no_free_slot", HTTP_409_CONFLICT),
    ("docker_unavailable", HTTP_409_CONFLICT),
    ("ambiguous", HTTP_409_CONFLICT),
    ("has_cards", HTTP_409_CONFLICT),
    ("locked", HTTP_409_CONFLICT),
    ("not_ready", HTTP_409_CONFLICT),
    ("not_author", HTTP_403_FORBIDDEN),
    ("refresh_invalid", HTTP_401_UNAUTHORIZED),
    ("refresh_expired", HTTP_401_UNAUTHORIZED),
)


def status_of(code: str) -> int:
    for suffix, status in _BY_SUFFIX:
        if code.endswith(suffix):
            return status
    return HTTP_422_UNPROCESSABLE_ENTITY


def _body(code: str, message: str, detail: dict[str, Any] | None = None) -> ErrorBody:
    return ErrorBody(code=code, message=message, detail=detail or {})


def on_api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[ErrorBody]:
    headers = {}
    if exc.status == 429 and "retry_after" in exc.detail:
        headers["Retry-After"] = str(exc.detail["retry_after"])
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="orrery"'
    return Response(
        _body(exc.code, exc.message, exc.detail), status_code=exc.status, headers=headers
    )


def on_command_failed(_: Request[Any, Any, Any], exc: CommandFailed) -> Response[ErrorBody]:
    return Response(_body(exc.code, exc.message, exc.detail), status_code=status_of(exc.code))


def on_timeout(_: Request[Any, Any, Any], exc: CommandTimeout) -> Response[ErrorBody]:
    return Response(_body("command.pending", exc.message), status_code=HTTP_202_ACCEPTED)


def on_unavailable(_: Request[Any, Any, Any], exc: InfrastructureError) -> Response[ErrorBody]:
    return Response(
        _body("service.unavailable", exc.message), status_code=HTTP_503_SERVICE_UNAVAILABLE
    )


def on_http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    if isinstance(exc, ValidationException):
        extra = exc.extra if isinstance(exc.extra, list) else []
        return Response(
            _body("request.invalid", exc.detail, {"errors": extra}),
            status_code=HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, NotFoundException):
        return Response(_body("not_found", exc.detail), status_code=HTTP_404_NOT_FOUND)
    code = "request.too_large" if exc.status_code == 413 else f"http.{exc.status_code}"
    return Response(_body(code, exc.detail), status_code=exc.status_code)


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return Response(
        _body("internal", f"unexpected {type(exc).__name__}; see the gateway's log"),
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
    )


HANDLERS = {
    ApiError: on_api_error,
    CommandFailed: on_command_failed,
    CommandTimeout: on_timeout,
    InfrastructureError: on_unavailable,
    HTTPException: on_http,
    Exception: on_unexpected,
}
