"""The codec and upcasters, on a private registry (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

import pytest
from orrery.events import Event, EventMeta, Registry, TraceContext, codec, subjects
from orrery.events.errors import DecodingError, InvalidToken, RegistryError, UnknownEventType


class Renamed(Event, tag="test.Renamed", frozen=True):
    """v3: ``title`` (v1) became ``name`` (v2); ``by`` was added with no default (v3)."""

    VERSION: ClassVar[int] = 3
    name: str
    by: str


def registry() -> Registry:
    r = Registry()
    r.event(Renamed)

    @r.upcaster("test.Renamed", 1)
    def title_to_name(body: dict[str, object]) -> dict[str, object]:
        body["name"] = body.pop("title")
        return body

    @r.upcaster("test.Renamed", 2)
    def add_by(body: dict[str, object]) -> dict[str, object]:
        body.setdefault("by", "unknown")
        return body

    r.check()
    return r


META = EventMeta(
    occurred_at=datetime(2026, 11, 22, 12, 0, tzinfo=UTC),
    actor="ada",
    correlation_id="corr",
    causation_id="cause",
    trace=TraceContext(traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
)


def test_round_trip_keeps_body_and_envelope() -> None:
    event = Renamed(name="n", by="me")
    envelope = codec.decode_event(
        registry(),
        headers={**codec.event_headers(event, META), codec.H_MSG_ID: "e-1"},
        body=codec.encode(event),
        stream="S",
        subject="test.evt.x.1",
        sequence=7,
    )
    assert envelope.event == event
    assert envelope.event_id == "e-1"  # the event's id is its idempotency key
    assert (envelope.type, envelope.version, envelope.sequence) == ("test.Renamed", 3, 7)
    assert (envelope.actor, envelope.correlation_id, envelope.causation_id) == (
        "ada",
        "corr",
        "cause",
    )
    assert envelope.trace == META.trace
    assert envelope.occurred_at == META.occurred_at


def test_old_versions_are_upcast_at_read_time() -> None:
    r = registry()
    assert codec.decode_body(r, "test.Renamed", 1, b'{"type":"test.Renamed","title":"t"}') == (
        Renamed(name="t", by="unknown")
    )
    assert codec.decode_body(r, "test.Renamed", 2, b'{"type":"test.Renamed","name":"n"}') == (
        Renamed(name="n", by="unknown")
    )


def test_a_newer_version_than_the_reader_is_a_clear_error() -> None:
    with pytest.raises(DecodingError, match="newer than this reader"):
        codec.decode_body(registry(), "test.Renamed", 4, b'{"name":"n","by":"b"}')


def test_missing_upcaster_is_caught_when_the_catalogue_is_built() -> None:
    r = Registry()
    r.event(Renamed)
    with pytest.raises(RegistryError, match="no upcaster"):
        r.check()


@pytest.mark.parametrize("body", [b"{", b'{"type":"test.Renamed","name":1,"by":"b"}', b"[]"])
def test_bad_bodies_raise_decoding_errors(body: bytes) -> None:
    with pytest.raises(DecodingError):
        codec.decode_body(registry(), "test.Renamed", 3, body)


def test_unknown_type_and_missing_headers() -> None:
    with pytest.raises(UnknownEventType):
        codec.decode_body(registry(), "test.Nope", 1, b"{}")
    with pytest.raises(DecodingError, match="no Orrery-Type, Orrery-Occurred-At"):
        codec.decode_event(
            registry(),
            headers={"Orrery-Version": "1", "Nats-Msg-Id": "e"},
            body=b"{}",
            stream="S",
            subject="s",
            sequence=1,
        )
    with pytest.raises(DecodingError, match="no headers"):
        codec.decode_event(
            registry(), headers=None, body=b"{}", stream="S", subject="s", sequence=1
        )


def test_unknown_fields_from_newer_writers_are_ignored() -> None:
    body = b'{"type":"test.Renamed","name":"n","by":"b","added_later":true}'
    assert codec.decode_body(registry(), "test.Renamed", 3, body) == Renamed(name="n", by="b")


def test_subjects_refuse_tokens_that_would_change_routing() -> None:
    assert subjects.event_subject("canvas", "board", "b-1") == "canvas.evt.board.b-1"
    for bad in ["a.b", "*", ">", "a b", ""]:
        with pytest.raises(InvalidToken):
            subjects.event_subject("canvas", "board", bad)
    with pytest.raises(InvalidToken, match="unknown context"):
        subjects.event_stream("billing")
