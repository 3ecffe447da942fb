"""The running stack's state file, ``$ORRERY_HOME/run/stack.json``, read by ``orrery status``."""

from __future__ import annotations

import os
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
