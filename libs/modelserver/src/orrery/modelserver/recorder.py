"""Every request the server saw, for assertions; credentials are reduced to present / absent and
a short digest (which key was sent, never the key)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from orrery.modelserver.script import Api

# Never recorded: the value of any of these is a credential (or may be one).
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie"}
)
SECRET_PARAMS = frozenset({"key"})


class RecordedRequest(msgspec.Struct, frozen=True):
    seq: int
    method: str
    path: str
    query: dict[str, str]
    api: Api | None  # None for a route the server does not serve
    api_key_present: bool
    headers: dict[str, str]
    body: Any  # the decoded JSON body; the raw text if it is not JSON; None if empty
    rule: int | None = None  # index of the script rule that answered
    key_digest: str | None = None  # key_digest(the API key sent), to tell whose key it was


def key_digest(key: str) -> str:
    """The first 12 hex digits of the key's SHA-256: enough to tell keys apart in a test."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _sent_key(headers: Mapping[str, str], params: list[tuple[str, str]]) -> str | None:
    for name in ("x-api-key", "x-goog-api-key", "api-key"):
        if headers.get(name):
            return headers[name]
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value:
        return value
    return next((v for k, v in params if k in SECRET_PARAMS and v), None)


def _body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return raw.decode("utf-8", "replace")


class Recorder:
    """Thread-safe: the server may run in a background thread while a test reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._seq = 0  # keeps counting across clear(), so a sequence number is never reused

    def record(
        self,
        *,
        method: str,
        path: str,
        query: Iterable[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes,
        api: Api | None,
        rule: int | None,
    ) -> RecordedRequest:
        params = list(query)
        lowered = {k.lower(): v for k, v in headers.items()}
        key_present = any(lowered.get(h) for h in SECRET_HEADERS - {"cookie"}) or any(
            v for k, v in params if k in SECRET_PARAMS
        )
        with self._lock:
            request = RecordedRequest(
                seq=self._seq,
                method=method,
                path=path,
                query={k: v for k, v in params if k not in SECRET_PARAMS},
                api=api,
                api_key_present=bool(key_present),
                headers={k: v for k, v in lowered.items() if k not in SECRET_HEADERS},
                body=_body(body),
                rule=rule,
                key_digest=key_digest(sent) if (sent := _sent_key(lowered, params)) else None,
            )
            self._requests.append(request)
            self._seq += 1
        return request

    def snapshot(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
