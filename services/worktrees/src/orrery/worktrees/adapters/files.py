"""Files around git: where repos and worktrees live, a repo's config file, the files copied into
a new worktree. Every path derived from user input is checked to stay under its root."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

import msgspec
from orrery.events.worktrees import EnvironmentTemplate, RepoSettings
from orrery.worktrees.domain.agor import convert_agor_yml
from orrery.worktrees.domain.config import (
    MAX_CONFIG_BYTES,
    ConfigError,
    RepoConfig,
    parse_repo_config,
)

CONFIG_FILES = (".orrery.yml", ".agor.yml")


class PathEscapeError(ValueError):
    code = "path.escapes_root"


@dataclass(frozen=True)
class Layout:
    """``<home>/repos/<slug>`` for clones, ``<home>/worktrees/<slug>/<name>`` for worktrees,
    ``<home>/logs/env/<worktree_id>.log`` for environment output."""

    home: Path

    @property
    def repos(self) -> Path:
        return self.home / "repos"

    @property
    def worktrees(self) -> Path:
        return self.home / "worktrees"

    def repo_path(self, slug: str) -> Path:
        return inside(self.repos, slug)

    def worktree_path(self, slug: str, name: str) -> Path:
        return inside(self.worktrees, f"{slug}/{name}")

    def env_log(self, worktree_id: str) -> Path:
        return inside(self.home / "logs" / "env", f"{worktree_id}.log")

    def is_managed_clone(self, path: str) -> bool:
        try:
            Path(path).resolve().relative_to(self.repos.resolve())
        except ValueError:
            return False
        return True


def inside(root: Path, relative: str) -> Path:
    """``root / relative`` resolved, refusing anything that ends up outside ``root``."""
    base = root.resolve()
    target = (base / relative).resolve()
    if target != base and base not in target.parents:
        raise PathEscapeError(f"{relative!r} escapes {root}")
    return target


def settings_from_config(config: RepoConfig, source: str) -> RepoSettings:
    env = None
    if config.environment is not None:
        env = msgspec.convert(msgspec.to_builtins(config.environment), EnvironmentTemplate)
    return RepoSettings(environment=env, copy=list(config.copy), source=source)


def _read_settings_sync(repo: Path) -> RepoSettings:
    for name in CONFIG_FILES:
        path = repo / name
        if not path.is_file():
            continue
        try:
            if path.stat().st_size > MAX_CONFIG_BYTES:
                raise ConfigError("config.too_large", f"larger than {MAX_CONFIG_BYTES} bytes")
            text = path.read_text(encoding="utf-8")
            config = parse_repo_config(text) if name == ".orrery.yml" else convert_agor_yml(text)
        except ConfigError as exc:
            return RepoSettings(source=name, error=str(exc))
        except (OSError, UnicodeDecodeError) as exc:
            return RepoSettings(source=name, error=f"cannot read {name}: {exc}")
        return settings_from_config(config, name)
    return RepoSettings()


async def read_settings(repo: Path) -> RepoSettings:
    """The repo's ``.orrery.yml`` (or a converted ``.agor.yml``); a broken file is reported in
    ``error`` and imports nothing."""
    return await asyncio.to_thread(_read_settings_sync, repo)


def _copy_sync(repo: Path, worktree: Path, entries: list[str]) -> list[str]:
    copied: list[str] = []
    for entry in entries:
        try:
            source = inside(repo, entry)
            target = inside(worktree, entry)
        except PathEscapeError:
            continue  # a symlink pointing out of the repo: never followed
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True, symlinks=True)
        elif source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        else:
            continue
        copied.append(entry)
    return copied


async def copy_files(repo: Path, worktree: Path, entries: list[str]) -> list[str]:
    """Copy ``entries`` (``.env``, ``config/local.json``...) from the main checkout into a new
    worktree; returns those that existed and were copied."""
    return await asyncio.to_thread(_copy_sync, repo, worktree, entries)


async def is_dir(path: str | Path) -> bool:
    return await asyncio.to_thread(Path(path).is_dir)


async def remove_tree(path: Path) -> None:
    await asyncio.to_thread(shutil.rmtree, path, True)
