"""The Docker environment runner: one container per environment, on the ``docker`` SDK.

Each environment ``<env_id>`` gets one container named ``orrery-env-<env_id>``, labelled
(``orrery.managed``, ``orrery.env_id``, ``orrery.ports``), started detached from a local
image (never pulled: a missing image is ``docker.image_not_found``, not a registry call).

Ports. The environment's block of ports is given to the container as ``PORT`` and
``ORRERY_PORT_0..9`` either way; how they reach the host depends on ``network_mode``:

- ``"bridge"`` (the default, for a real Docker engine): every port of the block is
  published 1:1 on ``bind_host`` (``127.0.0.1`` by default), container port == host
  port, so the same number is right inside the container (where the app binds it) and
  outside (where health checks and the app URL use it).
- ``"host"``: the container shares the host's network namespace, so the app binds the
  host's ports directly and there is nothing to publish (the engine rejects or ignores
  port bindings in host mode). This is the mode for sandboxes where the bridge's private
  range must not be used (podman's API service here).

Every blocking SDK call runs in a worker thread (``asyncio.to_thread``) under a timeout,
and every failure comes out as :class:`DockerRunnerError` with a stable ``code``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import docker
import docker.errors
import msgspec
import requests.exceptions
from docker.models.containers import Container
from orrery.runtime.errors import RuntimeFailure

T = TypeVar("T")

NetworkMode = Literal["bridge", "host"]
State = Literal["running", "stopped", "error"]

NAME_PREFIX = "orrery-env-"
LABEL_MANAGED = "orrery.managed"
LABEL_ENV_ID = "orrery.env_id"
LABEL_PORTS = "orrery.ports"
WORKDIR = "/workspace"

_MESSAGE_LIMIT = 600
_TIMEOUT_GRACE = 10.0  # on top of a stop's grace period: the engine's own SIGKILL and reap


class DockerRunnerError(RuntimeFailure):
    """A Docker operation that failed. ``code`` is stable (``docker.*``); ``message`` is for
    humans."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ContainerStatus(msgspec.Struct, frozen=True, kw_only=True):
    state: State
    detail: str
    exists: bool
    container_id: str | None = None
    exit_code: int | None = None
    ports: tuple[int, ...] = ()


def container_name(env_id: str) -> str:
    return f"{NAME_PREFIX}{env_id}"


def port_environment(ports: Sequence[int]) -> dict[str, str]:
    """``PORT`` (the first of the block) and ``ORRERY_PORT_<i>`` for each port."""
    env = {f"ORRERY_PORT_{i}": str(port) for i, port in enumerate(ports)}
    if ports:
        env["PORT"] = str(ports[0])
    return env


def _short(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


def _explanation(exc: docker.errors.APIError) -> str:
    explanation = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    return str(explanation or exc)


def map_error(exc: BaseException, *, what: str) -> DockerRunnerError:  # noqa: PLR0911 - a table
    """One typed error for anything the SDK (or the transport under it) raises."""
    if isinstance(exc, DockerRunnerError):
        return exc
    if isinstance(exc, docker.errors.ImageNotFound):
        return DockerRunnerError("docker.image_not_found", _short(f"{what}: {_explanation(exc)}"))
    if isinstance(exc, docker.errors.NotFound):
        return DockerRunnerError("docker.not_found", _short(f"{what}: {_explanation(exc)}"))
    if isinstance(exc, docker.errors.APIError):
        text = _explanation(exc)
        lowered = text.lower()
        # Docker answers a name clash with 409; podman with 500 "... already in use".
        if exc.status_code == 409 or "already in use" in lowered:
            return DockerRunnerError("docker.conflict", _short(f"{what}: {text}"))
        if "port is already allocated" in lowered or "address already in use" in lowered:
            return DockerRunnerError("docker.port_in_use", _short(f"{what}: {text}"))
        if "no such image" in lowered or "image not known" in lowered:
            return DockerRunnerError("docker.image_not_found", _short(f"{what}: {text}"))
        return DockerRunnerError(
            "docker.api_error", _short(f"{what}: HTTP {exc.status_code}: {text}")
        )
    if isinstance(exc, docker.errors.InvalidArgument):
        return DockerRunnerError("docker.invalid_argument", _short(f"{what}: {exc}"))
    if isinstance(exc, requests.exceptions.Timeout):
        return DockerRunnerError("docker.timeout", _short(f"{what}: the engine did not answer"))
    if isinstance(exc, requests.exceptions.ConnectionError | ConnectionError | FileNotFoundError):
        return DockerRunnerError("docker.unavailable", _short(f"{what}: {exc}"))
    if isinstance(exc, docker.errors.DockerException):
        # Raised by the client's constructor when it cannot reach the engine (version probe).
        return DockerRunnerError("docker.unavailable", _short(f"{what}: {exc}"))
    return DockerRunnerError("docker.error", _short(f"{what}: {type(exc).__name__}: {exc}"))


def _probe_unix_socket(path: str) -> None:
    """Connect once ourselves before the SDK does: docker-py leaks its socket when the
    connect fails (no socket file, nobody listening), and this message is clearer."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(5.0)
        probe.connect(path)
    except OSError as exc:
        raise DockerRunnerError(
            "docker.unavailable", f"no Docker API on unix://{path}: {exc.strerror or exc}"
        ) from exc
    finally:
        probe.close()


class DockerRunner:
    """Runs environments as containers on the Docker Engine API at ``base_url``."""

    def __init__(
        self,
        base_url: str,
        *,
        network_mode: NetworkMode = "bridge",
        bind_host: str = "127.0.0.1",
        init: bool = True,
        timeout_s: float = 30.0,
    ) -> None:
        self._base_url = base_url
        self._network_mode: NetworkMode = network_mode
        self._bind_host = bind_host
        # An init process as PID 1 forwards SIGTERM (a bare server as PID 1 ignores it and
        # would always wait out the grace period before SIGKILL) and reaps zombies.
        self._init = init
        self._timeout_s = timeout_s
        self._client: docker.DockerClient | None = None
        self._lock = asyncio.Lock()
        # Environments this runner stopped: their non-zero exit (143, 137) is "stopped".
        self._stopped_by_us: set[str] = set()

    # -- plumbing ----------------------------------------------------------------------

    async def _run(
        self, what: str, fn: Callable[..., T], *args: Any, timeout: float | None = None
    ) -> T:
        limit = self._timeout_s if timeout is None else timeout
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args), limit)
        except TimeoutError:
            raise DockerRunnerError(
                "docker.timeout", f"{what}: no answer within {limit:.0f}s"
            ) from None
        except Exception as exc:
            raise map_error(exc, what=what) from exc

    def _connect(self) -> docker.DockerClient:
        if self._base_url.startswith(("unix://", "http+unix://")):
            _probe_unix_socket(self._base_url.split("://", 1)[1])
        client = docker.DockerClient(base_url=self._base_url, timeout=int(self._timeout_s))
        try:
            client.ping()
        except Exception:
            client.close()
            raise
        return client

    async def _docker(self) -> docker.DockerClient:
        async with self._lock:
            if self._client is None:
                self._client = await self._run(f"connect to {self._base_url}", self._connect)
            return self._client

    async def _find(self, env_id: str) -> Container | None:
        client = await self._docker()

        def get() -> Container | None:
            try:
                return client.containers.get(container_name(env_id))
            except docker.errors.NotFound:
                return None

        return await self._run(f"inspect {container_name(env_id)}", get)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await asyncio.to_thread(client.close)

    # -- operations --------------------------------------------------------------------

    async def start(
        self,
        env_id: str,
        *,
        image: str,
        command: list[str] | None,
        ports: list[int],
        env: dict[str, str],
        workdir_mount: Path | None,
    ) -> str:
        """Create and start the environment's container; returns the container id.

        A running container for ``env_id`` is ``docker.conflict``; a stopped one left from
        an earlier run is removed first (its configuration may differ)."""
        client = await self._docker()
        name = container_name(env_id)
        existing = await self._find(env_id)
        if existing is not None:
            if existing.status in ("running", "restarting", "paused"):
                raise DockerRunnerError("docker.conflict", f"{name} is already {existing.status}")
            await self._run(f"remove stale {name}", lambda: existing.remove(force=True))
        await self._run(f"find image {image}", client.images.get, image)

        kwargs: dict[str, Any] = {
            "name": name,
            "command": command,
            "detach": True,
            "labels": {
                LABEL_MANAGED: "true",
                LABEL_ENV_ID: env_id,
                LABEL_PORTS: ",".join(str(p) for p in ports),
            },
            "environment": {**env, **port_environment(ports)},
            "init": self._init,
            "network_mode": self._network_mode,
        }
        if self._network_mode == "bridge":
            kwargs["ports"] = {f"{p}/tcp": (self._bind_host, p) for p in ports}

        def create_and_start() -> str:
            if workdir_mount is not None:
                source = str(workdir_mount.resolve())
                kwargs["volumes"] = {source: {"bind": WORKDIR, "mode": "rw"}}
                kwargs["working_dir"] = WORKDIR
            container = client.containers.create(image, **kwargs)
            try:
                container.start()
            except Exception:
                container.remove(force=True)
                raise
            return str(container.id)

        container_id = await self._run(f"start {name}", create_and_start)
        self._stopped_by_us.discard(env_id)
        return container_id

    async def stop(self, env_id: str, grace_s: float) -> None:
        """SIGTERM, then SIGKILL after ``grace_s`` (the engine does both). A missing or
        already stopped container is not an error."""
        container = await self._find(env_id)
        if container is None:
            return
        self._stopped_by_us.add(env_id)
        grace = max(0, round(grace_s))
        await self._run(
            f"stop {container_name(env_id)}",
            lambda: container.stop(timeout=grace),
            timeout=self._timeout_s + grace + _TIMEOUT_GRACE,
        )

    async def status(self, env_id: str) -> ContainerStatus:
        container = await self._find(env_id)
        if container is None:
            return ContainerStatus(state="stopped", detail="no container", exists=False)
        attrs: Mapping[str, Any] = container.attrs
        state: Mapping[str, Any] = attrs.get("State") or {}
        labels: Mapping[str, str] = (attrs.get("Config") or {}).get("Labels") or {}
        ports = tuple(int(p) for p in labels.get(LABEL_PORTS, "").split(",") if p)
        status = str(state.get("Status", "unknown"))
        exit_code = int(state.get("ExitCode") or 0)
        error = str(state.get("Error") or "")
        common: dict[str, Any] = {"exists": True, "container_id": container.id, "ports": ports}
        if status in ("running", "restarting", "paused"):
            return ContainerStatus(state="running", detail=status, **common)
        if error or state.get("OOMKilled") or status == "dead":
            reason = error or ("out of memory" if state.get("OOMKilled") else status)
            return ContainerStatus(state="error", detail=reason, exit_code=exit_code, **common)
        if status == "created":
            return ContainerStatus(state="stopped", detail="created, never started", **common)
        if exit_code != 0 and env_id not in self._stopped_by_us:
            return ContainerStatus(
                state="error",
                detail=f"exited with code {exit_code}",
                exit_code=exit_code,
                **common,
            )
        return ContainerStatus(
            state="stopped",
            detail=f"{status} (code {exit_code})",
            exit_code=exit_code,
            **common,
        )

    async def logs(self, env_id: str, lines: int = 200) -> str:
        """The last ``lines`` lines of stdout and stderr, interleaved as the engine has them."""
        container = await self._find(env_id)
        if container is None:
            raise DockerRunnerError("docker.not_found", f"no container {container_name(env_id)}")
        raw = await self._run(
            f"logs of {container_name(env_id)}",
            lambda: container.logs(stdout=True, stderr=True, tail=max(0, lines)),
        )
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)

    async def follow(self, env_id: str, on_line: Callable[[str], None]) -> None:
        """Call ``on_line`` (on the event loop) for each output line until the container stops.
        The engine's log stream is read in a worker thread; cancelling stops forwarding."""
        container = await self._find(env_id)
        if container is None:
            raise DockerRunnerError("docker.not_found", f"no container {container_name(env_id)}")
        loop = asyncio.get_running_loop()

        def pump() -> None:
            buffer = b""
            for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    loop.call_soon_threadsafe(on_line, line.decode("utf-8", "replace"))
            if buffer:
                loop.call_soon_threadsafe(on_line, buffer.decode("utf-8", "replace"))

        try:
            await asyncio.to_thread(pump)
        except Exception as exc:  # the stream ends with the container, or the engine went away
            raise map_error(exc, what=f"logs of {container_name(env_id)}") from exc

    async def remove(self, env_id: str) -> None:
        """Remove the container (killing it if still running). Missing is not an error."""
        container = await self._find(env_id)
        if container is None:
            self._stopped_by_us.discard(env_id)
            return

        def remove() -> None:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)

        await self._run(f"remove {container_name(env_id)}", remove)
        self._stopped_by_us.discard(env_id)
