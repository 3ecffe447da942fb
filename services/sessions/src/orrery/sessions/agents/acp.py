"""Gemini CLI and OpenCode, the real CLIs, on the Agent Client Protocol (ACP): JSON-RPC over the
CLI's stdin and stdout (``gemini --acp``, ``opencode acp``), through the official
``agent-client-protocol`` package.

ACP is the structured protocol both CLIs speak to editors, and the one of theirs that asks before
a tool runs: ``session/request_permission`` becomes an Orrery permission request. Their other
headless modes (``gemini -p --output-format stream-json``, ``opencode run --format json``)
cannot ask, so ``ask`` could only mean refusing every tool that needs approval.

One CLI process per active session, kept between tasks (a follow-up prompt is one
``session/prompt`` on the same process). A new process resumes the CLI's own session
(``session/load``, the id recorded by ``AgentSessionBound``); a fork at the parent's latest message
forks natively where the CLI can (``session/fork``, OpenCode), otherwise the fork's first prompt
carries the transcript. Stop sends ``session/cancel``; a CLI that does not end its turn within
``SETTLE_S`` is killed.

What the session log gets, the same shape as the other providers': the agent's text and thoughts
stream as deltas and become one assistant message per model call, with that call's tool calls
as tool-use blocks; the tool results follow as one user message. ACP does not mark where a model
call ends, so a call is taken to end when its first tool result arrives (tools run after the
call) and the next call to begin with the next text, thought or tool call after results.

Each CLI keeps its state (settings, chats, its database) under ``<ORRERY_HOME>/agents/<cli>``,
never in the user's own ``~/.gemini`` or ``~/.local/share/opencode``, nor in the worktree.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections import deque
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, cast

import msgspec
from acp import PROTOCOL_VERSION, Client, RequestError, spawn_agent_process, text_block
from acp.core import ClientSideConnection
from acp.schema import (
    AgentMessageChunk,
    AgentThoughtChunk,
    AllowedOutcome,
    ClientCapabilities,
    ContentToolCallContent,
    DeniedOutcome,
    FileSystemCapabilities,
    HttpHeader,
    HttpMcpServer,
    PermissionOption,
    PromptResponse,
    RequestPermissionResponse,
    TextContentBlock,
    ToolCallProgress,
    ToolCallStart,
    ToolCallUpdate,
)
from orrery.events.sessions import (
    Block,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
)
from orrery.sessions.agents.base import AgentIO, ProviderError, Turn, TurnResult
from orrery.sessions.agents.clis import (
    StartGate,
    describe,
    first_prompt,
    not_installed,
    process_env,
)

log = logging.getLogger(__name__)

SETTLE_S = 4.0  # after a cancel, how long the CLI gets to end its turn before it is killed
STDERR_LINES = 40
LINE_LIMIT = 32 * 1024 * 1024  # one JSON-RPC message per line; tool output can be large


class Flavour(Protocol):
    """What differs between the ACP CLIs: how each starts, where it keeps its state, how it
    reports usage, and what each calls a tool."""

    cli: str  # the executable's name
    label: str  # for messages
    loads_sessions: bool  # a new process can load the CLI's saved session (``session/load``)

    def argv(self, turn: Turn) -> list[str]: ...

    def env(self, turn: Turn, state: Path) -> dict[str, str]: ...

    def mode(self, permission_mode: str) -> str | None:
        """The CLI's own session mode for Orrery's permission mode (``session/set_mode``)."""
        ...

    def tool_name(self, call: ToolCallStart | ToolCallUpdate) -> str: ...

    def usage(self, response: PromptResponse) -> tuple[Usage, dict[str, Any]]: ...


class Gemini:
    """``gemini --acp``. Settings go in a system settings file Orrery writes (API-key auth,
    folder trust off, telemetry and update checks off); its chats live under ``GEMINI_CLI_HOME``.
    Approval modes: ask = ``default``, auto = ``autoEdit``, allow-all = ``yolo``."""

    cli = "gemini"
    label = "Gemini CLI"
    # Gemini CLI 0.61 offers session/load, but its chat recorder restarts the loaded session's
    # file before reading it back ("No previous sessions found for this project."), and the
    # chat is lost. A new process gets the transcript instead; the live process between tasks
    # keeps the conversation itself.
    loads_sessions = False
    SETTINGS: dict[str, Any] = {
        "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
        "privacy": {"usageStatisticsEnabled": False},
        "general": {
            "enableAutoUpdate": False,
            "enableAutoUpdateNotification": False,
            # Orrery keeps the sessions it may resume; the CLI's own clean-up would delete them.
            "sessionRetention": {"enabled": False},
        },
        "telemetry": {"enabled": False},
    }

    def argv(self, turn: Turn) -> list[str]:
        return ["--acp", *(["-m", turn.settings.model] if turn.settings.model else [])]

    def env(self, turn: Turn, state: Path) -> dict[str, str]:
        settings = state / "system-settings.json"
        if not settings.exists():
            state.mkdir(parents=True, exist_ok=True)
            settings.write_text(json.dumps(self.SETTINGS, indent=2))
        return {
            "GEMINI_CLI_HOME": str(state),
            "GEMINI_CLI_SYSTEM_SETTINGS_PATH": str(settings),
            "GEMINI_CLI_NO_RELAUNCH": "1",  # no second node process with a bigger heap
            # The worktree is the user's own repository; Orrery's permission mode decides what
            # runs (an untrusted folder would refuse autoEdit and yolo).
            "GEMINI_CLI_TRUST_WORKSPACE": "true",
        }

    def mode(self, permission_mode: str) -> str | None:
        return {"ask": "default", "auto": "autoEdit", "allow-all": "yolo"}.get(permission_mode)

    def tool_name(self, call: ToolCallStart | ToolCallUpdate) -> str:
        # Gemini CLI names a call "<tool>__<tool>_<timestamp>_<n>"; its title is the command.
        head, sep, _ = call.tool_call_id.partition("__")
        return head if sep else str(call.kind or "tool")

    def usage(self, response: PromptResponse) -> tuple[Usage, dict[str, Any]]:
        quota = (response.field_meta or {}).get("quota") or {}
        counts = quota.get("token_count") or {}
        usage = Usage(
            input_tokens=int(counts.get("input_tokens") or 0),
            output_tokens=int(counts.get("output_tokens") or 0),
        )
        return usage, {"quota": quota}


class OpenCode:
    """``opencode acp``. Its configuration is passed inline (``OPENCODE_CONFIG_CONTENT``): the
    model, the providers pointed at the endpoints Orrery was given (keys by ``{env:...}``
    reference, never written out), and the permission rules for Orrery's permission mode; its
    database lives under ``XDG_DATA_HOME``."""

    cli = "opencode"
    label = "OpenCode"
    loads_sessions = True
    RULES = {
        "ask": {"edit": "ask", "bash": "ask", "webfetch": "ask"},
        "auto": {"edit": "allow", "bash": "ask", "webfetch": "ask"},
        "allow-all": {"edit": "allow", "bash": "allow", "webfetch": "allow"},
    }

    def argv(self, turn: Turn) -> list[str]:
        return ["acp"]

    def env(self, turn: Turn, state: Path) -> dict[str, str]:
        providers: dict[str, Any] = {}
        for name, url_var, key_var in (
            ("anthropic", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"),
            ("openai", "OPENAI_BASE_URL", "OPENAI_API_KEY"),
        ):
            options: dict[str, str] = {}
            if url := turn.env.get(url_var):
                # Anthropic's SDKs take the host; the AI SDK OpenCode uses wants the /v1 base.
                options["baseURL"] = url if url.rstrip("/").endswith("/v1") else f"{url}/v1"
            if turn.env.get(key_var):
                options["apiKey"] = "{env:" + key_var + "}"
            if options:
                providers[name] = {"options": options}
        config: dict[str, Any] = {
            "$schema": "https://opencode.ai/config.json",
            "autoupdate": False,
            "share": "disabled",
            "provider": providers,
            "permission": self.RULES.get(turn.settings.permission_mode, self.RULES["ask"]),
        }
        if turn.settings.model:
            config["model"] = turn.settings.model
        return {
            "OPENCODE_CONFIG_CONTENT": json.dumps(config),
            "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_MODELS_FETCH": "1",
            "XDG_DATA_HOME": str(state / "data"),
            "XDG_CONFIG_HOME": str(state / "config"),
            "XDG_CACHE_HOME": str(state / "cache"),
            "XDG_STATE_HOME": str(state / "state"),
        }

    def mode(self, permission_mode: str) -> str | None:
        return None  # the permission rules in its configuration carry the mode

    def tool_name(self, call: ToolCallStart | ToolCallUpdate) -> str:
        # OpenCode announces a call with the tool's name as its title, then retitles it.
        return call.title if isinstance(call, ToolCallStart) and call.title else str(call.kind)

    def usage(self, response: PromptResponse) -> tuple[Usage, dict[str, Any]]:
        used = response.usage
        if used is None:
            return Usage(), {}
        usage = Usage(
            input_tokens=used.input_tokens,
            output_tokens=used.output_tokens,
            cache_read_tokens=used.cached_read_tokens or 0,
            cache_write_tokens=used.cached_write_tokens or 0,
        )
        return usage, used.model_dump(exclude_none=True)


@dataclass
class _Live:
    """One session's CLI process, between and during tasks."""

    stack: AsyncExitStack
    conn: ClientSideConnection
    process: asyncio.subprocess.Process
    native_id: str
    key: tuple[Any, ...]  # what it was started with; a change restarts it
    mode: str
    stderr: deque[str]
    holds_history: bool = False  # loaded or forked: the CLI has the conversation so far
    turn: _TurnState | None = None  # the task it serves now
    settling: asyncio.Task[None] | None = None  # a cancelled turn still ending
    used: float = field(default_factory=time.monotonic)  # when a task last ended


class AcpAgent:
    """An agent CLI on ACP; ``flavour`` says which."""

    def __init__(
        self,
        name: str,
        flavour: Flavour,
        cli: Path | None,
        state: Path,
        gate: StartGate | None = None,
    ) -> None:
        self.name = name
        self.flavour = flavour
        self.cli = cli
        self.state = state
        self.gate = gate or StartGate(0)  # a start holds a slot until its ACP session is open
        self._live: dict[str, _Live] = {}

    async def close(self) -> None:
        lives, self._live = list(self._live.values()), {}
        for live in lives:
            await _shutdown(live)

    async def reap(self, idle_s: float) -> None:
        now = time.monotonic()
        for session_id, live in list(self._live.items()):
            if live.turn is None and live.settling is None and now - live.used > idle_s:
                await self._drop(session_id)

    async def run(self, turn: Turn, io: AgentIO) -> TurnResult:
        if self.cli is None:
            raise not_installed(self.flavour.label, self.flavour.cli)
        live = await self._process(turn, io)
        run = turn.run_id or turn.task_id
        state = _TurnState(io=io, flavour=self.flavour, run=run, model=turn.settings.model)
        live.turn = state
        # A session new to the CLI (not loaded, not forked) gets the conversation so far first.
        prompt = (
            turn.prompt
            if live.holds_history
            else first_prompt(dataclasses.replace(turn, native_id="", fork_of=""))
        )
        live.holds_history = True
        consumer = asyncio.create_task(state.consume(live.mode))
        request = asyncio.ensure_future(
            live.conn.prompt(session_id=live.native_id, prompt=[text_block(prompt)])
        )
        try:
            # Until the CLI answers the prompt, or recording its updates fails.
            await asyncio.wait((request, consumer), return_when=asyncio.FIRST_COMPLETED)
            if consumer.done():
                consumer.result()  # raises what failed
            response = request.result()
            state.inbox.put_nowait(None)  # every update sent before the response is queued
            await consumer
        except asyncio.CancelledError:
            consumer.cancel()
            state.deny_waiting()
            live.settling = asyncio.create_task(self._settle(turn.session_id, live, request))
            raise
        except Exception as exc:
            consumer.cancel()
            state.deny_waiting()
            await self._drop(turn.session_id)  # mid-turn: its leftovers must not reach the next
            if isinstance(exc, RequestError):  # the CLI answered the prompt with an error
                raise ProviderError("agent.error", _describe(exc, live)) from exc
            raise ProviderError("agent.crashed", _describe(exc, live)) from exc
        finally:
            live.turn, live.used = None, time.monotonic()
        if response.stop_reason == "refusal":
            raise ProviderError("model.refusal", "the model refused to continue")
        usage, raw = self.flavour.usage(response)
        return TurnResult(
            model=turn.settings.model,
            usage=usage,
            raw_usage={**raw, "stop_reason": response.stop_reason},
            final_text=state.final_text,
        )

    # -- the process ---------------------------------------------------------------------------

    async def _process(self, turn: Turn, io: AgentIO) -> _Live:
        live = self._live.get(turn.session_id)
        if live is not None and live.settling is not None:
            with contextlib.suppress(Exception):
                await live.settling
            live = self._live.get(turn.session_id)
        mcp = turn.mcp.token if turn.mcp else ""  # a new token (every few hours): a new process
        key = (turn.settings.model, turn.settings.permission_mode, turn.settings.thinking, mcp)
        if live is not None and (live.key != key or live.process.returncode is not None):
            await self._drop(turn.session_id)
            live = None
        if live is not None:
            return live
        async with self.gate.slot():
            return await self._start(turn, io, key)

    async def _start(self, turn: Turn, io: AgentIO, key: tuple[Any, ...]) -> _Live:
        """A new CLI process with its ACP session open."""
        assert self.cli is not None
        state = self.state / self.flavour.cli
        state.mkdir(parents=True, exist_ok=True)
        env = process_env(turn.env, self.flavour.env(turn, state))
        stack = AsyncExitStack()
        holder: list[_Live] = []
        client = cast(Client, _Client(holder))
        try:
            conn, process = await stack.enter_async_context(
                spawn_agent_process(
                    client,
                    str(self.cli),
                    *self.flavour.argv(turn),
                    env=env,
                    cwd=turn.cwd,
                    transport_kwargs={"limit": LINE_LIMIT},
                )
            )
        except OSError as exc:
            raise ProviderError("agent.unavailable", f"{self.cli}: {exc}") from exc
        stderr: deque[str] = deque(maxlen=STDERR_LINES)
        live = _Live(stack, conn, process, "", key, turn.settings.permission_mode, stderr)
        holder.append(live)
        stack.push_async_callback(_cancel_reader, asyncio.create_task(_read_stderr(live)))
        try:
            async with asyncio.timeout(60):
                await self._open(live, turn)
        except (RequestError, TimeoutError, OSError, ConnectionError) as exc:
            await _shutdown(live)
            raise ProviderError("agent.unavailable", _describe(exc, live)) from exc
        except BaseException:
            await _shutdown(live)
            raise
        if live.native_id != turn.native_id:
            await io.bind(live.native_id)
        self._live[turn.session_id] = live
        return live

    async def _open(self, live: _Live, turn: Turn) -> None:
        """Start the ACP session: load the session's own, fork the parent's, or a new one."""
        init = await live.conn.initialize(
            protocol_version=PROTOCOL_VERSION,
            client_capabilities=ClientCapabilities(
                fs=FileSystemCapabilities(read_text_file=False, write_text_file=False),
                terminal=False,
            ),
        )
        caps = init.agent_capabilities
        cwd = str(turn.cwd)
        if (
            turn.native_id
            and self.flavour.loads_sessions
            and caps is not None
            and caps.load_session
        ):
            # The CLI replays the conversation as updates; no task is listening yet.
            try:
                await live.conn.load_session(
                    cwd=cwd, session_id=turn.native_id, mcp_servers=_mcp(turn, caps)
                )
                live.native_id, live.holds_history = turn.native_id, True
            except RequestError as exc:
                log.warning(
                    "%s could not load session %s: %s",
                    self.name,
                    turn.native_id,
                    _describe(exc, live),
                )
        sessions = caps.session_capabilities if caps is not None else None
        if not live.native_id and turn.fork_of and sessions is not None and sessions.fork:
            with contextlib.suppress(RequestError):
                forked = await live.conn.fork_session(
                    cwd=cwd, session_id=turn.fork_of, mcp_servers=_mcp(turn, caps)
                )
                live.native_id, live.holds_history = forked.session_id, True
        if not live.native_id:
            created = await live.conn.new_session(cwd=cwd, mcp_servers=_mcp(turn, caps))
            live.native_id = created.session_id
        if mode := self.flavour.mode(turn.settings.permission_mode):
            await live.conn.set_session_mode(session_id=live.native_id, mode_id=mode)

    async def _drop(self, session_id: str) -> None:
        live = self._live.pop(session_id, None)
        if live is not None:
            await _shutdown(live)

    async def _settle(self, session_id: str, live: _Live, request: asyncio.Future[Any]) -> None:
        try:
            async with asyncio.timeout(SETTLE_S):
                await live.conn.cancel(session_id=live.native_id)
                await request
        except Exception as exc:  # noqa: BLE001 - any failure to settle ends the process
            log.warning("%s did not end its turn after a cancel (%r): killed", self.name, exc)
            if self._live.get(session_id) is live:
                del self._live[session_id]
            live.process.kill()
            await _shutdown(live)
        finally:
            live.settling = None


class _Client:
    """The client side of ACP: session updates and permission requests for the task running.
    Only these: the client declares no file-system or terminal capability, so the CLI reads,
    writes and runs commands itself (the library answers anything else "method not found")."""

    def __init__(self, holder: list[_Live]) -> None:
        self.holder = holder

    async def request_permission(
        self, session_id: str, tool_call: ToolCallUpdate, options: list[PermissionOption], **_: Any
    ) -> RequestPermissionResponse:
        live = self.holder[0] if self.holder else None
        allowed = False
        if live is not None and live.turn is not None:
            answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            live.turn.inbox.put_nowait((tool_call, answer))
            allowed = await answer
        kinds = ("allow_once", "allow_always") if allowed else ("reject_once", "reject_always")
        for kind in kinds:
            for option in options:
                if option.kind == kind:
                    return RequestPermissionResponse(
                        outcome=AllowedOutcome(option_id=option.option_id, outcome="selected")
                    )
        return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))

    async def session_update(self, session_id: str, update: Any, **_: Any) -> None:
        # The protocol library runs each message in a task of its own: queued here, before
        # anything awaits, they keep the order the CLI sent them in.
        live = self.holder[0] if self.holder else None
        if live is not None and live.turn is not None:
            live.turn.inbox.put_nowait(update)

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise RequestError.method_not_found(method)

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        return None

    def on_connect(self, conn: Any) -> None:
        return None


@dataclass
class _TurnState:
    """One task's updates, grouped into messages: an assistant message per model call (text,
    thoughts, tool calls), then the tool results as one user message."""

    io: AgentIO
    flavour: Flavour
    run: str
    model: str
    count: int = 0
    message_id: str = ""  # the assistant message being written, "" when none
    blocks: list[Block] = field(default_factory=list)
    text: list[str] = field(default_factory=list)  # the block being written
    text_kind: Literal["text", "thinking"] = "text"
    calls: dict[str, ToolUseBlock] = field(default_factory=dict)  # this message's tool calls
    names: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: list[Block] = field(default_factory=list)
    finished: set[str] = field(default_factory=set)
    final_text: str = ""
    # The CLI's updates and permission requests (with the future their answer goes to), in the
    # order it sent them; None after the last.
    inbox: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)

    async def consume(self, mode: str) -> None:
        """Record the updates in order, ask the permissions; the last (None) flushes."""
        while (item := await self.inbox.get()) is not None:
            if isinstance(item, tuple):
                call, answer = item
                allowed = False
                try:
                    await self.see(call)
                    allowed = mode == "allow-all" or await self.io.permission(
                        self.names.get(call.tool_call_id, "tool"), _arguments(call, self)
                    )
                finally:
                    if not answer.done():
                        answer.set_result(allowed)
            else:
                await self.update(item)
        await self.flush()

    def deny_waiting(self) -> None:
        """Stopped: permission requests still queued are denied (the CLI is being cancelled)."""
        while not self.inbox.empty():
            item = self.inbox.get_nowait()
            if isinstance(item, tuple) and not item[1].done():
                item[1].set_result(False)

    async def update(self, update: Any) -> None:
        match update:
            case AgentMessageChunk(content=TextContentBlock(text=text)):
                await self._write("text", text)
            case AgentThoughtChunk(content=TextContentBlock(text=text)):
                await self._write("thinking", text)
            case ToolCallStart() | ToolCallProgress():
                await self.see(update)
                if update.status in ("completed", "failed"):
                    await self._finish(update)

    async def see(self, call: ToolCallStart | ToolCallUpdate) -> None:
        """A tool call: the first sight names it; its input fills in as the CLI learns it."""
        ident = call.tool_call_id
        if ident not in self.names:
            self.names[ident] = self.flavour.tool_name(call)
        if isinstance(call.raw_input, dict) and call.raw_input:
            self.inputs[ident] = {**self.inputs.get(ident, {}), **call.raw_input}
        elif call.title and ident not in self.inputs:
            self.inputs[ident] = {"title": call.title}
        if ident in self.finished or ident in self.calls:
            return
        await self._close_results()  # a call after results: the next model call
        if not self.message_id:
            self.message_id = self._next_id()
        self._end_block()
        self.calls[ident] = ToolUseBlock(id=ident, name=self.names[ident], input={})

    async def flush(self) -> None:
        await self._close_message()
        await self._close_results()

    # -- internals -----------------------------------------------------------------------------

    async def _write(self, kind: Literal["text", "thinking"], text: str) -> None:
        if not text:
            return
        await self._close_results()
        if not self.message_id:
            self.message_id = self._next_id()
        if self.text and self.text_kind != kind:
            self._end_block()
        self.text_kind = kind
        self.text.append(text)
        await self.io.delta(self.message_id, kind, text)

    async def _finish(self, call: ToolCallStart | ToolCallUpdate) -> None:
        ident = call.tool_call_id
        if ident in self.finished:
            return
        await self._close_message()
        self.finished.add(ident)
        self.results.append(
            ToolResultBlock(
                tool_use_id=ident, content=_output(call), is_error=call.status == "failed"
            )
        )

    def _end_block(self) -> None:
        if self.text:
            joined = "".join(self.text)
            block: Block = (
                TextBlock(text=joined) if self.text_kind == "text" else ThinkingBlock(text=joined)
            )
            self.blocks.append(block)
            if self.text_kind == "text":
                self.final_text = joined
            self.text = []

    async def _close_message(self) -> None:
        self._end_block()
        for ident, call in self.calls.items():
            self.blocks.append(msgspec.structs.replace(call, input=self.inputs.get(ident, {})))
        if self.message_id and self.blocks:
            await self.io.message(self.message_id, "assistant", self.blocks, self.model)
        self.message_id, self.blocks, self.calls = "", [], {}

    async def _close_results(self) -> None:
        if self.results:
            results, self.results = self.results, []
            await self.io.message(self._next_id(), "user", results, self.model)

    def _next_id(self) -> str:
        self.count += 1
        return f"{self.run}:{self.count}"


def _arguments(call: ToolCallUpdate, turn: _TurnState) -> Mapping[str, Any]:
    arguments = dict(turn.inputs.get(call.tool_call_id, {}))
    if call.title:
        arguments.setdefault("title", call.title)
    if call.locations:
        arguments.setdefault("paths", [location.path for location in call.locations])
    return arguments


def _output(call: ToolCallStart | ToolCallUpdate) -> str:
    texts = [
        part.content.text
        for part in call.content or []
        if isinstance(part, ContentToolCallContent) and isinstance(part.content, TextContentBlock)
    ]
    if texts:
        return "\n".join(texts)
    raw = call.raw_output
    if isinstance(raw, dict) and isinstance(raw.get("output"), str):
        return str(raw["output"])
    return "" if raw is None else json.dumps(raw, default=str)


async def _read_stderr(live: _Live) -> None:
    stream = live.process.stderr
    if stream is None:
        return
    while line := await stream.readline():
        live.stderr.append(line.decode(errors="replace").rstrip())


async def _cancel_reader(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def _describe(exc: BaseException, live: _Live) -> str:
    said = f"{exc} ({exc.data})" if isinstance(exc, RequestError) and exc.data else str(exc)
    return describe(live.stderr, said)


async def _shutdown(live: _Live) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(6):
            await live.stack.aclose()
    if live.process.returncode is None:
        live.process.kill()


def _mcp(turn: Turn, caps: Any) -> list[Any]:
    """Orrery's MCP server for this session, when the agent takes MCP over HTTP."""
    mcp_caps = getattr(caps, "mcp_capabilities", None)
    if turn.mcp is None or not (mcp_caps and mcp_caps.http):
        return []
    headers = [HttpHeader(name=k, value=v) for k, v in turn.mcp.headers.items()]
    return [HttpMcpServer(type="http", name="orrery", url=turn.mcp.url, headers=headers)]
