"""A scripted model server speaking the Anthropic, OpenAI and Gemini wire formats.

Tests and demos point agent CLIs and SDKs at it; it answers from deterministic rules.
"""

from orrery.modelserver.recorder import RecordedRequest
from orrery.modelserver.script import (
    ErrorSpec,
    Match,
    ReplyItem,
    Rule,
    Script,
    ScriptError,
    ToolUse,
    Usage,
    default_script,
    load_script,
)
from orrery.modelserver.server import ScriptedModelServer

__all__ = [
    "ErrorSpec",
    "Match",
    "RecordedRequest",
    "ReplyItem",
    "Rule",
    "Script",
    "ScriptError",
    "ScriptedModelServer",
    "ToolUse",
    "Usage",
    "default_script",
    "load_script",
]
