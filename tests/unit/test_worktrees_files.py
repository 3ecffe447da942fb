"""Reading a repo's config file and copying files into a new worktree, on a real filesystem."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from orrery.worktrees.adapters.files import (
    Layout,
    PathEscapeError,
    copy_files,
    inside,
    read_settings,
)


async def test_orrery_yml_wins_and_is_imported(tmp_path: Path) -> None:
    (tmp_path / ".orrery.yml").write_text(
        "environment:\n  start: 'serve --port {{ worktree.ports[0] }}'\ncopy: [.env]\n"
    )
    (tmp_path / ".agor.yml").write_text("environment:\n  start: 'ignored'\n  stop: 'x'\n")
    settings = await read_settings(tmp_path)
    assert settings.source == ".orrery.yml" and settings.error is None
    assert settings.environment is not None
    assert settings.environment.start == "serve --port {{ worktree.ports[0] }}"
    assert settings.copy == [".env"]


async def test_agor_yml_is_converted(tmp_path: Path) -> None:
    (tmp_path / ".agor.yml").write_text(
        "environment:\n  start: 'PORT={{add 9000 worktree.unique_id}} up'\n  stop: 'down'\n"
    )
    settings = await read_settings(tmp_path)
    assert settings.source == ".agor.yml" and settings.error is None
    assert settings.environment is not None
    assert settings.environment.start == "PORT={{ 9000 + worktree.unique_id }} up"


async def test_a_broken_config_is_reported_not_imported(tmp_path: Path) -> None:
    (tmp_path / ".orrery.yml").write_text("environment:\n  stat: 'typo'\n")
    settings = await read_settings(tmp_path)
    assert settings.environment is None
    assert settings.error is not None and "config.invalid" in settings.error


async def test_no_config_is_no_environment(tmp_path: Path) -> None:
    settings = await read_settings(tmp_path)
    assert settings.source == "" and settings.environment is None and settings.error is None


async def test_copy_takes_files_and_dirs_but_never_follows_a_link_out(tmp_path: Path) -> None:
    repo, worktree, secret = tmp_path / "repo", tmp_path / "wt", tmp_path / "secret"
    (repo / "config").mkdir(parents=True)
    worktree.mkdir()
    secret.write_text("do not copy")
    (repo / ".env").write_text("A=1\n")
    (repo / "config" / "local.json").write_text("{}")
    os.symlink(secret, repo / "leak")
    copied = await copy_files(repo, worktree, [".env", "config", "leak", "absent"])
    assert copied == [".env", "config"]
    assert (worktree / ".env").read_text() == "A=1\n"
    assert (worktree / "config" / "local.json").exists()
    assert not (worktree / "leak").exists()


def test_paths_stay_under_their_root(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    assert layout.worktree_path("app", "fix") == (tmp_path / "worktrees" / "app" / "fix").resolve()
    for bad in ("../x", "/etc", "a/../../b"):
        with pytest.raises(PathEscapeError):
            inside(tmp_path, bad)
    assert layout.is_managed_clone(str(tmp_path / "repos" / "app"))
    assert not layout.is_managed_clone("/home/someone/app")
