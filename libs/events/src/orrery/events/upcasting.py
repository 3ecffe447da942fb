"""Upcasters turn an old version of an event body into the next one, at read time.

Stored events are never rewritten. A reader that meets ``(tag, version)`` older than the class's
``VERSION`` decodes the body to a plain dict, applies ``v -> v+1`` upcasters in order, then
converts the dict into the current class. Upcasters are pure functions on dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orrery.events.errors import DecodingError, RegistryError

Body = dict[str, Any]
Upcaster = Callable[[Body], Body]


class Upcasters:
    """The chain of upcasters of every tag, keyed by the version each one reads."""

    def __init__(self) -> None:
        self._chain: dict[tuple[str, int], Upcaster] = {}

    def register(self, tag: str, from_version: int, fn: Upcaster) -> None:
        key = (tag, from_version)
        if key in self._chain:
            raise RegistryError(f"two upcasters for {tag} v{from_version}")
        self._chain[key] = fn

    def upcast(self, tag: str, version: int, target: int, body: Body) -> Body:
        if version > target:
            raise DecodingError(
                f"{tag} v{version} is newer than this reader's v{target}: upgrade the reader"
            )
        for v in range(version, target):
            fn = self._chain.get((tag, v))
            if fn is None:
                raise DecodingError(f"no upcaster from {tag} v{v} to v{v + 1}")
            body = fn(dict(body))
            body["type"] = tag
        return body

    def check_complete(self, tag: str, current: int) -> None:
        """Every version from 1 to ``current`` must be readable."""
        missing = [v for v in range(1, current) if (tag, v) not in self._chain]
        if missing:
            raise RegistryError(f"{tag} v{current} has no upcaster from versions {missing}")
