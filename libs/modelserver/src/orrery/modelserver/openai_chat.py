"""OpenAI Chat Completions: ``POST /v1/chat/completions`` (SSE or JSON) and OpenAI's error shape.

Stream: ``data:`` lines only (no ``event:``), ``chat.completion.chunk`` objects: a first delta
with the role, ``delta.content`` pieces, ``delta.tool_calls`` (id, type and name once, then
argument pieces), a last delta with ``finish_reason``, a usage chunk with empty ``choices`` when
``stream_options.include_usage`` is set, then ``data: [DONE]``. Thinking has no place in this
format and is left out.
"""

from __future__ import annotations

from typing import Any

import msgspec
from orrery.modelserver.conversation import Conversation, text_of
from orrery.modelserver.reply import Failure, Reply, Text, ToolCall
from orrery.modelserver.sse import Frame, frame
from orrery.modelserver.wire import ErrorReply, WireFormat, retry_headers

FINGERPRINT = "fp_orrery"
DONE = Frame(0.0, b"data: [DONE]\n\n")


class _Named(msgspec.Struct):
    name: str = ""


class _Tool(msgspec.Struct):
    type: str = "function"
    function: _Named | None = None
    custom: _Named | None = None


class _Message(msgspec.Struct):
    role: str = "user"
    content: Any = None


class _StreamOptions(msgspec.Struct):
    include_usage: bool = False


class _Request(msgspec.Struct):
    model: str = ""
    messages: list[_Message] = []
    tools: list[_Tool] = []
    stream: bool = False
    stream_options: _StreamOptions | None = None


def _tool_names(tools: list[_Tool]) -> tuple[str, ...]:
    return tuple(n.name for t in tools for n in (t.function, t.custom) if n is not None)


def parse(body: bytes) -> Conversation:
    request = msgspec.json.decode(body, type=_Request)
    messages = request.messages
    trailing_tools: list[_Message] = []
    for message in reversed(messages):
        if message.role != "tool":
            break
        trailing_tools.insert(0, message)
    last = messages[-1] if messages else None
    return Conversation(
        api="openai_chat",
        model=request.model,
        stream=request.stream,
        last_user_text=text_of(last.content) if last is not None and last.role == "user" else "",
        after_tool_result=bool(trailing_tools),
        tool_result_text=text_of([m.content for m in trailing_tools]),
        tools=_tool_names(request.tools),
        system_text=text_of([m.content for m in messages if m.role in ("system", "developer")]),
        include_usage=request.stream_options is not None and request.stream_options.include_usage,
    )


def usage(reply: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _finish_reason(reply: Reply) -> str:
    return "tool_calls" if reply.tool_calls else "stop"


def _envelope(reply: Reply, obj: str) -> dict[str, Any]:
    return {
        "id": reply.ident("chatcmpl-"),
        "object": obj,
        "created": reply.created,
        "model": reply.model,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


def complete(reply: Reply, _conv: Conversation) -> dict[str, Any]:
    text = "".join(b.text for b in reply.blocks if isinstance(b, Text))
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text or None,
        "refusal": None,
        "annotations": [],
    }
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id_for("call_"),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in reply.tool_calls
        ]
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": _finish_reason(reply),
    }
    return {**_envelope(reply, "chat.completion"), "choices": [choice], "usage": usage(reply)}


def _tool_call_deltas(index: int, call: ToolCall) -> list[tuple[dict[str, Any], float]]:
    head = {
        "index": index,
        "id": call.id_for("call_"),
        "type": "function",
        "function": {"name": call.name, "arguments": ""},
    }
    pieces = [{"index": index, "function": {"arguments": piece}} for piece in call.chunks]
    return [({"tool_calls": [head]}, 0.0)] + [({"tool_calls": [p]}, call.delay) for p in pieces]


def _deltas(reply: Reply) -> list[tuple[dict[str, Any], float]]:
    deltas: list[tuple[dict[str, Any], float]] = [
        ({"role": "assistant", "content": "", "refusal": None}, 0.0)
    ]
    calls = 0
    for block in reply.blocks:
        if isinstance(block, Text):
            deltas += [({"content": piece}, block.delay) for piece in block.chunks]
        elif isinstance(block, ToolCall):
            deltas += _tool_call_deltas(calls, block)
            calls += 1
    return deltas


def stream(reply: Reply, conv: Conversation) -> list[Frame]:
    envelope = _envelope(reply, "chat.completion.chunk")
    if conv.include_usage:
        envelope["usage"] = None  # every chunk but the last carries a null usage

    def chunk(delta: dict[str, Any], finish: str | None, delay: float = 0.0) -> Frame:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return frame({**envelope, "choices": [choice]}, delay=delay)

    frames = [chunk(delta, None, delay) for delta, delay in _deltas(reply)]
    if reply.failure is not None:
        frames.append(frame(error_body(reply.failure)))
        return frames
    frames.append(chunk({}, _finish_reason(reply)))
    if conv.include_usage:
        frames.append(frame({**envelope, "choices": [], "usage": usage(reply)}))
    frames.append(DONE)
    return frames


def _error_type(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def error_body(failure: Failure) -> dict[str, Any]:
    return {
        "error": {
            "message": failure.message,
            "type": failure.type or _error_type(failure.status),
            "param": None,
            "code": failure.code,
        }
    }


def error(failure: Failure, key: str) -> ErrorReply:
    headers = {"x-request-id": f"req_{key}", **retry_headers(failure)}
    return ErrorReply(failure.status, error_body(failure), headers)


WIRE = WireFormat(
    api="openai_chat",
    parse=parse,
    stream=stream,
    complete=complete,
    error=error,
    request_id_header="x-request-id",
)
