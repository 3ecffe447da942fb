"""What every agent provider implements, and what the runner gives it.

A provider runs one task (one turn of the conversation, with as many model calls and tool calls
as it takes) and reports through ``AgentIO``: token deltas for live views, complete messages for
the log, permission requests it must wait on. Stopping is cancellation of its asyncio task; a
provider cleans up (closes streams, kills processes) on ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from orrery.events.sessions import AgentSettings, Block, MessageRecorded, Usage


class AgentIO(Protocol):
    async def delta(
        self, message_id: str, kind: Literal["text", "thinking", "tool_input"], text: str
    ) -> None: ...

    async def message(
        self,
        message_id: str,
        role: Literal["assistant", "user", "system"],
        blocks: list[Block],
        model: str,
    ) -> None: ...

    async def permission(self, tool: str, arguments: Mapping[str, Any]) -> bool:
        """Ask the session's members; False when denied or when the deadline passes."""
        ...

    def steered(self) -> list[str]:
        """Prompts steered into the running task since the last call."""
        ...

    async def bind(self, native_id: str) -> None:
        """The agent CLI named its own session (thread) id: recorded, so a later task, a
        restart or a fork can resume it natively."""
        ...


@dataclass(frozen=True)
class Turn:
    session_id: str
    task_id: str
    prompt: str
    history: Sequence[MessageRecorded]  # the conversation so far, this task's prompt included
    cwd: Path
    settings: AgentSettings
    env: Mapping[str, str] = field(default_factory=dict)
    run_id: str = ""  # this run of the task (a resumed task runs again under a new id)
    native_id: str = ""  # the agent's own session id, once bound (AgentSessionBound)
    # A fork's first task: the parent's native id, when the fork can be made natively (the fork
    # point is the parent's latest message); otherwise ``history`` carries the transcript.
    fork_of: str = ""
    mcp: McpAccess | None = None  # attach Orrery's MCP server to the agent, where it can


@dataclass(frozen=True)
class McpAccess:
    """Orrery's MCP server as this session's agent reaches it: the URL and the session's own
    short-lived token (scoped to the session, its worktree and the boards the worktree is on)."""

    url: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class TurnResult:
    model: str
    usage: Usage
    raw_usage: dict[str, Any]
    final_text: str


class ProviderError(Exception):
    """The provider could not run the task (bad configuration, the model API refused)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Provider(Protocol):
    name: str

    async def run(self, turn: Turn, io: AgentIO) -> TurnResult: ...

    async def close(self) -> None:
        """Release what the provider keeps across tasks (clients, processes)."""
        ...

    async def reap(self, idle_s: float) -> None:
        """End the CLI processes no task has used for ``idle_s`` seconds (a session's next task
        starts a new one, which resumes the CLI's session)."""
        ...


class Providers(Mapping[str, Provider]):
    """The providers by agent name, each built the first time a task needs it: a provider's SDK
    or protocol client loads then, not when the service starts (the anthropic and openai SDKs
    alone take seconds to import and tens of MB)."""

    def __init__(
        self,
        factories: Mapping[str, Callable[[], Provider]],
        modules: Mapping[str, str] | None = None,
    ) -> None:
        self._factories = dict(factories)
        self._modules = dict(modules or {})  # agent -> the module its factory imports
        self._built: dict[str, Provider] = {}

    async def warm(self, name: str, delay: float = 0.0) -> None:
        """Import a provider's module in a thread, ahead of its first task (a session of that
        agent was just created): that task then pays no SDK import (about 1 s for Claude
        Code's), and the service's start still pays none."""
        await asyncio.sleep(delay)
        module = self._modules.get(name)
        if module is not None and name not in self._built and module not in sys.modules:
            await asyncio.to_thread(importlib.import_module, module)

    def __getitem__(self, name: str) -> Provider:
        if name not in self._built:
            self._built[name] = self._factories[name]()
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)

    def built(self) -> dict[str, Provider]:
        """The providers built so far (what there is to reap or close)."""
        return dict(self._built)


def built(providers: Mapping[str, Provider]) -> Mapping[str, Provider]:
    return providers.built() if isinstance(providers, Providers) else providers
