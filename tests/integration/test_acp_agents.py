"""Gemini CLI and OpenCode, the real pinned CLIs on the Agent Client Protocol, against the
scripted model server over HTTP: the permission request for their shell tool, the messages they
produce (the same shape as every provider's), usage, resuming their own session in a new process,
and stopping mid-answer.

A recorder stands in for the runner (agentio.py); the runner, the log and the REST API around a
provider are covered by tests/system/test_agent_providers.py. A CLI that is not installed fails
here with the reason (run `make agents`), never a skip.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest
from orrery.events.sessions import (
    AgentSettings,
    PermissionMode,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from orrery.modelserver import ScriptedModelServer
from orrery.sessions.agents.acp import AcpAgent, Flavour, Gemini, OpenCode
from orrery.sessions.agents.base import ProviderError, Turn

if TYPE_CHECKING:
    from tests.agentclis import every_cli_script, installed
    from tests.integration.agentio import Recorder, user_message
else:
    from agentclis import every_cli_script, installed
    from agentio import Recorder, user_message


@dataclass(frozen=True)
class Cli:
    flavour: Flavour
    model: str
    shell_tool: str  # what the CLI calls its shell tool


CLIS = {
    "gemini": Cli(Gemini(), "gemini-2.5-flash", "run_shell_command"),
    "opencode": Cli(OpenCode(), "anthropic/claude-sonnet-4-5", "bash"),
}


@pytest.fixture(scope="module")
async def model() -> AsyncIterator[ScriptedModelServer]:
    async with ScriptedModelServer(every_cli_script()) as server:
        yield server


@pytest.fixture(params=list(CLIS))
def cli(request: pytest.FixtureRequest) -> tuple[str, Cli]:
    name: str = request.param
    installed(name)
    return name, CLIS[name]


class Session:
    """One Orrery session's tasks on one provider (history kept as the runner keeps it)."""

    def __init__(self, url: str, cwd: Path, cli: Cli, mode: PermissionMode = "ask") -> None:
        self.url, self.cwd, self.cli, self.mode = url, cwd, cli, mode
        self.history: list[Any] = []
        self.native_id = ""
        self.tasks = 0

    def turn(self, prompt: str) -> Turn:
        self.tasks += 1
        task = f"t{self.tasks}"
        self.history.append(user_message("s1", task, len(self.history), prompt))
        return Turn(
            session_id="s1",
            task_id=task,
            prompt=prompt,
            history=list(self.history),
            cwd=self.cwd,
            settings=AgentSettings(model=self.cli.model, permission_mode=self.mode),
            env={
                "ANTHROPIC_BASE_URL": self.url,
                "ANTHROPIC_API_KEY": "test-key",
                "GEMINI_API_KEY": "test-key",
                "GOOGLE_GEMINI_BASE_URL": self.url,
            },
            run_id=f"r{self.tasks}",
            native_id=self.native_id,
        )


def provider(name: str, cli: Cli, state: Path) -> AcpAgent:
    return AcpAgent(name, cli.flavour, installed(name), state)


async def test_a_shell_tool_asks_writes_and_is_recorded_like_every_provider(
    model: ScriptedModelServer, tmp_path: Path, cli: tuple[str, Cli]
) -> None:
    name, spec = cli
    agent = provider(name, spec, tmp_path / "state")
    session = Session(model.url, tmp_path, spec)
    io = Recorder(allow=True)
    try:
        result = await agent.run(session.turn("create hello.txt"), io)
    finally:
        await agent.close()

    [(tool, arguments)] = io.permissions
    assert tool == spec.shell_tool
    assert "hello.txt" in json.dumps(arguments)
    assert (tmp_path / "hello.txt").read_text() == "hello world\n"
    assert result.final_text == "Done: hello.txt created."
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    assert io.shape() == [
        ("assistant", ["ToolUseBlock"]),
        ("user", ["ToolResultBlock"]),
        ("assistant", ["TextBlock"]),
    ]
    (_, _, [use]), (_, _, [outcome]), (last_id, _, [text]) = io.messages
    assert isinstance(use, ToolUseBlock) and isinstance(outcome, ToolResultBlock)
    assert use.name == spec.shell_tool and "hello.txt" in json.dumps(use.input)
    assert outcome.tool_use_id == use.id and not outcome.is_error
    assert text == TextBlock(text="Done: hello.txt created.")
    assert io.streamed(last_id, "text") == "Done: hello.txt created."
    assert len(io.native_ids) == 1 and io.native_ids[0]


async def test_a_denied_tool_does_not_run_and_the_task_still_ends(
    model: ScriptedModelServer, tmp_path: Path, cli: tuple[str, Cli]
) -> None:
    name, spec = cli
    agent = provider(name, spec, tmp_path / "state")
    io = Recorder(allow=False)
    try:
        async with asyncio.timeout(60):
            await agent.run(Session(model.url, tmp_path, spec).turn("create hello.txt"), io)
    finally:
        await agent.close()
    assert len(io.permissions) == 1
    assert not (tmp_path / "hello.txt").exists()


async def test_a_new_process_resumes_the_clis_own_session(
    model: ScriptedModelServer, tmp_path: Path, cli: tuple[str, Cli]
) -> None:
    name, spec = cli
    session = Session(model.url, tmp_path, spec, mode="allow-all")
    first = provider(name, spec, tmp_path / "state")
    io = Recorder()
    try:
        await first.run(session.turn("create hello.txt"), io)
    finally:
        await first.close()  # the process ends; the CLI's own session stays in its state
    assert io.permissions == []  # allow-all: nothing asked
    session.native_id = io.native_ids[0]

    model.clear_requests()
    second = provider(name, spec, tmp_path / "state")
    again = Recorder()
    try:
        result = await second.run(session.turn("say hello"), again)
    finally:
        await second.close()
    assert result.final_text == "Hello from the scripted model"
    sent = json.dumps([r.body for r in model.requests])
    assert "create hello.txt" in sent  # the earlier turn went to the model
    if spec.flavour.loads_sessions:  # natively: the same session, nothing new to bind
        assert again.native_ids == []
        assert "Done: hello.txt created." in sent  # the CLI's own record of it
        assert "Here is the conversation so far" not in sent
    else:  # Gemini CLI cannot load its saved chat (see Gemini): a new session with the transcript
        assert len(again.native_ids) == 1 and again.native_ids[0] != session.native_id
        assert "Here is the conversation so far" in sent


async def test_a_fork_continues_the_parents_conversation(
    model: ScriptedModelServer, tmp_path: Path, cli: tuple[str, Cli]
) -> None:
    name, spec = cli
    agent = provider(name, spec, tmp_path / "state")
    parent = Session(model.url, tmp_path, spec, mode="allow-all")
    io = Recorder()
    try:
        await agent.run(parent.turn("create hello.txt"), io)
        model.clear_requests()
        child = Session(model.url, tmp_path, spec, mode="allow-all")
        child.history = list(parent.history)  # the runner gives a fork the parent's log
        fork = dataclasses.replace(
            child.turn("say hello"), session_id="s2", fork_of=io.native_ids[0]
        )
        forked = Recorder()
        result = await agent.run(fork, forked)
    finally:
        await agent.close()
    assert result.final_text == "Hello from the scripted model"
    [child_id] = forked.native_ids
    assert child_id != io.native_ids[0]
    sent = json.dumps([r.body for r in model.requests])
    assert "create hello.txt" in sent
    if name == "opencode":  # natively (session/fork): the CLI's own record, not a transcript
        assert "Done: hello.txt created." in sent
        assert "Here is the conversation so far" not in sent
    else:  # Gemini CLI cannot fork: the fork's first prompt carries the transcript
        assert "Here is the conversation so far" in sent


async def test_stop_mid_answer_then_the_next_task_runs(
    model: ScriptedModelServer, tmp_path: Path, cli: tuple[str, Cli]
) -> None:
    name, spec = cli
    agent = provider(name, spec, tmp_path / "state")
    session = Session(model.url, tmp_path, spec)
    io = Recorder()
    try:
        running = asyncio.create_task(agent.run(session.turn("tell a long story"), io))
        async with asyncio.timeout(60):
            while not io.deltas:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        running.cancel()
        async with asyncio.timeout(2):
            with pytest.raises(asyncio.CancelledError):
                await running
        session.native_id = io.native_ids[0]
        after = Recorder()
        async with asyncio.timeout(60):
            result = await agent.run(session.turn("say hello"), after)
    finally:
        await agent.close()
    assert result.final_text == "Hello from the scripted model"
    assert len("".join(t for _, _, t in io.deltas)) < len("once upon a time " * 100)


async def test_a_missing_cli_is_a_clear_error(tmp_path: Path) -> None:
    agent = AcpAgent("gemini", Gemini(), None, tmp_path)
    with pytest.raises(ProviderError) as raised:
        await agent.run(
            Session("http://127.0.0.1:9", tmp_path, CLIS["gemini"]).turn("hi"), Recorder()
        )
    assert raised.value.code == "agent.not_installed"
    assert "make agents" in raised.value.message


def cli_processes(name: str) -> list[psutil.Process]:
    return [p for p in psutil.Process().children() if any(name in part for part in p.cmdline()[:3])]


async def test_an_idle_process_is_reaped_and_the_next_task_starts_one(
    model: ScriptedModelServer, tmp_path: Path, cli: tuple[str, Cli]
) -> None:
    name, spec = cli
    agent = provider(name, spec, tmp_path / "state")
    session = Session(model.url, tmp_path, spec, mode="allow-all")
    io = Recorder()
    try:
        await agent.run(session.turn("say hello"), io)
        session.native_id = io.native_ids[0]
        [process] = cli_processes(name)
        await agent.reap(3600)  # used just now: kept
        assert process.is_running()
        await agent.reap(0)
        assert not process.is_running() and cli_processes(name) == []
        result = await agent.run(session.turn("say hello"), Recorder())
        assert result.final_text == "Hello from the scripted model"
        assert len(cli_processes(name)) == 1
    finally:
        await agent.close()
