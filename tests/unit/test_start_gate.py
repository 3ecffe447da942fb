"""The agent CLIs' start gate: at most N start at once, a slot comes back when the start is done
(or after ``hold_s``), and a start that fails or is stopped gives its slot back."""

from __future__ import annotations

import asyncio

import pytest
from orrery.sessions.agents.clis import StartGate, start_gate


async def test_at_most_size_start_at_once_and_in_turn() -> None:
    gate = StartGate(2)
    running: list[int] = []
    peak = 0
    order: list[int] = []

    async def start(i: int) -> None:
        nonlocal peak
        async with gate.slot() as started:
            order.append(i)
            running.append(i)
            peak = max(peak, len(running))
            await asyncio.sleep(0.02)
            running.remove(i)
            started()
            await asyncio.sleep(0.05)  # the rest of the task: no slot held

    await asyncio.gather(*(start(i) for i in range(6)))
    assert peak == 2
    assert order == list(range(6))  # first come, first started


async def test_started_gives_the_slot_back_before_the_task_ends() -> None:
    gate = StartGate(1)
    second_in = asyncio.Event()
    first_may_end = asyncio.Event()

    async def first() -> None:
        async with gate.slot() as started:
            started()
            started()  # twice is once
            await first_may_end.wait()

    async def second() -> None:
        async with gate.slot():
            second_in.set()

    one = asyncio.create_task(first())
    await asyncio.sleep(0)
    two = asyncio.create_task(second())
    async with asyncio.timeout(1):
        await second_in.wait()  # while the first task still runs
    first_may_end.set()
    await asyncio.gather(one, two)
    assert await _peak(gate) == 1


async def test_a_start_that_hangs_holds_its_slot_for_hold_s_at_most() -> None:
    gate = StartGate(1, hold_s=0.05)
    release = asyncio.Event()
    second_in = asyncio.Event()

    async def hung() -> None:
        async with gate.slot():
            await release.wait()  # never calls started()

    async def second() -> None:
        async with gate.slot():
            second_in.set()

    one = asyncio.create_task(hung())
    await asyncio.sleep(0)
    two = asyncio.create_task(second())
    async with asyncio.timeout(1):
        await second_in.wait()
    release.set()
    await asyncio.gather(one, two)
    assert await _peak(gate) == 1  # released once, not twice


async def test_a_failed_or_stopped_start_gives_its_slot_back() -> None:
    gate = StartGate(1)
    with pytest.raises(RuntimeError):
        async with gate.slot():
            raise RuntimeError("the CLI did not start")

    waiting = asyncio.create_task(_hold(gate))
    await asyncio.sleep(0.01)
    stopped = asyncio.create_task(_hold(gate))  # waits for the slot, then is stopped
    await asyncio.sleep(0.01)
    stopped.cancel()
    waiting.cancel()
    await asyncio.gather(waiting, stopped, return_exceptions=True)
    async with asyncio.timeout(1), gate.slot():
        pass
    assert await _peak(gate) == 1


async def _peak(gate: StartGate) -> int:
    """How many of four starts were inside the gate at once."""
    inside, peak = 0, 0

    async def start() -> None:
        nonlocal inside, peak
        async with gate.slot():
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(start() for _ in range(4)))
    return peak


async def _hold(gate: StartGate) -> None:
    async with gate.slot():
        await asyncio.sleep(10)


async def test_size_zero_is_no_limit() -> None:
    gate = StartGate(0)
    inside = 0

    async def start() -> None:
        nonlocal inside
        async with gate.slot():
            inside += 1
            await asyncio.sleep(0.02)

    tasks = [asyncio.create_task(start()) for _ in range(20)]
    await asyncio.sleep(0.01)
    assert inside == 20
    await asyncio.gather(*tasks)


def test_the_size_comes_from_the_environment() -> None:
    assert start_gate({"ORRERY_AGENT_STARTS": "3"}).size == 3
    assert start_gate({"ORRERY_AGENT_STARTS": "0"}).size == 0
    assert start_gate({}).size >= 1  # one per core
    with pytest.raises(ValueError, match="ORRERY_AGENT_STARTS must be a whole number"):
        start_gate({"ORRERY_AGENT_STARTS": "many"})
    with pytest.raises(ValueError, match="ORRERY_AGENT_STARTS must be a whole number"):
        start_gate({"ORRERY_AGENT_STARTS": "-1"})
