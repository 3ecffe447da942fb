"""The Anthropic Messages API: ``POST /v1/messages`` (SSE or JSON) and its error shape.

Stream: message_start, then per block content_block_start / content_block_delta (text_delta,
thinking_delta + signature_delta, input_json_delta) / content_block_stop, a ping after the first
block start, then message_delta (stop_reason, usage) and message_stop. Every event has an
``event:`` line: the SDKs skip data without one.
"""

from __future__ import annotations

from typing import Any

import msgspec
from orrery.modelserver.conversation import Conversation, text_of
from orrery.modelserver.reply import Block, Failure, Reply, Text, Thinking
from orrery.modelserver.sse import Frame, frame
from orrery.modelserver.wire import ErrorReply, WireFormat, retry_headers

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class _Tool(msgspec.Struct):
    name: str = ""


class _Message(msgspec.Struct):
    role: str = "user"
    content: str | list[dict[str, Any]] = ""


class _Request(msgspec.Struct):
    """The fields the server reads; everything else a client sends is accepted and ignored."""

    model: str = ""
    messages: list[_Message] = []
    system: str | list[dict[str, Any]] | None = None
    tools: list[_Tool] = []
    stream: bool = False


def _blocks(message: _Message) -> list[dict[str, Any]]:
    if isinstance(message.content, str):
        return [{"type": "text", "text": message.content}]
    return message.content


def parse(body: bytes) -> Conversation:
    request = msgspec.json.decode(body, type=_Request)
    last = request.messages[-1] if request.messages else None
    blocks = _blocks(last) if last is not None and last.role == "user" else []
    results = [b for b in blocks if b.get("type") == "tool_result"]
    return Conversation(
        api="anthropic",
        model=request.model,
        stream=request.stream,
        last_user_text=text_of([b for b in blocks if b.get("type") == "text"]),
        after_tool_result=bool(results),
        tool_result_text=text_of([b.get("content") for b in results]),
        tools=tuple(t.name for t in request.tools),
        system_text=text_of(request.system),
    )


def _usage(reply: Reply, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": reply.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _stop_reason(reply: Reply) -> str:
    return "tool_use" if reply.tool_calls else "end_turn"


def _signature(reply: Reply, index: int) -> str:
    # Opaque to clients, which send it back unchanged with the thinking block.
    return f"orrery-{reply.key}-{index}"


def _full_block(reply: Reply, index: int, block: Block) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"type": "text", "text": block.text}
    if isinstance(block, Thinking):
        return {"type": "thinking", "thinking": block.text, "signature": _signature(reply, index)}
    return {
        "type": "tool_use",
        "id": block.id_for("toolu_"),
        "name": block.name,
        "input": block.input,
    }


def _message(reply: Reply, content: list[dict[str, Any]], stop: str | None) -> dict[str, Any]:
    return {
        "id": reply.ident("msg_"),
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": _usage(reply, reply.output_tokens if stop else 1),
    }


def complete(reply: Reply, _conv: Conversation) -> dict[str, Any]:
    content = [_full_block(reply, i, b) for i, b in enumerate(reply.blocks)]
    return _message(reply, content, _stop_reason(reply))


def _start_block(block: Block) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"type": "text", "text": ""}
    if isinstance(block, Thinking):
        return {"type": "thinking", "thinking": "", "signature": ""}
    return {"type": "tool_use", "id": block.id_for("toolu_"), "name": block.name, "input": {}}


def _delta(block: Block, piece: str) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"type": "text_delta", "text": piece}
    if isinstance(block, Thinking):
        return {"type": "thinking_delta", "thinking": piece}
    return {"type": "input_json_delta", "partial_json": piece}


def _block_frames(reply: Reply, index: int, block: Block) -> list[Frame]:
    frames = [
        frame(
            {"type": "content_block_start", "index": index, "content_block": _start_block(block)},
            "content_block_start",
        )
    ]
    if index == 0:
        frames.append(frame({"type": "ping"}, "ping"))
    frames += [
        frame(
            {"type": "content_block_delta", "index": index, "delta": _delta(block, piece)},
            "content_block_delta",
            block.delay,
        )
        for piece in block.chunks
    ]
    if isinstance(block, Thinking):
        delta = {"type": "signature_delta", "signature": _signature(reply, index)}
        frames.append(
            frame(
                {"type": "content_block_delta", "index": index, "delta": delta},
                "content_block_delta",
            )
        )
    frames.append(frame({"type": "content_block_stop", "index": index}, "content_block_stop"))
    return frames


def stream(reply: Reply, _conv: Conversation) -> list[Frame]:
    frames = [
        frame({"type": "message_start", "message": _message(reply, [], None)}, "message_start")
    ]
    for index, block in enumerate(reply.blocks):
        frames += _block_frames(reply, index, block)
    if reply.failure is not None:
        # Mid-stream failures arrive as an `error` event, as an overload does on the real API.
        frames.append(frame(_error_body(reply.failure, reply.key), "error"))
        return frames
    delta = {"stop_reason": _stop_reason(reply), "stop_sequence": None}
    usage = _usage(reply, reply.output_tokens)
    frames.append(frame({"type": "message_delta", "delta": delta, "usage": usage}, "message_delta"))
    frames.append(frame({"type": "message_stop"}, "message_stop"))
    return frames


def _error_body(failure: Failure, key: str) -> dict[str, Any]:
    kind = failure.type or ERROR_TYPES.get(failure.status, "api_error")
    return {
        "type": "error",
        "error": {"type": kind, "message": failure.message},
        "request_id": f"req_{key}",
    }


def error(failure: Failure, key: str) -> ErrorReply:
    headers = {"request-id": f"req_{key}", **retry_headers(failure)}
    return ErrorReply(failure.status, _error_body(failure, key), headers)


WIRE = WireFormat(
    api="anthropic",
    parse=parse,
    stream=stream,
    complete=complete,
    error=error,
    request_id_header="request-id",
)
