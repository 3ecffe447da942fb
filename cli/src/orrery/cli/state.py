"""The running stack's state file, ``$ORRERY_HOME/run/stack.json``, read by ``orrery status``."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import msgspec


class StackState(msgspec.Struct, kw_only=True):
    pid: int
    started_at: datetime
    url: str
    nats_url: str
    database_url: str
    mode: str
    processes: dict[str, int] = {}


def path(home: Path) -> Path:
    return home / "run" / "stack.json"


def write(home: Path, state: StackState) -> None:
    target = path(home)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.encode(state))
    tmp.replace(target)


def read(home: Path) -> StackState | None:
    try:
        return msgspec.json.decode(path(home).read_bytes(), type=StackState)
    except (FileNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def clear(home: Path) -> None:
    path(home).unlink(missing_ok=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fetch_health(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as resp:  # noqa: S310 - ours
            body: dict[str, object] = json.loads(resp.read())
            return body
    except urllib.error.HTTPError as exc:
        error_body: dict[str, object] = json.loads(exc.read() or b"{}")
        return error_body
    except (urllib.error.URLError, OSError, ValueError):
        return None
