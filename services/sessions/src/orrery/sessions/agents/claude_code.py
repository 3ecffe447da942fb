"""Claude Code, the real CLI, on its structured protocol (stream-json in and out, with the control
protocol for permissions and interrupts) through the official ``claude-agent-sdk`` package.

One CLI process per active session, kept between tasks: a follow-up prompt goes down the same
process's input and pays no start-up. The process is started with the session's native id to
resume (``AgentSessionBound``), or ``--resume <parent> --fork-session`` for a fork made at the
parent's latest message; other forks replay the transcript in the first prompt.

What the session log gets, the same shape as the built-in agent's: deltas from the CLI's partial
messages (``stream_event``, the Anthropic events), one assistant message per model call (built
from those events), the tool results as user messages, compaction as a system message, usage
and cost from the ``result``. Tool permissions arrive as control requests (``can_use_tool``) and
become Orrery permission requests: ``ask`` asks for every tool the CLI would ask for, ``auto``
lets the CLI accept edits (``acceptEdits``) and asks for the rest, ``allow-all`` allows all.

Stop interrupts the CLI through the control protocol; a CLI that does not end its turn within
``SETTLE_S`` is killed (the next task starts a new process and resumes the session).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ClaudeSDKError,
    PermissionResultAllow,
    PermissionResultDeny,
    ResultMessage,
    StreamEvent,
    SystemMessage,
    ToolPermissionContext,
    UserMessage,
)
from claude_agent_sdk import ToolResultBlock as SdkToolResult
from orrery.events.sessions import Block, SystemBlock, ToolResultBlock, Usage
from orrery.sessions.agents import anthropic_stream
from orrery.sessions.agents.anthropic_stream import MessageBuilder
from orrery.sessions.agents.base import AgentIO, ProviderError, Turn, TurnResult
from orrery.sessions.agents.clis import StartGate, describe, first_prompt, not_installed

log = logging.getLogger(__name__)

SETTLE_S = 4.0  # after an interrupt, how long the CLI gets to end its turn before it is killed
STDERR_LINES = 40
# Side traffic a run does not need: telemetry, error reports, update checks, and the
# non-essential model calls (titles, tips) that would cost a request each.
QUIET_ENV = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_NON_ESSENTIAL_MODEL_CALLS": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
}


@dataclass
class _Live:
    """One session's CLI process, between and during tasks."""

    client: ClaudeSDKClient
    key: tuple[Any, ...]  # what it was started with; a change (model, mode) restarts it
    io: AgentIO | None = None  # the task it serves now (permission prompts go to it)
    mode: str = "ask"
    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_LINES))
    settling: asyncio.Task[None] | None = None  # an interrupted turn still draining
    used: float = field(default_factory=time.monotonic)  # when a task last ended


class ClaudeCode:
    name = "claude-code"

    def __init__(self, cli: Path | None, gate: StartGate | None = None) -> None:
        self.cli = cli
        self.gate = gate or StartGate(0)
        self._live: dict[str, _Live] = {}

    async def close(self) -> None:
        lives, self._live = list(self._live.values()), {}
        for live in lives:
            await _disconnect(live)

    async def run(self, turn: Turn, io: AgentIO) -> TurnResult:
        if self.cli is None:
            raise not_installed("Claude Code", "claude")
        live = self._live.get(turn.session_id)
        # A new process waits for a start slot and keeps it until the CLI has taken the prompt.
        starting = (
            self.gate.slot()
            if live is None or live.key != _key(turn)
            else contextlib.nullcontext(lambda: None)
        )
        async with starting as started:
            live = await self._process(turn)
            live.io = io
            try:
                return await self._turn(live, turn, io, started)
            except asyncio.CancelledError:
                # Stopped: interrupt the CLI and let it end its turn in the background (the
                # runner records the stop); the session's next task waits for that first.
                live.settling = asyncio.create_task(self._settle(turn.session_id, live))
                raise
            except ClaudeSDKError as exc:
                await self._drop(turn.session_id)
                raise ProviderError("agent.crashed", _describe(exc, live)) from exc
            except Exception:
                await self._drop(turn.session_id)  # mid-turn: its leftovers must not reach the next
                raise
            finally:
                live.io, live.used = None, time.monotonic()

    async def reap(self, idle_s: float) -> None:
        now = time.monotonic()
        for session_id, live in list(self._live.items()):
            if live.io is None and live.settling is None and now - live.used > idle_s:
                await self._drop(session_id)

    # -- the process ---------------------------------------------------------------------------

    async def _process(self, turn: Turn) -> _Live:
        live = self._live.get(turn.session_id)
        if live is not None and live.settling is not None:
            with contextlib.suppress(Exception):
                await live.settling
            live = self._live.get(turn.session_id)
        key = _key(turn)
        if live is not None and live.key != key:
            await self._drop(turn.session_id)
            live = None
        if live is not None:
            return live
        holder: list[_Live] = []

        async def can_use_tool(
            tool: str, arguments: dict[str, Any], context: ToolPermissionContext
        ) -> PermissionResultAllow | PermissionResultDeny:
            current = holder[0]
            if current.mode == "allow-all":
                return PermissionResultAllow()
            if current.io is None or not await current.io.permission(tool, arguments):
                return PermissionResultDeny(message="permission denied by the user")
            return PermissionResultAllow()

        stderr: deque[str] = deque(maxlen=STDERR_LINES)
        options = ClaudeAgentOptions(
            cli_path=self.cli,
            cwd=turn.cwd,
            env={**QUIET_ENV, **turn.env},
            model=turn.settings.model or None,
            permission_mode="acceptEdits" if turn.settings.permission_mode == "auto" else "default",
            can_use_tool=can_use_tool,
            include_partial_messages=True,
            resume=turn.native_id or turn.fork_of or None,
            fork_session=bool(turn.fork_of and not turn.native_id),
            thinking={"type": "disabled"} if turn.settings.thinking == "off" else None,
            stderr=stderr.append,
            mcp_servers=(
                {"orrery": {"type": "http", "url": turn.mcp.url, "headers": turn.mcp.headers}}
                if turn.mcp is not None
                else {}
            ),
        )
        client = ClaudeSDKClient(options)
        live = _Live(client=client, key=key, mode=turn.settings.permission_mode, stderr=stderr)
        holder.append(live)
        try:
            await client.connect()
        except ClaudeSDKError as exc:
            raise ProviderError("agent.unavailable", _describe(exc, live)) from exc
        self._live[turn.session_id] = live
        return live

    async def _drop(self, session_id: str) -> None:
        live = self._live.pop(session_id, None)
        if live is not None:
            await _disconnect(live)

    async def _settle(self, session_id: str, live: _Live) -> None:
        try:
            async with asyncio.timeout(SETTLE_S):
                await live.client.interrupt()
                async for message in live.client.receive_response():
                    if isinstance(message, ResultMessage):
                        break
        except (TimeoutError, ClaudeSDKError, OSError) as exc:
            log.warning("claude code did not end its turn after an interrupt (%r): killed", exc)
            if self._live.get(session_id) is live:
                del self._live[session_id]
            await _disconnect(live)
        finally:
            live.settling = None

    # -- one task ------------------------------------------------------------------------------

    async def _turn(
        self, live: _Live, turn: Turn, io: AgentIO, started: Callable[[], None]
    ) -> TurnResult:
        await live.client.query(first_prompt(turn))
        state = _TurnState(run=turn.run_id or turn.task_id, model=turn.settings.model)
        bound = turn.native_id
        async for message in live.client.receive_response():
            started()  # the CLI has taken the prompt (its init message): it is started
            native = getattr(message, "session_id", None) or (
                message.data.get("session_id") if isinstance(message, SystemMessage) else None
            )
            if native and native != bound:
                bound = native
                await io.bind(native)
            if getattr(message, "parent_tool_use_id", None):
                continue  # a sub-agent's own conversation (Task tool): its result comes back
            match message:
                case StreamEvent(event=raw):
                    await state.stream(io, msgspec.convert(raw, anthropic_stream.StreamEvent))
                case UserMessage(content=list() as content):
                    results = [_result(b) for b in content if isinstance(b, SdkToolResult)]
                    if results:
                        await io.message(state.next_id(), "user", list(results), state.model)
                case SystemMessage(subtype="compact_boundary", data=data):
                    meta = data.get("compact_metadata") or {}
                    note = (
                        f"conversation compacted ({meta.get('trigger', 'auto')},"
                        f" {meta.get('pre_tokens', '?')} tokens before)"
                    )
                    blocks: list[Block] = [SystemBlock(text=note)]
                    await io.message(state.next_id(), "system", blocks, state.model)
                case AssistantMessage(error=error) if error:
                    log.info("claude code reported an assistant error: %s", error)
                case ResultMessage() as result:
                    return _outcome(result, state.model, live)
        ended = _describe(None, live, "the CLI ended without a result")
        raise ProviderError("agent.crashed", ended)


def _key(turn: Turn) -> tuple[Any, ...]:
    """What a session's process is started with: a change restarts it (a new MCP token, every
    few hours, among them)."""
    mcp = turn.mcp.token if turn.mcp else ""
    return (turn.settings.model, turn.settings.permission_mode, turn.settings.thinking, mcp)


@dataclass
class _TurnState:
    """One task's model calls: each becomes one assistant message, built from its events."""

    run: str
    model: str
    count: int = 0
    built: MessageBuilder | None = None
    message_id: str = ""

    def next_id(self) -> str:
        self.count += 1
        return f"{self.run}:{self.count}"

    async def stream(self, io: AgentIO, event: anthropic_stream.StreamEvent) -> None:
        if event.type == "message_start":
            self.built, self.message_id = MessageBuilder(), self.next_id()
        if self.built is None:
            return
        delta = self.built.add(event)
        if delta is not None:
            await _forward(io, self.message_id, delta)
        if event.type == "message_stop":
            self.model = self.built.model or self.model
            await io.message(self.message_id, "assistant", self.built.blocks(), self.model)
            self.built = None


async def _forward(io: AgentIO, message_id: str, delta: anthropic_stream.Delta) -> None:
    if delta.type == "text_delta":
        await io.delta(message_id, "text", delta.text)
    elif delta.type == "thinking_delta":
        await io.delta(message_id, "thinking", delta.thinking)
    elif delta.type == "input_json_delta":
        await io.delta(message_id, "tool_input", delta.partial_json)


def _result(block: SdkToolResult) -> ToolResultBlock:
    content = block.content
    if isinstance(content, list):
        content = "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ToolResultBlock(
        tool_use_id=block.tool_use_id, content=content or "", is_error=bool(block.is_error)
    )


def _outcome(result: ResultMessage, model: str, live: _Live) -> TurnResult:
    if result.is_error:
        detail = "; ".join(result.errors or []) or result.result or result.subtype
        code = f"model.http_{result.api_error_status}" if result.api_error_status else "agent.error"
        raise ProviderError(code, detail)
    raw = dict(result.usage or {})
    usage = Usage(
        input_tokens=int(raw.get("input_tokens") or 0),
        output_tokens=int(raw.get("output_tokens") or 0),
        cache_read_tokens=int(raw.get("cache_read_input_tokens") or 0),
        cache_write_tokens=int(raw.get("cache_creation_input_tokens") or 0),
    )
    return TurnResult(
        model=model,
        usage=usage,
        raw_usage={
            "result": raw,
            "total_cost_usd": result.total_cost_usd,
            "num_turns": result.num_turns,
            "duration_api_ms": result.duration_api_ms,
        },
        final_text=result.result or "",
    )


def _describe(exc: BaseException | None, live: _Live, what: str = "") -> str:
    return describe(live.stderr, what, str(exc) if exc else "")


async def _disconnect(live: _Live) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(5):
            await live.client.disconnect()
