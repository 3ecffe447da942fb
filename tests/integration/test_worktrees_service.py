"""The worktrees service end to end over real NATS, PostgreSQL and git: commands in through the
command client, side effects done by its reactor, outcomes as events and rows."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import msgspec
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext
from orrery.events import Event, default_registry, subjects
from orrery.events import worktrees as w
from orrery.runtime.clock import UUID7
from orrery.runtime.commands.client import CommandClient, CommandFailed
from orrery.runtime.infra.nats_server import NatsServer
from orrery.runtime.projections.rebuild import rebuild
from orrery.runtime.service import run_service
from orrery.runtime.settings import load
from orrery.worktrees.main import spec
from orrery.worktrees.projection import WorktreesProjection

if TYPE_CHECKING:  # mypy sees the repo root; pytest puts tests/ on sys.path
    from tests.gitrepos import GIT_ENV, free_port_block, git
    from tests.gitrepos import make_repo as make_test_repo
else:
    from gitrepos import GIT_ENV, free_port_block, git
    from gitrepos import make_repo as make_test_repo

ids = UUID7()
ORRERY_YML = """\
environment:
  start: "{python} -u -m http.server {{{{ worktree.ports[0] }}}} --bind 127.0.0.1"
  health: {{type: http, url: "http://127.0.0.1:{{{{ worktree.ports[0] }}}}/", interval_s: 0.2}}
  app_url: "http://127.0.0.1:{{{{ worktree.ports[0] }}}}/"
copy: [.env]
"""


def sh(cwd: Path, *args: str) -> str:
    return git(cwd, *args)


def make_repo(root: Path) -> Path:
    return make_test_repo(
        root / "app",
        ORRERY_YML.format(python=sys.executable),
        {".gitignore": ".env\n", "index.html": "<h1>hello</h1>\n"},
        {".env": "SECRET=1\n"},  # untracked: only `copy:` brings it along
    )


@pytest.fixture(autouse=True)
def _git_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


async def fresh_context(js: JetStreamContext, ctx: str) -> None:
    """Each test starts with an empty log for the context (the NATS server is shared)."""
    for name in (
        subjects.event_stream(ctx),
        subjects.command_stream(ctx),
        subjects.output_stream(ctx),
    ):
        with contextlib.suppress(Exception):
            await js.delete_stream(name)


@contextlib.asynccontextmanager
async def running_service(
    nats_url: str, database_url: str, home: Path, monkeypatch: pytest.MonkeyPatch, **env: str
) -> AsyncIterator[None]:
    monkeypatch.setenv("ORRERY_HOME", str(home))
    monkeypatch.setenv("ORRERY_PORT_BASE", str(_free_block()))
    monkeypatch.setenv("ORRERY_RECONCILE_INTERVAL", "0.5")
    monkeypatch.setenv("ORRERY_ENV_STOP_GRACE", "3")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_service(spec(load()), nats_url, database_url, stop, heartbeat_interval=0.5)
    )
    await asyncio.sleep(0.5)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest_asyncio.fixture(loop_scope="session")
async def service(
    nats_server: NatsServer,
    database_url: str,
    js: JetStreamContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Path]:
    await fresh_context(js, "worktrees")
    home = tmp_path / "home"
    async with running_service(nats_server.url, database_url, home, monkeypatch):
        yield home


def _free_block() -> int:
    return free_port_block(30)


@pytest_asyncio.fixture(loop_scope="session")
async def client(nc: Client, js: JetStreamContext) -> AsyncIterator[CommandClient]:
    c = CommandClient(nc, js, default_registry())
    yield c
    await c.close()


def of(*types: type[Event]):  # type: ignore[no-untyped-def]
    return lambda env: isinstance(env.event, types)


async def add_repo(
    client: CommandClient, source: Path, slug: str = "app", *, adopt: bool = False
) -> str:
    repo_id = ids.new()
    sent = await client.send(
        w.AddRepo(
            command_id=ids.new(), repo_id=repo_id, slug=slug, source=str(source), adopt=adopt
        ),
        until=of(w.RepoAdded, w.RepoAddFailed),
    )
    assert isinstance(sent.events[-1].event, w.RepoAdded), sent.events[-1]
    return repo_id


async def create(client: CommandClient, repo_id: str, name: str) -> w.WorktreeCreated:
    sent = await client.send(
        w.CreateWorktree(command_id=ids.new(), worktree_id=ids.new(), repo_id=repo_id, name=name),
        until=of(w.WorktreeCreated, w.WorktreeCreationFailed),
    )
    event = sent.events[-1].event
    assert isinstance(event, w.WorktreeCreated), event
    return event


async def wait_rows(
    pool: asyncpg.Pool, sql: str, *args: object, want: int = 1
) -> list[asyncpg.Record]:
    async with asyncio.timeout(20):
        while True:
            with contextlib.suppress(asyncpg.UndefinedTableError):
                rows = list(await pool.fetch(sql, *args))
                if len(rows) >= want:
                    return rows
            await asyncio.sleep(0.05)


async def test_repo_worktrees_environments_and_drift(
    service: Path,
    client: CommandClient,
    pool: asyncpg.Pool,
    js: JetStreamContext,
    tmp_path: Path,
) -> None:
    source = make_repo(tmp_path / "src")
    repo_id = await add_repo(client, source, adopt=True)  # the user's own checkout, in place
    row = (await wait_rows(pool, "SELECT * FROM worktrees.repos WHERE status='ready'"))[0]
    assert row["default_branch"] == "main"
    assert row["path"] == str(source)
    assert row["adopted"]

    created = [await create(client, repo_id, f"wt-{i}") for i in range(3)]
    assert Path(created[0].path, ".env").read_text() == "SECRET=1\n"
    assert created[0].copied == [".env"]

    # Names are unique per repo: a clear rejection.
    with pytest.raises(CommandFailed) as failed:
        await create(client, repo_id, "wt-1")
    assert failed.value.code == "worktree.name_taken"

    # Start all three at once: each becomes running on its own port.
    starts = [
        client.send(
            w.StartEnvironment(command_id=ids.new(), worktree_id=c.worktree_id),
            until=lambda e: (
                (isinstance(e.event, w.EnvironmentStatusChanged) and e.event.status == "running")
                or isinstance(e.event, w.EnvironmentStartFailed)
            ),
            timeout=30,
        )
        for c in created
    ]
    results = await asyncio.gather(*starts)
    ports = set()
    for sent in results:
        event = sent.events[-1].event
        assert isinstance(event, w.EnvironmentStatusChanged), event
        ports.add(event.ports[0])
    assert len(ports) == 3

    # The logs of the HTTP server reach the output stream.
    first = results[0].events[-1].event
    assert isinstance(first, w.EnvironmentStatusChanged)
    lines = await output_lines(js, created[0].worktree_id, containing="Serving HTTP")
    assert any(f"port {first.ports[0]}" in line for line in lines), lines
    health_rows = await wait_rows(
        pool, "SELECT * FROM worktrees.environments WHERE health='healthy'", want=3
    )
    assert {r["status"] for r in health_rows} == {"running"}

    # A second start is refused while running.
    with pytest.raises(CommandFailed) as already:
        await client.send(
            w.StartEnvironment(command_id=ids.new(), worktree_id=created[0].worktree_id)
        )
    assert already.value.code == "env.already_running"

    for c in created:
        sent = await client.send(
            w.StopEnvironment(command_id=ids.new(), worktree_id=c.worktree_id),
            until=lambda e: (
                isinstance(e.event, w.EnvironmentStatusChanged) and e.event.status == "stopped"
            ),
            timeout=30,
        )
        assert sent.events[-1].event.status == "stopped"  # type: ignore[attr-defined]

    # Archive one with clean: ports released, files kept minus ignored ones.
    target = created[0]
    sent = await client.send(
        w.ArchiveWorktree(
            command_id=ids.new(), worktree_id=target.worktree_id, filesystem="cleaned"
        ),
        until=of(w.WorktreeArchived),
    )
    archived = sent.events[-1].event
    assert isinstance(archived, w.WorktreeArchived)
    assert archived.files_removed >= 1  # the copied .env is ignored, so `git clean -x` removes it
    assert not Path(target.path, ".env").exists()
    assert Path(target.path, "index.html").exists()

    # Delete one by hand: drift, then it can still be removed.
    gone = created[1]
    import shutil

    shutil.rmtree(gone.path)
    await wait_rows(
        pool, "SELECT 1 FROM worktrees.worktrees WHERE worktree_id=$1 AND missing", gone.worktree_id
    )
    sent = await client.send(
        w.DeleteWorktree(command_id=ids.new(), worktree_id=gone.worktree_id),
        until=of(w.WorktreeDeleted),
    )
    deleted = sent.events[-1].event
    assert isinstance(deleted, w.WorktreeDeleted) and deleted.was_missing

    # A worktree made outside Orrery shows up as external drift.
    outside = tmp_path / "outside"
    sh(source, "worktree", "add", "-q", "-b", "hotfix", str(outside))
    rows = await wait_rows(
        pool, "SELECT external FROM worktrees.repos WHERE repo_id=$1 AND external != '[]'", repo_id
    )
    assert str(outside.resolve()) in rows[0]["external"]


async def test_git_state_and_bad_input(
    service: Path, client: CommandClient, tmp_path: Path
) -> None:
    source = make_repo(tmp_path / "src")
    repo_id = await add_repo(client, source)  # cloned into ORRERY_HOME/repos/app
    assert (service / "repos" / "app" / ".orrery.yml").is_file()
    wt = await create(client, repo_id, "state")
    Path(wt.path, "new.txt").write_text("x")
    sent = await client.send(
        w.CaptureGitState(command_id=ids.new(), worktree_id=wt.worktree_id, purpose="task-start"),
        until=of(w.GitStateCaptured),
    )
    captured = sent.events[-1].event
    assert isinstance(captured, w.GitStateCaptured)
    assert captured.branch == "state" and captured.dirty and captured.sha == wt.head_sha

    def cid() -> str:
        return ids.new()

    other = ids.new()
    cases = [
        (w.AddRepo(command_id=cid(), repo_id=other, slug="Bad Slug", source="/x"),
         "repo.invalid_slug"),
        (w.AddRepo(command_id=cid(), repo_id=other, slug="app", source="/x"), "repo.slug_taken"),
        (w.CreateWorktree(command_id=cid(), worktree_id=other, repo_id=other, name="x"),
         "repo.not_found"),
        (w.CreateWorktree(command_id=cid(), worktree_id=other, repo_id=repo_id, name="../x"),
         "worktree.invalid_name"),
        (w.UpdateWorktree(command_id=cid(), worktree_id=wt.worktree_id, issue_url="javascript:x"),
         "worktree.invalid_url"),
        (w.RemoveRepo(command_id=cid(), repo_id=repo_id), "repo.has_worktrees"),
    ]  # fmt: skip
    for command, code in cases:
        with pytest.raises(CommandFailed) as failed:
            await client.send(command)
        assert failed.value.code == code, command

    # A clone that fails is an event, not a hang.
    sent = await client.send(
        w.AddRepo(
            command_id=ids.new(), repo_id=ids.new(), slug="nope", source=str(tmp_path / "nothing")
        ),
        until=of(w.RepoAdded, w.RepoAddFailed),
    )
    failed_add = sent.events[-1].event
    assert isinstance(failed_add, w.RepoAddFailed) and failed_add.code == "git.clone_failed"


DOCKER_YML = """\
environment:
  runner: docker
  start: 'exec httpd -f -v -p "127.0.0.1:$PORT" -h /workspace'
  health: {type: http, url: "http://127.0.0.1:{{ worktree.ports[0] }}/", interval_s: 0.3}
  app_url: "http://127.0.0.1:{{ worktree.ports[0] }}/"
  docker: {image: "IMAGE"}
"""


async def test_docker_environment_through_the_service(  # noqa: PLR0917 - fixtures
    nats_server: NatsServer,
    database_url: str,
    js: JetStreamContext,
    client: CommandClient,
    pool: asyncpg.Pool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An environment with `runner: docker` runs as a container on a real Docker-compatible API
    (podman's service), its port block reachable, its output in the logs, stopped on request."""
    if TYPE_CHECKING:  # mypy sees the repo root; pytest puts this directory on sys.path
        from tests.integration.podman_api import BUSYBOX_IMAGE, PodmanUnavailable, podman_api
    else:
        from podman_api import BUSYBOX_IMAGE, PodmanUnavailable, podman_api

    await fresh_context(js, "worktrees")
    repo = make_repo(tmp_path / "src")
    (repo / ".orrery.yml").write_text(DOCKER_YML.replace("IMAGE", BUSYBOX_IMAGE))
    sh(repo, "commit", "-q", "-am", "docker environment")
    try:
        with podman_api() as docker_url:
            async with running_service(
                nats_server.url,
                database_url,
                tmp_path / "home",
                monkeypatch,
                ORRERY_DOCKER_HOST=docker_url,
                ORRERY_DOCKER_NETWORK="host",  # the sandbox cannot route to a bridge network
            ):
                repo_id = await add_repo(client, repo, adopt=True)
                wt = await create(client, repo_id, "boxed")
                sent = await client.send(
                    w.StartEnvironment(command_id=ids.new(), worktree_id=wt.worktree_id),
                    until=_settled,
                    timeout=60,
                )
                event = sent.events[-1].event
                assert isinstance(event, w.EnvironmentStatusChanged), event
                assert event.runner == "docker" and event.status == "running"
                rows = await wait_rows(
                    pool, "SELECT * FROM worktrees.environments WHERE health='healthy'"
                )
                assert rows[0]["detail"].startswith("healthy")
                port = event.ports[0]
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /index.html HTTP/1.0\r\n\r\n")
                assert b"hello" in await reader.read()
                writer.close()
                # httpd -v logs each request: the container's output reaches the output stream.
                await output_lines(js, wt.worktree_id, containing="response:200")
                sent = await client.send(
                    w.StopEnvironment(command_id=ids.new(), worktree_id=wt.worktree_id),
                    until=lambda e: (
                        isinstance(e.event, w.EnvironmentStatusChanged)
                        and e.event.status == "stopped"
                    ),
                    timeout=60,
                )
    except PodmanUnavailable as exc:
        pytest.fail(f"no Docker-compatible API to test against: {exc}", pytrace=False)


async def output_lines(js: JetStreamContext, worktree_id: str, *, containing: str) -> list[str]:
    """The environment's output so far, from the output stream, once it shows ``containing``."""
    subject = subjects.output_subject("worktrees", "log", worktree_id)
    lines: list[str] = []
    deadline = asyncio.get_running_loop().time() + 20
    while asyncio.get_running_loop().time() < deadline:
        lines = []
        sub = await js.subscribe(
            subject, stream=subjects.output_stream("worktrees"), ordered_consumer=True
        )
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=0.5)
                except TimeoutError:
                    break
                lines += msgspec.json.decode(msg.data, type=w.EnvironmentOutput).lines
                if msg.metadata.num_pending == 0:
                    break  # caught up (a busy server keeps adding lines)
        finally:
            await sub.unsubscribe()
        if any(containing in line for line in lines):
            return lines
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {containing!r} in the output of {worktree_id}: {lines[-20:]}")


def _settled(env: object) -> bool:
    event = getattr(env, "event", None)
    if isinstance(event, w.EnvironmentStartFailed):
        return True
    return isinstance(event, w.EnvironmentStatusChanged) and event.status in ("running", "error")


def _service_process(
    nats_url: str, database_url: str, home: Path, base: int
) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ORRERY_")},
        **GIT_ENV,
        "ORRERY_NATS_URL": nats_url,
        "ORRERY_DATABASE_URL": database_url,
        "ORRERY_HOME": str(home),
        "ORRERY_PORT_BASE": str(base),
        "ORRERY_HEARTBEAT_INTERVAL": "0.5",
    }
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "orrery-worktrees")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _streams_ready(js: JetStreamContext) -> None:
    async with asyncio.timeout(20):
        while True:
            try:
                await js.consumer_info(subjects.event_stream("worktrees"), "worktrees-reactor")
                return
            except Exception:
                await asyncio.sleep(0.1)


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


async def test_kill9_of_the_service_leaves_no_environment_running_unrecorded(  # noqa: PLR0917
    nats_server: NatsServer,
    database_url: str,
    js: JetStreamContext,
    client: CommandClient,
    pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    """kill -9 of the worktrees service while an environment runs: after restart the orphaned
    server is stopped and recorded as stopped (never left 'running' in the log), and it starts
    again on request."""
    await fresh_context(js, "worktrees")
    base = _free_block()
    home = tmp_path / "home"
    proc = _service_process(nats_server.url, database_url, home, base)
    try:
        await _streams_ready(js)
        repo_id = await add_repo(client, make_repo(tmp_path / "src"), adopt=True)
        wt = await create(client, repo_id, "crashy")
        sent = await client.send(
            w.StartEnvironment(command_id=ids.new(), worktree_id=wt.worktree_id),
            until=_settled,
            timeout=30,
        )
        started = sent.events[-1].event
        assert isinstance(started, w.EnvironmentStatusChanged) and started.status == "running"
        port = started.ports[0]
        assert await _listening(port)
        proc.kill()
        proc.wait(10)
        assert await _listening(port), "the server runs in its own process group"

        proc = _service_process(nats_server.url, database_url, home, base)
        rows = await wait_rows(
            pool,
            "SELECT * FROM worktrees.environments WHERE worktree_id=$1 AND status='stopped'",
            wt.worktree_id,
        )
        assert rows[0]["pid"] is None
        async with asyncio.timeout(10):
            while await _listening(port):
                await asyncio.sleep(0.1)

        sent = await client.send(
            w.StartEnvironment(command_id=ids.new(), worktree_id=wt.worktree_id),
            until=_settled,
            timeout=30,
        )
        again = sent.events[-1].event
        assert isinstance(again, w.EnvironmentStatusChanged) and again.status == "running"
        await client.send(
            w.StopEnvironment(command_id=ids.new(), worktree_id=wt.worktree_id),
            until=lambda e: (
                isinstance(e.event, w.EnvironmentStatusChanged) and e.event.status == "stopped"
            ),
            timeout=30,
        )
    finally:
        proc.terminate()
        proc.wait(30)


async def test_the_read_model_rebuilt_from_the_log_equals_the_live_one(
    service: Path,
    client: CommandClient,
    pool: asyncpg.Pool,
    js: JetStreamContext,
    tmp_path: Path,
) -> None:
    source = make_repo(tmp_path / "src")
    repo_id = await add_repo(client, source, adopt=True)
    one = await create(client, repo_id, "one")
    await create(client, repo_id, "two")
    await client.send(
        w.UpdateWorktree(command_id=ids.new(), worktree_id=one.worktree_id, notes="# hi"),
    )
    await client.send(
        w.ArchiveWorktree(command_id=ids.new(), worktree_id=one.worktree_id),
        until=of(w.WorktreeArchived),
    )
    await client.send(
        w.UnarchiveWorktree(command_id=ids.new(), worktree_id=one.worktree_id),
    )
    await wait_rows(
        pool, "SELECT 1 FROM worktrees.worktrees WHERE notes='# hi' AND status='active'"
    )
    projection = WorktreesProjection()

    async def snapshot() -> dict[str, list[tuple[object, ...]]]:
        return {
            table: [
                tuple(r) for r in await pool.fetch(f"SELECT * FROM worktrees.{table} ORDER BY 1")
            ]
            for table in projection.tables
        }

    await asyncio.sleep(1)  # let the reconciler's first passes land
    live = await snapshot()
    assert await rebuild(pool, js, projection, default_registry()) >= 10
    assert await snapshot() == live


async def test_a_replayed_log_redoes_no_side_effect(  # noqa: PLR0917 - fixtures
    nats_server: NatsServer,
    database_url: str,
    js: JetStreamContext,
    client: CommandClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reactor's consumer recreated from the start of the log (an operator reset, an
    upgrade): every request is offered again, and none is done again: the clean that ran
    before an unarchive does not delete what was written since."""
    await fresh_context(js, "worktrees")
    home = tmp_path / "home"
    source = make_repo(tmp_path / "src")
    async with running_service(nats_server.url, database_url, home, monkeypatch):
        repo_id = await add_repo(client, source)
        wt = await create(client, repo_id, "kept")
        await client.send(
            w.ArchiveWorktree(
                command_id=ids.new(), worktree_id=wt.worktree_id, filesystem="cleaned"
            ),
            until=of(w.WorktreeArchived),
        )
        await client.send(w.UnarchiveWorktree(command_id=ids.new(), worktree_id=wt.worktree_id))
        Path(wt.path, "work-in-progress.txt").write_text("precious")
    before = await _count_events(js)
    await js.delete_consumer(subjects.event_stream("worktrees"), "worktrees-reactor")
    async with running_service(nats_server.url, database_url, home, monkeypatch):
        await _streams_ready(js)
        async with asyncio.timeout(20):
            while True:
                info = await js.consumer_info(
                    subjects.event_stream("worktrees"), "worktrees-reactor"
                )
                if info.num_pending == 0 and info.num_ack_pending == 0:
                    break
                await asyncio.sleep(0.1)
    assert Path(wt.path, "work-in-progress.txt").read_text() == "precious"
    assert (home / "repos" / "app" / ".git").is_dir()
    assert await _count_events(js) == before  # nothing recorded twice


async def _count_events(js: JetStreamContext) -> int:
    info = await js.stream_info(subjects.event_stream("worktrees"))
    return int(info.state.messages)
