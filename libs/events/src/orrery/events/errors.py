"""Errors of the event contract. Each has a stable ``code`` that callers and logs can match on."""

from __future__ import annotations


class EventsError(Exception):
    """Base of every error raised by ``orrery.events``."""

    code = "events.error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownEventType(EventsError):
    """A wire tag that no registered class carries: the reader is older than the writer."""

    code = "events.unknown_type"


class DecodingError(EventsError):
    """A body that does not match its declared type and version. Retrying cannot help."""

    code = "events.decoding"


class RegistryError(EventsError):
    """A programming error in the catalogue: duplicate tags, missing tags, gaps in upcasters."""

    code = "events.registry"


class InvalidToken(EventsError):
    """An identifier that cannot be used inside a NATS subject."""

    code = "events.invalid_token"


class Rejection(EventsError):
    """A domain decision to refuse a command (an invariant would break). Domain code raises it;
    the command loop turns it into a ``CommandRejected`` event and acks: retrying cannot help.
    ``code`` is per instance here, because each refusal names its own reason."""

    def __init__(self, code: str, message: str, detail: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail or {}
