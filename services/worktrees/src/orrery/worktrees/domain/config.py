"""A repo's `.orrery.yml` parsed into typed structs (Agor's `.agor.yml`: see agor.py). Pure.

```yaml
environment:
  start: "python -m http.server {{ worktree.ports[0] }}"
  stop: "pkill -f 'http.server {{ worktree.ports[0] }}'"      # optional
  health: {type: http, url: "http://127.0.0.1:{{ worktree.ports[0] }}/", interval_s: 5}
  app_url: "http://localhost:{{ worktree.ports[0] }}"
  logs: "tail -n 100 server.log"                             # optional
  runner: process                                            # or docker (then `docker:`)
copy: [.env, config/local.json]                              # copied into new worktrees
```

Every template field is compiled (and its top-level names checked) at parse time, so a broken
template is reported when the repo is added, not when an environment first starts.
Unknown keys are errors: a typo (`stat:`) must not silently disable a command.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Final, Literal

import msgspec
import yaml
from orrery.templating import TemplateError, validate

__all__ = [
    "MAX_CONFIG_BYTES",
    "ConfigError",
    "DockerConfig",
    "EnvironmentConfig",
    "HealthCheck",
    "RepoConfig",
    "parse_repo_config",
]

MAX_CONFIG_BYTES: Final = 256 * 1024


class ConfigError(ValueError):
    """A config file that cannot be used. `path_in_file` is like `environment.health.url`."""

    def __init__(
        self, code: str, message: str, path_in_file: str = "", line: int | None = None
    ) -> None:
        where = f" at {path_in_file}" if path_in_file else ""
        super().__init__(f"{code}: {message}{where}" + (f" (line {line})" if line else ""))
        self.code = code
        self.message = message
        self.path_in_file = path_in_file
        self.line = line


class HealthCheck(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    type: Literal["http", "tcp"]
    url: str | None = None  # template; required for http
    host: str = "127.0.0.1"  # template; tcp
    port: int | str | None = None  # a number or a template; required for tcp
    interval_s: Annotated[float, msgspec.Meta(gt=0)] = 5
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 1
    start_grace_s: Annotated[float, msgspec.Meta(ge=0)] = 3


class DockerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    image: str  # template
    command: str | None = None  # template; the image's default when absent
    env: dict[str, str] = msgspec.field(default_factory=dict)  # values are templates
    workdir: str = "/workspace"  # where the worktree is mounted


class EnvironmentConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    start: str
    stop: str | None = None
    health: HealthCheck | None = None
    app_url: str | None = None
    logs: str | None = None
    runner: Literal["process", "docker"] = "process"
    docker: DockerConfig | None = None


class RepoConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    environment: EnvironmentConfig | None = None
    copy: list[str] = msgspec.field(default_factory=list)


_RUNNERS: Final = ("process", "docker")


# --- .orrery.yml ----------------------------------------------------------------------------


def parse_repo_config(text: str) -> RepoConfig:
    """Parse the text of `.orrery.yml`. Raises ConfigError. An empty file is an empty config."""
    raw = load_yaml(text)
    return build(raw)


def load_yaml(text: str) -> Any:
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise ConfigError("config.too_large", f"the file is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError("config.yaml", f"not valid YAML: {problem}", "", line) from None


_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def build(raw: Any) -> RepoConfig:
    if raw is None:
        return RepoConfig()
    if not isinstance(raw, dict):
        raise ConfigError("config.invalid", f"the file must be a mapping, got {type(raw).__name__}")
    _check_runner(raw)
    try:
        config = msgspec.convert(raw, RepoConfig)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _AT.search(message)
        path = match["path"].lstrip(".") if match else ""
        raise ConfigError("config.invalid", _AT.sub("", message), path) from None
    config = msgspec.structs.replace(config, copy=_check_copy(config.copy))
    if config.environment is not None:
        _check_environment(config.environment)
    return config


def _check_runner(raw: dict[Any, Any]) -> None:
    env = raw.get("environment")
    if isinstance(env, dict) and "runner" in env and env["runner"] not in _RUNNERS:
        raise ConfigError(
            "config.unknown_runner",
            f"unknown runner {env['runner']!r}; expected one of: {', '.join(_RUNNERS)}",
            "environment.runner",
        )


def _check_copy(entries: list[str]) -> list[str]:
    """Relative paths inside the repo only; returned normalised (`./a//b` becomes `a/b`)."""
    normalised: list[str] = []
    for i, entry in enumerate(entries):
        path = f"copy[{i}]"
        if not entry.strip() or "\x00" in entry or "\\" in entry:
            raise ConfigError("config.copy_path", f"{entry!r} is not a usable relative path", path)
        pure = PurePosixPath(entry)
        if pure.is_absolute() or re.match(r"^[A-Za-z]:", entry):
            raise ConfigError(
                "config.copy_path", f"{entry!r} is absolute; paths are relative to the repo", path
            )
        if ".." in pure.parts:
            raise ConfigError(
                "config.copy_path", f"{entry!r} escapes the repository (uses '..')", path
            )
        if pure.as_posix() == ".":
            raise ConfigError(
                "config.copy_path", f"{entry!r} is the whole repository, not a file", path
            )
        normalised.append(pure.as_posix())
    return normalised


def _check_environment(env: EnvironmentConfig) -> None:
    templates: list[tuple[str, str | None]] = [
        ("environment.start", env.start),
        ("environment.stop", env.stop),
        ("environment.app_url", env.app_url),
        ("environment.logs", env.logs),
    ]
    if not env.start.strip():
        raise ConfigError("config.invalid", "the start command is empty", "environment.start")
    health = env.health
    if health is not None:
        if health.type == "http" and not health.url:
            raise ConfigError(
                "config.invalid", "an http health check needs a url", "environment.health.url"
            )
        if health.type == "tcp" and health.port is None:
            raise ConfigError(
                "config.invalid", "a tcp health check needs a port", "environment.health.port"
            )
        if isinstance(health.port, int) and not 0 < health.port < 65536:
            raise ConfigError(
                "config.invalid", f"port {health.port} is out of range", "environment.health.port"
            )
        templates += [
            ("environment.health.url", health.url),
            ("environment.health.host", health.host),
            ("environment.health.port", health.port if isinstance(health.port, str) else None),
        ]
    if env.runner == "docker" and env.docker is None:
        raise ConfigError(
            "config.invalid",
            "runner docker needs a `docker:` section with at least an image",
            "environment.docker",
        )
    if env.docker is not None:
        if env.runner != "docker":
            raise ConfigError(
                "config.invalid",
                "a `docker:` section needs `runner: docker`",
                "environment.docker",
            )
        templates += [
            ("environment.docker.image", env.docker.image),
            ("environment.docker.command", env.docker.command),
        ]
        templates += [(f"environment.docker.env.{k}", v) for k, v in env.docker.env.items()]
    for path, template in templates:
        if template is None:
            continue
        try:
            validate(template)
        except TemplateError as exc:
            where = f" (template line {exc.line})" if exc.line else ""
            raise ConfigError(
                "config.template", f"{exc.code}: {exc.message}{where}", path
            ) from None
