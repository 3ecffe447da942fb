"""Composition root of the worktrees service.

Its domain arrives with the worktrees issue; until then it owns its streams and runs a tracking
projection over its event stream, so the plumbing is live from the start.
"""

from __future__ import annotations

from orrery.runtime.entrypoint import run_standalone
from orrery.runtime.projections.tracking import TrackingProjection
from orrery.runtime.service import ServiceSpec
from orrery.runtime.settings import Settings


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="worktrees",
        context="worktrees",
        handlers={},
        projections=[TrackingProjection.log_of("worktrees")],
    )


def run() -> None:
    """``orrery-worktrees``: run the worktrees service alone against external NATS and Postgres."""
    run_standalone(spec)
