"""Gemini: ``POST /v1beta/models/{model}:streamGenerateContent`` and ``:generateContent``.

Each streamed record is a whole GenerateContentResponse: ``candidates[0].content.parts`` with
``text`` (``thought: true`` for thinking) or a whole ``functionCall`` (Gemini does not stream
arguments), ``usageMetadata``, ``modelVersion`` and ``responseId``; the last record carries
``finishReason: STOP``. With ``alt=sse`` records are single ``data:`` lines ended by a blank
line (no ``event:`` line: Google's SDKs match ``^data: ``); without it the stream is one JSON
array written piece by piece.
"""

from __future__ import annotations

from typing import Any

import msgspec
from orrery.modelserver.conversation import Conversation
from orrery.modelserver.reply import Block, Failure, Reply, Text, Thinking
from orrery.modelserver.sse import Frame, sse
from orrery.modelserver.wire import ErrorReply, WireFormat, retry_headers

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}
END = b"\r\n\r\n"


class _Part(msgspec.Struct, rename="camel"):
    text: str | None = None
    thought: bool | None = None
    function_response: dict[str, Any] | None = None


class _Content(msgspec.Struct):
    role: str = "user"
    parts: list[_Part] = []


class _Declaration(msgspec.Struct):
    name: str = ""


class _Tool(msgspec.Struct, rename="camel"):
    function_declarations: list[_Declaration] = []


class _Request(msgspec.Struct, rename="camel"):
    contents: list[_Content] = []
    system_instruction: _Content | None = None
    tools: list[_Tool] = []


def _texts(content: _Content | None) -> str:
    if content is None:
        return ""
    return "\n".join(p.text for p in content.parts if p.text and not p.thought)


def parse(body: bytes) -> Conversation:
    """The request; the model and whether to stream come from the URL, set by the caller."""
    request = msgspec.json.decode(body, type=_Request)
    last = request.contents[-1] if request.contents else None
    trailing = last if last is not None and last.role != "model" else None
    results = (
        [p.function_response for p in trailing.parts if p.function_response] if trailing else []
    )
    return Conversation(
        api="gemini",
        model="",
        stream=False,
        last_user_text=_texts(trailing),
        after_tool_result=bool(results),
        tool_result_text="\n".join(msgspec.json.encode(r).decode() for r in results),
        tools=tuple(d.name for t in request.tools for d in t.function_declarations),
        system_text=_texts(request.system_instruction),
    )


def _usage(reply: Reply, final: bool) -> dict[str, Any]:
    prompt = {
        "promptTokenCount": reply.input_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": reply.input_tokens}],
    }
    if not final:
        return {**prompt, "totalTokenCount": reply.input_tokens}
    thoughts = min(reply.thinking_tokens, reply.output_tokens)
    usage = {
        "promptTokenCount": reply.input_tokens,
        "candidatesTokenCount": reply.output_tokens - thoughts,
        "totalTokenCount": reply.input_tokens + reply.output_tokens,
        "promptTokensDetails": prompt["promptTokensDetails"],
    }
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _record(reply: Reply, parts: list[dict[str, Any]], final: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if final:
        candidate["finishReason"] = "STOP"
    return {
        "candidates": [candidate],
        "usageMetadata": _usage(reply, final),
        "modelVersion": reply.model,
        "responseId": reply.key,
    }


def _part(block: Block, text: str) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"text": text}
    if isinstance(block, Thinking):
        return {"text": text, "thought": True}
    return {"functionCall": {"name": block.name, "args": block.input}}


def _pieces(block: Block) -> list[tuple[dict[str, Any], float]]:
    if isinstance(block, Text | Thinking):
        return [(_part(block, piece), block.delay) for piece in block.chunks]
    return [(_part(block, ""), block.delay)]


def records(reply: Reply) -> list[tuple[dict[str, Any], float]]:
    """The streamed records with the delay before each; the last one finishes the turn."""
    pieces = [piece for block in reply.blocks for piece in _pieces(block)]
    # A failed turn never finishes: no STOP, an error record instead.
    last = len(pieces) - 1 if reply.failure is None else -1
    planned = [(_record(reply, [part], i == last), delay) for i, (part, delay) in enumerate(pieces)]
    if reply.failure is not None:
        planned.append((error_body(reply.failure), 0.0))
    return planned


def stream(reply: Reply, _conv: Conversation) -> list[Frame]:
    return [Frame(delay, sse(record, end=END)) for record, delay in records(reply)]


def json_array_stream(reply: Reply) -> list[Frame]:
    """``streamGenerateContent`` without ``alt=sse``: one JSON array, sent record by record."""
    planned = records(reply)
    frames = [
        Frame(delay, (b"[" if i == 0 else b",\r\n") + msgspec.json.encode(record))
        for i, (record, delay) in enumerate(planned)
    ]
    return [*frames, Frame(0.0, b"]")]


def complete(reply: Reply, _conv: Conversation) -> dict[str, Any]:
    parts = [_part(b, b.text if isinstance(b, Text | Thinking) else "") for b in reply.blocks]
    return _record(reply, parts, True)


def error_body(failure: Failure) -> dict[str, Any]:
    status = STATUS_NAMES.get(failure.status, "INTERNAL" if failure.status >= 500 else "UNKNOWN")
    return {"error": {"code": failure.status, "message": failure.message, "status": status}}


def error(failure: Failure, _key: str) -> ErrorReply:
    return ErrorReply(failure.status, error_body(failure), retry_headers(failure))


WIRE = WireFormat(api="gemini", parse=parse, stream=stream, complete=complete, error=error)
