"""Projections: read models in PostgreSQL, derived from the log, rebuilt by replay."""

from orrery.runtime.projections.base import Projection

__all__ = ["Projection"]
