"""The Codex provider: the real pinned Codex CLI (``codex app-server``) against the scripted model
server over HTTP: the messages it records, the permissions it asks, the usage it counts, resuming
a thread in a new process, and stopping a turn.

A recorder stands in for the runner (as in test_builtin_agent.py). The CLI comes from the
checkout's pinned install (``make agents``); without it these tests fail, they never skip.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest
from orrery.events.sessions import (
    AgentSettings,
    MessageRecorded,
    PermissionMode,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from orrery.modelserver import ScriptedModelServer
from orrery.sessions.agents.base import ProviderError, Turn
from orrery.sessions.agents.codex import Codex

if TYPE_CHECKING:  # mypy sees the repo root; pytest puts this directory on sys.path
    from tests.agentclis import installed
    from tests.integration.agentio import Recorder
else:
    from agentclis import installed
    from agentio import Recorder


# Codex applies a patch given to its shell tool itself, as a file change (not a command).
PATCH = "apply_patch <<'EOF'\n*** Begin Patch\n*** Add File: hi.txt\n+hi\n*** End Patch\nEOF"

SCRIPT: dict[str, Any] = {
    "rules": [
        {
            "match": {"last_user_text": "create hello.txt", "tool_offered": "exec_command"},
            "reply": [
                {"thinking": "A shell command will do"},
                {
                    "tool_use": {
                        "name": "exec_command",
                        "input": {"cmd": "echo 'hello world' > hello.txt"},
                    }
                },
            ],
            "usage": {"input_tokens": 120, "output_tokens": 30},
        },
        {
            "match": {"after_tool_result": True},
            "reply": [{"text": "Done: hello.txt created.", "chunk_chars": 6}],
            "usage": {"input_tokens": 100, "output_tokens": 40},
        },
        {
            "match": {"last_user_regex": "tell a long story\\W*$"},
            "reply": [{"text": "once upon a time " * 100, "chunk_chars": 5, "delay_ms": 50}],
        },
        {
            "match": {"last_user_text": "patch hi.txt", "tool_offered": "exec_command"},
            "reply": [{"tool_use": {"name": "exec_command", "input": {"cmd": PATCH}}}],
        },
        {
            "match": {"last_user_text": "what did I ask"},
            "reply": [{"text": "You asked for a file."}],
        },
        {
            "match": {"last_user_text": "refuse"},
            "reply": [{"error": {"status": 400, "message": "No way"}}],
        },
        {"match": {"any": True}, "reply": [{"text": "Hello from the scripted model"}]},
    ]
}


@pytest.fixture
def cli() -> Path:
    return installed("codex")


@pytest.fixture
async def server() -> AsyncIterator[ScriptedModelServer]:
    async with ScriptedModelServer(SCRIPT) as running:
        yield running


def turn(
    cwd: Path,
    url: str,
    prompt: str,
    *,
    task: str = "t1",
    mode: PermissionMode = "ask",
    native_id: str = "",
    session: str = "s1",
    fork_of: str = "",
) -> Turn:
    history = [
        MessageRecorded(
            session_id=session,
            task_id=task,
            message_id=f"{task}:0",
            index=0,
            role="user",
            blocks=[TextBlock(text=prompt)],
            model="",
        )
    ]
    return Turn(
        session_id=session,
        task_id=task,
        prompt=prompt,
        history=history,
        cwd=cwd,
        settings=AgentSettings(agent="codex", model="gpt-fake", permission_mode=mode),
        env={"OPENAI_BASE_URL": f"{url}/v1", "OPENAI_API_KEY": "test-key"},
        run_id=f"r-{task}",
        native_id=native_id,
        fork_of=fork_of,
    )


def workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    return work


async def test_a_command_is_asked_run_and_recorded(
    cli: Path, server: ScriptedModelServer, tmp_path: Path
) -> None:
    work = workdir(tmp_path)
    agent = Codex(cli, tmp_path / "home")
    io = Recorder()
    try:
        result = await agent.run(turn(work, server.url, "create hello.txt"), io)
    finally:
        await agent.close()

    assert (work / "hello.txt").read_text() == "hello world\n"
    assert result.final_text == "Done: hello.txt created."
    assert result.model == "gpt-fake"
    assert result.usage.input_tokens >= 220 and result.usage.output_tokens >= 70
    assert len(result.raw_usage["calls"]) == 2
    assert len(io.native_ids) == 1 and io.native_ids[0]

    [(tool, arguments)] = io.permissions
    assert tool == "exec_command" and "hello.txt" in arguments["command"]

    assert [role for _, role, _ in io.messages] == ["assistant", "user", "assistant"]
    assert [m for m, _, _ in io.messages] == ["r-t1:1", "r-t1:2", "r-t1:3"]
    (use_id, _, uses), (_, _, results), (text_id, _, texts) = io.messages
    [use] = [b for b in uses if isinstance(b, ToolUseBlock)]
    assert use.name == "exec_command" and "hello.txt" in use.input["command"]
    [outcome] = results
    assert isinstance(outcome, ToolResultBlock)
    assert outcome.tool_use_id == use.id and not outcome.is_error
    assert [b.text for b in texts if isinstance(b, TextBlock)] == ["Done: hello.txt created."]
    streamed = "".join(t for m, k, t in io.deltas if m == text_id and k == "text")
    assert streamed == "Done: hello.txt created."
    assert "".join(t for m, k, t in io.deltas if m == use_id and k == "thinking")

    config = (tmp_path / "home" / "s1" / "config.toml").read_text()
    assert "test-key" not in config and f"{server.url}/v1" in config
    assert all(r.api_key_present for r in server.requests if r.path == "/v1/responses")


async def test_a_denied_command_does_not_run_and_the_task_ends(
    cli: Path, server: ScriptedModelServer, tmp_path: Path
) -> None:
    work = workdir(tmp_path)
    agent = Codex(cli, tmp_path / "home")
    io = Recorder(allow=False)
    try:
        async with asyncio.timeout(60):
            await agent.run(turn(work, server.url, "create hello.txt"), io)
    finally:
        await agent.close()
    assert not (work / "hello.txt").exists()
    assert [tool for tool, _ in io.permissions] == ["exec_command"]
    results = [b for _, role, blocks in io.messages if role == "user" for b in blocks]
    assert len(results) == 1 and isinstance(results[0], ToolResultBlock) and results[0].is_error


async def test_allow_all_runs_without_asking(
    cli: Path, server: ScriptedModelServer, tmp_path: Path
) -> None:
    work = workdir(tmp_path)
    agent = Codex(cli, tmp_path / "home")
    io = Recorder(allow=False)
    try:
        await agent.run(turn(work, server.url, "create hello.txt", mode="allow-all"), io)
    finally:
        await agent.close()
    assert (work / "hello.txt").read_text() == "hello world\n"
    assert io.permissions == []


async def test_a_steered_prompt_reaches_the_running_turn(
    cli: Path, server: ScriptedModelServer, tmp_path: Path
) -> None:
    agent = Codex(cli, tmp_path / "home")
    io = Recorder(steer="what did I ask")
    try:
        result = await agent.run(
            turn(workdir(tmp_path), server.url, "create hello.txt", mode="allow-all"), io
        )
    finally:
        await agent.close()
    assert result.final_text == "You asked for a file."  # the model's next call got the prompt
    roles = [(role, type(blocks[0]).__name__) for _, role, blocks in io.messages]
    assert roles == [
        ("assistant", "ThinkingBlock"),
        ("user", "ToolResultBlock"),
        ("user", "TextBlock"),
        ("assistant", "TextBlock"),
    ]


def codex_processes() -> list[psutil.Process]:
    children = psutil.Process().children()
    return [p for p in children if p.is_running() and "codex" in " ".join(p.cmdline()[:3])]


@pytest.mark.parametrize("same_process", [True, False])
async def test_a_later_task_resumes_the_thread(
    cli: Path, server: ScriptedModelServer, tmp_path: Path, same_process: bool
) -> None:
    work = workdir(tmp_path)
    agent = Codex(cli, tmp_path / "home")
    first, second = Recorder(), Recorder()
    try:
        await agent.run(turn(work, server.url, "create hello.txt"), first)
        [thread] = first.native_ids
        await agent.reap(3600)  # used just now: kept
        assert len(codex_processes()) == 1
        if not same_process:
            await agent.reap(0)  # idle: ended; the next task starts one and resumes from disk
            assert codex_processes() == []
        server.clear_requests()
        follow_up = turn(work, server.url, "what did I ask", task="t2", native_id=thread)
        result = await agent.run(follow_up, second)
    finally:
        await agent.close()
    assert result.final_text == "You asked for a file."
    assert second.native_ids == []  # the same thread: nothing new to bind
    [request] = [r for r in server.requests if r.path == "/v1/responses"]
    said = str(request.body["input"])
    assert "create hello.txt" in said and "Done: hello.txt created." in said


async def test_a_fork_continues_a_copy_of_the_parent_thread(
    cli: Path, server: ScriptedModelServer, tmp_path: Path
) -> None:
    work = workdir(tmp_path)
    agent = Codex(cli, tmp_path / "home")
    parent, child = Recorder(), Recorder()
    try:
        await agent.run(turn(work, server.url, "create hello.txt"), parent)
        server.clear_requests()
        fork = turn(work, server.url, "what did I ask", session="s2", fork_of=parent.native_ids[0])
        result = await agent.run(fork, child)
    finally:
        await agent.close()
    assert result.final_text == "You asked for a file."
    [forked] = child.native_ids
    assert forked != parent.native_ids[0]
    [request] = [r for r in server.requests if r.path == "/v1/responses"]
    assert "Done: hello.txt created." in str(request.body["input"])
    assert (tmp_path / "home" / "s2" / "config.toml").exists()  # a home of its own


@pytest.mark.parametrize("mode", ["ask", "auto"])
async def test_edits_are_asked_unless_auto(
    cli: Path, server: ScriptedModelServer, tmp_path: Path, mode: PermissionMode
) -> None:
    work = workdir(tmp_path)
    agent = Codex(cli, tmp_path / "home")
    io = Recorder()
    try:
        await agent.run(turn(work, server.url, "patch hi.txt", mode=mode), io)
    finally:
        await agent.close()
    assert (work / "hi.txt").read_text() == "hi\n"
    uses = [b for _, _, blocks in io.messages for b in blocks if isinstance(b, ToolUseBlock)]
    assert [u.name for u in uses] == ["apply_patch"]
    assert uses[0].input["changes"][0]["path"].endswith("hi.txt")
    if mode == "ask":
        [(tool, arguments)] = io.permissions
        assert tool == "apply_patch" and arguments["changes"][0]["kind"] == "add"
    else:
        assert io.permissions == []


async def test_stop_interrupts_and_the_next_task_runs(
    cli: Path, server: ScriptedModelServer, tmp_path: Path
) -> None:
    work = workdir(tmp_path)
    agent = Codex(cli, tmp_path / "home")
    io = Recorder()
    try:
        story = asyncio.create_task(agent.run(turn(work, server.url, "tell a long story"), io))
        await asyncio.sleep(1.0)
        assert not story.done()
        assert any(k == "text" for _, k, _ in io.deltas)  # it was streaming
        stopped = time.monotonic()
        story.cancel()
        with pytest.raises(asyncio.CancelledError):
            await story
        assert time.monotonic() - stopped < 1.0

        [thread] = io.native_ids
        after = Recorder()
        async with asyncio.timeout(30):
            result = await agent.run(
                turn(work, server.url, "what did I ask", task="t2", native_id=thread), after
            )
    finally:
        await agent.close()
    assert result.final_text == "You asked for a file."


async def test_the_model_refusing_is_a_provider_error(
    cli: Path, server: ScriptedModelServer, tmp_path: Path
) -> None:
    agent = Codex(cli, tmp_path / "home")
    try:
        with pytest.raises(ProviderError) as raised:
            await agent.run(turn(workdir(tmp_path), server.url, "refuse"), Recorder())
    finally:
        await agent.close()
    assert raised.value.code.startswith("model.")
    assert "No way" in raised.value.message


async def test_without_the_cli_the_task_fails_with_how_to_install(tmp_path: Path) -> None:
    agent = Codex(None, tmp_path / "home")
    with pytest.raises(ProviderError) as raised:
        await agent.run(turn(tmp_path, "http://127.0.0.1:9", "hi"), Recorder())
    assert raised.value.code == "agent.not_installed"
    assert "make agents" in raised.value.message
