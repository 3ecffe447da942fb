"""Real git repositories and free port ranges for the worktrees tests (integration and system)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

# Every git process of the tests, the service's too: one identity, no user or system config.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.org",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.org",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=GIT_ENV
    ).stdout.strip()


def make_repo(
    path: Path, orrery_yml: str, files: dict[str, str], untracked: dict[str, str]
) -> Path:
    """A repo on ``main`` with ``.orrery.yml`` and ``files`` committed, then ``untracked`` files
    (a developer's `.env`) left in the checkout."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / ".orrery.yml").write_text(orrery_yml)
    for name, text in files.items():
        (path / name).write_text(text)
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "init")
    for name, text in untracked.items():
        (path / name).write_text(text)
    return path


def free_port_block(size: int, start: int = 31_000) -> int:
    """A base port whose next ``size`` ports nothing listens on right now."""
    for base in range(start, 60_000, 500):
        if all(_free(p) for p in range(base, base + size)):
            return base
    raise RuntimeError("no free port range")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
