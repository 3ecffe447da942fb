"""Codex, the real CLI, on its structured protocol: ``codex app-server``, JSON-RPC over stdio (the
"v2" API of Codex 0.169: ``initialize``, ``thread/start`` / ``thread/resume`` / ``thread/fork``,
``turn/start``, ``turn/steer``, ``turn/interrupt``; item notifications; approvals as requests the
server sends us).

One app-server process per active session, kept between tasks: a follow-up prompt is a new turn on
the same loaded thread and pays no start-up. Each session has its own ``CODEX_HOME``
(``home/<session_id>``) with a ``config.toml`` written here: a custom model provider pointing at
``OPENAI_BASE_URL`` (``OPENAI_API_KEY`` comes through the process environment, never the file),
no update checks, no analytics. Codex keeps its threads (rollout files) under that home, so a
later process resumes the session's thread by id. A fork at the parent's latest message copies
the parent's rollout (found under the parent session's home) into the child's home and forks it
natively; a native id whose rollout is gone falls back to a new thread with the transcript first.

What the session log gets, the same shape as the other providers': Codex reports items, not model
calls, so the assistant items that follow each other (reasoning, agent messages, tool calls) make
one assistant message, and the tool results that follow make one user message. A command
execution is an ``exec_command`` tool use (``{"command": ...}``) whose result is its output
(an error when it failed, exited non-zero or was declined); a file change is ``apply_patch``
(``{"changes": [{path, kind, diff}]}``); reasoning summaries are thinking; MCP tool calls keep
their ``server.tool`` name. Deltas come from ``item/agentMessage/delta`` and the reasoning deltas.
Usage is the sum of the per-model-call ``last`` usage Codex reports during the turn. Prompts
steered into a running task are recorded and sent with ``turn/steer`` between items; Codex gives
them to the model on its next call.

Permissions: Codex sends ``item/commandExecution/requestApproval`` and
``item/fileChange/requestApproval``; each becomes an Orrery permission request (accept / decline).
``ask`` runs with approval policy ``untrusted`` (every command but Codex's known-safe read-only
ones is asked, and every edit), ``auto`` the same but file changes inside the working directory
are accepted without asking, ``allow-all`` with approval ``never`` and no sandbox. ``ask`` and
``auto`` keep Codex's ``workspace-write`` sandbox (Linux: its bundled bubblewrap, which works in
this project's containers): even an approved command cannot write outside the workspace, and a
command the sandbox stops may come back as a new approval request to run unsandboxed.

Stop sends ``turn/interrupt``; a turn that does not end within ``SETTLE_S`` gets its process
killed (the next task starts a new one and resumes the thread). The npm ``codex`` launcher runs the
native binary as a child, so each process gets its own process group and is killed as a group.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import shutil
import signal
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec
from orrery.events.sessions import (
    Block,
    SystemBlock,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
)
from orrery.sessions.agents.base import AgentIO, ProviderError, Turn, TurnResult
from orrery.sessions.agents.clis import (
    describe,
    first_prompt,
    not_installed,
    process_env,
    transcript,
)

log = logging.getLogger(__name__)

SETTLE_S = 4.0  # after an interrupt, how long Codex gets to end its turn before it is killed
START_S = 60.0  # start-up and thread requests (the model is not called yet)
STDERR_LINES = 40
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # Codex colours its log lines even into a pipe
LINE_LIMIT = 64 * 1024 * 1024  # one JSON-RPC line (a command's whole output can be in one)
DEFAULT_BASE_URL = "https://api.openai.com/v1"
PROVIDER_ID = "orrery"

Mode = Literal["ask", "auto", "allow-all"]
DELTAS = frozenset(
    {
        "item/agentMessage/delta",
        "item/reasoning/summaryTextDelta",
        "item/reasoning/textDelta",
        "item/reasoning/summaryPartAdded",
    }
)


# -- the protocol (only the fields read here; msgspec skips the rest) ----------------------------


class _RpcError(msgspec.Struct, frozen=True):
    code: int = 0
    message: str = ""


class _Envelope(msgspec.Struct, frozen=True):
    """One JSON-RPC line: a response (id, result | error), a notification (method, params) or a
    request from the server (id, method, params)."""

    id: int | str | None = None
    method: str | None = None
    params: msgspec.Raw = msgspec.Raw(b"null")
    result: msgspec.Raw = msgspec.Raw(b"null")
    error: _RpcError | None = None


class _Thread(msgspec.Struct, frozen=True, rename="camel"):
    id: str


class _ThreadOpened(msgspec.Struct, frozen=True, rename="camel"):
    """The answer to thread/start, thread/resume and thread/fork."""

    thread: _Thread
    model: str = ""


class _TurnError(msgspec.Struct, frozen=True, rename="camel"):
    message: str = ""
    codex_error_info: Any = None
    additional_details: str | None = None


class _Turn(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    status: str = "inProgress"  # completed | interrupted | failed | inProgress
    error: _TurnError | None = None


class _TurnStarted(msgspec.Struct, frozen=True, rename="camel"):
    turn: _Turn


class _TurnCompleted(msgspec.Struct, frozen=True, rename="camel"):
    thread_id: str
    turn: _Turn


class _PatchKind(msgspec.Struct, frozen=True, rename="camel"):
    type: str = "update"  # add | delete | update


class _FileChange(msgspec.Struct, frozen=True, rename="camel"):
    path: str
    kind: _PatchKind = _PatchKind()
    diff: str = ""


class _Item(msgspec.Struct, frozen=True, rename="camel"):
    """A thread item; ``type`` tells which fields mean something."""

    type: str
    id: str
    text: str = ""  # agentMessage
    summary: list[str] = []  # reasoning
    content: list[Any] = []  # reasoning (raw text parts), userMessage (inputs)
    command: str = ""  # commandExecution
    aggregated_output: str | None = None
    exit_code: int | None = None
    status: str = (
        ""  # commandExecution, fileChange, mcpToolCall: ... | completed | failed | declined
    )
    changes: list[_FileChange] = []  # fileChange
    server: str = ""  # mcpToolCall
    tool: Any = None  # mcpToolCall, dynamicToolCall
    arguments: Any = None
    result: Any = None
    error: Any = None
    content_items: Any = None  # dynamicToolCall
    success: bool | None = None


class _ItemEvent(msgspec.Struct, frozen=True, rename="camel"):
    item: _Item
    thread_id: str
    turn_id: str


class _Delta(msgspec.Struct, frozen=True, rename="camel"):
    thread_id: str
    turn_id: str
    item_id: str
    delta: str = ""


class _SummaryPart(msgspec.Struct, frozen=True, rename="camel"):
    thread_id: str
    turn_id: str
    item_id: str
    summary_index: int = 0


class _Tokens(msgspec.Struct, frozen=True, rename="camel"):
    total_tokens: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0


class _TokenUsage(msgspec.Struct, frozen=True, rename="camel"):
    total: _Tokens
    last: _Tokens
    model_context_window: int | None = None


class _TokenUsageUpdated(msgspec.Struct, frozen=True, rename="camel"):
    thread_id: str
    turn_id: str
    token_usage: _TokenUsage


class _ErrorEvent(msgspec.Struct, frozen=True, rename="camel"):
    error: _TurnError
    will_retry: bool = False
    thread_id: str = ""
    turn_id: str = ""


class _Approval(msgspec.Struct, frozen=True, rename="camel"):
    """item/commandExecution/requestApproval and item/fileChange/requestApproval."""

    thread_id: str
    turn_id: str
    item_id: str
    command: str | None = None
    cwd: str | None = None
    reason: str | None = None
    grant_root: str | None = None


# -- the process -----------------------------------------------------------------------------------


class _Closed(Exception):
    """The app-server's output ended (the process exited)."""


class _Rpc:
    """JSON-RPC with one app-server process: requests get their answers through futures; what the
    server sends on its own (notifications, requests) waits in ``inbox`` for the turn loop."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr: deque[str]) -> None:
        self.proc = proc
        self.stderr = stderr
        self.inbox: asyncio.Queue[_Envelope | None] = asyncio.Queue()  # None: the output ended
        self._pending: dict[int, asyncio.Future[msgspec.Raw]] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self._readers = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]

    async def request(self, method: str, params: Mapping[str, Any]) -> msgspec.Raw:
        if self._closed:
            raise _Closed("the app-server has exited")
        request_id = next(self._ids)
        future: asyncio.Future[msgspec.Raw] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._send(
                {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
            )
            return await future
        finally:
            self._pending.pop(request_id, None)

    async def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self._send(message)

    async def respond(self, request_id: int | str | None, result: Mapping[str, Any]) -> None:
        await self._send({"jsonrpc": "2.0", "id": request_id, "result": result})

    async def refuse(self, request_id: int | str | None, message: str) -> None:
        error = {"code": -32601, "message": message}
        await self._send({"jsonrpc": "2.0", "id": request_id, "error": error})

    async def _send(self, message: Mapping[str, Any]) -> None:
        stdin = self.proc.stdin
        if stdin is None or stdin.is_closing():
            raise _Closed("the app-server's input is closed")
        try:
            stdin.write(msgspec.json.encode(message) + b"\n")
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _Closed("the app-server's input is closed") from exc

    async def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                try:
                    message = msgspec.json.decode(line, type=_Envelope)
                except msgspec.DecodeError:
                    log.debug("codex app-server wrote a non-JSON line: %r", line[:200])
                    continue
                if message.method is None and isinstance(message.id, int):
                    future = self._pending.get(message.id)
                    if future is not None and not future.done():
                        if message.error is not None:
                            future.set_exception(_RequestFailed(message.error))
                        else:
                            future.set_result(message.result)
                else:
                    self.inbox.put_nowait(message)
        except (ValueError, OSError) as exc:  # a line over the limit, a broken pipe
            log.warning("codex app-server output unreadable: %r", exc)
        finally:
            self._closed = True
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(_Closed("the app-server has exited"))
            self.inbox.put_nowait(None)

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        with contextlib.suppress(ValueError, OSError):
            async for raw in self.proc.stderr:
                line = ANSI.sub("", raw.decode("utf-8", "replace")).rstrip()
                if line:
                    self.stderr.append(line)

    async def close(self) -> None:
        """End the process (its whole group: the npm launcher runs the binary as a child)."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()  # app-server exits at the end of its input
        try:
            async with asyncio.timeout(1.0):
                await self.proc.wait()
        except TimeoutError:
            pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError, ProcessLookupError):
            async with asyncio.timeout(5.0):
                await self.proc.wait()
        for reader in self._readers:
            reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.gather(*self._readers, return_exceptions=True)


class _RequestFailed(Exception):
    def __init__(self, error: _RpcError) -> None:
        super().__init__(f"{error.message} (JSON-RPC error {error.code})")
        self.error = error


@dataclass
class _Live:
    """One session's app-server process, between and during tasks."""

    rpc: _Rpc
    key: tuple[Any, ...]  # what it was started with; a change (endpoint, key, cwd) restarts it
    codex_home: Path
    thread_id: str = ""  # the thread loaded in this process
    model: str = ""
    turn_id: str = ""  # the turn in progress, once Codex named it
    turn_started: bool = False  # a turn/start was sent and its turn has not completed
    last_total: _Tokens | None = None  # the thread's total usage as last reported
    settling: asyncio.Task[None] | None = None  # an interrupted turn still draining
    busy: bool = False  # serving a task
    used: float = field(default_factory=time.monotonic)  # when a task last ended

    @property
    def stderr(self) -> deque[str]:
        return self.rpc.stderr


class Codex:
    name = "codex"

    def __init__(self, cli: Path | None, home: Path) -> None:
        self.cli = cli
        self.home = home
        self._live: dict[str, _Live] = {}

    async def close(self) -> None:
        lives, self._live = list(self._live.values()), {}
        for live in lives:
            if live.settling is not None:
                live.settling.cancel()
            await live.rpc.close()

    async def run(self, turn: Turn, io: AgentIO) -> TurnResult:
        if self.cli is None:
            raise not_installed("Codex", "codex")
        live = await self._process(turn)
        live.busy = True
        try:
            return await self._task(live, turn, io)
        except asyncio.CancelledError:
            # Stopped: interrupt the turn and let it end in the background (the runner records
            # the stop); the session's next task waits for that first.
            live.settling = asyncio.create_task(self._settle(turn.session_id, live))
            raise
        except _Closed as exc:
            await self._drop(turn.session_id)
            raise ProviderError("agent.crashed", _describe(live, str(exc))) from exc
        except _RequestFailed as exc:
            await self._drop(turn.session_id)
            raise ProviderError("agent.error", _describe(live, str(exc))) from exc
        except ProviderError:
            if live.turn_started:  # a turn that failed and ended leaves the process usable
                await self._drop(turn.session_id)
            raise
        except Exception:
            await self._drop(turn.session_id)  # mid-turn: its leftovers must not reach the next
            raise
        finally:
            live.busy, live.used = False, time.monotonic()

    async def reap(self, idle_s: float) -> None:
        now = time.monotonic()
        for session_id, live in list(self._live.items()):
            if not live.busy and live.settling is None and now - live.used > idle_s:
                await self._drop(session_id)

    # -- the process ---------------------------------------------------------------------------

    async def _process(self, turn: Turn) -> _Live:
        live = self._live.get(turn.session_id)
        if live is not None and live.settling is not None:
            with contextlib.suppress(Exception):
                await live.settling
            live = self._live.get(turn.session_id)
        mcp = turn.mcp.token if turn.mcp else ""  # a new token (every few hours): a new process
        key = (str(self.cli), str(turn.cwd), tuple(sorted(turn.env.items())), mcp)
        if live is not None and live.key != key:
            await self._drop(turn.session_id)
            live = None
        if live is not None:
            return live
        assert self.cli is not None
        codex_home = self.home / turn.session_id
        codex_home.mkdir(parents=True, exist_ok=True)
        (codex_home / "config.toml").write_text(_config(turn))
        extra = {"CODEX_HOME": str(codex_home)}
        if turn.mcp is not None:
            extra[MCP_TOKEN_VAR] = turn.mcp.token
        env = process_env(turn.env, extra)
        stderr: deque[str] = deque(maxlen=STDERR_LINES)
        try:
            proc = await asyncio.create_subprocess_exec(
                str(self.cli),
                "app-server",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=turn.cwd,
                env=env,
                limit=LINE_LIMIT,
                start_new_session=True,
            )
        except OSError as exc:
            raise ProviderError("agent.unavailable", f"cannot start codex: {exc}") from exc
        live = _Live(rpc=_Rpc(proc, stderr), key=key, codex_home=codex_home)
        try:
            async with asyncio.timeout(START_S):
                await live.rpc.request(
                    "initialize",
                    {
                        "clientInfo": {"name": "orrery", "title": "Orrery", "version": "1"},
                        "capabilities": {"experimentalApi": False, "requestAttestation": False},
                    },
                )
                await live.rpc.notify("initialized")
        except (TimeoutError, _Closed, _RequestFailed) as exc:
            await live.rpc.close()
            raise ProviderError("agent.unavailable", _describe(live, repr(exc))) from exc
        self._live[turn.session_id] = live
        return live

    async def _drop(self, session_id: str) -> None:
        live = self._live.pop(session_id, None)
        if live is not None:
            await live.rpc.close()

    async def _settle(self, session_id: str, live: _Live) -> None:
        try:
            async with asyncio.timeout(SETTLE_S):
                interrupted = False
                while live.turn_started:
                    if live.turn_id and not interrupted:
                        interrupted = True
                        params = {"threadId": live.thread_id, "turnId": live.turn_id}
                        await live.rpc.request("turn/interrupt", params)
                    message = await live.rpc.inbox.get()
                    if message is None:
                        raise _Closed("the app-server exited")
                    if message.id is not None and message.method is not None:
                        await _decline(live.rpc, message)  # approvals of the stopped turn
                    elif message.method == "turn/started" and not live.turn_id:
                        live.turn_id = msgspec.json.decode(
                            message.params, type=_TurnStarted
                        ).turn.id
                    elif message.method == "turn/completed":
                        done = msgspec.json.decode(message.params, type=_TurnCompleted)
                        if not live.turn_id or done.turn.id == live.turn_id:
                            live.turn_started, live.turn_id = False, ""
        except (TimeoutError, _Closed, _RequestFailed, OSError) as exc:
            log.warning("codex did not end its turn after an interrupt (%r): killed", exc)
            if self._live.get(session_id) is live:
                del self._live[session_id]
            await live.rpc.close()
        finally:
            live.settling = None

    # -- one task ------------------------------------------------------------------------------

    async def _task(self, live: _Live, turn: Turn, io: AgentIO) -> TurnResult:
        mode: Mode = turn.settings.permission_mode
        prompt = await self._thread(live, turn)
        if live.thread_id != turn.native_id:
            await io.bind(live.thread_id)
        state = _TurnState(
            run=turn.run_id or turn.task_id, model=live.model or turn.settings.model, io=io
        )
        params: dict[str, Any] = {
            "threadId": live.thread_id,
            "input": [_text(prompt)],
            "approvalPolicy": _approval(mode),
            "sandboxPolicy": _sandbox_policy(mode, turn.cwd),
        }
        if turn.settings.model:
            params["model"] = turn.settings.model
        if turn.settings.thinking == "off":
            # Codex has no "no reasoning" for every model: the lowest effort, and no summaries.
            params |= {"effort": "low", "summary": "none"}
        live.turn_started, live.turn_id = True, ""
        started = await live.rpc.request("turn/start", params)
        live.turn_id = msgspec.json.decode(started, type=_TurnStarted).turn.id
        while True:
            message = await live.rpc.inbox.get()
            if message is None:
                raise _Closed("the app-server exited mid-turn")
            if message.method is None:
                continue
            if message.id is not None:
                await self._request(live, turn, state, message)
                continue
            done = await self._notification(live, state, message)
            if done is not None:
                live.turn_started, live.turn_id = False, ""
                await state.flush()
                late = io.steered() if done.status == "completed" else []
                if not late:
                    return state.outcome(done)
                # Steered as the turn ended: one more turn, in the same task, answers them.
                blocks: list[Block] = [TextBlock(text=p) for p in late]
                await io.message(state.next_id(), "user", blocks, state.model)
                params["input"] = [_text(p) for p in late]
                live.turn_started = True
                started = await live.rpc.request("turn/start", params)
                live.turn_id = msgspec.json.decode(started, type=_TurnStarted).turn.id
                continue
            steered = io.steered() if message.method == "item/completed" else []
            if steered:  # between items: into the running turn, for the model's next call
                await state.flush()
                await io.message(
                    state.next_id(), "user", [TextBlock(text=p) for p in steered], state.model
                )
                steer = {
                    "threadId": live.thread_id,
                    "expectedTurnId": live.turn_id,
                    "input": [_text(p) for p in steered],
                }
                try:
                    await live.rpc.request("turn/steer", steer)
                except _RequestFailed as exc:  # the turn ended meanwhile
                    log.info("codex refused a steered prompt: %s", exc)

    async def _thread(self, live: _Live, turn: Turn) -> str:
        """Loads the task's thread into the process; the prompt to send on it."""
        mode: Mode = turn.settings.permission_mode
        common: dict[str, Any] = {
            "cwd": str(turn.cwd),
            "approvalPolicy": _approval(mode),
            "sandbox": _sandbox_mode(mode),
        }
        if turn.settings.model:
            common["model"] = turn.settings.model
        if turn.native_id and turn.native_id == live.thread_id:
            return turn.prompt
        opened: _ThreadOpened | None = None
        async with asyncio.timeout(START_S):
            if turn.native_id:
                self._find_rollout(live, turn.native_id)
                opened = await _open(live, "thread/resume", {"threadId": turn.native_id, **common})
            elif turn.fork_of:
                self._find_rollout(live, turn.fork_of)
                opened = await _open(live, "thread/fork", {"threadId": turn.fork_of, **common})
            if opened is not None:
                prompt = turn.prompt
            else:
                if turn.native_id or turn.fork_of:
                    log.warning(
                        "codex thread %s could not be loaded: starting over with the transcript",
                        turn.native_id or turn.fork_of,
                    )
                    prompt = (
                        transcript(turn.history[:-1]) + "\n\n" + turn.prompt
                        if len(turn.history) > 1
                        else turn.prompt
                    )
                else:
                    prompt = first_prompt(turn)
                raw = await live.rpc.request("thread/start", common)
                opened = msgspec.json.decode(raw, type=_ThreadOpened)
        live.thread_id, live.model = opened.thread.id, opened.model
        live.last_total = None
        return prompt

    def _find_rollout(self, live: _Live, thread_id: str) -> None:
        """A thread recorded under another session's home (a fork's parent) is copied into this
        session's, where Codex finds it by id."""
        pattern = f"sessions/*/*/*/rollout-*-{thread_id}.jsonl"
        if next(live.codex_home.glob(pattern), None) is not None:
            return
        for found in self.home.glob(f"*/{pattern}"):
            target = live.codex_home / found.relative_to(found.parents[4])
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(found, target)
            return

    async def _request(
        self, live: _Live, turn: Turn, state: _TurnState, message: _Envelope
    ) -> None:
        """A request from Codex: approvals become permission requests; others are refused."""
        method = message.method
        if method not in (
            "item/commandExecution/requestApproval",
            "item/fileChange/requestApproval",
        ):
            await live.rpc.refuse(message.id, f"{method} is not supported by this client")
            return
        ask = msgspec.json.decode(message.params, type=_Approval)
        if ask.turn_id != live.turn_id:
            await _decline(live.rpc, message)
            return
        mode: Mode = turn.settings.permission_mode
        if method == "item/commandExecution/requestApproval":
            tool = "exec_command"
            arguments: dict[str, Any] = {"command": ask.command or ""}
            if ask.cwd:
                arguments["cwd"] = ask.cwd
        else:
            tool = "apply_patch"
            changes = state.changes.get(ask.item_id, [])
            arguments = {"changes": [_change(c) for c in changes]}
            inside = all(_inside(Path(c.path), turn.cwd) for c in changes)
            if mode == "auto" and changes and inside and ask.grant_root is None:
                await live.rpc.respond(message.id, {"decision": "accept"})
                return
        if ask.reason:
            arguments["reason"] = ask.reason
        allowed = mode == "allow-all" or await state.io.permission(tool, arguments)
        await live.rpc.respond(message.id, {"decision": "accept" if allowed else "decline"})

    async def _notification(
        self, live: _Live, state: _TurnState, message: _Envelope
    ) -> _Turn | None:
        """Handles one notification of the running turn; the turn, once it completed."""
        method, raw = message.method, message.params
        if method in ("item/started", "item/completed"):
            event = msgspec.json.decode(raw, type=_ItemEvent)
            if event.turn_id == live.turn_id:
                handle = state.started if method == "item/started" else state.completed
                await handle(event.item)
        elif method in DELTAS:
            await self._delta(live, state, method, raw)
        elif method == "thread/tokenUsage/updated":
            update = msgspec.json.decode(raw, type=_TokenUsageUpdated)
            if update.turn_id == live.turn_id and update.token_usage.total != live.last_total:
                state.calls.append(update.token_usage.last)  # a new model call (not a repeat)
                state.context_window = update.token_usage.model_context_window
            live.last_total = update.token_usage.total
        elif method == "error":
            error = msgspec.json.decode(raw, type=_ErrorEvent)
            if error.will_retry:
                log.info("codex retries after: %s", error.error.message)
            elif error.turn_id == live.turn_id:
                state.error = error.error
        elif method == "turn/completed":
            done = msgspec.json.decode(raw, type=_TurnCompleted)
            if done.turn.id == live.turn_id:
                return done.turn
        elif method == "model/rerouted":
            with contextlib.suppress(msgspec.DecodeError):
                state.model = msgspec.json.decode(raw, type=_Rerouted).to_model or state.model
        return None

    async def _delta(self, live: _Live, state: _TurnState, method: str, raw: msgspec.Raw) -> None:
        if method == "item/reasoning/summaryPartAdded":
            part = msgspec.json.decode(raw, type=_SummaryPart)
            if part.turn_id == live.turn_id and part.summary_index > 0:
                # summary parts make one thinking block, a blank line apart
                await state.io.delta(await state.assistant(), "thinking", "\n\n")
            return
        delta = msgspec.json.decode(raw, type=_Delta)
        if delta.turn_id == live.turn_id and delta.delta:
            kind: Literal["text", "thinking"] = (
                "text" if method == "item/agentMessage/delta" else "thinking"
            )
            await state.io.delta(await state.assistant(), kind, delta.delta)


class _Rerouted(msgspec.Struct, frozen=True, rename="camel"):
    to_model: str = ""


@dataclass
class _TurnState:
    """One task's items, grouped into messages: assistant items until tool results come back."""

    run: str
    model: str
    io: AgentIO
    count: int = 0
    message_id: str = ""  # the assistant message being built
    blocks: list[Block] = field(default_factory=list)
    results: list[Block] = field(default_factory=list)  # tool results not recorded yet
    used: set[str] = field(default_factory=set)  # tool uses already recorded in a message
    changes: dict[str, list[_FileChange]] = field(default_factory=dict)  # file changes by item
    calls: list[_Tokens] = field(default_factory=list)  # each model call's usage
    context_window: int | None = None
    final_text: str = ""
    error: _TurnError | None = None

    def next_id(self) -> str:
        self.count += 1
        return f"{self.run}:{self.count}"

    async def assistant(self) -> str:
        """The assistant message now being written (a new one after tool results)."""
        if self.results:
            await self.flush()
        if not self.message_id:
            self.message_id = self.next_id()
        return self.message_id

    async def flush(self) -> None:
        if self.message_id:
            message_id, blocks = self.message_id, self.blocks
            self.message_id, self.blocks = "", []
            if blocks:
                await self.io.message(message_id, "assistant", blocks, self.model)
        if self.results:
            results, self.results = self.results, []
            await self.io.message(self.next_id(), "user", results, self.model)

    async def started(self, item: _Item) -> None:
        use = _tool_use(item)
        if use is not None:
            if item.type == "fileChange":
                self.changes[item.id] = item.changes
            await self.assistant()
            self.blocks.append(use)
            self.used.add(item.id)

    async def completed(self, item: _Item) -> None:
        match item.type:
            case "agentMessage":
                await self.assistant()
                if item.text:
                    self.blocks.append(TextBlock(text=item.text))
                    self.final_text = item.text
            case "reasoning":
                text = "\n\n".join(item.summary) or "\n\n".join(
                    str(part) for part in item.content if isinstance(part, str)
                )
                if text:
                    await self.assistant()
                    self.blocks.append(ThinkingBlock(text=text))
            case "contextCompaction":
                await self.flush()
                blocks: list[Block] = [SystemBlock(text="conversation compacted")]
                await self.io.message(self.next_id(), "system", blocks, self.model)
            case _:
                result = _tool_result(item)
                if result is None:
                    return
                if item.id not in self.used:  # completed without a start (seen in history only)
                    await self.started(item)
                if self.message_id:
                    message_id, blocks = self.message_id, self.blocks
                    self.message_id, self.blocks = "", []
                    await self.io.message(message_id, "assistant", blocks, self.model)
                self.results.append(result)

    def outcome(self, turn: _Turn) -> TurnResult:
        if turn.status == "failed" or (turn.status != "completed" and self.error is not None):
            error = turn.error or self.error or _TurnError(message="the turn failed")
            raise ProviderError(_error_code(error), _error_text(error))
        if turn.status == "interrupted":
            raise ProviderError("agent.interrupted", "the Codex turn was interrupted")
        usage = Usage(
            input_tokens=sum(c.input_tokens for c in self.calls),
            output_tokens=sum(c.output_tokens for c in self.calls),
            cache_read_tokens=sum(c.cached_input_tokens for c in self.calls),
            cache_write_tokens=sum(c.cache_write_input_tokens for c in self.calls),
        )
        return TurnResult(
            model=self.model,
            usage=usage,
            raw_usage={
                "calls": [msgspec.to_builtins(c) for c in self.calls],
                "model_context_window": self.context_window,
            },
            final_text=self.final_text,
        )


# -- mapping -------------------------------------------------------------------------------------


def _tool_use(item: _Item) -> ToolUseBlock | None:
    match item.type:
        case "commandExecution":
            return ToolUseBlock(id=item.id, name="exec_command", input={"command": item.command})
        case "fileChange":
            changes = [_change(c) for c in item.changes]
            return ToolUseBlock(id=item.id, name="apply_patch", input={"changes": changes})
        case "mcpToolCall":
            name = f"{item.server}.{item.tool}"
            return ToolUseBlock(id=item.id, name=name, input=_arguments(item.arguments))
        case "dynamicToolCall":
            return ToolUseBlock(id=item.id, name=str(item.tool), input=_arguments(item.arguments))
        case _:
            return None


def _tool_result(item: _Item) -> ToolResultBlock | None:
    failed = item.status in ("failed", "declined")
    match item.type:
        case "commandExecution":
            output = item.aggregated_output or ""
            if item.status == "declined":
                output = output or "declined by the user"
            failed = failed or item.exit_code not in (None, 0)
            return ToolResultBlock(tool_use_id=item.id, content=output, is_error=failed)
        case "fileChange":
            if item.status == "declined":
                text = "declined by the user"
            else:
                head = (
                    "Success. Updated the following files:"
                    if item.status == "completed"
                    else f"The patch was not applied ({item.status}):"
                )
                letters = {"add": "A", "delete": "D", "update": "M"}
                lines = [f"{letters.get(c.kind.type, '?')} {c.path}" for c in item.changes]
                text = "\n".join([head, *lines])
            return ToolResultBlock(tool_use_id=item.id, content=text, is_error=failed)
        case "mcpToolCall":
            body = item.error if item.error is not None else item.result
            text = body if isinstance(body, str) else msgspec.json.encode(body).decode()
            return ToolResultBlock(
                tool_use_id=item.id, content=text, is_error=failed or item.error is not None
            )
        case "dynamicToolCall":
            text = msgspec.json.encode(item.content_items).decode()
            return ToolResultBlock(
                tool_use_id=item.id, content=text, is_error=failed or item.success is False
            )
        case _:
            return None


def _change(change: _FileChange) -> dict[str, str]:
    return {"path": change.path, "kind": change.kind.type, "diff": change.diff}


def _arguments(arguments: Any) -> dict[str, Any]:
    return dict(arguments) if isinstance(arguments, dict) else {"arguments": arguments}


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "text_elements": []}


def _approval(mode: Mode) -> str:
    return "never" if mode == "allow-all" else "untrusted"


def _sandbox_mode(mode: Mode) -> str:
    return "danger-full-access" if mode == "allow-all" else "workspace-write"


def _sandbox_policy(mode: Mode, cwd: Path) -> dict[str, Any]:
    if mode == "allow-all":
        return {"type": "dangerFullAccess"}
    return {
        "type": "workspaceWrite",
        "writableRoots": [str(cwd)],
        "networkAccess": False,
        "excludeTmpdirEnvVar": False,
        "excludeSlashTmp": False,
    }


def _error_code(error: _TurnError) -> str:
    info = error.codex_error_info
    if isinstance(info, dict) and info:
        kind, detail = next(iter(info.items()))
        status = detail.get("httpStatusCode") if isinstance(detail, dict) else None
        return f"model.http_{status}" if status else f"model.{_snake(kind)}"
    if isinstance(info, str) and info and info != "other":
        return f"model.{_snake(info)}"
    api_error = _api_error(error.message)
    if api_error.get("type"):
        return f"model.{api_error['type']}"
    return "model.error" if info == "other" else "agent.error"


def _error_text(error: _TurnError) -> str:
    message = str(_api_error(error.message).get("message") or error.message)
    parts = [message, error.additional_details or ""]
    return "; ".join(p for p in parts if p) or "the turn failed"


def _api_error(message: str) -> dict[str, Any]:
    """The model API's error body, when Codex passes it on as the message."""
    try:
        body = msgspec.json.decode(message)
    except msgspec.DecodeError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


MCP_TOKEN_VAR = "ORRERY_MCP_TOKEN"  # noqa: S105 - the variable's name, not a secret


def _config(turn: Turn) -> str:
    """The session's config.toml: the model endpoint; the key stays in the environment."""
    base_url = turn.env.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    lines = [
        f"model_provider = {_toml(PROVIDER_ID)}",
        "check_for_update_on_startup = false",
    ]
    if turn.settings.model:
        lines.append(f"model = {_toml(turn.settings.model)}")
    lines += [
        "",
        f"[model_providers.{PROVIDER_ID}]",
        'name = "Orrery"',
        f"base_url = {_toml(base_url)}",
        'env_key = "OPENAI_API_KEY"',
        'wire_api = "responses"',
        "request_max_retries = 2",
        "stream_max_retries = 2",
        "",
        "[analytics]",
        "enabled = false",
        "",
        "[feedback]",
        "enabled = false",
        "",
    ]
    if turn.mcp is not None:  # streamable HTTP; the token stays in the environment
        lines += [
            "[mcp_servers.orrery]",
            f"url = {_toml(turn.mcp.url)}",
            f"bearer_token_env_var = {_toml(MCP_TOKEN_VAR)}",
            "",
        ]
    return "\n".join(lines)


def _toml(value: str) -> str:
    return msgspec.json.encode(value).decode()  # a JSON string is a TOML basic string


async def _open(live: _Live, method: str, params: Mapping[str, Any]) -> _ThreadOpened | None:
    try:
        raw = await live.rpc.request(method, params)
    except _RequestFailed as exc:
        log.info("codex %s failed: %s", method, exc)
        return None
    return msgspec.json.decode(raw, type=_ThreadOpened)


async def _decline(rpc: _Rpc, message: _Envelope) -> None:
    if message.method in (
        "item/commandExecution/requestApproval",
        "item/fileChange/requestApproval",
    ):
        await rpc.respond(message.id, {"decision": "decline"})
    else:
        await rpc.refuse(message.id, f"{message.method} is not supported by this client")


def _describe(live: _Live, what: str) -> str:
    return describe(live.stderr, what)
