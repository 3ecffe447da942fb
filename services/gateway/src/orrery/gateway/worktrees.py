"""REST for repos, worktrees and their environments: commands out through the command client,
answers from the worktrees read model once it has caught up with what the command caused."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
import nats.js.errors
from litestar import Controller, Request, delete, get, patch, post
from litestar.params import Parameter
from litestar.response import Response
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from orrery.events import Command, Envelope, Event, subjects
from orrery.events import worktrees as w
from orrery.events.worktrees import EnvironmentOutput
from orrery.gateway import auth
from orrery.gateway.api import IDEMPOTENCY_KEY
from orrery.gateway.errors import ApiError
from orrery.gateway.readmodel import RepoOut, WorktreeOut, WorktreesReadModel
from orrery.runtime.clock import UUID7
from orrery.runtime.commands.client import CommandClient, CommandFailed, Sent
from orrery.runtime.errors import InfrastructureError
from orrery.runtime.eventstore.jetstream import NATS_UNAVAILABLE

_ids = UUID7()
_SLUG_JUNK = re.compile(r"[^a-z0-9-]+")
CLONE_WAIT_S = 300.0
WAIT_S = 30.0
MAX_LOG_LINES = 5_000

Str200 = Annotated[str, msgspec.Meta(max_length=200)]
Url = Annotated[str, msgspec.Meta(max_length=2048)]


class AddRepoIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    slug: Annotated[str, msgspec.Meta(max_length=63)] | None = None
    adopt: bool = False


class CreateWorktreeIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    repo: Str200
    name: Annotated[str, msgspec.Meta(max_length=63)]
    branch: Str200 | None = None
    base: Str200 | None = None
    new_branch: bool = True
    issue_url: Url | None = None
    pull_request_url: Url | None = None
    notes: Annotated[str, msgspec.Meta(max_length=65536)] = ""
    context: dict[str, Any] = msgspec.field(default_factory=dict)


class UpdateWorktreeIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    issue_url: Url | None = None
    pull_request_url: Url | None = None
    notes: Annotated[str, msgspec.Meta(max_length=65536)] | None = None
    context: dict[str, Any] | None = None


class ArchiveIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    filesystem: Literal["preserved", "cleaned", "deleted"] = "preserved"


class GitStateOut(msgspec.Struct, frozen=True):
    branch: str | None
    sha: str | None
    dirty: bool
    error: str | None


class LogsOut(msgspec.Struct, frozen=True):
    lines: list[str]
    next: int  # pass as ``after`` to get only newer lines (source=output)
    truncated: bool
    error: str | None = None


class Accepted(msgspec.Struct, frozen=True):
    command_id: str
    status: str


def default_slug(source: str) -> str:
    tail = source.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    tail = tail.removesuffix(".git").lower()
    slug = _SLUG_JUNK.sub("-", tail).strip("-")[:63].strip("-")
    return slug or "repo"


def command_id(request: Request[Any, Any, Any]) -> str:
    """The client's ``Idempotency-Key`` (the same key twice is one command), else a new id."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return _ids.new()
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise ApiError(
            400,
            "request.idempotency_key",
            "Idempotency-Key must be 8 to 128 letters, digits, '-' or '_'",
        )
    return key


def _is(*types: type[Event]) -> Callable[[Envelope[Event]], bool]:
    return lambda env: isinstance(env.event, types)


def _env_settled(env: Envelope[Event]) -> bool:
    event = env.event
    if isinstance(event, w.EnvironmentStartFailed):
        return True
    return isinstance(event, w.EnvironmentStatusChanged) and event.status != "stopping"


class WorktreesApi:
    """What the controllers share: the command client, the read model and JetStream."""

    def __init__(self, client: CommandClient, model: WorktreesReadModel, js: JetStreamContext):
        self.client = client
        self.model = model
        self.js = js

    async def send(
        self,
        request: Request[Any, Any, Any],
        command: Command,
        until: Callable[[Envelope[Event]], bool] | None = None,
        timeout: float = WAIT_S,
    ) -> Sent:
        sent = await self.client.send(command, actor=auth.actor(), until=until, timeout=timeout)
        await self.model.caught_up(sent.last_sequence)
        return sent

    async def logs(self, worktree_id: str, lines: int, after: int) -> LogsOut:
        subject = subjects.output_subject("worktrees", "log", worktree_id)
        stream = subjects.output_stream("worktrees")
        try:
            last = await self.js.get_last_msg(stream, subject)
        except nats.js.errors.NotFoundError:
            return LogsOut(lines=[], next=after, truncated=False)
        except NATS_UNAVAILABLE as exc:
            raise InfrastructureError(f"cannot read logs: {exc!r}") from exc
        last_seq = int(last.seq or 0)
        if last_seq <= after:
            return LogsOut(lines=[], next=after, truncated=False)
        kept: deque[str] = deque(maxlen=lines)
        total = 0
        decoder = msgspec.json.Decoder(EnvironmentOutput)
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if after else DeliverPolicy.ALL,
            opt_start_seq=after + 1 if after else None,
        )
        sub = await self.js.subscribe(
            subject, stream=stream, ordered_consumer=True, config=config, pending_msgs_limit=-1
        )
        try:
            async with asyncio.timeout(10):
                while True:
                    msg = await sub.next_msg(timeout=5)
                    with contextlib.suppress(msgspec.DecodeError):
                        batch = decoder.decode(msg.data).lines
                        total += len(batch)
                        kept.extend(batch)
                    if msg.metadata.sequence.stream >= last_seq:
                        break
        except TimeoutError:
            pass
        finally:
            await sub.unsubscribe()
        return LogsOut(lines=list(kept), next=last_seq, truncated=total > len(kept))

    async def command_output(self, fetched: w.EnvironmentLogsFetched, lines: int) -> LogsOut:
        try:
            msg = await self.js.get_msg(subjects.output_stream("worktrees"), fetched.output_seq)
        except nats.js.errors.NotFoundError:
            return LogsOut(lines=[], next=0, truncated=False, error="the output expired")
        except NATS_UNAVAILABLE as exc:
            raise InfrastructureError(f"cannot read logs: {exc!r}") from exc
        output = msgspec.json.decode(msg.data or b"{}", type=EnvironmentOutput).lines
        return LogsOut(
            lines=output[-lines:],
            next=0,
            truncated=fetched.truncated or len(output) > lines,
            error=fetched.error,
        )


class ReposController(Controller):
    path = "/api/repos"
    tags = ["repos"]

    @post("/", summary="Add a repo: clone a URL or local path, or adopt a checkout in place")
    async def add(
        self, request: Request[Any, Any, Any], data: AddRepoIn, api: WorktreesApi
    ) -> Response[RepoOut]:
        repo_id = _ids.new()
        slug = data.slug or default_slug(data.source)
        sent = await api.send(
            request,
            w.AddRepo(
                command_id=command_id(request),
                repo_id=repo_id,
                slug=slug,
                source=data.source,
                adopt=data.adopt,
            ),
            until=_is(w.RepoAdded, w.RepoAddFailed),
            timeout=CLONE_WAIT_S,
        )
        if sent.duplicate:
            return Response(await api.model.repo(slug), status_code=HTTP_200_OK)
        outcome = sent.events[-1].event
        if isinstance(outcome, w.RepoAddFailed):
            raise CommandFailed(outcome.code, outcome.message)
        return Response(await api.model.repo(repo_id), status_code=HTTP_201_CREATED)

    @get("/", summary="List repos")
    async def list_repos(
        self, api: WorktreesApi, include_removed: Annotated[bool, Parameter(query="all")] = False
    ) -> list[RepoOut]:
        return await api.model.repos(include_gone=include_removed)

    @get("/{ref:str}", summary="A repo by id, id prefix or slug")
    async def show(self, ref: str, api: WorktreesApi) -> RepoOut:
        return await api.model.repo(ref)

    @post("/{ref:str}/reload", summary="Import .orrery.yml (or .agor.yml) again", status_code=200)
    async def reload(self, request: Request[Any, Any, Any], ref: str, api: WorktreesApi) -> RepoOut:
        repo = await api.model.repo(ref)
        await api.send(
            request,
            w.ReloadRepoConfig(command_id=command_id(request), repo_id=repo.id),
            until=_is(w.RepoConfigImported),
        )
        return await api.model.repo(repo.id)

    @delete("/{ref:str}", summary="Remove a repo (it must have no worktrees)", status_code=200)
    async def remove(
        self,
        request: Request[Any, Any, Any],
        ref: str,
        api: WorktreesApi,
        delete_files: bool = False,
    ) -> RepoOut:
        repo = await api.model.repo(ref)
        await api.send(
            request,
            w.RemoveRepo(
                command_id=command_id(request), repo_id=repo.id, delete_files=delete_files
            ),
        )
        return await api.model.repo(repo.id)


class WorktreesController(Controller):
    path = "/api/worktrees"
    tags = ["worktrees"]

    @post("/", summary="Create a worktree (a new branch from a base, or an existing branch)")
    async def create(
        self, request: Request[Any, Any, Any], data: CreateWorktreeIn, api: WorktreesApi
    ) -> Response[WorktreeOut]:
        repo = await api.model.repo(data.repo)
        worktree_id = _ids.new()
        sent = await api.send(
            request,
            w.CreateWorktree(
                command_id=command_id(request),
                worktree_id=worktree_id,
                repo_id=repo.id,
                name=data.name,
                branch=data.branch,
                base=data.base,
                new_branch=data.new_branch,
                issue_url=data.issue_url,
                pull_request_url=data.pull_request_url,
                notes=data.notes,
                context=data.context,
            ),
            until=_is(w.WorktreeCreated, w.WorktreeCreationFailed),
            timeout=CLONE_WAIT_S,
        )
        if sent.duplicate:
            return Response(await api.model.worktree(f"{repo.slug}/{data.name}"))
        outcome = sent.events[-1].event
        if isinstance(outcome, w.WorktreeCreationFailed):
            raise CommandFailed(outcome.code, outcome.message)
        return Response(await api.model.worktree(worktree_id), status_code=HTTP_201_CREATED)

    @get("/", summary="List worktrees")
    async def list_worktrees(
        self,
        api: WorktreesApi,
        repo: str | None = None,
        archived: bool = False,
        include_gone: Annotated[bool, Parameter(query="all")] = False,
    ) -> list[WorktreeOut]:
        repo_id = (await api.model.repo(repo)).id if repo else None
        return await api.model.worktrees(
            repo_id=repo_id, archived=archived, include_gone=include_gone
        )

    @get("/{ref:str}", summary="A worktree by id, id prefix or name")
    async def show(self, ref: str, api: WorktreesApi) -> WorktreeOut:
        return await api.model.worktree(ref)

    @patch("/{ref:str}", summary="Update issue/PR URLs, notes or custom context")
    async def update(
        self,
        request: Request[Any, Any, Any],
        ref: str,
        data: UpdateWorktreeIn,
        api: WorktreesApi,
    ) -> WorktreeOut:
        wt = await api.model.worktree(ref)
        await api.send(
            request,
            w.UpdateWorktree(
                command_id=command_id(request),
                worktree_id=wt.id,
                issue_url=data.issue_url,
                pull_request_url=data.pull_request_url,
                notes=data.notes,
                context=data.context,
            ),
        )
        return await api.model.worktree(wt.id)

    @post("/{ref:str}/archive", summary="Archive: stop, then keep, clean or delete the files")
    async def archive(
        self,
        request: Request[Any, Any, Any],
        ref: str,
        api: WorktreesApi,
        data: ArchiveIn | None = None,
    ) -> Response[WorktreeOut]:
        wt = await api.model.worktree(ref)
        await api.send(
            request,
            w.ArchiveWorktree(
                command_id=command_id(request),
                worktree_id=wt.id,
                filesystem=(data or ArchiveIn()).filesystem,
            ),
            until=_is(w.WorktreeArchived),
            timeout=60,
        )
        return Response(await api.model.worktree(wt.id), status_code=HTTP_200_OK)

    @post("/{ref:str}/unarchive", summary="Unarchive (gets a port block again)", status_code=200)
    async def unarchive(
        self, request: Request[Any, Any, Any], ref: str, api: WorktreesApi
    ) -> WorktreeOut:
        wt = await api.model.worktree(ref)
        await api.send(
            request, w.UnarchiveWorktree(command_id=command_id(request), worktree_id=wt.id)
        )
        return await api.model.worktree(wt.id)

    @delete(
        "/{ref:str}",
        summary="Delete a worktree (and its files unless told not to)",
        status_code=200,
    )
    async def remove(
        self,
        request: Request[Any, Any, Any],
        ref: str,
        api: WorktreesApi,
        delete_files: bool = True,
    ) -> WorktreeOut:
        wt = await api.model.worktree(ref)
        await api.send(
            request,
            w.DeleteWorktree(
                command_id=command_id(request), worktree_id=wt.id, delete_files=delete_files
            ),
            until=_is(w.WorktreeDeleted),
            timeout=60,
        )
        return await api.model.worktree(wt.id)

    @post(
        "/{ref:str}/git-state",
        summary="Capture HEAD sha, branch and dirty flag now",
        status_code=200,
    )
    async def git_state(
        self, request: Request[Any, Any, Any], ref: str, api: WorktreesApi
    ) -> GitStateOut:
        wt = await api.model.worktree(ref)
        sent = await api.send(
            request,
            w.CaptureGitState(command_id=command_id(request), worktree_id=wt.id, purpose="api"),
            until=_is(w.GitStateCaptured),
        )
        captured = sent.events[-1].event
        assert isinstance(captured, w.GitStateCaptured)
        return GitStateOut(captured.branch, captured.sha, captured.dirty, captured.error)

    @post("/reconcile", summary="Compare with `git worktree list` now", status_code=202)
    async def reconcile(self, request: Request[Any, Any, Any], api: WorktreesApi) -> Accepted:
        cid = command_id(request)
        await api.send(request, w.ReconcileWorktrees(command_id=cid))
        return Accepted(command_id=cid, status="accepted")

    # -- environments ------------------------------------------------------------------------

    async def _env_command(
        self, request: Request[Any, Any, Any], ref: str, api: WorktreesApi, command: str
    ) -> WorktreeOut:
        wt = await api.model.worktree(ref)
        cid = command_id(request)
        message: Command
        if command == "stop":
            message = w.StopEnvironment(command_id=cid, worktree_id=wt.id)
        else:
            message = w.StartEnvironment(
                command_id=cid, worktree_id=wt.id, restart=command == "restart"
            )
        sent = await api.send(request, message, until=_env_settled, timeout=60)
        if sent.events and isinstance(failed := sent.events[-1].event, w.EnvironmentStartFailed):
            raise CommandFailed(failed.code, failed.message)
        return await api.model.worktree(wt.id)

    @post("/{ref:str}/env/start", summary="Start the environment", status_code=200)
    async def env_start(
        self, request: Request[Any, Any, Any], ref: str, api: WorktreesApi
    ) -> WorktreeOut:
        return await self._env_command(request, ref, api, "start")

    @post("/{ref:str}/env/stop", summary="Stop the environment", status_code=200)
    async def env_stop(
        self, request: Request[Any, Any, Any], ref: str, api: WorktreesApi
    ) -> WorktreeOut:
        return await self._env_command(request, ref, api, "stop")

    @post("/{ref:str}/env/restart", summary="Restart the environment", status_code=200)
    async def env_restart(
        self, request: Request[Any, Any, Any], ref: str, api: WorktreesApi
    ) -> WorktreeOut:
        return await self._env_command(request, ref, api, "restart")

    @get(
        "/{ref:str}/env/logs",
        summary="The environment's output (last lines, or after a seq), or with source=command"
        " the output of its `logs` command run now",
    )
    async def env_logs(
        self,
        *,
        request: Request[Any, Any, Any],
        ref: str,
        api: WorktreesApi,
        lines: Annotated[int, Parameter(ge=1, le=MAX_LOG_LINES)] = 100,
        after: Annotated[int, Parameter(ge=0)] = 0,
        source: Literal["output", "command"] = "output",
    ) -> LogsOut:
        wt = await api.model.worktree(ref)
        if source == "output":
            return await api.logs(wt.id, lines, after)
        sent = await api.send(
            request,
            w.FetchEnvironmentLogs(command_id=command_id(request), worktree_id=wt.id),
            until=_is(w.EnvironmentLogsFetched),
        )
        fetched = sent.events[-1].event
        assert isinstance(fetched, w.EnvironmentLogsFetched)
        return await api.command_output(fetched, lines)
