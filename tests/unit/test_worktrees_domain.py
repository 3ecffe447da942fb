"""The worktrees registry and environment aggregates: pure decide/evolve, given / when / then."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from orrery.events import Event
from orrery.events import worktrees as w
from orrery.events.errors import Rejection
from orrery.runtime.clock import UUID7
from orrery.runtime.decider import Deps
from orrery.worktrees.domain import environment as env
from orrery.worktrees.domain import registry as reg
from orrery.worktrees.domain.slots import lowest_free


class Clock:
    def now(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC)


DEPS = Deps(clock=Clock(), ids=UUID7(), actor="ada")
BASE = 20_000
create = reg.make_decide_create(BASE)
unarchive = reg.make_decide_unarchive(BASE)


class World:
    """A registry folded from the events its decisions produce (as the command bus does)."""

    def __init__(self) -> None:
        self.state = reg.Registry()
        self.n = 0

    def do(self, decide: Any, command: Any) -> Sequence[Event]:
        events: Sequence[Event] = decide(command, self.state, DEPS)
        for event in events:
            self.state = reg.evolve(self.state, event)
        return events

    def cid(self) -> str:
        self.n += 1
        return f"c{self.n}"

    def repo(self, repo_id: str = "r1", slug: str = "app") -> str:
        self.do(
            reg.decide_add_repo,
            w.AddRepo(command_id=self.cid(), repo_id=repo_id, slug=slug, source="/src"),
        )
        self.do(
            reg.decide_complete_repo_add,
            reg.CompleteRepoAdd(
                command_id=self.cid(), repo_id=repo_id, path="/src", default_branch="main",
                remote_url=None, settings=w.RepoSettings(),
            ),
        )  # fmt: skip
        return repo_id

    def worktree(self, wid: str, name: str, repo_id: str = "r1") -> w.WorktreeRequested:
        (event,) = self.do(
            create,
            w.CreateWorktree(command_id=self.cid(), worktree_id=wid, repo_id=repo_id, name=name),
        )
        assert isinstance(event, w.WorktreeRequested)
        self.do(
            reg.decide_complete_creation,
            reg.CompleteWorktreeCreation(
                command_id=self.cid(), worktree_id=wid, path=f"/wt/{name}", head_sha="a" * 40,
                base_ref="main", environment=None,
            ),
        )  # fmt: skip
        return event

    def archive(self, wid: str, filesystem: w.Filesystem = "preserved") -> None:
        self.do(
            reg.decide_archive,
            w.ArchiveWorktree(command_id=self.cid(), worktree_id=wid, filesystem=filesystem),
        )
        self.do(
            reg.decide_complete_archive, reg.CompleteArchive(command_id=self.cid(), worktree_id=wid)
        )

    def delete(self, wid: str) -> None:
        self.do(reg.decide_delete, w.DeleteWorktree(command_id=self.cid(), worktree_id=wid))
        self.do(
            reg.decide_complete_delete,
            reg.CompleteDelete(command_id=self.cid(), worktree_id=wid, files_deleted=True),
        )


def rejected(world: World, decide: Any, command: Any) -> str:
    with pytest.raises(Rejection) as exc:
        world.do(decide, command)
    return exc.value.code


def test_slots_are_the_lowest_free_and_come_with_a_port_block() -> None:
    world = World()
    world.repo()
    first = world.worktree("w1", "one")
    second = world.worktree("w2", "two")
    assert (first.unique_id, second.unique_id) == (1, 2)
    assert first.ports == list(range(20_000, 20_010))
    assert second.ports == list(range(20_010, 20_020))
    world.archive("w1")  # releases slot 1
    assert world.worktree("w3", "three").unique_id == 1
    (back,) = world.do(unarchive, w.UnarchiveWorktree(command_id=world.cid(), worktree_id="w1"))
    assert isinstance(back, w.WorktreeUnarchived) and back.unique_id == 3


def test_names_are_unique_per_repo_while_the_worktree_lives() -> None:
    world = World()
    world.repo("r1", "app")
    world.repo("r2", "api")
    world.worktree("w1", "fix")
    world.worktree("w2", "fix", repo_id="r2")  # another repo: fine
    code = rejected(
        world, create, w.CreateWorktree(command_id="x", worktree_id="w3", repo_id="r1", name="fix")
    )
    assert code == "worktree.name_taken"
    world.archive("w1")
    assert (
        rejected(
            world,
            create,
            w.CreateWorktree(command_id="x", worktree_id="w3", repo_id="r1", name="fix"),
        )
        == "worktree.name_taken"
    )
    world.delete("w1")
    world.worktree("w3", "fix")  # the name is free once deleted


def cw(**fields: Any) -> w.CreateWorktree:
    base: dict[str, Any] = {"command_id": "x", "worktree_id": "n", "repo_id": "r1", "name": "ok"}
    return w.CreateWorktree(**{**base, **fields})


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (cw(name="Fix"), "worktree.invalid_name"),
        (cw(name="a/../b"), "worktree.invalid_name"),
        (cw(branch="a..b"), "worktree.invalid_branch"),
        (cw(branch="-x"), "worktree.invalid_branch"),
        (cw(repo_id="nope"), "repo.not_found"),
        (cw(issue_url="ftp://x"), "worktree.invalid_url"),
        (cw(notes="x" * 70_000), "worktree.notes_too_large"),
    ],
)
def test_bad_create_commands_are_rejected_with_a_code(command: w.CreateWorktree, code: str) -> None:
    world = World()
    world.repo()
    assert rejected(world, create, command) == code


def test_repo_rules() -> None:
    world = World()
    world.repo("r1", "app")
    assert (
        rejected(
            world,
            reg.decide_add_repo,
            w.AddRepo(command_id="x", repo_id="r2", slug="app", source="/y"),
        )
        == "repo.slug_taken"
    )
    assert (
        rejected(
            world,
            reg.decide_add_repo,
            w.AddRepo(command_id="x", repo_id="r2", slug="b", source="rel", adopt=True),
        )
        == "repo.invalid_source"
    )
    assert (
        rejected(
            world,
            reg.decide_add_repo,
            w.AddRepo(command_id="x", repo_id="r2", slug="b", source="--upload-pack=x"),
        )
        == "repo.invalid_source"
    )
    world.worktree("w1", "one")
    assert (
        rejected(world, reg.decide_remove_repo, w.RemoveRepo(command_id="x", repo_id="r1"))
        == "repo.has_worktrees"
    )
    world.delete("w1")
    (removed,) = world.do(reg.decide_remove_repo, w.RemoveRepo(command_id="x", repo_id="r1"))
    assert isinstance(removed, w.RepoRemoved)
    world.repo("r3", "app")  # the slug is free again


def test_outcomes_apply_once_and_drift_is_recorded_only_on_change() -> None:
    world = World()
    world.repo()
    world.worktree("w1", "one")
    done = reg.CompleteWorktreeCreation(
        command_id="again",
        worktree_id="w1",
        path="/x",
        head_sha=None,
        base_ref=None,
        environment=None,
    )
    assert world.do(reg.decide_complete_creation, done) == []
    missing = reg.RecordDrift(command_id="d1", worktree_id="w1", missing=True)
    assert len(world.do(reg.decide_record_drift, missing)) == 1
    assert world.do(reg.decide_record_drift, missing) == []
    (back,) = world.do(
        reg.decide_record_drift, reg.RecordDrift(command_id="d2", worktree_id="w1", missing=False)
    )
    assert isinstance(back, w.WorktreeFoundOnDisk)
    world.archive("w1", "deleted")
    assert (
        rejected(world, unarchive, w.UnarchiveWorktree(command_id="u", worktree_id="w1"))
        == "worktree.files_deleted"
    )


ops = st.lists(
    st.tuples(st.sampled_from(["create", "archive", "unarchive", "delete"]), st.integers(0, 7)),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_live_slots_stay_distinct_and_each_new_one_is_the_lowest_free(
    plan: list[tuple[str, int]],
) -> None:
    world = World()
    world.repo()
    for op, k in plan:
        wid, wt = f"w{k}", world.state.worktrees.get(f"w{k}")
        holding = [x.unique_id for x in world.state.worktrees.values() if x.unique_id is not None]
        try:
            if op == "create":
                event = world.worktree(f"{wid}-{world.n}", f"n{k}-{world.n}")
                assert event.unique_id == lowest_free(holding)
            elif wt is None:
                continue
            elif op == "archive":
                world.archive(wid)
            elif op == "unarchive":
                (back,) = world.do(
                    unarchive, w.UnarchiveWorktree(command_id=world.cid(), worktree_id=wid)
                )
                assert isinstance(back, w.WorktreeUnarchived)
                assert back.unique_id == lowest_free(holding)
            else:
                world.delete(wid)
        except Rejection:
            continue
        live = [x.unique_id for x in world.state.worktrees.values() if x.unique_id is not None]
        assert len(live) == len(set(live))


# -- environment -------------------------------------------------------------------------------


def fold(events: Sequence[Event]) -> env.Environment:
    state = env.Environment()
    for event in events:
        state = env.evolve(state, event)
    return state


def test_one_start_at_a_time_and_stop_only_when_up() -> None:
    start = w.StartEnvironment(command_id="s", worktree_id="w")
    stop = w.StopEnvironment(command_id="t", worktree_id="w")
    requested = env.decide_start(start, env.Environment(), DEPS)
    state = fold(requested)
    assert state.pending == "start"
    with pytest.raises(Rejection, match="already in progress"):
        env.decide_start(start, state, DEPS)
    state = fold([*requested, w.EnvironmentStatusChanged(worktree_id="w", status="running")])
    with pytest.raises(Rejection) as exc:
        env.decide_start(start, state, DEPS)
    assert exc.value.code == "env.already_running"
    assert env.decide_start(
        w.StartEnvironment(command_id="r", worktree_id="w", restart=True), state, DEPS
    )
    assert env.decide_stop(stop, state, DEPS)
    with pytest.raises(Rejection) as exc:
        env.decide_stop(stop, env.Environment(), DEPS)
    assert exc.value.code == "env.not_running"


def test_status_and_health_are_recorded_only_on_change() -> None:
    running = fold([w.EnvironmentStatusChanged(worktree_id="w", status="running", pid=7)])
    same = env.RecordStatus(command_id="x", worktree_id="w", status="running", pid=7)
    assert env.decide_record_status(same, running, DEPS) == []
    healthy = env.RecordHealth(command_id="h", worktree_id="w", health="healthy")
    assert len(env.decide_record_health(healthy, running, DEPS)) == 1
    assert (
        env.decide_record_health(
            healthy, fold([w.EnvironmentHealthChanged(worktree_id="w", health="healthy")]), DEPS
        )
        == []
    )
    failed = env.decide_fail_start(
        env.FailStart(
            command_id="f", worktree_id="w", code="env.ports_taken", message="port 1 in use"
        ),
        env.Environment(),
        DEPS,
    )
    assert [type(e) for e in failed] == [w.EnvironmentStartFailed, w.EnvironmentStatusChanged]
    assert fold(failed).status == "error" and fold(failed).pending is None
