"""Worktree slots: the ``unique_id`` of a worktree and the block of ports that comes with it.

Pure functions. A slot is the lowest free positive integer across every live worktree of every
repo (Agor's rule, kept so templates written for it still work). Its port block is derived from
it, so a worktree's ports are stable for its whole life and free again when it is archived:
``base + (unique_id - 1) * BLOCK`` to ``... + BLOCK - 1``. Whether those ports are actually free
on the machine is checked when an environment starts, not here.
"""

from __future__ import annotations

from collections.abc import Iterable

BLOCK = 10
DEFAULT_BASE_PORT = 20_000
MAX_PORT = 65_535


class SlotError(ValueError):
    """No slot or port block can be given (the port range is exhausted)."""

    code = "worktree.no_free_slot"


def lowest_free(taken: Iterable[int]) -> int:
    """The smallest positive integer not in ``taken``."""
    used = set(taken)
    candidate = 1
    while candidate in used:
        candidate += 1
    return candidate


def port_block(unique_id: int, base: int = DEFAULT_BASE_PORT) -> list[int]:
    """The ``BLOCK`` ports of slot ``unique_id`` (``worktree.ports[0..9]``, ``PORT`` = first)."""
    if unique_id < 1:
        raise SlotError(f"slot {unique_id} is not a positive integer")
    first = base + (unique_id - 1) * BLOCK
    last = first + BLOCK - 1
    if first < 1024 or last > MAX_PORT:
        raise SlotError(
            f"slot {unique_id} would use ports {first}-{last}, outside 1024-{MAX_PORT}:"
            " archive worktrees or lower the base port"
        )
    return list(range(first, last + 1))


def max_slots(base: int = DEFAULT_BASE_PORT) -> int:
    """How many worktrees can hold a port block at once."""
    return (MAX_PORT + 1 - base) // BLOCK


def port_environment(ports: list[int]) -> dict[str, str]:
    """What an environment's processes see: ``PORT`` and ``ORRERY_PORT_0..9``."""
    env = {f"ORRERY_PORT_{i}": str(port) for i, port in enumerate(ports)}
    if ports:
        env["PORT"] = str(ports[0])
    return env
