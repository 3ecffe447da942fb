"""Composition root of the sessions service.

Its domain arrives with the sessions issue; until then it owns its streams and runs a tracking
projection over its event stream, so the plumbing is live from the start.
"""

from __future__ import annotations

from orrery.runtime.entrypoint import run_standalone
from orrery.runtime.projections.tracking import TrackingProjection
from orrery.runtime.service import ServiceSpec
from orrery.runtime.settings import Settings


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="sessions",
        context="sessions",
        handlers={},
        projections=[TrackingProjection.log_of("sessions")],
    )


def run() -> None:
    """``orrery-sessions``: run the sessions service alone against external NATS and Postgres."""
    run_standalone(spec)
