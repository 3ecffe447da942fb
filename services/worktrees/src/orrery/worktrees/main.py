"""Composition root of the worktrees service: its handler tables, its read model, and the
reactor that does the git and environment work."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orrery.events import Command, default_registry
from orrery.events import worktrees as w
from orrery.runtime.decider import Handler, HandlerTable
from orrery.runtime.entrypoint import run_standalone
from orrery.runtime.errors import ConfigurationError
from orrery.runtime.service import ServiceSpec, Wiring
from orrery.runtime.settings import Settings
from orrery.worktrees.adapters.files import Layout
from orrery.worktrees.adapters.git import Git
from orrery.worktrees.domain import environment as env
from orrery.worktrees.domain import registry as reg
from orrery.worktrees.domain.slots import DEFAULT_BASE_PORT
from orrery.worktrees.environments import EnvironmentManager
from orrery.worktrees.projection import WorktreesProjection
from orrery.worktrees.reactor import Reactor
from orrery.worktrees.reconciler import Reconciler


@dataclass(frozen=True)
class WorktreesSettings:
    port_base: int = DEFAULT_BASE_PORT
    reconcile_interval_s: float = 30.0
    stop_grace_s: float = 10.0
    docker_url: str | None = None
    docker_network: str = "bridge"
    github_token: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorktreesSettings:
        e = os.environ if env is None else env
        network = e.get("ORRERY_DOCKER_NETWORK", "bridge")
        if network not in ("bridge", "host"):
            raise ConfigurationError(
                f"ORRERY_DOCKER_NETWORK must be bridge or host, not {network!r}"
            )
        try:
            return cls(
                port_base=int(e.get("ORRERY_PORT_BASE", DEFAULT_BASE_PORT)),
                reconcile_interval_s=float(e.get("ORRERY_RECONCILE_INTERVAL", "30")),
                stop_grace_s=float(e.get("ORRERY_ENV_STOP_GRACE", "10")),
                docker_url=e.get("ORRERY_DOCKER_HOST") or e.get("DOCKER_HOST") or None,
                docker_network=network,
                github_token=e.get("GITHUB_TOKEN") or None,
            )
        except ValueError as exc:
            raise ConfigurationError(
                "ORRERY_PORT_BASE, ORRERY_RECONCILE_INTERVAL and ORRERY_ENV_STOP_GRACE must be"
                f" numbers: {exc}"
            ) from None


def _on_registry(decide: Any) -> Handler[Any, Any]:
    return Handler(reg.REGISTRY, reg.registry_id, decide)


def _on_env(decide: Any) -> Handler[Any, Any]:
    return Handler(env.ENVIRONMENT, lambda c: c.worktree_id, decide)


def handlers(port_base: int = DEFAULT_BASE_PORT) -> dict[type[Command], Handler[Any, Any]]:
    """The commands anyone may send over NATS."""
    return {
        w.AddRepo: _on_registry(reg.decide_add_repo),
        w.ReloadRepoConfig: _on_registry(reg.decide_reload_config),
        w.RemoveRepo: _on_registry(reg.decide_remove_repo),
        w.CreateWorktree: _on_registry(reg.make_decide_create(port_base)),
        w.UpdateWorktree: _on_registry(reg.decide_update),
        w.ArchiveWorktree: _on_registry(reg.decide_archive),
        w.UnarchiveWorktree: _on_registry(reg.make_decide_unarchive(port_base)),
        w.DeleteWorktree: _on_registry(reg.decide_delete),
        w.ReconcileWorktrees: _on_registry(reg.decide_reconcile),
        w.StartEnvironment: _on_env(env.decide_start),
        w.StopEnvironment: _on_env(env.decide_stop),
        w.FetchEnvironmentLogs: _on_env(env.decide_fetch_logs),
        w.CaptureGitState: Handler(env.GIT_STATE, lambda c: c.worktree_id, env.decide_capture),
    }


INTERNAL: HandlerTable = {
    reg.CompleteRepoAdd: _on_registry(reg.decide_complete_repo_add),
    reg.FailRepoAdd: _on_registry(reg.decide_fail_repo_add),
    reg.ImportRepoConfig: _on_registry(reg.decide_import_config),
    reg.CompleteWorktreeCreation: _on_registry(reg.decide_complete_creation),
    reg.FailWorktreeCreation: _on_registry(reg.decide_fail_creation),
    reg.CompleteArchive: _on_registry(reg.decide_complete_archive),
    reg.CompleteDelete: _on_registry(reg.decide_complete_delete),
    reg.RecordDrift: _on_registry(reg.decide_record_drift),
    reg.RecordExternal: _on_registry(reg.decide_record_external),
    env.RecordStatus: _on_env(env.decide_record_status),
    env.FailStart: _on_env(env.decide_fail_start),
    env.RecordHealth: _on_env(env.decide_record_health),
    env.RecordLogs: _on_env(env.decide_record_logs),
    env.RecordGitState: Handler(env.GIT_STATE, lambda c: c.worktree_id, env.decide_record_git),
}


def react(settings: Settings, config: WorktreesSettings):  # type: ignore[no-untyped-def]
    async def run(wiring: Wiring, stop: asyncio.Event) -> None:
        bus = wiring.bus
        layout = Layout(settings.home)
        git = Git()
        reactor = Reactor(
            js=wiring.js,
            pool=wiring.pool,
            bus=bus,
            registry=default_registry(),
            git=git,
            layout=layout,
            envs=EnvironmentManager(
                bus,
                wiring.js,
                layout,
                grace_s=config.stop_grace_s,
                docker_url=config.docker_url,
                docker_network=config.docker_network,
            ),
            reconciler=Reconciler(bus, git, layout, interval_s=config.reconcile_interval_s),
            token=config.github_token,
        )
        await reactor.run(stop)

    return run


def spec(settings: Settings) -> ServiceSpec:
    config = WorktreesSettings.from_env()
    return ServiceSpec(
        name="worktrees",
        context="worktrees",
        handlers=handlers(config.port_base),
        projections=[WorktreesProjection()],
        extras=[react(settings, config)],
        internal_handlers=INTERNAL,
    )


def run() -> None:
    """``orrery-worktrees``: run the worktrees service alone against external NATS and Postgres."""
    run_standalone(spec)
