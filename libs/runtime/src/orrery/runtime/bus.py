"""Connecting to NATS with the settings every service shares."""

from __future__ import annotations

import logging
import re

import nats
from nats.aio.client import Client
from orrery.runtime.errors import InfrastructureError

log = logging.getLogger(__name__)
_SPACE = re.compile(r"\s")
_ASCII_SPACE = " \t\n\r\x0b\x0c"  # what bytes.strip() strips, as nats-py does


class OrreryClient(Client):
    """nats-py's client with a faster header parser.

    Every stored event carries about ten headers, and nats-py 2.16 checks each header name for
    whitespace one character at a time through a generator: a third of the cost of reading a
    message. This parser gives the same result (tested against the original for parity) with one
    regex search per name. Pinned to nats-py 2.16, whose private hook it overrides.
    """

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        # One decode for the block: lines split on CRLF never cut a UTF-8 sequence, so this
        # equals decoding each value; names must be ASCII without inner whitespace.
        for line in raw.decode("utf-8", "replace").split("\r\n"):
            name, sep, value = line.partition(":")
            if not sep:
                continue
            key = name.strip(_ASCII_SPACE)
            if not key.isascii() or _SPACE.search(key):
                continue
            out[key] = value.strip(_ASCII_SPACE)
        return out


async def _on_error(exc: Exception) -> None:
    """One line per NATS error (nats-py's default prints a traceback for each reconnect try)."""
    log.warning("nats: %r", exc)


async def connect(url: str, name: str, *, connect_timeout: int = 5, attempts: int = -1) -> Client:
    """Connect and keep reconnecting for ever: a NATS restart is survived, not fatal. A short-
    lived client (the CLI) passes ``attempts``, so an unreachable NATS is an error, not a hang
    (nats-py applies the limit to the first connection too)."""
    client = OrreryClient()
    try:
        await client.connect(
            url,
            name=name,
            connect_timeout=connect_timeout,
            max_reconnect_attempts=attempts,
            reconnect_time_wait=0.5,  # type: ignore[arg-type]  # seconds; int in the stubs only
            allow_reconnect=True,
            error_cb=_on_error,
        )
    except (OSError, TimeoutError, nats.errors.NoServersError) as exc:
        raise InfrastructureError(f"cannot reach NATS at {url}: {exc!r}") from exc
    return client
