"""One template language everywhere: Jinja2 sandboxed, StrictUndefined, one context shape."""

from orrery.templating.context import (
    CONTEXT_NAMES,
    BoardCtx,
    RepoCtx,
    ScheduleCtx,
    SessionCtx,
    TemplateContext,
    UserCtx,
    WorktreeCtx,
    ZoneCtx,
)
from orrery.templating.render import (
    MAX_OUTPUT_CHARS,
    MAX_TEMPLATE_BYTES,
    MAX_WORK,
    TemplateError,
    render,
    validate,
)

__all__ = [
    "CONTEXT_NAMES",
    "MAX_OUTPUT_CHARS",
    "MAX_TEMPLATE_BYTES",
    "MAX_WORK",
    "BoardCtx",
    "RepoCtx",
    "ScheduleCtx",
    "SessionCtx",
    "TemplateContext",
    "TemplateError",
    "UserCtx",
    "WorktreeCtx",
    "ZoneCtx",
    "render",
    "validate",
]
