"""The Anthropic Messages streaming events, decoded with msgspec, and the message they build.

The SDK's own stream turns every server-sent event into pydantic models and rebuilds a message
snapshot per event: about 150 µs of the event loop per token delta, which 50 sessions streaming
at once cannot afford (bench/sessions.py). Here an event is one msgspec decode into the few fields
Orrery reads (a few µs), and the final message is built once. Claude Code's stream-json output
carries the same events (``stream_event``), so its provider folds them with the same code.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from orrery.events.sessions import Block, TextBlock, ThinkingBlock, ToolUseBlock


class ContentBlock(msgspec.Struct, kw_only=True):
    type: str
    text: str = ""
    thinking: str = ""
    signature: str = ""
    id: str = ""
    name: str = ""
    input: dict[str, Any] = msgspec.field(default_factory=dict)


class Delta(msgspec.Struct, kw_only=True):
    type: str = ""  # a message_delta's delta has none
    text: str = ""
    thinking: str = ""
    signature: str = ""
    partial_json: str = ""
    stop_reason: str | None = None


class MessageStart(msgspec.Struct, kw_only=True):
    id: str = ""
    model: str = ""
    usage: dict[str, Any] = msgspec.field(default_factory=dict)


class ErrorBody(msgspec.Struct, kw_only=True):
    type: str = "api_error"
    message: str = ""


class StreamEvent(msgspec.Struct, kw_only=True):
    """Every event type in one shape: the fields each carries are optional."""

    type: str
    index: int = 0
    message: MessageStart | None = None
    content_block: ContentBlock | None = None
    delta: Delta | None = None
    usage: dict[str, Any] | None = None
    error: ErrorBody | None = None


_decode = msgspec.json.Decoder(StreamEvent).decode


def decode(data: str | bytes) -> StreamEvent:
    return _decode(data)


class StreamError(Exception):
    """An ``error`` event in the stream (the HTTP status was already 200)."""

    def __init__(self, error: ErrorBody) -> None:
        super().__init__(error.message or error.type)
        self.type = error.type
        self.message = error.message or error.type


class MessageBuilder:
    """Folds the events of one streamed message into its blocks, model and usage."""

    def __init__(self) -> None:
        self.model = ""
        self.stop_reason: str | None = None
        self.complete = False  # message_stop seen: a stream cut short is not a message
        self.usage: dict[str, Any] = {}
        self._blocks: dict[int, ContentBlock] = {}
        self._json: dict[int, list[str]] = {}

    def add(self, event: StreamEvent) -> Delta | None:
        """Fold one event in; returns the delta to show live, if it carries one."""
        match event.type:
            case "content_block_delta" if event.delta is not None:
                return self._delta(event.index, event.delta)
            case "content_block_start" if event.content_block is not None:
                self._blocks[event.index] = event.content_block
            case "message_start" if event.message is not None:
                self.model = event.message.model
                self.usage = dict(event.message.usage)
            case "message_delta":
                if event.delta is not None and event.delta.stop_reason:
                    self.stop_reason = event.delta.stop_reason
                # Cumulative counts: the last value of each wins (input counts may come here).
                self.usage.update({k: v for k, v in (event.usage or {}).items() if v is not None})
            case "message_stop":
                self.complete = True
            case "error" if event.error is not None:
                raise StreamError(event.error)
        return None

    def _delta(self, index: int, delta: Delta) -> Delta:
        block = self._blocks.setdefault(index, ContentBlock(type=_BLOCK_OF.get(delta.type, "")))
        if delta.type == "text_delta":
            block.text += delta.text
        elif delta.type == "thinking_delta":
            block.thinking += delta.thinking
        elif delta.type == "signature_delta":
            block.signature += delta.signature
        elif delta.type == "input_json_delta":
            self._json.setdefault(index, []).append(delta.partial_json)
        return delta

    def blocks(self) -> list[Block]:
        out: list[Block] = []
        for index in sorted(self._blocks):
            block = self._blocks[index]
            if block.type == "text":
                out.append(TextBlock(text=block.text))
            elif block.type == "thinking":
                out.append(ThinkingBlock(text=block.thinking))
            elif block.type == "tool_use":
                out.append(ToolUseBlock(id=block.id, name=block.name, input=self._input(index)))
        return out

    def _input(self, index: int) -> dict[str, Any]:
        raw = "".join(self._json.get(index, []))
        if not raw:
            return dict(self._blocks[index].input)
        try:
            value = json.loads(raw)
        except ValueError:
            return {"_unparsed": raw}
        return value if isinstance(value, dict) else {"_value": value}


_BLOCK_OF = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "signature_delta": "thinking",
    "input_json_delta": "tool_use",
}
