"""Environments: render a worktree's commands, check its ports, run it (a process group, or a
container), watch its health, and record every change as an event. Output goes to a rolling log
file and, batched, to ``worktrees.out.log.<worktree_id>`` for live views and the logs API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from nats.js import JetStreamContext
from orrery.events import Envelope, Event, EventMeta, subjects
from orrery.events.worktrees import EnvironmentOutput, EnvironmentTemplate, Health
from orrery.runtime.clock import UUID7
from orrery.runtime.commands.handling import CommandBus
from orrery.runtime.eventstore.jetstream import NATS_UNAVAILABLE
from orrery.runtime.infra.ports import group_alive, port_is_free, signal_pgid
from orrery.runtime.reactions import follow_up
from orrery.templating import RepoCtx, TemplateContext, TemplateError, WorktreeCtx, render
from orrery.worktrees.adapters.docker_runner import DockerRunner, DockerRunnerError
from orrery.worktrees.adapters.files import Layout, is_dir
from orrery.worktrees.adapters.health import (
    HealthCheck,
    HealthMonitor,
    HealthResult,
    HttpCheck,
    TcpCheck,
)
from orrery.worktrees.adapters.process_runner import EnvState, ProcessRunner, ProcessRunnerError
from orrery.worktrees.domain.environment import (
    ENVIRONMENT,
    FailStart,
    RecordHealth,
    RecordLogs,
    RecordStatus,
)
from orrery.worktrees.domain.registry import AGGREGATE_ID, REGISTRY, RepoState, WorktreeState
from orrery.worktrees.domain.slots import port_environment

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.1
LOGS_TIMEOUT_S = 10.0
LOGS_MAX_BYTES = 100 * 1024
MAX_BATCH_LINES = 500


class StartRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Rendered:
    start: str
    stop: str | None
    app_url: str | None
    health: HealthCheck | None
    interval_s: float
    start_grace_s: float
    docker_image: str | None = None
    docker_command: list[str] | None = None
    docker_env: dict[str, str] = field(default_factory=dict)
    docker_workdir: str = "/workspace"


def port_in_use(port: int) -> bool:
    """True when something listens on ``port`` on any local address."""
    return not port_is_free(port, "0.0.0.0")  # noqa: S104 - probing, never listening


def template_context(repo: RepoState, wt: WorktreeState) -> TemplateContext:
    return TemplateContext(
        repo=RepoCtx(
            slug=repo.slug,
            name=repo.slug,
            default_branch=repo.default_branch,
            remote_url=repo.remote_url,
            path=repo.path,
        ),
        worktree=WorktreeCtx(
            name=wt.name,
            ref=wt.branch,
            path=wt.path,
            unique_id=wt.unique_id or 0,
            ports=list(wt.ports),
            issue_url=wt.issue_url,
            pull_request_url=wt.pull_request_url,
            notes=wt.notes,
            context=dict(wt.context),
        ),
    )


def render_environment(template: EnvironmentTemplate, ctx: TemplateContext) -> Rendered:
    """Every command rendered now, so a broken template fails the start, not a later stop."""

    def one(text: str | None, what: str) -> str | None:
        if text is None:
            return None
        try:
            return render(text, ctx).strip()
        except TemplateError as exc:
            raise StartRefused("env.template", f"environment.{what}: {exc}") from None

    check: HealthCheck | None = None
    health = template.health
    if health is not None:
        if health.type == "http":
            url = one(health.url, "health.url") or ""
            try:
                check = HttpCheck(url, timeout_s=health.timeout_s)
            except ValueError as exc:
                raise StartRefused("env.template", f"environment.health.url: {exc}") from None
        else:
            host = one(health.host, "health.host") or "127.0.0.1"
            port_text = one(str(health.port), "health.port") or ""
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise StartRefused(
                    "env.template", f"environment.health.port: {port_text!r} is not a port"
                )
            check = TcpCheck(host, int(port_text), timeout_s=health.timeout_s)
    docker = template.docker
    return Rendered(
        start=one(template.start, "start") or "",
        stop=one(template.stop, "stop") or None,
        app_url=one(template.app_url, "app_url") or None,
        health=check,
        interval_s=health.interval_s if health else 5.0,
        start_grace_s=health.start_grace_s if health else 0.0,
        docker_image=one(docker.image, "docker.image") if docker else None,
        # In a container, `start` is the command (through sh) unless docker.command is given.
        docker_command=shlex.split(one(docker.command, "docker.command") or "")
        if docker and docker.command
        else ["sh", "-c", one(template.start, "start") or ""],
        docker_env={k: one(v, f"docker.env.{k}") or "" for k, v in docker.env.items()}
        if docker
        else {},
        docker_workdir=docker.workdir if docker else "/workspace",
    )


@dataclass
class _Live:
    worktree_id: str
    rendered: Rendered
    ports: list[int]
    runner: str
    meta: EventMeta
    status: str = "starting"
    monitor: HealthMonitor | None = None
    stopping: bool = False
    follower: asyncio.Task[None] | None = None


class EnvironmentManager:
    """Holds the environments this service instance runs (one reactor claims them all)."""

    def __init__(
        self,
        bus: CommandBus,
        js: JetStreamContext,
        layout: Layout,
        *,
        grace_s: float = 10.0,
        docker_url: str | None = None,
        docker_network: str = "bridge",
    ) -> None:
        self._bus = bus
        self._js = js
        self._layout = layout
        self._grace_s = grace_s
        self._docker_url = docker_url
        self._docker_network = docker_network
        self._docker: DockerRunner | None = None
        self._ids = UUID7()
        self._live: dict[str, _Live] = {}
        self._pending: dict[str, list[str]] = {}
        self._wake = asyncio.Event()
        self.runner = ProcessRunner(on_output=self._on_output, on_state=self._on_state)

    # -- recording ---------------------------------------------------------------------------

    async def _record(
        self, command: RecordStatus | FailStart | RecordHealth | RecordLogs, meta: EventMeta
    ) -> None:
        await self._bus.run(command, meta)

    async def _status(
        self, live: _Live, status: str, detail: str = "", pid: int | None = None, *, key: str = ""
    ) -> None:
        live.status = status
        command_id = f"{key}:{status}" if key else self._ids.new()
        await self._record(
            RecordStatus(
                command_id=command_id,
                worktree_id=live.worktree_id,
                status=status,  # type: ignore[arg-type]
                detail=detail,
                pid=pid,
                ports=live.ports,
                app_url=live.rendered.app_url,
                runner=live.runner,
            ),
            live.meta,
        )

    # -- start -------------------------------------------------------------------------------

    async def start(self, trigger: Envelope[Event], worktree_id: str, *, restart: bool) -> None:
        meta = follow_up(trigger)
        key = trigger.event_id
        if restart:
            await self._stop(worktree_id, meta, key=f"{key}:restart")
        try:
            live = await self._prepare(worktree_id, meta)
            await self._launch(live, key)
        except StartRefused as exc:
            await self._record(
                FailStart(
                    command_id=f"{key}:failed",
                    worktree_id=worktree_id,
                    code=exc.code,
                    message=exc.message,
                ),
                meta,
            )

    async def _prepare(self, worktree_id: str, meta: EventMeta) -> _Live:
        registry = await self._bus.current(REGISTRY, AGGREGATE_ID)
        wt = registry.worktrees.get(worktree_id)
        if wt is None or wt.status in ("deleted", "failed"):
            raise StartRefused("worktree.not_found", f"no worktree {worktree_id}")
        if wt.status != "active":
            raise StartRefused("worktree.not_active", f"worktree {wt.name} is {wt.status}")
        if wt.environment is None:
            repo = registry.repos.get(wt.repo_id)
            slug = repo.slug if repo else wt.repo_id
            raise StartRefused(
                "env.not_configured",
                f"repo {slug} has no environment: add an `environment:` section to its"
                " .orrery.yml (then `orrery repo reload`) and create the worktree again",
            )
        if wt.missing or not await is_dir(wt.path):
            raise StartRefused("worktree.missing", f"{wt.path} is missing on disk")
        taken = [p for p in wt.ports if port_in_use(p)]
        if taken:
            raise StartRefused(
                "env.ports_taken",
                f"port{'s' if len(taken) > 1 else ''} {', '.join(map(str, taken))} of worktree"
                f" {wt.name} (block {wt.ports[0]}-{wt.ports[-1]}) in use by another process",
            )
        repo = registry.repos[wt.repo_id]
        rendered = render_environment(wt.environment, template_context(repo, wt))
        if wt.environment.runner == "docker" and not self._docker_url:
            raise StartRefused(
                "env.docker_unavailable",
                "this environment runs in Docker, but the worktrees service has no Docker API"
                " (set ORRERY_DOCKER_HOST or DOCKER_HOST)",
            )
        return _Live(worktree_id, rendered, list(wt.ports), wt.environment.runner, meta)

    async def _launch(self, live: _Live, key: str) -> None:
        wid = live.worktree_id
        registry = await self._bus.current(REGISTRY, AGGREGATE_ID)
        wt = registry.worktrees[wid]
        env = {
            **port_environment(live.ports),
            "ORRERY_WORKTREE_ID": wid,
            "ORRERY_WORKTREE_NAME": wt.name,
            "ORRERY_WORKTREE_PATH": wt.path,
        }
        self._live[wid] = live
        pid: int | None = None
        try:
            if live.runner == "docker":
                assert live.rendered.docker_image is not None
                docker = await self._docker_runner()
                container = await docker.start(
                    wid,
                    image=live.rendered.docker_image,
                    command=live.rendered.docker_command,
                    ports=live.ports,
                    env={**live.rendered.docker_env, **env},
                    workdir_mount=Path(wt.path),
                )
                detail = f"container {container[:12]}"
                live.follower = asyncio.create_task(self._follow_container(live))
            else:
                status = await self.runner.start(
                    wid,
                    live.rendered.start,
                    cwd=Path(wt.path),
                    env=env,
                    log_path=self._layout.env_log(wid),
                )
                pid = status.pid
                detail = f"pid {pid}"
        except (ProcessRunnerError, DockerRunnerError) as exc:
            self._live.pop(wid, None)
            raise StartRefused("env.start_failed", str(exc)) from None
        if live.rendered.health is None:
            await self._status(live, "running", detail, pid, key=key)
            return
        await self._status(live, "starting", detail, pid, key=key)
        live.monitor = HealthMonitor(
            live.rendered.health,
            live.rendered.interval_s,
            lambda result: self._health_changed(live, pid, result),
            initial_delay_s=min(live.rendered.start_grace_s, 0.5),
        )
        live.monitor.start()

    async def _health_changed(self, live: _Live, pid: int | None, result: HealthResult) -> None:
        if live.stopping or self._live.get(live.worktree_id) is not live:
            return
        if result.healthy and live.status == "starting":
            await self._status(live, "running", f"healthy: {result.detail}", pid)
        if live.status == "starting" and not result.healthy:
            return  # failures while starting are expected
        health: Health = "healthy" if result.healthy else "unhealthy"
        await self._record(
            RecordHealth(
                command_id=self._ids.new(),
                worktree_id=live.worktree_id,
                health=health,
                message=result.detail,
            ),
            live.meta,
        )

    async def _follow_container(self, live: _Live) -> None:
        """Forward the container's output; when it ends on its own, record that."""
        wid = live.worktree_id
        docker = await self._docker_runner()
        try:
            await docker.follow(wid, lambda line: self._buffer(wid, line))
        except DockerRunnerError as exc:
            log.warning("output of %s: %s", wid, exc)
        if live.stopping or self._live.get(wid) is not live:
            return
        self._live.pop(wid, None)
        if live.monitor is not None:
            await live.monitor.stop()
        try:
            status = await docker.status(wid)
            failed = status.exit_code not in (None, 0)
            detail = f"the container exited with code {status.exit_code}"
        except DockerRunnerError as exc:
            failed, detail = True, exc.message
        await self._status(live, "error" if failed else "stopped", detail)

    async def _docker_runner(self) -> DockerRunner:
        if self._docker is None:
            assert self._docker_url is not None
            host = self._docker_network == "host"
            self._docker = DockerRunner(self._docker_url, network_mode="host" if host else "bridge")
        return self._docker

    # -- the logs command ------------------------------------------------------------------

    async def fetch_logs(self, trigger: Envelope[Event], worktree_id: str) -> None:
        """Run the rendered ``logs`` command (10 s at most, the last 100 KB kept), put its output
        on the output stream and record where."""
        lines: list[str] = []
        truncated, exit_code, error = False, None, None
        registry = await self._bus.current(REGISTRY, AGGREGATE_ID)
        wt = registry.worktrees.get(worktree_id)
        template = wt.environment if wt is not None else None
        if wt is None or template is None or not template.logs:
            error = "no logs command configured (environment.logs in .orrery.yml)"
        elif not await is_dir(wt.path):
            error = f"{wt.path} is missing on disk"
        else:
            try:
                command = render(template.logs, template_context(registry.repos[wt.repo_id], wt))
                lines, truncated, exit_code = await _run_capped(
                    command, Path(wt.path), port_environment(list(wt.ports))
                )
            except TemplateError as exc:
                error = f"environment.logs: {exc}"
            except TimeoutError:
                error = f"the logs command did not finish within {LOGS_TIMEOUT_S:.0f}s"
            except OSError as exc:
                error = f"the logs command could not run: {exc}"
        body = EnvironmentOutput(lines=lines, at=datetime.now(UTC).isoformat())
        ack = await self._js.publish(
            subjects.output_subject("worktrees", "logscmd", worktree_id),
            msgspec.json.encode(body),
            stream=subjects.output_stream("worktrees"),
        )
        await self._record(
            RecordLogs(
                command_id=f"{trigger.event_id}:outcome",
                worktree_id=worktree_id,
                output_seq=int(ack.seq),
                lines=len(lines),
                truncated=truncated,
                exit_code=exit_code,
                error=error,
            ),
            follow_up(trigger),
        )

    # -- stop --------------------------------------------------------------------------------

    async def stop(self, trigger: Envelope[Event], worktree_id: str) -> None:
        await self._stop(worktree_id, follow_up(trigger), key=trigger.event_id)

    async def stop_for(self, trigger: Envelope[Event], worktree_id: str) -> None:
        """Stop before an archive or delete (nothing to do when it is not running)."""
        await self._stop(worktree_id, follow_up(trigger), key=f"{trigger.event_id}:env")

    async def _stop(self, worktree_id: str, meta: EventMeta, *, key: str) -> None:
        live = self._live.get(worktree_id)
        if live is None:
            await self._stop_orphan(worktree_id, meta, key=key)
            return
        live.stopping = True
        live.meta = meta
        if live.monitor is not None:
            await live.monitor.stop()
        await self._status(live, "stopping", key=key)
        try:
            if live.runner == "docker":
                await (await self._docker_runner()).stop(worktree_id, self._grace_s)
                if live.follower is not None:
                    live.follower.cancel()
            else:
                await self.runner.stop(
                    worktree_id, stop_command=live.rendered.stop, grace_s=self._grace_s
                )
        except (ProcessRunnerError, DockerRunnerError) as exc:
            log.warning("stopping %s: %s", worktree_id, exc)
        self._live.pop(worktree_id, None)
        await self._status(live, "stopped", key=key)

    async def _stop_orphan(self, worktree_id: str, meta: EventMeta, *, key: str) -> None:
        """An environment the log says is up but this process does not hold (the service
        restarted): stop its process group if it is still there, and record it stopped."""
        env = await self._bus.current(ENVIRONMENT, worktree_id)
        if env.status == "stopped":
            return
        if env.pid is not None and group_alive(env.pid):
            signal_pgid(env.pid, signal.SIGTERM)
            for _ in range(int(self._grace_s / 0.1)):
                if not group_alive(env.pid):
                    break
                await asyncio.sleep(0.1)
            else:
                signal_pgid(env.pid, signal.SIGKILL)
        await self._record(
            RecordStatus(command_id=f"{key}:stopped", worktree_id=worktree_id, status="stopped"),
            meta,
        )

    async def recover(self, worktree_ids: Sequence[str]) -> None:
        """At start: environments left starting/running by a previous instance are stopped
        (their output can no longer be captured) and recorded as such, never left hanging."""
        for wid in worktree_ids:
            env = await self._bus.current(ENVIRONMENT, wid)
            if env.status == "stopped" or wid in self._live:
                continue
            meta = EventMeta(occurred_at=datetime.now(UTC), actor="system")
            await self._stop_orphan(wid, meta, key=self._ids.new())

    async def close(self) -> None:
        for wid in list(self._live):
            with contextlib.suppress(Exception):
                meta = EventMeta(occurred_at=datetime.now(UTC), actor="system")
                await self._stop(wid, meta, key=self._ids.new())
        await self.runner.close()
        if self._docker is not None:
            await self._docker.close()

    # -- runner callbacks --------------------------------------------------------------------

    async def _on_state(self, env_id: str, old: EnvState, new: EnvState, detail: str) -> None:
        live = self._live.get(env_id)
        if live is None or live.stopping or new not in (EnvState.STOPPED, EnvState.ERROR):
            return
        # The process ended by itself.
        self._live.pop(env_id, None)
        if live.monitor is not None:
            await live.monitor.stop()
        status = "error" if new is EnvState.ERROR else "stopped"
        await self._status(live, status, detail or "the process exited")

    async def _on_output(self, env_id: str, line: str) -> None:
        self._buffer(env_id, line)

    def _buffer(self, env_id: str, line: str) -> None:
        self._pending.setdefault(env_id, []).append(line)
        self._wake.set()

    async def publish_output(self, stop: asyncio.Event) -> None:
        """Flush buffered lines to the output stream, one message per env per interval."""
        encoder = msgspec.json.Encoder()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(FLUSH_INTERVAL_S)
            pending, self._pending = self._pending, {}
            at = datetime.now(UTC).isoformat()
            for env_id, lines in pending.items():
                for i in range(0, len(lines), MAX_BATCH_LINES):
                    body = EnvironmentOutput(lines=lines[i : i + MAX_BATCH_LINES], at=at)
                    try:
                        await self._js.publish(
                            subjects.output_subject("worktrees", "log", env_id),
                            encoder.encode(body),
                            stream=subjects.output_stream("worktrees"),
                        )
                    except NATS_UNAVAILABLE as exc:
                        log.warning("output of %s not published: %r", env_id, exc)


async def _run_capped(
    command: str, cwd: Path, env: dict[str, str]
) -> tuple[list[str], bool, int | None]:
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        command,
        cwd=cwd,
        env={**os.environ, **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    kept = bytearray()
    truncated = False
    try:
        async with asyncio.timeout(LOGS_TIMEOUT_S):
            while chunk := await proc.stdout.read(64 * 1024):
                kept += chunk
                if len(kept) > LOGS_MAX_BYTES:
                    del kept[: len(kept) - LOGS_MAX_BYTES]
                    truncated = True
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            signal_pgid(proc.pid, signal.SIGKILL)
            await proc.wait()
    text = kept.decode("utf-8", "replace")
    if truncated:
        text = text.split("\n", 1)[-1]  # drop the partial first line
    return text.splitlines(), truncated, code
