"""One view of a request, whatever wire format it came in: what the rules match on."""

from __future__ import annotations

from dataclasses import dataclass

from orrery.modelserver.script import Api


@dataclass(frozen=True, slots=True)
class Conversation:
    api: Api
    model: str
    stream: bool
    # The trailing message decides the turn: a user message (its text, tool results left out)
    # or tool results. Earlier turns are ignored, so a rule cannot fire again on a later turn.
    last_user_text: str = ""
    after_tool_result: bool = False
    tool_result_text: str = ""
    tools: tuple[str, ...] = ()
    system_text: str = ""
    include_usage: bool = False  # Chat Completions' stream_options.include_usage


def text_of(value: object) -> str:
    """The text inside a content value: a string, a part with ``text``, or a list of those.

    Parts without text (images, tool calls) contribute nothing; a part whose ``content`` holds
    more parts (a tool result) contributes theirs.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(t for t in (text_of(v) for v in value) if t)
    if isinstance(value, dict):
        text = value.get("text")
        if isinstance(text, str):
            return text
        return text_of(value.get("content"))
    return ""
