"""The CLI's HTTP client for the gateway's REST API: where the gateway is, and errors as one
clear line (the API's ``{code, message}``), never a traceback."""

from __future__ import annotations

import os
from typing import Any

import httpx
from orrery.cli import state
from orrery.runtime.errors import RuntimeFailure
from orrery.runtime.settings import Settings

TIMEOUT_S = 330.0  # a clone may take the gateway's full wait (300 s)


class ApiCallError(RuntimeFailure):
    def __init__(
        self, status: int, code: str, message: str, detail: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = f"{message} ({code})"
        self.detail = detail or {}


def base_url(settings: Settings) -> str:
    """``ORRERY_URL``, else the running stack's address, else the configured port."""
    explicit = os.environ.get("ORRERY_URL")
    if explicit:
        return explicit.rstrip("/")
    running = state.read(settings.home)
    if running is not None and state.alive(running.pid):
        return running.url
    return f"http://{settings.host}:{settings.port}"


class Api:
    def __init__(self, settings: Settings) -> None:
        self.url = base_url(settings)
        self._client = httpx.Client(base_url=self.url, timeout=TIMEOUT_S)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ApiCallError(
                0,
                "cli.not_running",
                f"no Orrery at {self.url}: start it with `orrery up` (or set ORRERY_URL)",
            ) from None
        except httpx.HTTPError as exc:
            raise ApiCallError(0, "cli.http", f"{method} {path}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = {"code": f"http.{response.status_code}", "message": response.text[:300]}
        if response.status_code == 202 and isinstance(body, dict) and "code" in body:
            raise ApiCallError(202, body["code"], f"{body['message']}; check again later")
        if response.status_code >= 400:
            if not isinstance(body, dict):
                body = {}
            raise ApiCallError(
                response.status_code,
                str(body.get("code", f"http.{response.status_code}")),
                str(body.get("message", response.reason_phrase)),
                body.get("detail") if isinstance(body.get("detail"), dict) else None,
            )
        return body
