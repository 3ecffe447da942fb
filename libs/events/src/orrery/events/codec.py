"""Bytes and headers on the wire, and back.

The body is the msgspec JSON of the struct (it carries its ``type`` tag, so it stands alone for
tools that read the stream). The envelope's metadata travels in NATS headers so that routing,
tracing and dedup never need to parse the body.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import msgspec
from orrery.events.base import Command, Envelope, Event, EventMeta, TraceContext, wire_tag
from orrery.events.errors import DecodingError
from orrery.events.registry import Registry

H_MSG_ID: Final = "Nats-Msg-Id"
H_EXPECTED_SUBJECT_SEQ: Final = "Nats-Expected-Last-Subject-Sequence"
H_TYPE: Final = "Orrery-Type"
H_VERSION: Final = "Orrery-Version"
H_OCCURRED_AT: Final = "Orrery-Occurred-At"
H_ACTOR: Final = "Orrery-Actor"
H_CORRELATION: Final = "Orrery-Correlation-Id"
H_CAUSATION: Final = "Orrery-Causation-Id"
H_TRACEPARENT: Final = "traceparent"
H_TRACESTATE: Final = "tracestate"
# Core NATS subject where the command consumer reports the outcome (never stored; optional).
H_REPLY_TO: Final = "Orrery-Reply-To"

_encoder = msgspec.json.Encoder()
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def _decoder(cls: type[Any]) -> msgspec.json.Decoder[Any]:
    dec = _decoders.get(cls)
    if dec is None:
        dec = _decoders[cls] = msgspec.json.Decoder(cls)
    return dec


def encode(obj: Event | Command) -> bytes:
    return _encoder.encode(obj)


def _headers(tag: str, version: int, meta: EventMeta) -> dict[str, str]:
    headers = {
        H_TYPE: tag,
        H_VERSION: str(version),
        H_OCCURRED_AT: meta.occurred_at.isoformat(),
        H_ACTOR: meta.actor,
    }
    _optional(headers, H_CORRELATION, meta.correlation_id)
    _optional(headers, H_CAUSATION, meta.causation_id)
    _optional(headers, H_TRACEPARENT, meta.trace.traceparent)
    _optional(headers, H_TRACESTATE, meta.trace.tracestate)
    return headers


def event_headers(event: Event, meta: EventMeta) -> dict[str, str]:
    return _headers(wire_tag(type(event)), type(event).VERSION, meta)


def command_headers(command: Command, meta: EventMeta) -> dict[str, str]:
    """A command's headers: its id doubles as ``Nats-Msg-Id`` so client retries are no-ops."""
    headers = _headers(wire_tag(type(command)), type(command).VERSION, meta)
    headers[H_MSG_ID] = command.command_id
    return headers


def _optional(headers: dict[str, str], key: str, value: str | None) -> None:
    if value is not None:
        headers[key] = value


def _header(headers: dict[str, str] | None, key: str) -> str:
    if not headers or key not in headers:
        raise DecodingError(f"message has no {key} header")
    return headers[key]


def decode_body(registry: Registry, tag: str, version: int, body: bytes) -> Event:
    """Decode one event body of any known version into the current class."""
    cls = registry.event_class(tag)
    try:
        if version == cls.VERSION:
            event = _decoder(cls).decode(body)
        else:
            raw = msgspec.json.decode(body)
            if not isinstance(raw, dict):
                raise DecodingError(f"{tag} v{version}: body is not a JSON object")
            upcast = registry.upcasters.upcast(tag, version, cls.VERSION, raw)
            event = msgspec.convert(upcast, cls)
    except msgspec.ValidationError as exc:
        raise DecodingError(f"{tag} v{version}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise DecodingError(f"{tag} v{version}: malformed JSON: {exc}") from exc
    if not isinstance(event, cls):
        raise DecodingError(f"body decodes to {type(event).__name__}, header says {tag}")
    return event


def decode_event(
    registry: Registry,
    *,
    headers: dict[str, str] | None,
    body: bytes,
    stream: str,
    subject: str,
    sequence: int,
) -> Envelope[Event]:
    # The hot path of every replay: plain dict lookups, one decode, one struct.
    if not headers:
        raise DecodingError("message has no headers")
    get = headers.get
    tag, version_text, occurred_text, event_id = (
        get(H_TYPE),
        get(H_VERSION),
        get(H_OCCURRED_AT),
        get(H_MSG_ID),
    )
    if tag is None or version_text is None or occurred_text is None or event_id is None:
        missing = [h for h in (H_TYPE, H_VERSION, H_OCCURRED_AT, H_MSG_ID) if h not in headers]
        raise DecodingError(f"message has no {', '.join(missing)} header")
    try:
        version = int(version_text)
        occurred_at = datetime.fromisoformat(occurred_text)
    except ValueError as exc:
        raise DecodingError(f"bad envelope header: {exc}") from exc
    traceparent = get(H_TRACEPARENT)
    return Envelope(
        event=decode_body(registry, tag, version, body),
        event_id=event_id,
        type=tag,
        version=version,
        stream=stream,
        subject=subject,
        sequence=sequence,
        occurred_at=occurred_at,
        actor=get(H_ACTOR, "system"),
        correlation_id=get(H_CORRELATION),
        causation_id=get(H_CAUSATION),
        trace=_NO_TRACE
        if traceparent is None
        else TraceContext(traceparent=traceparent, tracestate=get(H_TRACESTATE)),
    )


_NO_TRACE = TraceContext()


def decode_command(registry: Registry, headers: dict[str, str] | None, body: bytes) -> Command:
    tag = _header(headers, H_TYPE)
    cls = registry.command_class(tag)
    try:
        command = _decoder(cls).decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise DecodingError(f"{tag}: {exc}") from exc
    if not isinstance(command, cls):
        raise DecodingError(f"body decodes to {type(command).__name__}, header says {tag}")
    return command


def meta_from_headers(headers: dict[str, str] | None) -> EventMeta:
    """The metadata a command arrived with, to derive its events' correlation and trace."""
    h = headers or {}
    try:
        occurred = datetime.fromisoformat(_header(h, H_OCCURRED_AT))
    except ValueError as exc:
        raise DecodingError(f"bad {H_OCCURRED_AT} header: {exc}") from exc
    return EventMeta(
        occurred_at=occurred,
        actor=h.get(H_ACTOR, "system"),
        correlation_id=h.get(H_CORRELATION),
        causation_id=h.get(H_CAUSATION),
        trace=TraceContext(traceparent=h.get(H_TRACEPARENT), tracestate=h.get(H_TRACESTATE)),
    )
