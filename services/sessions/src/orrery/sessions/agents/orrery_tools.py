"""Orrery's MCP server as tools of the built-in agent, through the official ``mcp`` SDK's client
on the gateway's ``/mcp`` with the session's token.

The tool list is the same for every session (what a token may reach is checked per call), so it
is fetched once per process and offered to the model as one tool, ``orrery``, whose description
lists each of the server's tools with its parameters (``orrery(tool, arguments)``): thirty-odd
full schemas in every model request cost the agent's event loop more than the streams beside it
can bear with fifty sessions starting at once. A turn opens a client session only when its model
calls the tool. A turn that never
does costs nothing more (twenty sessions starting at once would otherwise each connect while the
others stream). When the server cannot be reached, turns go on without the tools (said once in
the log, tried again a minute later).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from orrery.sessions.agents.base import McpAccess
from orrery.sessions.agents.tools import ToolResult, clip

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 10.0
RETRY_AFTER_S = 60.0
# Tools that only read: never asked about, whatever the permission mode.
READ_ONLY = ("_get", "_list", "_tail", "_health", "_logs", "_open_app")


@dataclass
class _Catalog:
    """The server's tool list, once per process."""

    schemas: list[dict[str, Any]] | None = None
    failed_at: float = -RETRY_AFTER_S
    lock: asyncio.Lock | None = None


_catalog = _Catalog()


TOOL = "orrery"


def one_tool(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    """The server's tools as the one ``orrery`` tool the model is offered."""
    lines = []
    for s in schemas:
        props = s.get("input_schema", {}).get("properties", {})
        required = set(s.get("input_schema", {}).get("required", []))
        params = ", ".join(p if p in required else f"{p}?" for p in props if p != "ctx")
        lines.append(f"- {s['name']}({params}): {s['description']}")
    return {
        "name": TOOL,
        "description": (
            "Orrery, where this session runs: its sessions, worktrees, environments, boards and"
            " events. Call with `tool` (one of the names below) and its `arguments` (an object;"
            " `?` marks optional ones):\n" + "\n".join(lines)
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "tool": {"type": "string", "enum": [s["name"] for s in schemas]},
                "arguments": {"type": "object"},
            },
            "required": ["tool"],
        },
    }


@dataclass
class OrreryTools:
    access: McpAccess | None = None
    catalog: list[dict[str, Any]] = field(default_factory=list)
    _client: _Client | None = None

    @property
    def schemas(self) -> list[dict[str, Any]]:
        return [one_tool(self.catalog)] if self.catalog else []

    @property
    def names(self) -> set[str]:
        return {TOOL} if self.catalog else set()

    @staticmethod
    def asks(arguments: Mapping[str, Any]) -> bool:
        """Whether a call needs the user's permission in permission mode ``ask``: all but the
        read-only tools."""
        name = str(arguments.get("tool", ""))
        return not any(name.endswith(suffix) or f"{suffix}_" in name for suffix in READ_ONLY)

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        assert self.access is not None  # only offered with access
        tool, args = arguments.get("tool"), arguments.get("arguments") or {}
        if tool not in {s["name"] for s in self.catalog} or not isinstance(args, dict):
            known = ", ".join(s["name"] for s in self.catalog)
            return ToolResult(f"give `tool` (one of {known}) and `arguments` (an object)", True)
        try:
            if self._client is None:
                self._client = await _Client.open(self.access)
            result = await self._client.session.call_tool(str(tool), args)
        except Exception as exc:  # noqa: BLE001 - any client failure: the model hears of it
            return ToolResult(f"Orrery's MCP server: {type(exc).__name__}: {exc}", is_error=True)
        text = "\n".join(str(getattr(c, "text", "")) for c in result.content)
        return ToolResult(clip(text or "(no output)"), is_error=bool(result.is_error))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


@contextlib.asynccontextmanager
async def orrery_tools(access: McpAccess | None) -> AsyncIterator[OrreryTools]:
    """Orrery's tools for one turn (none without access, or while the server is unreachable)."""
    schemas = await _schemas(access) if access is not None else None
    tools = OrreryTools(access, schemas or [])
    try:
        yield tools
    finally:
        await tools.close()


async def _schemas(access: McpAccess) -> list[dict[str, Any]] | None:
    if _catalog.schemas is not None:
        return _catalog.schemas
    if time.monotonic() - _catalog.failed_at < RETRY_AFTER_S:
        return None
    _catalog.lock = _catalog.lock or asyncio.Lock()
    async with _catalog.lock:
        if _catalog.schemas is None and time.monotonic() - _catalog.failed_at >= RETRY_AFTER_S:
            try:
                await _reachable(access)
                client = await _Client.open(access)
                try:
                    _catalog.schemas = client.schemas
                finally:
                    await client.close()
            except Exception as exc:  # noqa: BLE001 - transport, protocol or server: run without
                _catalog.failed_at = time.monotonic()
                log.warning("the built-in agent runs without Orrery's MCP server: %r", exc)
    return _catalog.schemas


async def _reachable(access: McpAccess) -> None:
    """A quick look first: with no gateway at the URL (a service run alone, a test) the SDK's
    client would wait out its timeout. Raises when nothing answers."""
    httpx2 = await asyncio.to_thread(importlib.import_module, "httpx2")
    async with httpx2.AsyncClient(timeout=2) as http:
        await http.get(access.url)


class _Client:
    """A client session held by a task of its own (the SDK's task groups must be entered and left
    in one task), until ``close()``."""

    def __init__(self, session: Any, schemas: list[dict[str, Any]], done: asyncio.Event) -> None:
        self.session = session
        self.schemas = schemas
        self._done = done
        self._holder: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, access: McpAccess) -> _Client:
        # The SDK takes about a second to import: in a thread, never on the event loop.
        streamable = await asyncio.to_thread(importlib.import_module, "mcp.client.streamable_http")
        mcp = importlib.import_module("mcp")
        httpx2 = importlib.import_module("httpx2")
        ready: asyncio.Future[_Client] = asyncio.get_running_loop().create_future()
        done = asyncio.Event()

        async def hold() -> None:
            try:
                async with contextlib.AsyncExitStack() as stack:
                    http = await stack.enter_async_context(
                        httpx2.AsyncClient(headers=access.headers, timeout=60)
                    )
                    streams = await stack.enter_async_context(
                        streamable.streamable_http_client(access.url, http_client=http)
                    )
                    session = await stack.enter_async_context(
                        mcp.ClientSession(streams[0], streams[1])
                    )
                    await session.initialize()
                    listed = await session.list_tools()
                    schemas = [
                        {
                            "name": t.name,
                            "description": t.description or "",
                            "input_schema": t.input_schema,
                        }
                        for t in listed.tools
                    ]
                    ready.set_result(cls(session, schemas, done))
                    await done.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - handed to the opener, else only logged
                if not ready.done():
                    ready.set_exception(exc)
                else:
                    log.debug("Orrery's MCP client ended: %r", exc)

        holder = asyncio.create_task(hold(), name="orrery-mcp")
        try:
            client = await asyncio.wait_for(asyncio.shield(ready), CONNECT_TIMEOUT_S)
        except BaseException:
            holder.cancel()
            raise
        client._holder = holder
        return client

    async def close(self) -> None:
        self._done.set()
        if self._holder is not None:
            try:
                await asyncio.wait_for(self._holder, 5)
            except (TimeoutError, asyncio.CancelledError):
                self._holder.cancel()
