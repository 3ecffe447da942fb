"""The built-in agent against the scripted model server over HTTP: what it streams live, the
messages it records, the usage it keeps and the errors it reports, on both SDK paths.

The agent talks to its runner through ``AgentIO``; here a recorder stands in for the runner (the
runner and the log are covered by test_sessions_service.py), so each case can look at exactly
what the provider produced.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from orrery.events.sessions import (
    AgentSettings,
    MessageRecorded,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from orrery.modelserver import ScriptedModelServer
from orrery.sessions.agents.base import ProviderError, Turn
from orrery.sessions.agents.builtin import BuiltinAgent

if TYPE_CHECKING:  # mypy sees the repo root; pytest puts this directory on sys.path
    from tests.integration.agentio import Recorder
else:
    from agentio import Recorder

SCRIPT: dict[str, Any] = {
    "rules": [
        {
            "match": {"last_user_text": "write it", "tool_offered": "write"},
            "reply": [
                {"thinking": "I should write the file", "chunk_chars": 5},
                {"text": "Writing.", "chunk_chars": 3},
                {"tool_use": {"name": "write", "input": {"path": "out.txt", "content": "hi\n"}}},
            ],
            "usage": {"input_tokens": 120, "output_tokens": 30},
        },
        {
            "match": {"after_tool_result": True},
            "reply": [{"text": "Done: out.txt written."}],
            "usage": {"input_tokens": 200, "output_tokens": 8},
        },
        {
            "match": {"last_user_text": "refuse"},
            "reply": [{"error": {"status": 529, "type": "overloaded_error", "message": "Busy"}}],
        },
        {
            "match": {"last_user_text": "break off"},
            "reply": [
                {"text": "Starting an answer"},
                {"error": {"status": 500, "type": "api_error", "message": "lost the thread"}},
            ],
        },
    ]
}


@pytest.fixture
async def model() -> AsyncIterator[str]:
    async with ScriptedModelServer(SCRIPT) as server:
        yield server.url


def turn(cwd: Path, url: str, prompt: str, model: str = "claude-sonnet-4-6") -> Turn:
    history = [
        MessageRecorded(
            session_id="s1",
            task_id="t1",
            message_id="t1:0",
            index=0,
            role="user",
            blocks=[TextBlock(text=prompt)],
            model="",
        )
    ]
    return Turn(
        session_id="s1",
        task_id="t1",
        prompt=prompt,
        history=history,
        cwd=cwd,
        settings=AgentSettings(model=model, permission_mode="allow-all"),
        env={
            "ANTHROPIC_BASE_URL": url,
            "ANTHROPIC_API_KEY": "test-key",
            "OPENAI_BASE_URL": f"{url}/v1",
            "OPENAI_API_KEY": "test-key",
        },
        run_id="r1",
    )


@pytest.mark.parametrize("model_name", ["claude-sonnet-4-6", "openai/gpt-fake"])
async def test_a_tool_turn_streams_records_and_counts(
    model: str, tmp_path: Path, model_name: str
) -> None:
    agent = BuiltinAgent()
    io = Recorder()
    try:
        result = await agent.run(turn(tmp_path, model, "write it", model_name), io)
    finally:
        await agent.close()

    assert (tmp_path / "out.txt").read_text() == "hi\n"
    assert result.final_text == "Done: out.txt written."
    assert (result.usage.input_tokens, result.usage.output_tokens) == (320, 38)
    assert len(result.raw_usage["calls"]) == 2  # each model call's usage as the API gave it

    first, tool_results, last = io.messages
    assert first[1] == "assistant" and tool_results[1] == "user" and last[1] == "assistant"
    uses = [b for b in first[2] if isinstance(b, ToolUseBlock)]
    assert [(u.name, u.input) for u in uses] == [("write", {"path": "out.txt", "content": "hi\n"})]
    texts = [b.text for b in first[2] if isinstance(b, TextBlock)]
    assert texts == ["Writing."]
    assert isinstance(tool_results[2][0], ToolResultBlock)
    assert not tool_results[2][0].is_error
    assert [b.text for b in last[2] if isinstance(b, TextBlock)] == ["Done: out.txt written."]

    # The deltas of each message add up to its blocks, in order.
    def streamed(message_id: str, kind: str) -> str:
        return "".join(t for m, k, t in io.deltas if m == message_id and k == kind)

    assert streamed(first[0], "text") == "Writing."
    assert len([d for d in io.deltas if d[0] == first[0] and d[1] == "text"]) >= 2
    assert '"out.txt"' in streamed(first[0], "tool_input")
    if model_name.startswith("claude"):  # Chat Completions has no thinking
        thinking = [b.text for b in first[2] if isinstance(b, ThinkingBlock)]
        assert thinking == ["I should write the file"]
        assert streamed(first[0], "thinking") == "I should write the file"


@pytest.mark.parametrize("model_name", ["claude-sonnet-4-6", "openai/gpt-fake"])
async def test_the_model_refusing_is_a_provider_error(
    model: str, tmp_path: Path, model_name: str
) -> None:
    agent = BuiltinAgent()
    try:
        with pytest.raises(ProviderError) as raised:
            await agent.run(turn(tmp_path, model, "refuse", model_name), Recorder())
    finally:
        await agent.close()
    assert raised.value.code == "model.http_529"
    assert "Busy" in raised.value.message


async def test_an_error_mid_stream_fails_the_turn_with_what_the_model_said(
    model: str, tmp_path: Path
) -> None:
    agent = BuiltinAgent()
    io = Recorder()
    try:
        with pytest.raises(ProviderError) as raised:
            await agent.run(turn(tmp_path, model, "break off"), io)
    finally:
        await agent.close()
    assert raised.value.code == "model.api_error"
    assert raised.value.message == "lost the thread"
    assert io.messages == []  # a message cut short is not recorded as complete
    assert "".join(t for _, _, t in io.deltas) == "Starting an answer"
