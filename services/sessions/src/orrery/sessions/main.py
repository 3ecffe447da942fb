"""Composition root of the sessions service: its handler tables, read models, and the runner
that runs tasks with the session's agent provider."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from orrery.events import Command, default_registry
from orrery.events import sessions as s
from orrery.runtime.decider import Handler, HandlerTable
from orrery.runtime.entrypoint import run_standalone
from orrery.runtime.errors import ConfigurationError
from orrery.runtime.secrets import Keys, master_key
from orrery.runtime.service import ServiceSpec, Wiring
from orrery.runtime.settings import Settings
from orrery.sessions import pricing
from orrery.sessions.agents.base import Provider, Providers
from orrery.sessions.agents.clis import find_cli, start_gate
from orrery.sessions.domain import session as d
from orrery.sessions.projection import (
    SessionsProjection,
    UserSecretsProjection,
    WorktreePathsProjection,
)
from orrery.sessions.runner import SessionRunner, WorktreePaths
from orrery.sessions.triggers import TriggerReactor

# What reaches an agent's process and SDK client: model endpoints and keys (never logged, never
# in an event). Per-user keys arrive with the gateway issue.
AGENT_ENV = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "GEMINI_API_KEY",
    "GOOGLE_GEMINI_BASE_URL",
)


def _on_session(decide: Any) -> Handler[Any, Any]:
    return Handler(d.SESSION, lambda c: c.session_id, decide)


HANDLERS: dict[type[Command], Handler[Any, Any]] = {
    s.CreateSession: _on_session(d.decide_create),
    s.SubmitPrompt: _on_session(d.decide_prompt),
    s.RemoveQueuedPrompt: _on_session(d.decide_remove_queued),
    s.ReorderQueue: _on_session(d.decide_reorder),
    s.StopTask: _on_session(d.decide_stop),
    s.ResumeTask: _on_session(d.decide_resume),
    s.DecidePermission: _on_session(d.decide_permission),
    s.ForkSession: _on_session(d.decide_fork),
    s.SpawnSession: _on_session(d.decide_spawn),
    s.UpdateSession: _on_session(d.decide_update),
    s.DeleteSession: _on_session(d.decide_delete),
}

INTERNAL: HandlerTable = {
    d.CreateChild: _on_session(d.decide_create_child),
    d.Record: _on_session(d.decide_record),
    d.Finish: _on_session(d.decide_finish),
    d.Expire: _on_session(d.decide_expire),
}


def pinned_agent_bin() -> Path | None:
    """``tools/agent-clis/node_modules/.bin`` of the checkout (``make agents`` installs there)."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "tools" / "agent-clis" / "node_modules" / ".bin"
        if candidate.is_dir():
            return candidate
    return None


def providers(home: Path) -> Providers:
    """Every agent provider, built on first use; the CLIs keep their state under ``home``
    (``ORRERY_HOME/agents``)."""
    pinned = pinned_agent_bin()
    try:
        gate = start_gate(os.environ)  # shared: the CLIs compete for the same cores
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None

    def cli(name: str) -> Path | None:
        return find_cli(os.environ, name, pinned)

    # Each provider's module (and its SDK) is imported when the first task needs it.
    def builtin() -> Provider:
        from orrery.sessions.agents.builtin import BuiltinAgent  # noqa: PLC0415

        return BuiltinAgent()

    def claude_code() -> Provider:
        from orrery.sessions.agents.claude_code import ClaudeCode  # noqa: PLC0415

        return ClaudeCode(cli("claude"), gate)

    def gemini() -> Provider:
        from orrery.sessions.agents.acp import AcpAgent, Gemini  # noqa: PLC0415

        return AcpAgent("gemini", Gemini(), cli("gemini"), home, gate)

    def opencode() -> Provider:
        from orrery.sessions.agents.acp import AcpAgent, OpenCode  # noqa: PLC0415

        return AcpAgent("opencode", OpenCode(), cli("opencode"), home, gate)

    def codex() -> Provider:
        from orrery.sessions.agents.codex import Codex  # noqa: PLC0415

        return Codex(cli("codex"), home / "codex")

    return Providers(
        {
            "builtin": builtin,
            "claude-code": claude_code,
            "gemini": gemini,
            "opencode": opencode,
            "codex": codex,
        },
        modules={
            "builtin": "orrery.sessions.agents.builtin",
            "claude-code": "orrery.sessions.agents.claude_code",
            "gemini": "orrery.sessions.agents.acp",
            "opencode": "orrery.sessions.agents.acp",
            "codex": "orrery.sessions.agents.codex",
        },
    )


def _seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        raise ConfigurationError(f"{name} must be a number of seconds") from None
    if value <= 0:
        raise ConfigurationError(f"{name} must be more than 0 seconds")
    return value


def run_tasks(settings: Settings):  # type: ignore[no-untyped-def]
    prices = pricing.load()
    env = {k: v for k in AGENT_ENV if (v := os.environ.get(k))}
    window = timedelta(seconds=_seconds("ORRERY_PERMISSION_TIMEOUT", 60))
    idle = _seconds("ORRERY_AGENT_IDLE_TIMEOUT", 900)
    # ORRERY_AGENT_MCP=off: agents run without Orrery's MCP server (a gateway they cannot reach)
    attach = os.environ.get("ORRERY_AGENT_MCP", "on").lower() not in ("off", "0", "false", "no")
    mcp_url = f"{settings.gateway_url}/mcp" if attach else None
    # Claude Code's SDK loads ~1 s: soon after start (cheap in `orrery up`, where the gateway
    # has the MCP SDK it shares loaded anyway), not in the first prompt's time to first chunk.
    preload = tuple(
        a.strip()
        for a in os.environ.get("ORRERY_AGENT_PRELOAD", "claude-code").split(",")
        if a.strip()
    )

    async def run(wiring: Wiring, stop: asyncio.Event) -> None:
        keys = Keys.from_master(master_key(settings.home))
        runner = SessionRunner(
            nc=wiring.nc,
            js=wiring.js,
            pool=wiring.pool,
            bus=wiring.bus,
            registry=default_registry(),
            providers=providers(settings.home / "agents"),
            paths=WorktreePaths(wiring.pool),
            env=env,
            prices=prices,
            keys=keys,
            mcp_url=mcp_url,
            preload=preload,
            permission_window=window,
            idle_timeout=idle,
        )
        await runner.run(stop)

    return run


async def carry_out_triggers(wiring: Wiring, stop: asyncio.Event) -> None:
    await TriggerReactor(wiring.js, wiring.pool, wiring.bus, default_registry()).run(stop)


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="sessions",
        context="sessions",
        handlers=HANDLERS,
        internal_handlers=INTERNAL,
        projections=[SessionsProjection(), WorktreePathsProjection(), UserSecretsProjection()],
        extras=[run_tasks(settings), carry_out_triggers],
        reads=("worktrees", "canvas", "gateway"),
    )


def run() -> None:
    """``orrery-sessions``: run the sessions service alone against external NATS and Postgres."""
    run_standalone(spec)
