"""Running `orrery up` and the `orrery` CLI as a user does, for the system tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from orrery.runtime.infra.ports import free_port

if TYPE_CHECKING:  # mypy sees the repo root; pytest puts tests/ on sys.path
    from tests.gitrepos import GIT_ENV, free_port_block
else:
    from gitrepos import GIT_ENV, free_port_block

ORRERY = str(Path(sys.executable).parent / "orrery")


T = TypeVar("T")


def healthz(port: int) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())  # type: ignore[no-any-return]
    except OSError:
        return None


def start(
    home: Path, *args: str, extra: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ORRERY_")},
        "ORRERY_HOME": str(home),
        "ORRERY_PORT": str(free_port()),
        "ORRERY_NATS_PORT": str(free_port()),
        "ORRERY_POSTGRES_PORT": str(free_port()),
        **(extra or {}),
    }
    proc = subprocess.Popen(
        [ORRERY, "up", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return proc, env


def with_model(model_url: str, ports: int = 20) -> dict[str, str]:
    """A stack's extra environment: the built-in agent on the scripted model server at
    ``model_url``, a git identity, and a free block of ``ports`` for the worktrees."""
    return {
        **GIT_ENV,
        "ANTHROPIC_BASE_URL": model_url,
        "ANTHROPIC_API_KEY": "test-key",
        "ORRERY_PORT_BASE": str(free_port_block(ports)),
    }


def wait_healthy(proc: subprocess.Popen[str], port: int, timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    body: dict[str, object] | None = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        body = healthz(port)
        if body and body.get("status") == "ok":
            return body
        time.sleep(0.05)
    raise AssertionError(f"not healthy after {timeout}s: {body}")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    return out


def orrery(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ORRERY, *args],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def until(check: Callable[[], T | None], timeout: float = 30.0, what: str = "") -> T:
    """Poll ``check`` until it returns something true, and return that; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true after {timeout}s: {what or check}")
