"""A real Docker-compatible API for tests: podman's API service on a private socket.

:func:`podman_api` starts ``podman system service --time=0 unix://<dir>/podman.sock`` with
its own storage (``--root``/``--runroot`` under ``<dir>``, so nothing touches the
machine's containers), ``CONTAINERS_CONF`` pointing at a conf that uses ``runc``,
``cgroupfs`` and explicit ulimits (the sandbox cannot raise rlimits and crun fails on its
cgroups), waits for the socket to answer, builds a tiny ``FROM scratch`` image holding a
static busybox, and yields the socket's ``unix://`` URL.

When it cannot (a tool missing, the service dying or never answering, the build failing)
it raises :class:`PodmanUnavailable` whose message says why and how to fix it: the tests
fail with that reason rather than skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSYBOX_IMAGE = "localhost/orrery-busybox:test"
INSTALL_HINT = "install it with: apt-get install -y podman runc busybox-static"

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh", "-c", "echo hello-from-built-image"]
"""

_BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


class PodmanUnavailable(RuntimeError):
    """No Docker-compatible API could be started here; the message says why."""


def _require(tool: str) -> str:
    found = shutil.which(tool) or next(
        (p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise PodmanUnavailable(f"{tool} is not installed; {INSTALL_HINT}")
    return found


def _static_busybox() -> Path:
    for candidate in _BUSYBOX_CANDIDATES:
        path = Path(candidate)
        # A dynamically linked busybox (package `busybox`) has an ELF interpreter path;
        # it cannot run in a FROM scratch image.
        if path.is_file() and b"/ld-linux" not in path.read_bytes()[:4096]:
            return path
    raise PodmanUnavailable(f"no static busybox found (busybox-static); {INSTALL_HINT}")


def _ping(socket_path: Path) -> bool:
    import http.client
    import socket

    class _UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(2.0)
            try:
                sock.connect(str(socket_path))
            except OSError:
                sock.close()
                raise
            self.sock = sock

    connection = _UnixConnection("localhost", timeout=2.0)
    try:
        connection.request("GET", "/_ping")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _tail(path: Path, limit: int = 1500) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return text[-limit:].strip() or "(empty log)"


@contextmanager
def podman_api(workdir: Path | None = None, *, start_timeout_s: float = 30.0) -> Iterator[str]:
    """Yield the ``unix://`` base URL of a fresh podman API service with
    :data:`BUSYBOX_IMAGE` built in it; stop the service and delete its storage after."""
    podman = _require("podman")
    _require("runc")
    busybox = _static_busybox()

    owned = workdir is None
    # Short path: unix socket paths are limited to ~107 bytes.
    base = Path(tempfile.mkdtemp(prefix="orrery-podman-")) if workdir is None else workdir
    base.mkdir(parents=True, exist_ok=True)
    conf = base / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    (base / "tmp").mkdir(exist_ok=True)
    socket_path = base / "podman.sock"
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    global_args = [
        podman,
        "--root", str(base / "root"),
        "--runroot", str(base / "run"),
        "--storage-driver", "vfs",
        "--tmpdir", str(base / "tmp"),
    ]  # fmt: skip
    log_path = base / "service.log"
    with log_path.open("wb") as log:
        service = subprocess.Popen(
            [*global_args, "system", "service", "--time=0", f"unix://{socket_path}"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + start_timeout_s
        while not (socket_path.exists() and _ping(socket_path)):
            if service.poll() is not None:
                raise PodmanUnavailable(
                    f"podman system service exited with code {service.returncode}: "
                    f"{_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise PodmanUnavailable(
                    f"podman system service did not answer on {socket_path} within "
                    f"{start_timeout_s:.0f}s: {_tail(log_path)}"
                )
            time.sleep(0.1)

        context = base / "busybox-context"
        context.mkdir(exist_ok=True)
        shutil.copy2(busybox, context / "busybox")
        (context / "Dockerfile").write_text(DOCKERFILE)
        build = subprocess.run(
            [*global_args, "build", "--quiet", "-t", BUSYBOX_IMAGE, str(context)],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if build.returncode != 0:
            raise PodmanUnavailable(
                f"podman build of the busybox image failed ({build.returncode}): "
                f"{(build.stderr or build.stdout).strip()[-1500:]}"
            )
        yield f"unix://{socket_path}"
    finally:
        if service.poll() is None:
            os.killpg(service.pid, signal.SIGTERM)
            try:
                service.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(service.pid, signal.SIGKILL)
                service.wait(timeout=5)
        # Containers left behind (a failed test) and their conmon processes: ask podman.
        subprocess.run(
            [*global_args, "rm", "--all", "--force", "--time", "0"],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            check=False,
        )
        if owned:
            # vfs layers may hold read-only dirs; podman's own reset cleans what rm can't.
            subprocess.run(
                [*global_args, "system", "reset", "--force"],
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=60,
                check=False,
            )
            shutil.rmtree(base, ignore_errors=True)
