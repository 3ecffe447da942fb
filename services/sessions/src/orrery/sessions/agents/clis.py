"""What the agent-CLI providers share: finding a CLI, and the first prompt of a fork that cannot
be made natively (the parent's transcript, then the prompt)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path

import msgspec
from orrery.events.sessions import MessageRecorded, TextBlock, ToolResultBlock, ToolUseBlock
from orrery.sessions.agents.base import ProviderError, Turn

# What an agent CLI's process inherits from the service besides the model endpoints and keys
# (the service's own settings, its database address among them, stay out).
INHERITED = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "LC_ALL", "TMPDIR", "TZ")


def process_env(turn_env: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of an agent CLI's process: the basics, the turn's endpoints and keys,
    then what the provider sets."""
    env = {k: v for k in INHERITED if (v := os.environ.get(k))}
    return {**env, **turn_env, **extra}


class StartGate:
    """At most ``size`` agent CLIs start at once; the others wait their turn.

    A CLI's start-up is CPU work (loading its bundle, its tools, its MCP servers): ten starting
    together on two cores share the cores, so all ten are ready about when the last one would
    have been, one after another. Starting them ``size`` at a time gives the same last one and
    the first ones in a fraction of that. A start keeps its slot until ``started()`` is called
    (the provider calls it on the CLI's first output for the task), or ``hold_s`` at most, so a
    CLI that hangs does not hold up the others.
    """

    def __init__(self, size: int, hold_s: float = 10.0) -> None:
        self.size = size
        self.hold_s = hold_s
        self._slots = asyncio.Semaphore(size) if size > 0 else None

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[Callable[[], None]]:
        """Wait for a slot; yields ``started``, which gives it back (at most once)."""
        slots = self._slots
        if slots is None:
            yield _nothing
            return
        await slots.acquire()
        held = True

        def started() -> None:
            nonlocal held
            if held:
                held = False
                timer.cancel()
                slots.release()

        timer = asyncio.get_running_loop().call_later(self.hold_s, started)
        try:
            yield started
        finally:
            started()


def _nothing() -> None:
    return None


def start_gate(env: Mapping[str, str]) -> StartGate:
    """``ORRERY_AGENT_STARTS`` CLIs start at once (0: no limit); by default one per core."""
    raw = env.get("ORRERY_AGENT_STARTS", "")
    try:
        size = int(raw) if raw else (os.cpu_count() or 2)
    except ValueError:
        size = -1
    if size < 0:
        raise ValueError(f"ORRERY_AGENT_STARTS must be a whole number (0: no limit), not {raw!r}")
    return StartGate(size)


def find_cli(env: Mapping[str, str], name: str, default_dir: Path | None) -> Path | None:
    """An agent CLI: ``ORRERY_AGENT_BIN`` (a directory), else the checkout's pinned install
    (``tools/agent-clis``), else ``PATH``."""
    for directory in (env.get("ORRERY_AGENT_BIN"), default_dir):
        if directory and (Path(directory) / name).exists():
            return Path(directory) / name
    found = shutil.which(name, path=env.get("PATH"))
    return Path(found) if found else None


def describe(stderr: Iterable[str], *parts: str) -> str:
    """An error's message: what went wrong, then the last lines the CLI wrote to stderr."""
    tail = " | ".join(list(stderr)[-5:])
    return "; ".join([p for p in parts if p] + ([f"stderr: {tail}"] if tail else []))


def not_installed(label: str, executable: str) -> ProviderError:
    return ProviderError(
        "agent.not_installed",
        f"{label} is not installed: run `make agents` (or set ORRERY_AGENT_BIN to the directory"
        f" holding `{executable}`)",
    )


def first_prompt(turn: Turn) -> str:
    """The task's prompt; a conversation the CLI does not hold natively (a fork it could not
    fork, or a session new to this agent) gets its transcript first."""
    if turn.native_id or turn.fork_of or len(turn.history) <= 1:
        return turn.prompt
    return transcript(turn.history[:-1]) + "\n\n" + turn.prompt


def transcript(history: Sequence[MessageRecorded]) -> str:
    lines = ["Here is the conversation so far (you are continuing it):"]
    for message in history:
        for block in message.blocks:
            match block:
                case TextBlock(text=text):
                    lines.append(f"[{message.role}] {text}")
                case ToolUseBlock(name=name, input=arguments):
                    lines.append(f"[{message.role} used {name}] {msgspec.json.encode(arguments)!r}")
                case ToolResultBlock(content=content):
                    lines.append(f"[tool result] {content[:2000]}")
    return "\n".join(lines)
