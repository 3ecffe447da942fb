"""Server-sent events: frames planned purely, then played with their delays."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import NamedTuple

import msgspec

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class Frame(NamedTuple):
    delay: float  # seconds to wait before sending ``data``
    data: bytes


def sse(payload: object, event: str | None = None, end: bytes = b"\n\n") -> bytes:
    """One event: an optional ``event:`` line and one compact JSON ``data:`` line."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + msgspec.json.encode(payload) + end


def frame(payload: object, event: str | None = None, delay: float = 0.0) -> Frame:
    return Frame(delay, sse(payload, event))


async def play(frames: Iterable[Frame]) -> AsyncIterator[bytes]:
    for item in frames:
        if item.delay > 0:
            # The delay is the feature: a slow model, so clients show partial output.
            await asyncio.sleep(item.delay)
        yield item.data
