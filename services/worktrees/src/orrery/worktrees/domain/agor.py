"""Importing Agor's `.agor.yml`: its Handlebars environment templates, converted to Jinja.

Pure: text in, a RepoConfig out, ConfigError for anything not converted faithfully.
"""

from __future__ import annotations

import re
from typing import Any, Final, NoReturn

from orrery.worktrees.domain.config import ConfigError, RepoConfig, build, load_yaml

#
# Agor's environment templates are Handlebars with the context
# `{worktree: {unique_id, name, path}, repo: {slug}, custom: {...}}`. We convert the subset that
# maps one to one onto Jinja: plain paths, `add`/`sub`/`mul` (also nested as sub-expressions),
# `uppercase`/`lowercase`, and comments (dropped). `custom.x` becomes `worktree.context.x`
# (Orrery's one context shape). Anything else is refused with `config.agor_unsupported`
# naming the construct, rather than guessed at.
#
# The conversion is faithful: `{{add 9000 worktree.unique_id}}` becomes
# `{{ 9000 + worktree.unique_id }}`, the same port Agor would compute. Orrery allocates a real
# port block per worktree, so such a port is better written `{{ worktree.ports[0] }}` (checked
# free at start); a UI can suggest that edit, but the converter does not make it, because the
# two give different numbers and other tools may already rely on Agor's.

_AGOR_FIELDS: Final = {"start": "start", "stop": "stop", "app": "app_url", "logs": "logs"}
_AGOR_VARIABLES: Final = {
    "worktree": frozenset({"unique_id", "name", "path"}),
    "repo": frozenset({"slug"}),
}
_ARITHMETIC: Final = {"add": "+", "sub": "-", "mul": "*"}
_CASE: Final = {"uppercase": "upper", "lowercase": "lower"}
_HB_TOKEN = re.compile(
    r"""\s*(?:(?P<open>\()|(?P<close>\))|(?P<num>-?\d+(?:\.\d+)?)(?=[\s()]|$)"""
    r"""|(?P<str>"[^"]*"|'[^']*')|(?P<word>[^\s()=]+)(?P<eq>=)?)"""
)
_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def convert_agor_yml(text: str) -> RepoConfig:
    """Convert Agor's `.agor.yml` (its `environment` section) into a RepoConfig.

    Raises ConfigError: `config.yaml`, `config.invalid`, `config.agor_unsupported`.
    """
    raw = load_yaml(text)
    if raw is None:
        return RepoConfig()
    if not isinstance(raw, dict):
        raise ConfigError("config.invalid", f"the file must be a mapping, got {type(raw).__name__}")
    env = raw.get("environment")
    if env is None:
        return RepoConfig()
    if not isinstance(env, dict):
        raise ConfigError("config.invalid", "environment must be a mapping", "environment")
    converted: dict[str, Any] = {}
    for key, value in env.items():
        path = f"environment.{key}"
        if key not in {*_AGOR_FIELDS, "health"}:
            raise ConfigError("config.agor_unsupported", f"unknown environment key {key!r}", path)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ConfigError(
                "config.invalid", f"expected a template string, got {type(value).__name__}", path
            )
        template = handlebars_to_jinja(value, path)
        if key == "health":
            converted["health"] = {"type": "http", "url": template}
        else:
            converted[_AGOR_FIELDS[key]] = template
    if "start" not in converted:
        raise ConfigError("config.invalid", "the environment has no start command", "environment")
    return build({"environment": converted})


def handlebars_to_jinja(template: str, path: str = "") -> str:
    """Convert one Agor Handlebars template to Jinja (see the notes above). Raises ConfigError."""
    out: list[str] = []
    pos = 0
    while True:
        start = template.find("{{", pos)
        if start < 0:
            out.append(_jinja_literal(template[pos:]))
            return "".join(out)
        if start > 0 and template[start - 1] == "\\":
            _unsupported("an escaped mustache (\\{{)", path)
        out.append(_jinja_literal(template[pos:start]))
        if template.startswith("{{!--", start):
            end, close = template.find("--}}", start), "--}}"
        elif template.startswith("{{{", start):
            end, close = template.find("}}}", start), "}}}"
        else:
            end, close = template.find("}}", start), "}}"
        if end < 0:
            raise ConfigError("config.invalid", "an unclosed '{{' in the template", path)
        inner = template[start + (3 if close == "}}}" else 2) : end]
        pos = end + len(close)
        expression = _convert_mustache(inner, path)
        if expression is not None:
            out.append(f"{{{{ {expression} }}}}")


def _jinja_literal(text: str) -> str:
    # Literal text must not open a Jinja tag: `${#arr[@]}` in a shell command contains `{#`.
    out: list[str] = []
    for i, char in enumerate(text):
        following = text[i + 1 : i + 2]
        if char == "{" and following in ("{", "%", "#", ""):
            out.append("{{ '{' }}")
        else:
            out.append(char)
    return "".join(out)


def _unsupported(construct: str, path: str) -> NoReturn:
    raise ConfigError(
        "config.agor_unsupported",
        f"{construct} cannot be converted; rewrite it in Jinja in .orrery.yml",
        path,
    )


def _convert_mustache(inner: str, path: str) -> str | None:
    body = inner.strip()
    if body.startswith("!"):
        return None  # a comment
    if not body:
        _unsupported("an empty mustache '{{}}'", path)
    if body[0] in "~" or body[-1] == "~":
        _unsupported(f"whitespace control in '{{{{{inner}}}}}'", path)
    if body[0] in "#/^":
        _unsupported(f"the block helper '{{{{{body}}}}}'", path)
    if body[0] == ">":
        _unsupported(f"the partial '{{{{{body}}}}}'", path)
    if body.startswith("else"):
        _unsupported("'{{else}}'", path)
    if body[0] == "&":
        body = body[1:].strip()
    tokens = _tokenize(body, path)
    expression, rest = _parse_call(tokens, path, top_level=True)
    if rest:
        _unsupported(f"'{{{{{body}}}}}'", path)
    return expression


def _tokenize(body: str, path: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(body):
        match = _HB_TOKEN.match(body, pos)
        if match is None or match.end() == pos:
            if body[pos:].strip() == "":
                break
            _unsupported(f"the expression '{body}'", path)
        pos = match.end()
        kind = match.lastgroup
        if match["eq"] is not None:
            _unsupported(f"the hash argument '{match['word']}='", path)
        assert kind is not None
        tokens.append((kind, match[kind]))
    return tokens


def _parse_call(
    tokens: list[tuple[str, str]], path: str, *, top_level: bool
) -> tuple[str, list[tuple[str, str]]]:
    """One mustache body or one `( ... )` sub-expression: a value, or a helper and its args."""
    args: list[str] = []
    head: str | None = None
    rest = tokens
    while rest:
        kind, value = rest[0]
        if kind == "close":
            if top_level:
                _unsupported("an unbalanced ')'", path)
            break
        if kind == "open":
            sub, rest = _parse_call(rest[1:], path, top_level=False)
            if not rest or rest[0][0] != "close":
                _unsupported("an unbalanced '('", path)
            rest = rest[1:]
            args.append(f"({sub})")
        elif head is None and kind == "word" and len(rest) > 1 and not args:
            head = value
            if head not in _ARITHMETIC and head not in _CASE:
                _unsupported(f"the helper '{head}'", path)
            rest = rest[1:]
        else:
            args.append(_value(kind, value, path))
            rest = rest[1:]
    if head is None:
        if len(args) != 1:
            _unsupported("an empty sub-expression '()'", path)
        return args[0], rest
    return _helper(head, args, path), rest


def _helper(name: str, args: list[str], path: str) -> str:
    if name in _ARITHMETIC:
        if len(args) != 2:
            _unsupported(f"'{name}' with {len(args)} arguments (it takes 2)", path)
        # Agor's helpers read non-numbers as 0; free-form custom values get `| int` for that.
        left, right = (f"({a} | int)" if a.startswith("worktree.context") else a for a in args)
        return f"{left} {_ARITHMETIC[name]} {right}"
    if name in _CASE:
        if len(args) != 1:
            _unsupported(f"'{name}' with {len(args)} arguments (it takes 1)", path)
        return f"{args[0]} | {_CASE[name]}"
    _unsupported(f"the helper '{name}'", path)


def _value(kind: str, value: str, path: str) -> str:
    if kind == "num":
        return value
    if kind == "str":
        return repr(value[1:-1])
    if kind != "word":  # pragma: no cover - open/close handled by the caller
        _unsupported(f"'{value}'", path)
    return _variable(value, path)


def _variable(name: str, path: str) -> str:
    segments = name.split(".")
    root = segments[0]
    if root == "custom" and len(segments) > 1:
        expression = "worktree.context"
        for segment in segments[1:]:
            expression += f".{segment}" if _SEGMENT.match(segment) else f"[{segment!r}]"
        return expression
    if root in _AGOR_VARIABLES and len(segments) == 2 and segments[1] in _AGOR_VARIABLES[root]:
        return name
    return _unsupported(f"the variable '{name}' (not in Agor's template context)", path)
