"""Slots and port blocks (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from orrery.worktrees.domain.slots import (
    BLOCK,
    DEFAULT_BASE_PORT,
    SlotError,
    lowest_free,
    max_slots,
    port_block,
    port_environment,
)


def test_lowest_free_fills_gaps_first() -> None:
    assert lowest_free([]) == 1
    assert lowest_free([1, 2, 3]) == 4
    assert lowest_free([1, 3, 4]) == 2  # an archived worktree's slot is reused


@given(st.sets(st.integers(min_value=1, max_value=200)))
def test_lowest_free_is_free_and_lowest(taken: set[int]) -> None:
    slot = lowest_free(taken)
    assert slot not in taken
    assert all(i in taken for i in range(1, slot))


@given(
    st.integers(min_value=1, max_value=max_slots()), st.integers(min_value=1, max_value=max_slots())
)
def test_blocks_of_different_slots_never_overlap(a: int, b: int) -> None:
    if a != b:
        assert not set(port_block(a)) & set(port_block(b))
    assert len(port_block(a)) == BLOCK


def test_block_layout_and_environment() -> None:
    ports = port_block(3)
    assert ports[0] == DEFAULT_BASE_PORT + 2 * BLOCK
    assert port_environment(ports)["PORT"] == str(ports[0])
    assert port_environment(ports)["ORRERY_PORT_9"] == str(ports[9])


def test_exhausted_range_is_a_clear_error() -> None:
    with pytest.raises(SlotError, match="outside 1024-65535"):
        port_block(max_slots() + 1)
    with pytest.raises(SlotError):
        port_block(0)
