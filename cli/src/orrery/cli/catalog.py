"""Every service of the product, for the commands that compose them (``up``, ``projections``).

The CLI is a composition root: it may import every service; services never import each other.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from orrery.runtime.projections.base import Projection
from orrery.runtime.service import ServiceSpec
from orrery.runtime.settings import Settings

# Imported on demand: a CLI command that talks to the API should not load every service.
SERVICES: tuple[str, ...] = ("canvas", "sessions", "worktrees", "gateway")


def spec_factory(name: str) -> Callable[[Settings], ServiceSpec]:
    factory: Callable[[Settings], ServiceSpec] = importlib.import_module(f"orrery.{name}.main").spec
    return factory


def projections(settings: Settings) -> dict[str, Projection]:
    """Every projection by its qualified name, ``schema.name``."""
    out: dict[str, Projection] = {}
    for name in SERVICES:
        for p in spec_factory(name)(settings).projections:
            out[f"{p.schema}.{p.name}"] = p
    return out
