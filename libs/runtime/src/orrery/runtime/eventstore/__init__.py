"""The event store: append with per-subject optimistic concurrency and idempotency, and load."""

from orrery.runtime.eventstore.base import AppendResult, EventStore

__all__ = ["AppendResult", "EventStore"]
