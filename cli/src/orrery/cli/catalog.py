"""Every service of the product, for the commands that compose them (``up``, ``projections``).

The CLI is a composition root: it may import every service; services never import each other.
"""

from __future__ import annotations

from collections.abc import Callable

from orrery.canvas.main import spec as canvas_spec
from orrery.gateway.main import spec as gateway_spec
from orrery.runtime.projections.base import Projection
from orrery.runtime.service import ServiceSpec
from orrery.runtime.settings import Settings
from orrery.sessions.main import spec as sessions_spec
from orrery.worktrees.main import spec as worktrees_spec

SERVICES: dict[str, Callable[[Settings], ServiceSpec]] = {
    "canvas": canvas_spec,
    "sessions": sessions_spec,
    "worktrees": worktrees_spec,
    "gateway": gateway_spec,
}


def projections(settings: Settings) -> dict[str, Projection]:
    """Every projection by its qualified name, ``schema.name``."""
    out: dict[str, Projection] = {}
    for factory in SERVICES.values():
        for p in factory(settings).projections:
            out[f"{p.schema}.{p.name}"] = p
    return out
