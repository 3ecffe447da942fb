"""From a request to a planned reply: pick the rule, chunk the text, count the tokens.

Pure and deterministic: ids are derived from the request body rather than drawn at random, so
the same request always gets the same reply, and two turns of one conversation (whose bodies
differ) never share a tool-call id.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

import msgspec
from orrery.modelserver.conversation import Conversation
from orrery.modelserver.script import Match, ReplyItem, Rule, Script

CHARS_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class Text:
    text: str
    chunks: tuple[str, ...]
    delay: float  # seconds before each chunk


@dataclass(frozen=True, slots=True)
class Thinking:
    text: str
    chunks: tuple[str, ...]
    delay: float


@dataclass(frozen=True, slots=True)
class ToolCall:
    key: str  # per-call digest; each wire format prefixes it its own way
    name: str
    input: dict[str, Any]
    arguments: str  # ``input`` as JSON text
    chunks: tuple[str, ...]  # ``arguments`` in pieces
    delay: float
    fixed_id: str | None = None

    def id_for(self, prefix: str) -> str:
        return self.fixed_id or prefix + self.key


Block = Text | Thinking | ToolCall


@dataclass(frozen=True, slots=True)
class Failure:
    status: int
    message: str
    type: str | None = None
    code: str | None = None
    retry: bool | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    rule_index: int
    model: str
    key: str  # request digest, for message / response ids
    created: int  # unix seconds, for the formats that carry a timestamp
    blocks: tuple[Block, ...]
    failure: Failure | None
    input_tokens: int
    output_tokens: int
    thinking_tokens: int

    def ident(self, prefix: str) -> str:
        return prefix + self.key

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(b for b in self.blocks if isinstance(b, ToolCall))


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def estimate_tokens(chars: int) -> int:
    """About four characters a token, as the providers' own rules of thumb say; at least 1."""
    return max(1, math.ceil(chars / CHARS_PER_TOKEN))


def chunk(text: str, size: int) -> tuple[str, ...]:
    if not text:
        return ("",)
    return tuple(text[i : i + size] for i in range(0, len(text), size))


def matches(match: Match, conv: Conversation) -> bool:
    return (
        (match.last_user_text is None or match.last_user_text in conv.last_user_text)
        and (
            match.last_user_regex is None
            or re.search(match.last_user_regex, conv.last_user_text) is not None
        )
        and (match.after_tool_result is None or match.after_tool_result == conv.after_tool_result)
        and (match.tool_result_text is None or match.tool_result_text in conv.tool_result_text)
        and (match.tool_offered is None or match.tool_offered in conv.tools)
        and (match.api is None or match.api == conv.api)
        and (match.model is None or match.model in conv.model)
        and (match.system_text is None or match.system_text in conv.system_text)
        and (match.stream is None or match.stream == conv.stream)
    )


def select_rule(script: Script, conv: Conversation) -> int | None:
    return next((i for i, rule in enumerate(script.rules) if matches(rule.match, conv)), None)


def _block(item: ReplyItem, key: str) -> Block | None:
    delay = item.delay_ms / 1000
    if item.text is not None:
        return Text(item.text, chunk(item.text, item.chunk_chars), delay)
    if item.thinking is not None:
        return Thinking(item.thinking, chunk(item.thinking, item.chunk_chars), delay)
    if item.tool_use is not None:
        use = item.tool_use
        arguments = msgspec.json.encode(use.input).decode()
        return ToolCall(
            key, use.name, use.input, arguments, chunk(arguments, item.chunk_chars), delay, use.id
        )
    return None


def _failure(rule: Rule) -> Failure | None:
    error = rule.reply[-1].error
    if error is None:
        return None
    return Failure(error.status, error.message, error.type, error.code, error.retry)


def _chars(block: Block) -> int:
    return len(block.arguments) if isinstance(block, ToolCall) else len(block.text)


def plan(script: Script, conv: Conversation, body: bytes, created: int) -> Reply | None:
    """The reply of the first rule matching ``conv``; None when no rule matches."""
    index = select_rule(script, conv)
    if index is None:
        return None
    rule = script.rules[index]
    key = digest(body)
    planned = (_block(item, digest(f"{key}:{i}".encode())) for i, item in enumerate(rule.reply))
    blocks = tuple(b for b in planned if b is not None)
    thinking = sum(_chars(b) for b in blocks if isinstance(b, Thinking))
    usage = rule.usage
    input_tokens = usage.input_tokens if usage and usage.input_tokens is not None else None
    output_tokens = usage.output_tokens if usage and usage.output_tokens is not None else None
    return Reply(
        rule_index=index,
        model=conv.model,
        key=key,
        created=created,
        blocks=blocks,
        failure=_failure(rule),
        # The whole body counts as input, tool schemas included, as it does for real models.
        input_tokens=input_tokens if input_tokens is not None else estimate_tokens(len(body)),
        output_tokens=output_tokens
        if output_tokens is not None
        else estimate_tokens(sum(_chars(b) for b in blocks)),
        thinking_tokens=estimate_tokens(thinking) if thinking else 0,
    )
