"""Scripts: the rules a scripted model server replays, and how they are loaded.

A script is an ordered list of rules. Every incoming request is matched against the rules on its
own (first match wins, no state kept between requests), so one script serves any number of
concurrent sessions deterministically.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

Api = Literal["anthropic", "openai_chat", "openai_responses", "gemini"]

DEFAULT_CHUNK_CHARS = 20
DEFAULT_MODELS = ("claude-sonnet-4-5", "gpt-fake", "gemini-2.5-flash")


class ScriptError(ValueError):
    """A script that cannot be loaded or decoded; retrying with the same text cannot help."""

    code = "modelserver.script_invalid"


# Scripts are hand-written configuration, not events: an unknown field is a typo, so every
# struct here rejects unknown fields (events must never do this; scripts should).
class Match(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Conditions on one request; all the given ones must hold. Substrings are case-sensitive."""

    any: bool = False
    last_user_text: str | None = None  # substring of the trailing user message's text
    last_user_regex: str | None = None  # re.search on the same text
    after_tool_result: bool | None = None  # the trailing message carries a tool result
    tool_result_text: str | None = None  # substring of the trailing tool results' text
    tool_offered: str | None = None  # a tool of exactly this name is offered
    api: Api | None = None
    model: str | None = None  # substring of the requested model
    system_text: str | None = None  # substring of the system prompt / instructions
    stream: bool | None = None

    def __post_init__(self) -> None:
        if not any(getattr(self, name) not in (None, False) for name in self.__struct_fields__):
            raise ValueError("a match needs a condition; write {any: true} to match every request")
        if self.last_user_regex is not None:
            try:
                re.compile(self.last_user_regex)
            except re.error as exc:
                raise ValueError(f"last_user_regex {self.last_user_regex!r}: {exc}") from exc


class ToolUse(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    name: str
    input: dict[str, Any] = {}
    id: str | None = None  # default: derived from the request, so replays give the same id


class ErrorSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    status: Annotated[int, msgspec.Meta(ge=400, le=599)]
    message: str
    type: str | None = None  # default: the provider's usual type for the status
    code: str | None = None  # OpenAI's `error.code` (e.g. rate_limit_exceeded)
    retry: bool | None = None  # sent as `x-should-retry`, which the official SDKs obey


class ReplyItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One piece of a reply: exactly one of text, thinking, tool_use or error."""

    text: str | None = None
    thinking: str | None = None
    tool_use: ToolUse | None = None
    error: ErrorSpec | None = None
    chunk_chars: Annotated[int, msgspec.Meta(ge=1)] = DEFAULT_CHUNK_CHARS
    delay_ms: Annotated[int, msgspec.Meta(ge=0)] = 0  # waited before each streamed chunk

    def __post_init__(self) -> None:
        kinds = [
            k for k in ("text", "thinking", "tool_use", "error") if getattr(self, k) is not None
        ]
        if len(kinds) != 1:
            raise ValueError(
                f"a reply item has exactly one of text, thinking, tool_use, error (got {kinds})"
            )


class Usage(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Token counts to report; a count left out is estimated from text lengths."""

    input_tokens: Annotated[int, msgspec.Meta(ge=0)] | None = None
    output_tokens: Annotated[int, msgspec.Meta(ge=0)] | None = None


class Rule(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    match: Match
    reply: Annotated[list[ReplyItem], msgspec.Meta(min_length=1)]
    usage: Usage | None = None

    def __post_init__(self) -> None:
        # An error ends a reply: first, it is the HTTP answer; later, an error event mid-stream.
        if any(item.error is not None for item in self.reply[:-1]):
            raise ValueError("an error item must be the last item of a reply")


class Script(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    rules: list[Rule] = []
    models: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_MODELS))


ScriptSource = Script | Path | str | bytes | Mapping[str, Any]


def load_script(source: ScriptSource) -> Script:
    """A script from a Script, a file (``.json``, else YAML), JSON or YAML text, or a mapping."""
    try:
        if isinstance(source, Script):
            return source
        if isinstance(source, Path):
            data = source.read_bytes()
            if source.suffix == ".json":
                return msgspec.json.decode(data, type=Script)
            return msgspec.yaml.decode(data, type=Script)
        if isinstance(source, str | bytes):
            text = source.encode() if isinstance(source, str) else source
            if text.lstrip().startswith(b"{"):
                return msgspec.json.decode(text, type=Script)
            return msgspec.yaml.decode(text, type=Script)
        return msgspec.convert(dict(source), type=Script)
    except (msgspec.DecodeError, msgspec.ValidationError, OSError) as exc:
        raise ScriptError(f"invalid script: {exc}") from exc


def encode_script(script: Script) -> bytes:
    return msgspec.json.encode(script)


def default_script() -> Script:
    """What a server started without a script answers: one text reply to everything."""
    return Script(
        rules=[Rule(match=Match(any=True), reply=[ReplyItem(text="Hello from the scripted model")])]
    )
