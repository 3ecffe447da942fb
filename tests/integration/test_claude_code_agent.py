"""Claude Code, the real pinned CLI, against the scripted model server: what the system test of
every provider (tests/system/test_agent_providers.py) does not reach — thinking streamed and
recorded, and compaction recorded as a system message, on one CLI process kept between tasks.

A recorder stands in for the runner (agentio.py). A CLI that is not installed fails here with
the reason (run `make agents`), never a skip.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from orrery.events.sessions import AgentSettings, SystemBlock, TextBlock, ThinkingBlock
from orrery.modelserver import ScriptedModelServer
from orrery.sessions.agents.base import Turn
from orrery.sessions.agents.claude_code import ClaudeCode

if TYPE_CHECKING:
    from tests.agentclis import installed
    from tests.integration.agentio import Recorder, user_message
else:
    from agentclis import installed
    from agentio import Recorder, user_message

SCRIPT = {
    "rules": [
        {
            "match": {"last_user_regex": "think first\\W*$"},
            "reply": [
                {"thinking": "Let me think about it", "chunk_chars": 5},
                {"text": "Thought about it."},
            ],
        },
        {"match": {"any": True}, "reply": [{"text": "Summary: we talked."}]},
    ]
}


async def test_thinking_and_compaction_are_recorded(tmp_path: Path) -> None:
    agent = ClaudeCode(installed("claude"))
    history = []
    recorders: list[Recorder] = []
    try:
        async with ScriptedModelServer(SCRIPT) as model:
            for n, prompt in enumerate(["think first", "/compact"]):
                history.append(user_message("s1", f"t{n}", n, prompt))
                turn = Turn(
                    session_id="s1",
                    task_id=f"t{n}",
                    prompt=prompt,
                    history=list(history),
                    cwd=tmp_path,
                    settings=AgentSettings(model="claude-sonnet-4-5", permission_mode="allow-all"),
                    env={"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "test-key"},
                    run_id=f"r{n}",
                    native_id=recorders[0].native_ids[0] if recorders else "",
                )
                recorders.append(Recorder())
                await agent.run(turn, recorders[-1])
    finally:
        await agent.close()

    thought, compacted = recorders
    [(message_id, role, blocks)] = thought.messages
    assert role == "assistant"
    assert blocks == [
        ThinkingBlock(text="Let me think about it"),
        TextBlock(text="Thought about it."),
    ]
    assert thought.streamed(message_id, "thinking") == "Let me think about it"
    assert len([d for d in thought.deltas if d[1] == "thinking"]) >= 2  # streamed in pieces

    systems = [blocks for _, role, blocks in compacted.messages if role == "system"]
    assert len(systems) == 1
    [note] = systems[0]
    assert isinstance(note, SystemBlock) and note.text.startswith("conversation compacted (manual")
    assert compacted.native_ids == []  # the same CLI process and session throughout
