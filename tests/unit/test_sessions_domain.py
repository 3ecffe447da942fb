"""The session aggregate: one active task, the queue, stop, permissions, fork/spawn, delete."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from orrery.events import Event
from orrery.events import sessions as s
from orrery.events.errors import Rejection
from orrery.runtime.clock import UUID7
from orrery.runtime.decider import Deps
from orrery.sessions.domain import session as d


class Clock:
    def now(self) -> datetime:
        return datetime(2026, 11, 23, tzinfo=UTC)


DEPS = Deps(clock=Clock(), ids=UUID7(), actor="ada")


class Log:
    def __init__(self) -> None:
        self.state = d.Session()
        self.events: list[Event] = []
        self.n = 0

    def do(self, decide: Any, command: Any) -> Sequence[Event]:
        events: Sequence[Event] = decide(command, self.state, DEPS)
        for event in events:
            self.state = d.evolve(self.state, event)
        self.events += events
        return events

    def cid(self) -> str:
        self.n += 1
        return f"c{self.n}"

    def create(self, agent: str = "builtin") -> Log:
        self.do(
            d.decide_create,
            s.CreateSession(
                command_id=self.cid(),
                session_id="s1",
                worktree_id="w1",
                settings=s.AgentSettings(agent=agent),
            ),
        )
        return self

    def prompt(
        self, task_id: str, text: str = "hi", mode: s.QueueMode = "queue"
    ) -> Sequence[Event]:
        return self.do(
            d.decide_prompt,
            s.SubmitPrompt(
                command_id=self.cid(), session_id="s1", task_id=task_id, prompt=text, mode=mode
            ),
        )

    def finish(self, task_id: str, outcome: Any) -> Sequence[Event]:
        return self.do(
            d.decide_finish,
            d.Finish(command_id=self.cid(), session_id="s1", task_id=task_id, outcome=outcome),
        )


def done(task_id: str) -> s.TaskCompleted:
    return s.TaskCompleted(
        session_id="s1", task_id=task_id, model="m", usage=s.Usage(), cost_usd=0.0
    )


def failed(task_id: str) -> s.TaskFailed:
    return s.TaskFailed(session_id="s1", task_id=task_id, code="model.http_500", message="boom")


def test_one_task_at_a_time_and_the_queue_drains_in_order() -> None:
    log = Log().create()
    started = log.prompt("t1")
    assert [type(e) for e in started] == [s.TaskStarted, s.MessageRecorded]
    assert isinstance(started[1], s.MessageRecorded) and started[1].index == 0
    assert [type(e) for e in log.prompt("t2")] == [s.TaskQueued]
    assert [type(e) for e in log.prompt("t3")] == [s.TaskQueued]
    assert log.state.status == "running" and [t for t, _ in log.state.queue] == ["t2", "t3"]
    next_up = log.finish("t1", done("t1"))
    assert [type(e) for e in next_up] == [s.TaskCompleted, s.TaskStarted, s.MessageRecorded]
    assert log.state.active == "t2"
    assert log.finish("t1", done("t1")) == []  # a redelivered outcome changes nothing


def test_a_failed_task_holds_the_queue_until_the_next_prompt() -> None:
    log = Log().create()
    log.prompt("t1")
    log.prompt("t2")
    assert [type(e) for e in log.finish("t1", failed("t1"))] == [s.TaskFailed]
    assert log.state.status == "idle" and log.state.queue
    resumed = log.prompt("t3")
    assert [type(e) for e in resumed] == [s.TaskQueued, s.TaskStarted, s.MessageRecorded]
    assert log.state.active == "t2" and [t for t, _ in log.state.queue] == ["t3"]


def test_queue_reorder_and_removal() -> None:
    log = Log().create()
    log.prompt("t1")
    log.prompt("t2")
    log.prompt("t3")
    with pytest.raises(Rejection) as bad:
        log.do(d.decide_reorder, s.ReorderQueue(command_id="x", session_id="s1", task_ids=["t3"]))
    assert bad.value.code == "queue.mismatch"
    log.do(d.decide_reorder, s.ReorderQueue(command_id="x", session_id="s1", task_ids=["t3", "t2"]))
    log.do(
        d.decide_remove_queued, s.RemoveQueuedPrompt(command_id="y", session_id="s1", task_id="t2")
    )
    assert [t for t, _ in log.state.queue] == ["t3"]


def test_steer_goes_into_the_running_task_where_the_agent_takes_it() -> None:
    log = Log().create()
    log.prompt("t1")
    assert [type(e) for e in log.prompt("t2", mode="steer")] == [s.PromptSteered]
    codex = Log().create(agent="codex")
    codex.prompt("t1")
    assert [type(e) for e in codex.prompt("t2", mode="steer")] == [s.PromptSteered]
    for agent in ("claude-code", "gemini", "opencode"):  # no way in mid-task: queue instead
        other = Log().create(agent=agent)
        other.prompt("t1")
        with pytest.raises(Rejection) as refused:
            other.prompt("t2", mode="steer")
        assert refused.value.code == "session.steer_unsupported"


def test_stop_has_a_deadline_and_permissions_are_decided_once() -> None:
    log = Log().create()
    with pytest.raises(Rejection):
        log.do(d.decide_stop, s.StopTask(command_id="x", session_id="s1"))
    log.prompt("t1")
    asked = s.PermissionRequested(
        session_id="s1",
        task_id="t1",
        request_id="r1",
        tool="write",
        input={},
        deadline=Clock().now(),
    )
    log.do(d.decide_record, d.Record(command_id="r", session_id="s1", events=[asked]))
    assert log.state.status == "awaiting_permission"
    decide = s.DecidePermission(command_id="p", session_id="s1", request_id="r1", allow=True)
    (decided,) = log.do(d.decide_permission, decide)
    assert isinstance(decided, s.PermissionDecided) and decided.decided_by == "ada"
    with pytest.raises(Rejection) as twice:
        log.do(d.decide_permission, decide)
    assert twice.value.code == "permission.not_pending"
    assert log.do(d.decide_expire, d.Expire(command_id="e", session_id="s1", request_id="r1")) == []
    (stop,) = log.do(d.decide_stop, s.StopTask(command_id="x", session_id="s1"))
    assert isinstance(stop, s.StopRequested) and stop.deadline == Clock().now() + d.STOP_BOUND
    status: str = log.state.status  # (mypy keeps the narrowing of the earlier assert)
    assert status == "stopping"
    assert log.do(d.decide_stop, s.StopTask(command_id="y", session_id="s1")) == []


def test_a_pending_permission_is_denied_when_its_task_ends() -> None:
    log = Log().create()
    log.prompt("t1")
    asked = s.PermissionRequested(
        session_id="s1",
        task_id="t1",
        request_id="r1",
        tool="bash",
        input={},
        deadline=Clock().now(),
    )
    log.do(d.decide_record, d.Record(command_id="r", session_id="s1", events=[asked]))
    ended = log.finish("t1", s.TaskStopped(session_id="s1", task_id="t1"))
    assert [type(e) for e in ended] == [s.TaskStopped, s.PermissionDecided]
    assert log.state.pending == ()


def test_interrupted_tasks_resume_once() -> None:
    log = Log().create()
    log.prompt("t1", "write it")
    log.finish("t1", s.TaskInterrupted(session_id="s1", task_id="t1", reason="restart"))
    assert log.state.status == "idle" and log.state.interrupted == (("t1", "write it"),)
    resume = s.ResumeTask(command_id="r", session_id="s1", task_id="t1")
    (started,) = log.do(d.decide_resume, resume)
    assert isinstance(started, s.TaskStarted) and started.resumed and started.prompt == "write it"
    with pytest.raises(Rejection):
        log.do(d.decide_resume, resume)


def test_fork_points_spawns_and_deleting_a_parent() -> None:
    log = Log().create()
    log.prompt("t1")
    log.finish("t1", done("t1"))
    with pytest.raises(Rejection) as bad:
        log.do(
            d.decide_fork,
            s.ForkSession(command_id="f", session_id="s1", child_id="k", after_message=5),
        )
    assert bad.value.code == "session.invalid_fork_point"
    (fork,) = log.do(d.decide_fork, s.ForkSession(command_id="f", session_id="s1", child_id="k1"))
    assert isinstance(fork, s.ChildSessionRequested) and fork.fork_point == 1
    log.do(
        d.decide_spawn, s.SpawnSession(command_id="g", session_id="s1", child_id="k2", prompt="go")
    )
    with pytest.raises(Rejection) as kids:
        log.do(d.decide_delete, s.DeleteSession(command_id="d", session_id="s1"))
    assert kids.value.code == "session.has_children" and kids.value.detail == {
        "children": ["k1", "k2"]
    }
    (deleted,) = log.do(
        d.decide_delete, s.DeleteSession(command_id="d", session_id="s1", children="delete")
    )
    assert isinstance(deleted, s.SessionDeleted) and deleted.child_ids == ["k1", "k2"]
    with pytest.raises(Rejection):
        log.prompt("t9")


def test_an_update_changes_what_it_names_from_the_next_task() -> None:
    log = Log().create(agent="claude-code")
    log.prompt("t1")

    def update(**fields: Any) -> Sequence[Event]:
        return log.do(d.decide_update, s.UpdateSession(command_id="u", session_id="s1", **fields))

    (changed,) = update(title="  parser  ", model=" claude-opus-4-1", permission_mode="auto")
    assert isinstance(changed, s.SessionUpdated)
    assert changed.changed == ["title", "model", "permission_mode"]
    assert changed.title == "parser"
    assert changed.settings == s.AgentSettings(
        agent="claude-code", model="claude-opus-4-1", permission_mode="auto"
    )
    assert log.state.settings == changed.settings and log.state.active == "t1"  # task runs on
    # forks take the settings the session has now
    (fork,) = log.do(d.decide_fork, s.ForkSession(command_id="f", session_id="s1", child_id="k"))
    assert isinstance(fork, s.ChildSessionRequested) and fork.settings.model == "claude-opus-4-1"
    assert update(title="parser", permission_mode="auto") == []  # already so: a retry is harmless
    (thinking,) = update(thinking="off")
    assert isinstance(thinking, s.SessionUpdated) and thinking.changed == ["thinking"]
    assert thinking.title == "parser" and thinking.settings.model == "claude-opus-4-1"
    for fields, code in (
        ({}, "session.empty_update"),
        ({"title": "x" * (d.MAX_TITLE + 1)}, "session.invalid_title"),
        ({"model": "m" * (d.MAX_MODEL + 1)}, "session.invalid_model"),
    ):
        with pytest.raises(Rejection) as bad:
            update(**fields)
        assert bad.value.code == code
    log.do(d.decide_delete, s.DeleteSession(command_id="d", session_id="s1", children="orphan"))
    with pytest.raises(Rejection) as gone:
        update(title="late")
    assert gone.value.code == "session.not_found"


ops = st.lists(st.sampled_from(["prompt", "complete", "fail", "stop_done", "steer"]), max_size=60)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_never_two_active_tasks_and_every_prompt_runs_once(plan: list[str]) -> None:
    log = Log().create()
    n = 0
    for op in plan:
        active = log.state.active
        if op in ("prompt", "steer"):
            n += 1
            log.prompt(f"t{n}", mode="steer" if op == "steer" else "queue")
        elif active is not None:
            outcome = {
                "complete": done(active),
                "fail": failed(active),
                "stop_done": s.TaskStopped(session_id="s1", task_id=active),
            }[op]
            log.finish(active, outcome)
    started = [e.task_id for e in log.events if isinstance(e, s.TaskStarted)]
    assert len(started) == len(set(started)), "a task started twice"
    indexes = [e.index for e in log.events if isinstance(e, s.MessageRecorded)]
    assert indexes == list(range(len(indexes))), "message indexes are dense and in order"
    ended = {
        e.task_id
        for e in log.events
        if isinstance(e, s.TaskCompleted | s.TaskFailed | s.TaskStopped)
    }
    assert set(started) - ended <= {log.state.active}
