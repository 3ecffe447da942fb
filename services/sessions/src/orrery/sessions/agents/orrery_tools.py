"""Orrery's MCP server as tools of the built-in agent: for one turn, a client session on the
gateway's ``/mcp`` with the session's token (the official ``mcp`` SDK), its tools offered to the
model next to read/write/edit/bash/glob/grep, and each call passed through. When the server
cannot be reached, the turn goes on without them (logged, never fatal)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from orrery.sessions.agents.base import McpAccess
from orrery.sessions.agents.tools import ToolResult, clip

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 10.0
# Tools that only read: never asked about, whatever the permission mode.
READ_ONLY = ("_get", "_list", "_tail", "_health", "_logs", "_open_app")


@dataclass
class OrreryTools:
    schemas: list[dict[str, Any]] = field(default_factory=list)
    session: Any = None

    @property
    def names(self) -> set[str]:
        return {s["name"] for s in self.schemas}

    @staticmethod
    def asks(name: str) -> bool:
        """Whether a call needs the user's permission in permission mode ``ask``."""
        return not any(name.endswith(suffix) or f"{suffix}_" in name for suffix in READ_ONLY)

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        try:
            result = await self.session.call_tool(name, dict(arguments))
        except Exception as exc:  # noqa: BLE001 - any client failure: the model hears of it
            return ToolResult(f"Orrery's MCP server: {type(exc).__name__}: {exc}", is_error=True)
        text = "\n".join(str(getattr(c, "text", "")) for c in result.content)
        return ToolResult(clip(text or "(no output)"), is_error=bool(result.is_error))


@contextlib.asynccontextmanager
async def orrery_tools(access: McpAccess | None) -> AsyncIterator[OrreryTools]:
    """Orrery's tools for one turn. The client session lives in a task of its own (the SDK's task
    groups must be entered and left in one task), which this ends when the turn is over."""
    if access is None or not await _reachable(access):
        yield OrreryTools()
        return
    ready: asyncio.Future[OrreryTools] = asyncio.get_running_loop().create_future()
    done = asyncio.Event()

    async def hold() -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                ready.set_result(await _connect(stack, access))
                await done.wait()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - transport, protocol or server: said below
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.debug("Orrery's MCP client ended: %r", exc)

    holder = asyncio.create_task(hold(), name="orrery-mcp")
    try:
        tools = await asyncio.wait_for(asyncio.shield(ready), CONNECT_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any failure: the turn runs without the tools
        log.warning("the built-in agent runs without Orrery's MCP server: %r", exc)
        tools = OrreryTools()
    try:
        yield tools
    finally:
        done.set()
        try:
            await asyncio.wait_for(holder, 5)
        except (TimeoutError, asyncio.CancelledError):
            holder.cancel()


async def _reachable(access: McpAccess) -> bool:
    """A quick look first: with no gateway at the URL (a service run alone, a test), the SDK's
    client would wait for its timeout on every turn."""
    import httpx2  # noqa: PLC0415 - with the SDK, on the first turn

    try:
        async with httpx2.AsyncClient(timeout=2) as http:
            await http.get(access.url)
    except httpx2.HTTPError as exc:
        if access.url not in _unreachable:  # said once, not on every turn
            _unreachable.add(access.url)
            log.warning("Orrery's MCP server at %s is not reachable: %r", access.url, exc)
        return False
    _unreachable.discard(access.url)
    return True


_unreachable: set[str] = set()


async def _connect(stack: contextlib.AsyncExitStack, access: McpAccess) -> OrreryTools:
    import httpx2  # noqa: PLC0415 - the SDK (~1 s to import) loads with the first turn
    from mcp import ClientSession  # noqa: PLC0415
    from mcp.client.streamable_http import streamable_http_client  # noqa: PLC0415

    http = await stack.enter_async_context(httpx2.AsyncClient(headers=access.headers, timeout=60))
    streams = await stack.enter_async_context(streamable_http_client(access.url, http_client=http))
    session = await stack.enter_async_context(ClientSession(streams[0], streams[1]))
    async with asyncio.timeout(CONNECT_TIMEOUT_S):
        await session.initialize()
        listed = await session.list_tools()
    schemas = [
        {"name": t.name, "description": t.description or "", "input_schema": t.input_schema}
        for t in listed.tools
    ]
    return OrreryTools(schemas=schemas, session=session)
