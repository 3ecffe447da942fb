"""One error body for the whole API, ``{code, message, detail}``, the table that maps a
domain error code to an HTTP status, and the checks every request passes first (``check_request``).
Nothing reaches a client as a bare 500."""

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
    ("refresh_raced", HTTP_401_UNAUTHORIZED),
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
    # A body that does not decode (malformed JSON) is a 400 like any other malformed request.
    code = {400: "request.invalid", 413: "request.too_large"}.get(
        exc.status_code, f"http.{exc.status_code}"
    )
    return Response(_body(code, exc.detail), status_code=exc.status_code)


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return Response(
        _body("internal", f"unexpected {type(exc).__name__}; see the gateway's log"),
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
    )


# --- what every request is checked for before its handler runs -------------------------------

MAX_DEPTH = 100  # levels of nesting in a JSON body (a context is a few levels deep)


def _scan(value: Any) -> tuple[bool, int]:
    """Whether decoded JSON holds U+0000 in a key or a string, and how deep it nests (without
    recursion: a body deep enough to matter would exhaust the stack)."""
    todo: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    while todo:
        item, depth = todo.pop()
        deepest = max(deepest, depth)
        if isinstance(item, str):
            if "\x00" in item:
                return True, deepest
        elif isinstance(item, dict):
            todo.extend((k, depth) for k in item)
            todo.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            todo.extend((v, depth + 1) for v in item)
    return False, deepest


def check_value(where: str, value: Any, code: str = "request.invalid") -> None:
    """Refuse (400 ``code``) a value a read model cannot hold: U+0000 anywhere (neither
    PostgreSQL text nor jsonb can store it, so a query with it fails and an event with it stops
    the projection that applies it), or nesting deeper than ``MAX_DEPTH``."""
    nul, depth = _scan(value)
    if nul:
        raise ApiError(400, code, f"{where} holds a NUL character (U+0000)")
    if depth > MAX_DEPTH:
        raise ApiError(400, code, f"{where} nests deeper than {MAX_DEPTH} levels")


async def check_request(request: Request[Any, Any, Any]) -> None:
    """A ``before_request`` hook: the path, the query and a JSON body pass ``check_value`` (a body
    that is not JSON is left to the handler, which refuses it)."""
    check_value("the path", list(request.path_params.values()))
    check_value("the query", [v for _, v in request.query_params.multi_items()])
    body = await request.body()
    if not body:
        return
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return
    except RecursionError:
        raise ApiError(
            400, "request.invalid", f"the body nests deeper than {MAX_DEPTH} levels"
        ) from None
    check_value("the body", decoded)


HANDLERS = {
    ApiError: on_api_error,
    CommandFailed: on_command_failed,
    CommandTimeout: on_timeout,
    InfrastructureError: on_unavailable,
    HTTPException: on_http,
    Exception: on_unexpected,
}
