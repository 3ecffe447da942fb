"""The Docker runner against a real Docker-compatible API: podman's API service.

Not mocked. Where podman's service cannot be started the tests fail with the reason
(see ``podman_api.PodmanUnavailable``), they do not skip.
"""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from orrery.worktrees.adapters.docker_runner import (
    DockerRunner,
    DockerRunnerError,
    container_name,
)

if TYPE_CHECKING:  # mypy sees the repo root; pytest puts this directory on sys.path
    from tests.integration.podman_api import BUSYBOX_IMAGE, PodmanUnavailable, podman_api
else:
    from podman_api import BUSYBOX_IMAGE, PodmanUnavailable, podman_api

Engine = DockerRunner | PodmanUnavailable  # the runner, or why there is none


@pytest.fixture(scope="module")
def podman() -> Iterator[str | PodmanUnavailable]:
    try:
        with podman_api() as base_url:
            yield base_url
    except PodmanUnavailable as exc:
        yield exc


@pytest.fixture
async def engine(
    podman: str | PodmanUnavailable,
) -> AsyncIterator[Engine]:
    if isinstance(podman, PodmanUnavailable):
        yield podman
        return
    # Host networking: the sandbox must not route to the container bridge's private range,
    # so the container binds the host's ports itself (nothing to publish).
    runner = DockerRunner(podman, network_mode="host", timeout_s=30)
    yield runner
    await runner.close()


def need(engine: Engine) -> DockerRunner:
    """The test fails (in its body, so it is reported FAILED with the reason, not as a
    setup error and never as a skip) when no Docker-compatible API could be started."""
    if isinstance(engine, PodmanUnavailable):
        pytest.fail(f"no Docker-compatible API to test against: {engine}", pytrace=False)
    return engine


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


async def http_get(url: str, *, within_s: float = 10.0) -> tuple[int, str]:
    def get() -> tuple[int, str]:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()

    deadline = time.monotonic() + within_s
    while True:
        try:
            return await asyncio.to_thread(get)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_environment_lifecycle(engine: Engine, tmp_path: Path, unique: str) -> None:
    runner = need(engine)
    env_id = f"life-{unique}"
    ports = free_ports(10)
    (tmp_path / "index.html").write_text("hello from the worktree\n")
    try:
        container_id = await runner.start(
            env_id,
            image=BUSYBOX_IMAGE,
            command=[
                "sh",
                "-c",
                'echo "listening on $PORT, last $ORRERY_PORT_9, app=$APP_NAME"; '
                'exec httpd -f -v -p "127.0.0.1:$PORT" -h /workspace',
            ],
            ports=ports,
            env={"APP_NAME": "demo"},
            workdir_mount=tmp_path,
        )
        assert container_id

        status, body = await http_get(f"http://127.0.0.1:{ports[0]}/index.html")
        assert (status, body) == (200, "hello from the worktree\n")

        running = await runner.status(env_id)
        assert running.state == "running", running
        assert running.exists
        assert running.ports == tuple(ports)

        logs = await runner.logs(env_id, lines=50)
        assert f"listening on {ports[0]}, last {ports[9]}, app=demo" in logs

        started = time.monotonic()
        await runner.stop(env_id, grace_s=5)
        assert time.monotonic() - started < 5, "SIGTERM should stop httpd before the grace ends"
        stopped = await runner.status(env_id)
        assert stopped.state == "stopped", stopped
        assert "listening on" in await runner.logs(env_id, lines=50)
    finally:
        await runner.remove(env_id)
    gone = await runner.status(env_id)
    assert (gone.state, gone.exists) == ("stopped", False)
    await runner.remove(env_id)  # removing twice is not an error
    await runner.stop(env_id, grace_s=1)  # nor is stopping what is gone


async def test_start_twice_is_a_conflict_and_restart_after_stop_works(
    engine: Engine, unique: str
) -> None:
    runner = need(engine)
    env_id = f"twice-{unique}"
    ports = free_ports(1)

    async def start() -> None:
        await runner.start(
            env_id,
            image=BUSYBOX_IMAGE,
            command=["sleep", "300"],
            ports=ports,
            env={},
            workdir_mount=None,
        )

    try:
        await start()
        with pytest.raises(DockerRunnerError) as caught:
            await start()
        assert caught.value.code == "docker.conflict"
        assert container_name(env_id) in caught.value.message

        await runner.stop(env_id, grace_s=2)
        await start()  # the stopped container is replaced
        assert (await runner.status(env_id)).state == "running"
    finally:
        await runner.remove(env_id)


async def test_a_crashed_command_is_an_error(engine: Engine, unique: str) -> None:
    runner = need(engine)
    env_id = f"crash-{unique}"
    try:
        await runner.start(
            env_id,
            image=BUSYBOX_IMAGE,
            command=["sh", "-c", "echo about to fail >&2; exit 3"],
            ports=[],
            env={},
            workdir_mount=None,
        )
        deadline = time.monotonic() + 10
        while (status := await runner.status(env_id)).state == "running":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert (status.state, status.exit_code) == ("error", 3), status
        assert "about to fail" in await runner.logs(env_id, lines=10)
    finally:
        await runner.remove(env_id)


async def test_missing_image(engine: Engine, unique: str) -> None:
    runner = need(engine)
    with pytest.raises(DockerRunnerError) as caught:
        await runner.start(
            f"noimg-{unique}",
            image="localhost/orrery-no-such-image:latest",
            command=None,
            ports=[],
            env={},
            workdir_mount=None,
        )
    assert caught.value.code == "docker.image_not_found"
    assert not (await runner.status(f"noimg-{unique}")).exists


async def test_logs_of_a_missing_container(engine: Engine, unique: str) -> None:
    runner = need(engine)
    with pytest.raises(DockerRunnerError) as caught:
        await runner.logs(f"nothing-{unique}")
    assert caught.value.code == "docker.not_found"


async def test_no_engine_is_unavailable(tmp_path: Path) -> None:
    runner = DockerRunner(f"unix://{tmp_path}/no-such.sock", timeout_s=5)
    with pytest.raises(DockerRunnerError) as caught:
        await runner.status("anything")
    assert caught.value.code == "docker.unavailable"
    assert "no-such.sock" in caught.value.message
