"""Render and validate templates: Jinja2 in an immutable sandbox with StrictUndefined.

Templates come from repository files (`.orrery.yml`), zone triggers and schedules, i.e. from
people other than the one whose machine runs them. So they can never reach Python internals
(the sandbox refuses `_`-prefixed attributes and mutating methods) and their cost is bounded:

- the template text is at most 64 KB and the output at most 1 MB;
- a render may run at most 100 000 loop iterations plus calls in total (a budget, not a wall
  clock, so the bound is deterministic and nested loops cannot hide from it);
- `*` and `**` are intercepted so `'x' * 10**9` or `10**10**10` fail fast, and the str methods
  that pad to an arbitrary width (`center`, `ljust`, `zfill`, `format`, ...) are refused;
- recursion (macros calling themselves) ends as `template.too_large`.

Every failure is a `TemplateError` with a stable code and, where known, the template line.
"""

from __future__ import annotations

import contextvars
import operator
import re
import shlex
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from jinja2 import StrictUndefined, Undefined, nodes
from jinja2.exceptions import (
    SecurityError,
    TemplateRuntimeError,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.meta import find_undeclared_variables
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing
from orrery.templating.context import CONTEXT_NAMES, TemplateContext

__all__ = [
    "MAX_OUTPUT_CHARS",
    "MAX_TEMPLATE_BYTES",
    "MAX_WORK",
    "TemplateError",
    "render",
    "validate",
]

MAX_TEMPLATE_BYTES: Final = 64 * 1024
MAX_OUTPUT_CHARS: Final = 1024 * 1024
MAX_WORK: Final = 100_000
_MAX_SEQUENCE: Final = MAX_OUTPUT_CHARS
_MAX_POW_BITS: Final = 4096
_TEMPLATE_FILENAME: Final = "<template>"

# str methods that allocate as much as their (arbitrary) argument asks for.
_UNBOUNDED_STR_METHODS: Final = frozenset(
    {"center", "ljust", "rjust", "zfill", "expandtabs", "format", "format_map", "replace"}
)


class TemplateError(Exception):
    """A template that cannot be compiled or rendered. `line` is 1-based when known."""

    def __init__(self, code: str, message: str, line: int | None = None) -> None:
        super().__init__(f"{code}: {message}" + (f" (line {line})" if line else ""))
        self.code = code
        self.message = message
        self.line = line


class _WorkExhaustedError(Exception):
    pass


# --- the per-render work budget -------------------------------------------------------------


@dataclass
class _Budget:
    left: int = MAX_WORK

    def spend(self, amount: int = 1) -> None:
        self.left -= amount
        if self.left < 0:
            raise _WorkExhaustedError


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "orrery_template_budget", default=None
)


def _spend(amount: int = 1) -> None:
    budget = _budget.get()
    if budget is not None:
        budget.spend(amount)


def _bounded_iter(value: Iterable[Any]) -> Iterator[Any]:
    for item in value:
        _spend()
        yield item


def _bounded_range(*args: int) -> range:
    rng = range(*args)
    _spend(0)
    if len(rng) > MAX_WORK:
        raise _WorkExhaustedError
    return rng


# --- paths, so undefined errors can name `worktree.portz` -----------------------------------


class _ScopeDict(dict[str, Any]):
    __slots__ = ("_orrery_path",)
    _orrery_path: str


class _ScopeList(list[Any]):
    __slots__ = ("_orrery_path",)
    _orrery_path: str


def _scoped(value: Any, path: str) -> Any:
    if isinstance(value, dict):
        scoped_dict = _ScopeDict(
            {str(k): _scoped(v, _join(path, str(k))) for k, v in value.items()}
        )
        scoped_dict._orrery_path = path
        return scoped_dict
    if isinstance(value, list | tuple):
        scoped_list = _ScopeList(_scoped(v, f"{path}[{i}]") for i, v in enumerate(value))
        scoped_list._orrery_path = path
        return scoped_list
    return value


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _join(path: str, key: str) -> str:
    if _IDENT.match(key):
        return f"{path}.{key}"
    return f"{path}[{key!r}]"


class _Undefined(StrictUndefined):
    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        name = self._undefined_name
        obj = self._undefined_obj
        if obj is missing:
            return f"{name} is undefined"
        if isinstance(obj, _ScopeDict | _ScopeList):
            path = obj._orrery_path
            if isinstance(name, int):
                return f"{path}[{name}] is undefined"
            return f"{_join(path, str(name))} is undefined"
        if obj is None:
            return f"{name!r} is undefined: it was read from a None value"
        return f"{name!r} is undefined on a {type(obj).__name__} value"


# --- the environment ------------------------------------------------------------------------


def _shell_quote(value: Any) -> str:
    return shlex.quote(str(value))


_SLUG_RE = re.compile(r"[^a-z0-9]+")


def _slug(value: Any) -> str:
    return _SLUG_RE.sub("-", str(value).lower()).strip("-")


def _replace(value: Any, old: Any, new: Any, count: int | None = None) -> str:
    text, old_s, new_s = str(value), str(old), str(new)
    hits = text.count(old_s) if count is None else min(count, text.count(old_s))
    if len(text) + hits * len(new_s) > _MAX_SEQUENCE:
        raise _WorkExhaustedError
    return text.replace(old_s, new_s, -1 if count is None else count)


def _sized(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple) else 1


def _safe_mul(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, str | list | tuple):
        left, right = right, left
    if (
        isinstance(left, str | list | tuple)
        and isinstance(right, int)
        and _sized(left) * max(right, 0) > _MAX_SEQUENCE
    ):
        raise _WorkExhaustedError
    return operator.mul(left, right)


def _safe_pow(left: Any, right: Any) -> Any:
    if (
        isinstance(left, int)
        and isinstance(right, int)
        and right > 0
        and max(abs(left).bit_length(), 1) * right > _MAX_POW_BITS
    ):
        raise _WorkExhaustedError
    return operator.pow(left, right)


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def __init__(self) -> None:
        super().__init__(
            undefined=_Undefined,
            autoescape=False,
            keep_trailing_newline=True,
            loader=None,
            cache_size=0,
        )
        self.globals.pop("lipsum", None)
        self.globals["range"] = _bounded_range
        self.filters["shell_quote"] = _shell_quote
        self.filters["slug"] = _slug
        self.filters["replace"] = _replace
        self.filters["_orrery_bounded"] = _bounded_iter
        # Filters that pad or wrap to a width the template chooses.
        for name in ("center", "indent", "wordwrap", "format", "filesizeformat", "xmlattr"):
            self.filters.pop(name, None)
        self.binop_table["*"] = _safe_mul
        self.binop_table["**"] = _safe_pow

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _UNBOUNDED_STR_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if attribute.startswith("__"):
            if isinstance(obj, Undefined):
                return obj  # keep the first (more telling) error of a chain
            return self.unsafe_undefined(obj, attribute)
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        kind = (
            "dict"
            if isinstance(obj, _ScopeDict)
            else "list"
            if isinstance(obj, _ScopeList)
            else type(obj).__name__
        )
        return self.undefined(
            f"access to attribute {attribute!r} of a {kind} value is unsafe",
            name=attribute,
            obj=obj,
            exc=SecurityError,
        )

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # `str.format` is refused outright (see is_safe_attribute), never wrapped.
        return None

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _spend()
        return super().call(__context, __obj, *args, **kwargs)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        # Every `for` loop iterates through a filter that spends the render's work budget.
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(
                loop.iter, "_orrery_bounded", [], [], None, None, lineno=loop.lineno
            )
        return tree


_ENV: Final = _Environment()


@lru_cache(maxsize=512)
def _compile(template: str) -> Any:
    if len(template.encode()) > MAX_TEMPLATE_BYTES:
        raise TemplateError(
            "template.too_large", f"template is larger than {MAX_TEMPLATE_BYTES} bytes"
        )
    try:
        return _ENV.from_string(template)
    except TemplateSyntaxError as exc:
        raise TemplateError("template.syntax", exc.message or str(exc), exc.lineno) from None


def validate(template: str) -> None:
    """Compile `template` and check it reads only the names of the one context shape.

    Raises TemplateError (`template.syntax`, `template.too_large`, `template.undefined`).
    """
    _compile(template)
    try:
        tree = _ENV.parse(template)
    except TemplateSyntaxError as exc:  # pragma: no cover - _compile parsed it already
        raise TemplateError("template.syntax", exc.message or str(exc), exc.lineno) from None
    unknown = sorted(find_undeclared_variables(tree) - CONTEXT_NAMES - set(_ENV.globals))
    if unknown:
        line = next((n.lineno for n in tree.find_all(nodes.Name) if n.name == unknown[0]), None)
        raise TemplateError("template.undefined", f"{unknown[0]} is undefined", line)


def _template_line(exc: BaseException) -> int | None:
    line = None
    tb: types.TracebackType | None = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render(template: str, ctx: TemplateContext) -> str:
    """Render `template` with the one context shape. Raises TemplateError, never anything else."""
    compiled = _compile(template)
    mapping = {k: _scoped(v, k) for k, v in ctx.to_mapping().items()}
    token = _budget.set(_Budget())
    out: list[str] = []
    size = 0
    try:
        for chunk in compiled.generate(mapping):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateError(
                    "template.too_large", f"output is larger than {MAX_OUTPUT_CHARS} characters"
                )
            out.append(chunk)
    except SecurityError as exc:
        raise TemplateError("template.unsafe", str(exc), _template_line(exc)) from None
    except UndefinedError as exc:
        raise TemplateError("template.undefined", str(exc), _template_line(exc)) from None
    except (_WorkExhaustedError, RecursionError, MemoryError) as exc:
        raise TemplateError(
            "template.too_large",
            f"template does too much work (at most {MAX_WORK} loop iterations and calls, "
            f"{_MAX_SEQUENCE} characters per value)",
            _template_line(exc),
        ) from None
    except (
        TemplateRuntimeError,
        TypeError,
        ValueError,
        ArithmeticError,
        LookupError,
        AttributeError,
    ) as exc:
        raise TemplateError("template.runtime", str(exc), _template_line(exc)) from None
    finally:
        _budget.reset(token)
    return "".join(out)
