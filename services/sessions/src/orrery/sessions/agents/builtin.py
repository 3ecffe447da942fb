"""The built-in agent: a tool loop on the ``anthropic`` SDK (or the ``openai`` SDK for
OpenAI-compatible endpoints, self-hosted models included), with the worktree tools.

Model: the session's ``settings.model``; ``openai/<model>`` selects the OpenAI-compatible path.
Endpoints and keys come from the process environment the runner builds for the session
(``ANTHROPIC_BASE_URL``/``ANTHROPIC_API_KEY``, ``OPENAI_BASE_URL``/``OPENAI_API_KEY``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import anthropic
import httpx_sse
import msgspec
import openai
from orrery.events.sessions import (
    Block,
    MessageRecorded,
    SystemBlock,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
)
from orrery.sessions.agents import anthropic_stream
from orrery.sessions.agents.anthropic_stream import MessageBuilder
from orrery.sessions.agents.base import AgentIO, ProviderError, Turn, TurnResult
from orrery.sessions.agents.orrery_tools import OrreryTools, orrery_tools
from orrery.sessions.agents.tools import MUTATING, SCHEMAS, Tools

if TYPE_CHECKING:
    import httpx

DEFAULT_MODEL = "claude-sonnet-4-6"
MAX_TOKENS = 8192
MAX_STEPS = 50
SYSTEM = (
    "You are a coding agent working in a git worktree. Use the tools to read and change files"
    " and to run commands; paths are relative to the worktree. Be brief."
)
INTERRUPTED = "the run was interrupted before this tool returned"


class BuiltinAgent:
    """One SDK client per endpoint and key, kept across tasks: building one costs a TLS context
    (tens of milliseconds of the event loop), which 50 starting tasks would pay 50 times. The
    clients use the SDKs' aiohttp transport: reading a streamed response through it costs about
    half of what the default httpx transport does per event (bench/README.md, sessions)."""

    name = "builtin"

    def __init__(self) -> None:
        self._anthropic: dict[tuple[str, str], anthropic.AsyncAnthropic] = {}
        self._openai: dict[tuple[str, str], openai.AsyncOpenAI] = {}

    async def reap(self, idle_s: float) -> None:
        return None  # no processes: SDK clients are cheap to keep

    async def close(self) -> None:
        clients: list[anthropic.AsyncAnthropic | openai.AsyncOpenAI] = [
            *self._anthropic.values(),
            *self._openai.values(),
        ]
        self._anthropic.clear()
        self._openai.clear()
        for client in clients:
            await client.close()

    def anthropic_client(self, env: Mapping[str, str]) -> anthropic.AsyncAnthropic:
        key = (env.get("ANTHROPIC_BASE_URL") or "", env.get("ANTHROPIC_API_KEY") or "none")
        if key not in self._anthropic:
            self._anthropic[key] = anthropic.AsyncAnthropic(
                api_key=key[1],
                base_url=key[0] or None,
                max_retries=2,
                http_client=anthropic.DefaultAioHttpClient(),
            )
        return self._anthropic[key]

    def openai_client(self, env: Mapping[str, str]) -> openai.AsyncOpenAI:
        key = (env.get("OPENAI_BASE_URL") or "", env.get("OPENAI_API_KEY") or "none")
        if key not in self._openai:
            self._openai[key] = openai.AsyncOpenAI(
                api_key=key[1],
                base_url=key[0] or None,
                max_retries=2,
                http_client=openai.DefaultAioHttpClient(),
            )
        return self._openai[key]

    async def run(self, turn: Turn, io: AgentIO) -> TurnResult:
        model = turn.settings.model or DEFAULT_MODEL
        async with orrery_tools(turn.mcp) as orrery:
            if model.startswith("openai/"):
                oa = self.openai_client(turn.env)
                loop = _OpenAILoop(turn, io, model.removeprefix("openai/"), orrery)
                return await loop.run(oa)
            return await _AnthropicLoop(turn, io, model, orrery).run(
                self.anthropic_client(turn.env)
            )


class _Loop:
    def __init__(self, turn: Turn, io: AgentIO, model: str, orrery: OrreryTools) -> None:
        self.turn, self.io, self.model = turn, io, model
        self.tools = Tools(turn.cwd, turn.env)
        self.orrery = orrery
        self.schemas = [*SCHEMAS, *orrery.schemas]  # the worktree's tools, then Orrery's
        self.usage = Usage()
        self.calls: list[dict[str, Any]] = []
        self.step = 0
        self.final_text = ""
        self.allowed_for_session: set[str] = set()

    def message_id(self) -> str:
        self.step += 1
        return f"{self.turn.run_id or self.turn.task_id}:{self.step}"

    def add_usage(self, raw: dict[str, Any], inp: int, out: int, cr: int = 0, cw: int = 0) -> None:
        self.calls.append(raw)
        u = self.usage
        self.usage = Usage(
            input_tokens=u.input_tokens + inp,
            output_tokens=u.output_tokens + out,
            cache_read_tokens=u.cache_read_tokens + cr,
            cache_write_tokens=u.cache_write_tokens + cw,
        )

    async def call_tools(self, uses: list[ToolUseBlock]) -> list[Block]:
        results: list[Block] = []
        for use in uses:
            allowed = True
            on_orrery = use.name in self.orrery.names
            asks = self.orrery.asks(use.input) if on_orrery else use.name in MUTATING
            needs_ask = self.turn.settings.permission_mode == "ask" and asks
            if needs_ask and use.name not in self.allowed_for_session:
                allowed = await self.io.permission(use.name, use.input)
            if not allowed:
                results.append(
                    ToolResultBlock(
                        tool_use_id=use.id, content="permission denied by the user", is_error=True
                    )
                )
                continue
            if on_orrery:
                result = await self.orrery.call(use.name, use.input)
            else:
                result = await self.tools.run(use.name, use.input)
            results.append(
                ToolResultBlock(
                    tool_use_id=use.id, content=result.content, is_error=result.is_error
                )
            )
        return results

    async def take_steered(self) -> list[str]:
        """Prompts steered in during the last call: recorded as the user's, sent with the next."""
        prompts = self.io.steered()
        if prompts:
            await self.io.message(
                self.message_id(), "user", [TextBlock(text=p) for p in prompts], self.model
            )
        return prompts

    def result(self) -> TurnResult:
        return TurnResult(
            model=self.model,
            usage=self.usage,
            raw_usage={"calls": self.calls},
            final_text=self.final_text,
        )


# --- Anthropic Messages ---------------------------------------------------------------------


def to_anthropic(history: Sequence[MessageRecorded]) -> list[dict[str, Any]]:
    """The conversation in the Messages API's shape: roles alternate, every tool use answered
    (a run cut short gets an error result), and the last message is the user's."""
    out: list[dict[str, Any]] = []
    for message in history:
        if message.role == "system":
            continue
        content = [c for b in message.blocks if (c := _anthropic_block(b)) is not None]
        if not content:
            continue
        if out and out[-1]["role"] == message.role:
            out[-1]["content"].extend(content)
        else:
            out.append({"role": message.role, "content": content})
    fixed: list[dict[str, Any]] = []
    for i, entry in enumerate(out):
        fixed.append(entry)
        if entry["role"] != "assistant":
            continue
        asked = [b["id"] for b in entry["content"] if b["type"] == "tool_use"]
        following = out[i + 1] if i + 1 < len(out) else None
        answered = {
            b.get("tool_use_id")
            for b in (following or {}).get("content", [])
            if isinstance(b, dict)
        }
        missing = [
            {"type": "tool_result", "tool_use_id": t, "content": INTERRUPTED, "is_error": True}
            for t in asked
            if t not in answered
        ]
        if missing:
            if following is not None and following["role"] == "user":
                following["content"][:0] = missing
            else:
                fixed.append({"role": "user", "content": missing})
    if not fixed or fixed[-1]["role"] != "user":
        fixed.append({"role": "user", "content": [{"type": "text", "text": "Continue."}]})
    return fixed


def _anthropic_block(block: Block) -> dict[str, Any] | None:
    match block:
        case TextBlock(text=text) | SystemBlock(text=text):
            return {"type": "text", "text": text} if text else None
        case ToolUseBlock(id=i, name=n, input=inp):
            return {"type": "tool_use", "id": i, "name": n, "input": inp}
        case ToolResultBlock(tool_use_id=t, content=c, is_error=e):
            return {"type": "tool_result", "tool_use_id": t, "content": c, "is_error": e}
    return None  # thinking is not sent back (it would need its signature)


class _AnthropicLoop(_Loop):
    async def run(self, client: anthropic.AsyncAnthropic) -> TurnResult:
        messages = to_anthropic(self.turn.history)
        try:
            steered: list[str] = []
            while self.step < MAX_STEPS:
                if steered:
                    text = [{"type": "text", "text": p} for p in steered]
                    if messages and messages[-1]["role"] == "user":
                        messages[-1]["content"].extend(text)
                    else:
                        messages.append({"role": "user", "content": text})
                uses = await self._one_call(client, messages)
                steered = await self.take_steered()
                if not uses and not steered:
                    break
                if uses:
                    results = await self.call_tools(uses)
                    await self.io.message(self.message_id(), "user", results, self.model)
                    messages.append(
                        {"role": "user", "content": [_anthropic_block(b) for b in results]}
                    )
        except anthropic.APIStatusError as exc:
            raise ProviderError(f"model.http_{exc.status_code}", _api_message(exc)) from exc
        except anthropic_stream.StreamError as exc:
            raise ProviderError(f"model.{exc.type}", exc.message) from exc
        except (anthropic.APIConnectionError, httpx_sse.SSEError, msgspec.DecodeError) as exc:
            raise ProviderError("model.unreachable", f"cannot read the model API: {exc}") from exc
        return self.result()

    async def _one_call(
        self, client: anthropic.AsyncAnthropic, messages: list[dict[str, Any]]
    ) -> list[ToolUseBlock]:
        message_id = self.message_id()
        built = MessageBuilder()
        async with client.messages.with_streaming_response.create(
            model=self.model,
            max_tokens=MAX_TOKENS,
            system=SYSTEM,
            messages=messages,  # type: ignore[arg-type]
            tools=self.schemas,  # type: ignore[arg-type]
            stream=True,
        ) as response:
            # httpx-sse reads any httpx-shaped response; the SDK's (httpx2) is one.
            source = httpx_sse.EventSource(cast("httpx.Response", response.http_response))
            async for sse in source.aiter_sse():
                if not sse.data or sse.event == "ping":
                    continue
                delta = built.add(anthropic_stream.decode(sse.data))
                if delta is None:
                    continue
                if delta.type == "text_delta":
                    await self.io.delta(message_id, "text", delta.text)
                elif delta.type == "thinking_delta":
                    await self.io.delta(message_id, "thinking", delta.thinking)
                elif delta.type == "input_json_delta":
                    await self.io.delta(message_id, "tool_input", delta.partial_json)
        if not built.complete:
            raise ProviderError("model.incomplete", "the model's stream ended before message_stop")
        usage = built.usage
        self.add_usage(
            usage,
            usage.get("input_tokens") or 0,
            usage.get("output_tokens") or 0,
            usage.get("cache_read_input_tokens") or 0,
            usage.get("cache_creation_input_tokens") or 0,
        )
        blocks = built.blocks()
        uses = [b for b in blocks if isinstance(b, ToolUseBlock)]
        texts = [b.text for b in blocks if isinstance(b, TextBlock)]
        if texts:
            self.final_text = texts[-1]
        await self.io.message(message_id, "assistant", blocks, built.model or self.model)
        messages.append(
            {"role": "assistant", "content": [c for b in blocks if (c := _anthropic_block(b))]}
        )
        return uses


def _api_message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc)


# --- OpenAI-compatible Chat Completions -----------------------------------------------------


def to_openai(history: Sequence[MessageRecorded]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    for message in history:
        texts = [b.text for b in message.blocks if isinstance(b, TextBlock)]
        if message.role == "assistant":
            calls = [
                {
                    "id": b.id,
                    "type": "function",
                    "function": {"name": b.name, "arguments": json.dumps(b.input)},
                }
                for b in message.blocks
                if isinstance(b, ToolUseBlock)
            ]
            entry: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts) or None}
            if calls:
                entry["tool_calls"] = calls
            out.append(entry)
        elif message.role == "user":
            for b in message.blocks:
                if isinstance(b, ToolResultBlock):
                    out.append(
                        {"role": "tool", "tool_call_id": b.tool_use_id, "content": b.content}
                    )
            if texts:
                out.append({"role": "user", "content": "\n".join(texts)})
    return out


class _OpenAILoop(_Loop):
    async def run(self, client: openai.AsyncOpenAI) -> TurnResult:
        tools = [
            {
                "type": "function",
                "function": {
                    "name": s["name"],
                    "description": s["description"],
                    "parameters": s["input_schema"],
                },
            }
            for s in self.schemas
        ]
        messages = to_openai(self.turn.history)
        try:
            steered: list[str] = []
            while self.step < MAX_STEPS:
                for prompt in steered:
                    messages.append({"role": "user", "content": prompt})
                uses = await self._one_call(client, messages, tools)
                steered = await self.take_steered()
                if not uses and not steered:
                    break
                if not uses:
                    continue
                results = await self.call_tools(uses)
                await self.io.message(self.message_id(), "user", results, self.model)
                for r in results:
                    assert isinstance(r, ToolResultBlock)
                    messages.append(
                        {"role": "tool", "tool_call_id": r.tool_use_id, "content": r.content}
                    )
        except openai.APIStatusError as exc:
            raise ProviderError(f"model.http_{exc.status_code}", _api_message(exc)) from exc
        except openai.APIConnectionError as exc:
            raise ProviderError("model.unreachable", f"cannot reach the model API: {exc}") from exc
        return self.result()

    async def _one_call(
        self,
        client: openai.AsyncOpenAI,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
    ) -> list[ToolUseBlock]:
        message_id = self.message_id()
        stream = await client.chat.completions.create(  # type: ignore[call-overload]
            model=self.model,
            messages=messages,
            tools=tools,
            stream=True,
            stream_options={"include_usage": True},
        )
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        async for chunk in stream:
            if chunk.usage is not None:
                self.add_usage(
                    chunk.usage.model_dump(),
                    chunk.usage.prompt_tokens,
                    chunk.usage.completion_tokens,
                )
            for choice in chunk.choices:
                delta = choice.delta
                if delta.content:
                    text.append(delta.content)
                    await self.io.delta(message_id, "text", delta.content)
                for call in delta.tool_calls or []:
                    slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                    if call.id:
                        slot["id"] = call.id
                    if call.function and call.function.name:
                        slot["name"] = call.function.name
                    if call.function and call.function.arguments:
                        slot["arguments"] += call.function.arguments
                        await self.io.delta(message_id, "tool_input", call.function.arguments)
        blocks: list[Block] = []
        if text:
            self.final_text = "".join(text)
            blocks.append(TextBlock(text=self.final_text))
        uses = []
        for slot in calls.values():
            try:
                arguments = json.loads(slot["arguments"] or "{}")
            except ValueError:
                arguments = {"_unparsed": slot["arguments"]}
            uses.append(ToolUseBlock(id=slot["id"], name=slot["name"], input=arguments))
        blocks += uses
        await self.io.message(message_id, "assistant", blocks, self.model)
        entry: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
        if uses:
            entry["tool_calls"] = [
                {
                    "id": u.id,
                    "type": "function",
                    "function": {"name": u.name, "arguments": json.dumps(u.input)},
                }
                for u in uses
            ]
        messages.append(entry)
        return uses
