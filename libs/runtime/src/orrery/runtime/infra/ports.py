"""Local-infrastructure primitives shared by the embedded servers.

Free TCP ports, the typed :class:`InfraError`, and the child-process helpers
(signal a whole process group, wait without blocking the event loop, read the
tail of a log, run as an unprivileged user) that :mod:`.nats_server` and
:mod:`.postgres_server` share.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import pwd
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from orrery.runtime.errors import RuntimeFailure

__all__ = [
    "ChildServer",
    "InfraError",
    "free_port",
    "grant_traverse",
    "group_alive",
    "log_since",
    "log_size",
    "port_is_free",
    "run_captured",
    "signal_group",
    "signal_pgid",
    "tail",
    "unprivileged_user",
    "wait_exit",
]


class InfraError(RuntimeFailure):
    """A local server could not be found, started or stopped.

    ``code`` is a stable machine-readable token (e.g. ``"binary-missing"``);
    ``message`` is for humans and may include the tail of the server's log.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = f"infra.{code}"
        self.message = message


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that the kernel reports free right now.

    The socket is closed before returning, so another process could grab the
    port first; callers that bind later must treat a bind failure as retryable.
    SO_REUSEADDR is not set, so a port in TIME_WAIT is never handed out.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if a listening socket could be bound to ``host:port`` right now.

    SO_REUSEADDR is set, as every server we start sets it: connections a stopped server left in
    TIME_WAIT do not make its port look taken (restarting right after a stop works), while a
    socket still listening there does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
        return True


def signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Send ``sig`` to the process group led by ``proc`` (started with
    ``start_new_session=True``), so helpers it forked get the signal too.

    A group that is already gone is not an error: stop/kill must be idempotent.
    """
    if proc.poll() is not None:
        return
    signal_pgid(proc.pid, sig)


def group_alive(pgid: int) -> bool:
    """True while process group ``pgid`` has a live (non-zombie) member.

    Zombies count as gone: their memory is released, and whether they are reaped depends on who
    PID 1 is. Linux's /proc is read where it exists, else ``killpg(pgid, 0)`` answers.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 3 and fields[2] == str(pgid) and fields[0] not in {"Z", "X"}:
            return True
    return False


def signal_pgid(pgid: int, sig: signal.Signals) -> None:
    """Signal a process group, even one whose leader has exited; a gone group is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Poll until ``proc`` exits (and is reaped) or ``timeout`` passes.

    Polling ``Popen.poll`` rather than using an asyncio subprocess keeps the
    server objects independent of any one event loop: pytest fixtures often
    start a server in one loop and tear it down in another.
    Returns True if the process exited.
    """
    try:
        async with asyncio.timeout(timeout):
            while proc.poll() is None:  # noqa: ASYNC110 - a Popen has no awaitable exit
                await asyncio.sleep(0.02)
    except TimeoutError:
        return False
    return True


def tail(path: Path | None, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, or a note if it cannot be read."""
    if path is None:
        return "(no log file)"
    try:
        with path.open("rb") as fh:
            # Only the end matters; do not read a huge log into memory.
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            data = fh.read()
    except OSError as exc:
        return f"(cannot read log {path}: {exc})"
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def log_size(path: Path) -> int:
    """Current size of a log, to read only what a new run appends after it."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def log_since(path: Path, offset: int) -> str:
    """Log text appended after byte ``offset`` ("" if unreadable)."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


# --- Dropping root for child processes --------------------------------------
# Some servers (PostgreSQL) refuse to run as root. These helpers pick an
# unprivileged system account and make a directory reachable for it.


def unprivileged_user(name: str) -> pwd.struct_passwd:
    """The system account ``name``, created with useradd if missing; ``nobody``
    if it cannot be created (no useradd, read-only /etc)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    cmd = ["useradd", "--system", "--no-create-home", "--user-group"]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            [*cmd, "--shell", "/usr/sbin/nologin", name],
            check=False,
            capture_output=True,
            timeout=30,
        )
    # Re-read rather than trust useradd's exit code: a concurrent test process
    # may have created the user first, which makes our useradd fail (code 9).
    for candidate in (name, "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(candidate)
    raise InfraError(
        "no-system-user",
        f"cannot create system user {name!r} and 'nobody' does not exist",
    )


def grant_traverse(path: Path, user: pwd.struct_passwd) -> None:
    """Make every ancestor of ``path`` searchable by ``user``.

    Grants search-only permission (o+x, never o+r) where missing: names inside
    stay unlistable. pytest's /tmp/pytest-of-root and /root are 0700, so
    without this a dropped-privilege server cannot reach its data dir; ACLs
    would be narrower but setfacl is not on a fresh Debian.
    """
    for parent in path.parents:
        st = parent.stat()
        if st.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid == user.pw_gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if st.st_mode & bit:
            continue
        try:
            parent.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
        except OSError as exc:
            raise InfraError(
                "dir-unreachable",
                f"user {user.pw_name!r} cannot traverse {parent} and chmod o+x "
                f"failed ({exc}); use a directory it can reach",
            ) from exc


def run_captured(
    cmd: list[str], cwd: Path, user: pwd.struct_passwd | None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``cmd`` to completion as ``user`` (None: as ourselves), output captured.
    ``extra_groups=[]`` drops root's supplementary groups along with the uid."""
    return subprocess.run(
        cmd,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        user=user.pw_uid if user else None,
        group=user.pw_gid if user else None,
        extra_groups=[] if user else None,
    )


class ChildServer:
    """What both embedded servers share: one child process, in its own process group, that a
    test or ``orrery up`` can stop cleanly, kill as a crash would, and start again."""

    _proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        """SIGKILL the whole group right away, as a crash would; reaps the process."""
        proc = self._proc
        if proc is None:
            return
        signal_group(proc, signal.SIGKILL)
        # Our child, so this returns promptly (unless stuck in D state: the next start says so).
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5.0)
        # The leader's children (PostgreSQL's backends) die a moment later; a server started on
        # the same data before they are gone finds its shared memory still attached and refuses.
        deadline = time.monotonic() + 5.0
        while group_alive(proc.pid) and time.monotonic() < deadline:
            signal_pgid(proc.pid, signal.SIGKILL)
            time.sleep(0.01)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
