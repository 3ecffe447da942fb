"""The sessions service with the worktrees service, real NATS, PostgreSQL, git and the scripted
model server over HTTP: permissions, steering, the OpenAI-compatible path, kill -9 and resume."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext
from orrery.events import Envelope, Event, default_registry, subjects
from orrery.events import sessions as s
from orrery.events import worktrees as w
from orrery.modelserver import ScriptedModelServer
from orrery.runtime.clock import UUID7
from orrery.runtime.commands.client import CommandClient
from orrery.runtime.eventstore.jetstream import JetStreamEventStore
from orrery.runtime.infra.nats_server import NatsServer
from orrery.runtime.projections.rebuild import rebuild
from orrery.runtime.service import run_service
from orrery.runtime.settings import load
from orrery.sessions.main import spec as sessions_spec
from orrery.sessions.projection import SessionsProjection
from orrery.worktrees.main import spec as worktrees_spec

if TYPE_CHECKING:  # mypy sees the repo root; pytest puts tests/ on sys.path
    from tests.gitrepos import GIT_ENV, free_port_block
    from tests.gitrepos import make_repo as make_test_repo
else:
    from gitrepos import GIT_ENV, free_port_block
    from gitrepos import make_repo as make_test_repo

ids = UUID7()
SCRIPT = {
    "rules": [
        {
            "match": {"last_user_text": "write hello", "tool_offered": "write"},
            "reply": [
                {"tool_use": {"name": "write", "input": {"path": "hello.txt", "content": "hi\n"}}}
            ],
        },
        {
            "match": {"tool_result_text": "permission denied"},
            "reply": [{"text": "Not allowed, ok."}],
        },
        {"match": {"after_tool_result": True}, "reply": [{"text": "Done."}]},
        {"match": {"last_user_text": "also say bye"}, "reply": [{"text": "Bye."}]},
        {
            "match": {"last_user_text": "slow"},
            "reply": [{"text": "word " * 100, "chunk_chars": 5, "delay_ms": 40}],
        },
        {"match": {"any": True}, "reply": [{"text": "Hello."}]},
    ]
}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ORRERY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ORRERY_PORT_BASE", str(free_port_block(20)))
    monkeypatch.setenv("ORRERY_RECONCILE_INTERVAL", "3600")
    monkeypatch.setenv("ORRERY_PERMISSION_TIMEOUT", "1")


async def fresh(js: JetStreamContext) -> None:
    for ctx in ("worktrees", "sessions"):
        for name in (
            subjects.event_stream(ctx),
            subjects.command_stream(ctx),
            subjects.output_stream(ctx),
        ):
            with contextlib.suppress(Exception):
                await js.delete_stream(name)


@contextlib.asynccontextmanager
async def services(
    nats_url: str, database_url: str, *, with_sessions: bool = True
) -> AsyncIterator[None]:
    stop = asyncio.Event()
    specs = [worktrees_spec(load())] + ([sessions_spec(load())] if with_sessions else [])
    tasks = [
        asyncio.create_task(run_service(sp, nats_url, database_url, stop, heartbeat_interval=0.5))
        for sp in specs
    ]
    await asyncio.sleep(1.0)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


@pytest_asyncio.fixture(loop_scope="session")
async def client(nc: Client, js: JetStreamContext) -> AsyncIterator[CommandClient]:
    await fresh(js)
    c = CommandClient(nc, js, default_registry())
    yield c
    await c.close()


def of(*types: type[Event]) -> Callable[[Envelope[Event]], bool]:
    return lambda env: isinstance(env.event, types)


async def worktree(client: CommandClient, tmp_path: Path) -> w.WorktreeCreated:
    repo = make_test_repo(
        tmp_path / "src" / "app", "environment:\n  start: 'true'\n", {"a.txt": "a\n"}, {}
    )
    repo_id = ids.new()
    await client.send(
        w.AddRepo(command_id=ids.new(), repo_id=repo_id, slug="app", source=str(repo), adopt=True),
        until=of(w.RepoAdded),
    )
    sent = await client.send(
        w.CreateWorktree(command_id=ids.new(), worktree_id=ids.new(), repo_id=repo_id, name="one"),
        until=of(w.WorktreeCreated),
    )
    created = sent.events[-1].event
    assert isinstance(created, w.WorktreeCreated)
    return created


async def session(client: CommandClient, wt: w.WorktreeCreated, **settings: Any) -> str:
    session_id = ids.new()
    await client.send(
        s.CreateSession(
            command_id=ids.new(),
            session_id=session_id,
            worktree_id=wt.worktree_id,
            settings=s.AgentSettings(**settings),
        )
    )
    return session_id


async def log_of(js: JetStreamContext, session_id: str) -> list[Envelope[Event]]:
    store = JetStreamEventStore(js, subjects.event_stream("sessions"))
    return await store.load(subjects.event_subject("sessions", "session", session_id))


async def wait_for(
    js: JetStreamContext, session_id: str, check: Callable[[list[Event]], bool], timeout: float = 30
) -> list[Event]:
    async with asyncio.timeout(timeout):
        while True:
            events = [e.event for e in await log_of(js, session_id)]
            if check(events):
                return events
            await asyncio.sleep(0.1)


def ended(task_id: str) -> Callable[[list[Event]], bool]:
    return lambda events: any(
        isinstance(e, s.TaskCompleted | s.TaskFailed | s.TaskStopped | s.TaskInterrupted)
        and e.task_id == task_id
        for e in events
    )


async def test_permissions_approved_by_a_member_and_denied_by_the_deadline(
    nats_server: NatsServer,
    database_url: str,
    js: JetStreamContext,
    client: CommandClient,
    tmp_path: Path,
) -> None:
    async with ScriptedModelServer(SCRIPT) as model, contextlib.AsyncExitStack() as stack:
        os.environ["ANTHROPIC_BASE_URL"] = model.url
        os.environ["ANTHROPIC_API_KEY"] = "k"
        await stack.enter_async_context(services(nats_server.url, database_url))
        wt = await worktree(client, tmp_path)
        sid = await session(client, wt, permission_mode="ask")
        await client.send(
            s.SubmitPrompt(command_id=ids.new(), session_id=sid, task_id="t1", prompt="write hello")
        )
        events = await wait_for(
            js, sid, lambda ev: any(isinstance(e, s.PermissionRequested) for e in ev)
        )
        asked = next(e for e in events if isinstance(e, s.PermissionRequested))
        assert asked.tool == "write" and asked.input == {"path": "hello.txt", "content": "hi\n"}
        assert not Path(wt.path, "hello.txt").exists()
        await client.send(
            s.DecidePermission(
                command_id=ids.new(), session_id=sid, request_id=asked.request_id, allow=True
            )
        )
        await wait_for(js, sid, ended("t1"))
        assert Path(wt.path, "hello.txt").read_text() == "hi\n"

        # Nobody answers the second request: the deadline (1 s here) denies it; the task goes on.
        Path(wt.path, "hello.txt").unlink()
        await client.send(
            s.SubmitPrompt(
                command_id=ids.new(), session_id=sid, task_id="t2", prompt="write hello again"
            )
        )
        events = await wait_for(js, sid, ended("t2"))
        decided = [e for e in events if isinstance(e, s.PermissionDecided) and e.task_id == "t2"]
        assert [(d.allow, d.reason, d.decided_by) for d in decided] == [
            (False, "timeout", "system")
        ]
        assert isinstance(events[-1], s.TaskCompleted) and events[-1].result == "Not allowed, ok."
        assert not Path(wt.path, "hello.txt").exists()
        os.environ.pop("ANTHROPIC_BASE_URL")


async def test_steering_the_openai_path_spawn_and_rebuild(  # noqa: PLR0917 - fixtures
    nats_server: NatsServer,
    pool: asyncpg.Pool,
    database_url: str,
    js: JetStreamContext,
    client: CommandClient,
    tmp_path: Path,
) -> None:
    async with ScriptedModelServer(SCRIPT) as model, contextlib.AsyncExitStack() as stack:
        os.environ["ANTHROPIC_BASE_URL"] = model.url
        os.environ["OPENAI_BASE_URL"] = f"{model.url}/v1"
        await stack.enter_async_context(services(nats_server.url, database_url))
        wt = await worktree(client, tmp_path)
        sid = await session(client, wt, permission_mode="allow-all")
        await client.send(
            s.SubmitPrompt(command_id=ids.new(), session_id=sid, task_id="t1", prompt="slow one")
        )
        await wait_for(js, sid, lambda ev: any(isinstance(e, s.TaskStarted) for e in ev))
        await asyncio.sleep(0.5)
        await client.send(
            s.SubmitPrompt(
                command_id=ids.new(),
                session_id=sid,
                task_id="t2",
                prompt="also say bye",
                mode="steer",
            )
        )
        events = await wait_for(js, sid, ended("t1"), timeout=60)
        texts = [
            (e.role, b.text)
            for e in events
            if isinstance(e, s.MessageRecorded)
            for b in e.blocks
            if isinstance(b, s.TextBlock)
        ]
        assert ("user", "also say bye") in texts and texts[-1] == ("assistant", "Bye.")

        oa = await session(client, wt, model="openai/gpt-4o", permission_mode="allow-all")
        await client.send(
            s.SubmitPrompt(command_id=ids.new(), session_id=oa, task_id="o1", prompt="write hello")
        )
        events = await wait_for(js, oa, ended("o1"))
        done = events[-1]
        assert (
            isinstance(done, s.TaskCompleted) and done.result == "Done." and done.model == "gpt-4o"
        )
        assert done.usage.input_tokens > 0 and done.cost_usd > 0
        assert Path(wt.path, "hello.txt").read_text() == "hi\n"

        # A spawned child runs its prompt and reports back to its parent.
        child = ids.new()
        await client.send(
            s.SpawnSession(command_id=ids.new(), session_id=sid, child_id=child, prompt="hi kid")
        )
        parent = await wait_for(js, sid, lambda ev: any(isinstance(e, s.ChildReported) for e in ev))
        report = next(e for e in parent if isinstance(e, s.ChildReported))
        assert (report.child_id, report.outcome, report.result) == (child, "completed", "Hello.")
        kid = [e.event for e in await log_of(js, child)]
        assert isinstance(kid[0], s.SessionCreated) and kid[0].parent_id == sid
        assert kid[0].relation == "spawn"

        # The read model rebuilt from the log equals the live one.
        projection = SessionsProjection()
        async with asyncio.timeout(10):
            while (
                await pool.fetchval(
                    "SELECT count(*) FROM sessions.tasks"
                    " WHERE session_id=$1 AND status='completed'",
                    child,
                )
                < 1
            ):
                await asyncio.sleep(0.1)

        async def snapshot() -> dict[str, list[tuple[object, ...]]]:
            return {
                t: [tuple(r) for r in await pool.fetch(f"SELECT * FROM sessions.{t} ORDER BY 1, 2")]
                for t in projection.tables
            }

        live = await snapshot()
        assert await rebuild(pool, js, projection, default_registry()) > 20
        assert await snapshot() == live
        os.environ.pop("ANTHROPIC_BASE_URL")
        os.environ.pop("OPENAI_BASE_URL")


async def test_kill9_of_the_sessions_service_mid_run_then_resume(
    nats_server: NatsServer,
    database_url: str,
    js: JetStreamContext,
    client: CommandClient,
    tmp_path: Path,
) -> None:
    async with ScriptedModelServer(SCRIPT) as model, contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(
            services(nats_server.url, database_url, with_sessions=False)
        )
        env = {
            **os.environ,
            "ORRERY_NATS_URL": nats_server.url,
            "ORRERY_DATABASE_URL": database_url,
            "ANTHROPIC_BASE_URL": model.url,
            "ANTHROPIC_API_KEY": "k",
        }
        binary = str(Path(sys.executable).parent / "orrery-sessions")
        proc = subprocess.Popen(
            [binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            async with asyncio.timeout(30):  # the subprocess creates the sessions streams
                while True:
                    with contextlib.suppress(Exception):
                        await js.consumer_info(
                            subjects.event_stream("sessions"), "sessions-reactor"
                        )
                        break
                    await asyncio.sleep(0.1)
            wt = await worktree(client, tmp_path)
            sid = await session(client, wt, permission_mode="allow-all")
            await client.send(
                s.SubmitPrompt(
                    command_id=ids.new(), session_id=sid, task_id="t1", prompt="slow run"
                )
            )
            await wait_for(js, sid, lambda ev: any(isinstance(e, s.TaskStarted) for e in ev))
            await asyncio.sleep(1.0)  # streaming now
            # A task started while the service was still recovering is its own to run, not an
            # orphan of an earlier instance to interrupt.
            before = [e.event for e in await log_of(js, sid)]
            assert not any(isinstance(e, s.TaskInterrupted) for e in before), before
            proc.kill()
            proc.wait(10)
            log_path = tmp_path / "sessions-restarted.log"
            with log_path.open("w") as log:
                proc = subprocess.Popen([binary], env=env, stdout=log, stderr=log)
            try:
                events = await wait_for(js, sid, ended("t1"))
            except TimeoutError:
                raise AssertionError(log_path.read_text()[-3000:]) from None
            assert isinstance(events[-1], s.TaskInterrupted)
            await client.send(s.ResumeTask(command_id=ids.new(), session_id=sid, task_id="t1"))
            events = await wait_for(
                js,
                sid,
                lambda ev: isinstance(ev[-1], s.TaskCompleted) and ev[-1].task_id == "t1",
                timeout=60,
            )
            envelopes = await log_of(js, sid)
            assert len({e.event_id for e in envelopes}) == len(envelopes), "no event twice"
            indexes = [e.index for e in events if isinstance(e, s.MessageRecorded)]
            assert indexes == list(range(len(indexes))), "no message lost or repeated"
            started = [e for e in events if isinstance(e, s.TaskStarted)]
            assert [(t.task_id, t.resumed) for t in started] == [("t1", False), ("t1", True)]
            after = events[events.index(started[1]) :]
            answers = [
                e for e in after if isinstance(e, s.MessageRecorded) and e.role == "assistant"
            ]
            assert answers, "the resumed run's answer is recorded"
            gits = [e for e in after if isinstance(e, s.TaskGitState)]
            assert [g.moment for g in gits] == ["start", "end"] and gits[0].git.error is None
        finally:
            proc.terminate()
            proc.wait(30)


async def test_a_stop_right_after_the_start_still_ends_the_task(
    nats_server: NatsServer,
    database_url: str,
    js: JetStreamContext,
    client: CommandClient,
    tmp_path: Path,
) -> None:
    """The stop can reach the runner before the run has begun: the task still ends `stopped`
    (it used to stay running for ever), and the queued prompt after it runs."""
    async with ScriptedModelServer(SCRIPT) as model, contextlib.AsyncExitStack() as stack:
        os.environ["ANTHROPIC_BASE_URL"] = model.url
        await stack.enter_async_context(services(nats_server.url, database_url))
        wt = await worktree(client, tmp_path)
        sid = await session(client, wt, permission_mode="allow-all")
        for n in range(3):
            await client.send(
                s.SubmitPrompt(command_id=ids.new(), session_id=sid, task_id=f"a{n}", prompt="slow")
            )
            await client.send(
                s.SubmitPrompt(command_id=ids.new(), session_id=sid, task_id=f"b{n}", prompt="hi")
            )
            await client.send(s.StopTask(command_id=ids.new(), session_id=sid))
            events = await wait_for(js, sid, ended(f"b{n}"), timeout=20)
            outcome = {
                e.task_id: type(e) for e in events if isinstance(e, s.TaskStopped | s.TaskCompleted)
            }
            trail = [(type(e).__name__, getattr(e, "task_id", "")) for e in events]
            assert outcome[f"a{n}"] is s.TaskStopped, trail
            assert outcome[f"b{n}"] is s.TaskCompleted, trail
        os.environ.pop("ANTHROPIC_BASE_URL")
