"""The built-in agent's tools: read, write, edit, bash, glob, grep, confined to the worktree.

Every path is resolved inside the worktree root (symlinks included) or refused; bash runs in its
own process group with the worktree as cwd, a timeout, and is killed with its children when the
task stops. Output returned to the model is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import re
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_OUTPUT = 30_000
MAX_READ = 256 * 1024
BASH_TIMEOUT_S = 120.0
SKIP_DIRS = frozenset({".git", "node_modules", ".venv", "__pycache__"})

# Tools that change files or run commands: they ask first in permission mode "ask".
MUTATING = frozenset({"write", "edit", "bash"})

SCHEMAS: list[dict[str, Any]] = [
    {
        "name": "read",
        "description": "Read a text file of the worktree.",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string", "description": "relative to the worktree"}},
            "required": ["path"],
        },
    },
    {
        "name": "write",
        "description": "Create or overwrite a file of the worktree with the given content.",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    },
    {
        "name": "edit",
        "description": "Replace exactly one occurrence of old_text with new_text in a file.",
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "old_text": {"type": "string"},
                "new_text": {"type": "string"},
            },
            "required": ["path", "old_text", "new_text"],
        },
    },
    {
        "name": "bash",
        "description": "Run a shell command in the worktree (timeout 120 s).",
        "input_schema": {
            "type": "object",
            "properties": {"command": {"type": "string"}},
            "required": ["command"],
        },
    },
    {
        "name": "glob",
        "description": "List files of the worktree matching a glob pattern (like src/**/*.py).",
        "input_schema": {
            "type": "object",
            "properties": {"pattern": {"type": "string"}},
            "required": ["pattern"],
        },
    },
    {
        "name": "grep",
        "description": "Search files of the worktree for a regular expression.",
        "input_schema": {
            "type": "object",
            "properties": {"pattern": {"type": "string"}, "glob": {"type": "string"}},
            "required": ["pattern"],
        },
    },
]


class ToolError(Exception):
    """A tool call that cannot be done; its message goes back to the model as an error."""


@dataclass(frozen=True)
class ToolResult:
    content: str
    is_error: bool = False


def clip(text: str, limit: int = MAX_OUTPUT) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n[... {len(text) - limit} more]"


class Tools:
    def __init__(self, root: Path, env: Mapping[str, str] | None = None) -> None:
        self.root = root.resolve()
        self._env = dict(env or {})

    def path(self, relative: str) -> Path:
        """``relative`` inside the worktree, or ToolError."""
        if not relative or "\x00" in relative:
            raise ToolError("a path is required")
        target = (self.root / relative).resolve()
        if target != self.root and self.root not in target.parents:
            raise ToolError(f"{relative} is outside the worktree")
        return target

    async def run(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        handlers: dict[str, Callable[[Mapping[str, Any]], Any]] = {
            "read": self._read,
            "write": self._write,
            "edit": self._edit,
            "bash": self._bash,
            "glob": self._glob,
            "grep": self._grep,
        }
        handler = handlers.get(name)
        if handler is None:
            return ToolResult(f"unknown tool {name!r}", is_error=True)
        try:
            result = handler(arguments)
            text = await result if asyncio.iscoroutine(result) else result
        except ToolError as exc:
            return ToolResult(str(exc), is_error=True)
        except (OSError, UnicodeDecodeError, re.error, KeyError, TypeError) as exc:
            return ToolResult(f"{name} failed: {exc}", is_error=True)
        return ToolResult(clip(str(text)))

    # -- file tools (blocking work runs in a thread) --------------------------------------------

    async def _read(self, args: Mapping[str, Any]) -> str:
        path = self.path(str(args["path"]))
        return await asyncio.to_thread(_read_bounded, path)

    async def _write(self, args: Mapping[str, Any]) -> str:
        path = self.path(str(args["path"]))
        content = str(args["content"])
        await asyncio.to_thread(_write, path, content)
        return f"wrote {path.relative_to(self.root)} ({len(content)} characters)"

    async def _edit(self, args: Mapping[str, Any]) -> str:
        path = self.path(str(args["path"]))
        old, new = str(args["old_text"]), str(args["new_text"])
        text = await asyncio.to_thread(path.read_text)
        count = text.count(old)
        if count != 1:
            raise ToolError(f"old_text occurs {count} times in {args['path']}; it must occur once")
        await asyncio.to_thread(_write, path, text.replace(old, new, 1))
        return f"edited {path.relative_to(self.root)}"

    async def _glob(self, args: Mapping[str, Any]) -> str:
        pattern = str(args["pattern"])
        matches = await asyncio.to_thread(self._walk, pattern)
        return "\n".join(matches[:1000]) or "no match"

    async def _grep(self, args: Mapping[str, Any]) -> str:
        regex = re.compile(str(args["pattern"]))
        pattern = str(args.get("glob") or "**/*")
        return await asyncio.to_thread(self._grep_sync, regex, pattern)

    def _walk(self, pattern: str) -> list[str]:
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for name in sorted(filenames):
                rel = os.path.relpath(os.path.join(dirpath, name), self.root)
                if fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(
                    rel, pattern.replace("**/", "")
                ):
                    out.append(rel)
        return out

    def _grep_sync(self, regex: re.Pattern[str], pattern: str) -> str:
        hits: list[str] = []
        for rel in self._walk(pattern):
            try:
                text = (self.root / rel).read_text(errors="strict")
            except (OSError, UnicodeDecodeError):
                continue
            for number, line in enumerate(text.splitlines(), start=1):
                if regex.search(line):
                    hits.append(f"{rel}:{number}: {line[:300]}")
                    if len(hits) >= 500:
                        return "\n".join(hits)
        return "\n".join(hits) or "no match"

    # -- bash --------------------------------------------------------------------------------

    async def _bash(self, args: Mapping[str, Any]) -> str:
        command = str(args["command"])
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            cwd=self.root,
            env={**os.environ, **self._env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(BASH_TIMEOUT_S):
                out, _ = await proc.communicate()
        except TimeoutError:
            _kill_group(proc.pid)
            await proc.wait()
            raise ToolError(f"the command did not finish within {BASH_TIMEOUT_S:.0f}s") from None
        except asyncio.CancelledError:
            _kill_group(proc.pid)  # the task was stopped: nothing it started keeps running
            with contextlib.suppress(Exception):
                await asyncio.shield(proc.wait())
            raise
        text = out.decode("utf-8", "replace")
        return (
            f"{text}\n[exit code {proc.returncode}]" if proc.returncode else text or "(no output)"
        )


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _read_bounded(path: Path) -> str:
    if not path.is_file():
        raise ToolError(f"{path.name} is not a file")
    with path.open("rb") as handle:
        data = handle.read(MAX_READ + 1)
    text = data[:MAX_READ].decode("utf-8", "replace")
    return text + ("\n[... truncated]" if len(data) > MAX_READ else "")


def _write(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
