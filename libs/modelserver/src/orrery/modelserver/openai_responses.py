"""OpenAI Responses: ``POST /v1/responses`` (SSE or JSON), the wire Codex speaks.

Stream: response.created, response.in_progress, then per output item
response.output_item.added ... response.output_item.done, with in between
- a message: content_part.added, output_text.delta*, output_text.done, content_part.done;
- a function call: function_call_arguments.delta*, function_call_arguments.done;
- reasoning (thinking): reasoning_summary_part.added, reasoning_summary_text.delta*,
  reasoning_summary_text.done, reasoning_summary_part.done;
and last response.completed with usage (or response.failed). Every event has an ``event:``
line and a ``sequence_number``; there is no ``[DONE]``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from orrery.modelserver.conversation import Conversation, text_of
from orrery.modelserver.openai_chat import error
from orrery.modelserver.reply import Block, Reply, Text, Thinking
from orrery.modelserver.sse import Frame, frame
from orrery.modelserver.wire import WireFormat


class _Tool(msgspec.Struct):
    type: str = ""
    name: str | None = None
    tools: list[_Tool] = []  # a namespace's own tools (Codex groups some this way)


class _Item(msgspec.Struct):
    type: str = "message"
    role: str | None = None
    content: Any = None
    output: Any = None


class _Request(msgspec.Struct):
    model: str = ""
    input: str | list[_Item] = []
    instructions: Any = None
    tools: list[_Tool] = []
    stream: bool = False


def _tool_names(tools: list[_Tool]) -> tuple[str, ...]:
    names: list[str] = []
    for tool in tools:
        if tool.name is not None and tool.type != "namespace":
            names.append(tool.name)
        names += _tool_names(tool.tools)
    return tuple(names)


def parse(body: bytes) -> Conversation:
    request = msgspec.json.decode(body, type=_Request)
    items = (
        [_Item(role="user", content=request.input)]
        if isinstance(request.input, str)
        else request.input
    )
    # Tool results are items of their own: function_call_output, custom_tool_call_output, ...
    outputs: list[_Item] = []
    for item in reversed(items):
        if not item.type.endswith("_output"):
            break
        outputs.insert(0, item)
    last = items[-1] if items else None
    system = [i.content for i in items if i.type == "message" and i.role in ("system", "developer")]
    return Conversation(
        api="openai_responses",
        model=request.model,
        stream=request.stream,
        last_user_text=text_of(last.content)
        if last is not None and last.type == "message" and last.role == "user"
        else "",
        after_tool_result=bool(outputs),
        tool_result_text=text_of([i.output for i in outputs]),
        tools=_tool_names(request.tools),
        system_text=text_of([request.instructions, *system]),
    )


def _usage(reply: Reply) -> dict[str, Any]:
    return {
        "input_tokens": reply.input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": reply.output_tokens,
        "output_tokens_details": {"reasoning_tokens": reply.thinking_tokens},
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }


def _response(reply: Reply, status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": reply.ident("resp_"),
        "object": "response",
        "created_at": reply.created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": reply.model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": _usage(reply) if status == "completed" else None,
        "user": None,
        "metadata": {},
    }


def _item_id(reply: Reply, block: Block, index: int) -> str:
    prefix = "msg_" if isinstance(block, Text) else "rs_" if isinstance(block, Thinking) else "fc_"
    return f"{prefix}{reply.key}{index:03d}"


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _item(reply: Reply, block: Block, index: int, done: bool) -> dict[str, Any]:
    status = "completed" if done else "in_progress"
    item_id = _item_id(reply, block, index)
    if isinstance(block, Text):
        content = [_text_part(block.text)] if done else []
        return {
            "id": item_id,
            "type": "message",
            "status": status,
            "content": content,
            "role": "assistant",
        }
    if isinstance(block, Thinking):
        summary = [{"type": "summary_text", "text": block.text}] if done else []
        return {"id": item_id, "type": "reasoning", "summary": summary}
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "arguments": block.arguments if done else "",
        "call_id": block.id_for("call_"),
        "name": block.name,
    }


def complete(reply: Reply, _conv: Conversation) -> dict[str, Any]:
    return _response(
        reply, "completed", [_item(reply, b, i, True) for i, b in enumerate(reply.blocks)]
    )


class _Events:
    """Numbers the events as they are planned: ``sequence_number`` counts from 0."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []

    def add(self, kind: str, delay: float = 0.0, /, **fields: Any) -> None:
        payload = {"type": kind, "sequence_number": len(self.frames), **fields}
        self.frames.append(frame(payload, kind, delay))


def _block_events(events: _Events, reply: Reply, block: Block, index: int) -> None:
    where: dict[str, Any] = {"item_id": _item_id(reply, block, index), "output_index": index}
    events.add(
        "response.output_item.added", output_index=index, item=_item(reply, block, index, False)
    )
    if isinstance(block, Text):
        at: dict[str, Any] = {**where, "content_index": 0}
        events.add("response.content_part.added", **at, part=_text_part(""))
        for piece in block.chunks:
            events.add("response.output_text.delta", block.delay, **at, delta=piece, logprobs=[])
        events.add("response.output_text.done", **at, text=block.text, logprobs=[])
        events.add("response.content_part.done", **at, part=_text_part(block.text))
    elif isinstance(block, Thinking):
        at = {**where, "summary_index": 0}
        events.add("response.reasoning_summary_part.added", **at, part=_summary(""))
        for piece in block.chunks:
            events.add("response.reasoning_summary_text.delta", block.delay, **at, delta=piece)
        events.add("response.reasoning_summary_text.done", **at, text=block.text)
        events.add("response.reasoning_summary_part.done", **at, part=_summary(block.text))
    else:
        for piece in block.chunks:
            events.add("response.function_call_arguments.delta", block.delay, **where, delta=piece)
        events.add(
            "response.function_call_arguments.done",
            **where,
            name=block.name,
            arguments=block.arguments,
        )
    events.add(
        "response.output_item.done", output_index=index, item=_item(reply, block, index, True)
    )


def _summary(text: str) -> dict[str, Any]:
    return {"type": "summary_text", "text": text}


def stream(reply: Reply, _conv: Conversation) -> list[Frame]:
    events = _Events()
    events.add("response.created", response=_response(reply, "in_progress", []))
    events.add("response.in_progress", response=_response(reply, "in_progress", []))
    for index, block in enumerate(reply.blocks):
        _block_events(events, reply, block, index)
    output = [_item(reply, b, i, True) for i, b in enumerate(reply.blocks)]
    if reply.failure is not None:
        failed = _response(reply, "failed", output)
        failed["error"] = {
            "code": reply.failure.code or "server_error",
            "message": reply.failure.message,
        }
        events.add("response.failed", response=failed)
    else:
        events.add("response.completed", response=_response(reply, "completed", output))
    return events.frames


WIRE = WireFormat(
    api="openai_responses", parse=parse, stream=stream, complete=complete, error=error
)
