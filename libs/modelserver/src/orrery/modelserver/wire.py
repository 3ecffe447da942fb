"""What every wire format provides: its explicit handler table, one entry per provider API."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orrery.modelserver.conversation import Conversation
from orrery.modelserver.reply import Failure, Reply
from orrery.modelserver.script import Api
from orrery.modelserver.sse import Frame


@dataclass(frozen=True, slots=True)
class ErrorReply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WireFormat:
    api: Api
    # Raises msgspec.DecodeError / ValidationError on a body the real API would refuse.
    parse: Callable[[bytes], Conversation]
    stream: Callable[[Reply, Conversation], list[Frame]]
    complete: Callable[[Reply, Conversation], dict[str, Any]]
    # The failure and a request digest (for a request id).
    error: Callable[[Failure, str], ErrorReply]
    request_id_header: str | None = None  # where the provider names the request, if it does

    def request_id(self, key: str) -> dict[str, str]:
        return {self.request_id_header: f"req_{key}"} if self.request_id_header else {}


def retry_headers(failure: Failure) -> dict[str, str]:
    """The official SDKs retry 408/409/429/5xx unless told otherwise by ``x-should-retry``."""
    if failure.retry is None:
        return {}
    return {"x-should-retry": "true" if failure.retry else "false"}
