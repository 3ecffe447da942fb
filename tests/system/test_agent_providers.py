"""The providers issue's acceptance: one scenario, through `orrery up` and the REST API, for every
agent provider built so far, each the real thing (the agent CLIs from npm, pinned in
tools/agent-clis) against the project's scripted model server over HTTP.

prompt -> the agent asks to run its shell tool -> approved through the API -> the tool writes
hello.txt in the worktree -> final text -> usage recorded; then a slow answer stopped mid-run, and
the session taking the next prompt. The session view (messages and their blocks) has the same
shape whatever the provider. The user's own API keys (set through the API, sealed) are the ones
the agent's process sends the model, and every agent is given Orrery's MCP server (its tools
reach the model's tool list).

A CLI that is not installed fails its test with the reason (run `make agents`), never a skip.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from orrery.modelserver import ScriptedModelServer
from orrery.modelserver.recorder import key_digest

if TYPE_CHECKING:  # mypy sees the repo root; pytest puts these directories on sys.path
    from tests.agentclis import AGENT_BIN, every_cli_script, installed
    from tests.gitrepos import GIT_ENV, free_port_block
    from tests.gitrepos import make_repo as make_test_repo
    from tests.system.stackctl import start, stop, until, wait_healthy
else:
    from agentclis import AGENT_BIN, every_cli_script, installed
    from gitrepos import GIT_ENV, free_port_block
    from gitrepos import make_repo as make_test_repo
    from stackctl import start, stop, until, wait_healthy

pytestmark = pytest.mark.system

# agent -> the CLI it needs, and what it calls its shell tool
AGENTS = {
    "builtin": (None, "bash"),
    "claude-code": ("claude", "bash"),
    "gemini": ("gemini", "run_shell_command"),
    "opencode": ("opencode", "bash"),
    "codex": ("codex", "exec_command"),
}
# Claude Code's default model defers its tools behind a search tool; the example script offers
# Bash to a model that gets it directly. Gemini CLI's default ("auto") routes with extra calls.
MODELS = {
    "claude-code": "claude-sonnet-4-5",
    "gemini": "gemini-2.5-flash",
    "opencode": "anthropic/claude-sonnet-4-5",
    "codex": "gpt-fake",
}


WHO_AM_I = {  # the built-in agent offers Orrery's MCP tools as one tool, `orrery`
    "match": {"last_user_text": "which session am i", "tool_offered": "orrery"},
    "reply": [{"tool_use": {"name": "orrery", "input": {"tool": "orrery_sessions_get_current"}}}],
}


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[httpx.Client, Path, ScriptedModelServer]]:
    root = tmp_path_factory.mktemp("providers")
    repo = make_test_repo(root / "src" / "app", "", {"README.md": "app\n"}, {})
    script = every_cli_script()
    script["rules"].insert(0, WHO_AM_I)
    with ScriptedModelServer(script) as model:
        proc, env = start(
            root / "home",
            extra={
                **GIT_ENV,
                "ANTHROPIC_BASE_URL": model.url,
                "ANTHROPIC_API_KEY": "test-key",
                "GOOGLE_GEMINI_BASE_URL": model.url,
                "GEMINI_API_KEY": "test-key",
                "OPENAI_BASE_URL": f"{model.url}/v1",
                "OPENAI_API_KEY": "test-key",
                "ORRERY_AGENT_BIN": str(AGENT_BIN),
                "ORRERY_PORT_BASE": str(free_port_block(20)),
            },
        )
        port = int(env["ORRERY_PORT"])
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        try:
            wait_healthy(proc, port, timeout=60)
            reply = api.post("/api/repos", json={"source": str(repo), "adopt": True})
            assert reply.status_code == 201, reply.text
            for name, value in USER_KEYS.items():  # the (anonymous) user's own keys
                put = api.put(f"/api/me/secrets/api_key/{name}", json={"value": value})
                assert put.status_code == 200, put.text
            yield api, root / "home", model
        finally:
            api.close()
            stop(proc)


def last_task(api: httpx.Client, session: str) -> dict[str, Any]:
    tasks: list[dict[str, Any]] = api.get(f"/api/sessions/{session}/tasks").json()
    return tasks[-1] if tasks else {}


def ended(api: httpx.Client, session: str) -> dict[str, Any] | None:
    task = last_task(api, session)
    return task if task.get("status") not in (None, "queued", "running") else None


def shape(messages: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    return [(m["role"], [b["type"] for b in m["blocks"]]) for m in messages]


SHAPES: dict[str, list[tuple[str, list[str]]]] = {}
# The stack's environment has "test-key" for each; the user's own keys must win.
USER_KEYS = {
    "ANTHROPIC_API_KEY": "user-anthropic-key",
    "GEMINI_API_KEY": "user-gemini-key",
    "OPENAI_API_KEY": "user-openai-key",
}
KEY_OF = {
    "builtin": "ANTHROPIC_API_KEY",
    "claude-code": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "opencode": "ANTHROPIC_API_KEY",
    "codex": "OPENAI_API_KEY",
}


def assert_orrery_tools_offered(agent: str, answered: list[Any]) -> None:
    """Every model request that offers tools offers Orrery's, a cold process's first too."""
    with_tools = [r for r in answered if isinstance(r.body, dict) and r.body.get("tools")]
    assert with_tools, f"{agent} offered the model no tool"
    missing = [
        i for i, r in enumerate(with_tools) if "orrery_sessions_get_current" not in str(r.body)
    ]
    assert not missing, f"{agent}: requests {missing} of {len(with_tools)} lack Orrery's tools"


@pytest.mark.parametrize("agent", list(AGENTS))
def test_one_scenario_for_every_provider(
    stack: tuple[httpx.Client, Path, ScriptedModelServer], agent: str
) -> None:
    api, _, model = stack
    model.clear_requests()
    cli, shell_tool = AGENTS[agent]
    if cli is not None:
        installed(cli)
    worktree = api.post("/api/worktrees", json={"repo": "app", "name": f"wt-{agent}"})
    assert worktree.status_code == 201, worktree.text
    path = Path(worktree.json()["path"])
    session = api.post(
        "/api/sessions",
        json={
            "worktree": f"wt-{agent}",
            "agent": agent,
            "model": MODELS.get(agent, ""),
            "permission_mode": "ask",
        },
    ).json()
    sid = session["id"]

    # prompt -> a permission request for the shell tool, approved through the API
    reply = api.post(f"/api/sessions/{sid}/prompt", json={"prompt": "create hello.txt"})
    assert reply.status_code == 201, reply.text

    def pending() -> list[dict[str, Any]]:
        if (done := ended(api, sid)) is not None:
            raise AssertionError(f"the task ended before asking: {done}")
        perms: list[dict[str, Any]] = api.get(f"/api/sessions/{sid}/permissions").json()
        return [p for p in perms if p["status"] == "pending"]

    asked = until(pending, timeout=60, what="a permission request")[0]
    assert asked["tool"].lower() == shell_tool
    assert "hello.txt" in str(asked["input"])
    decided = api.post(
        f"/api/sessions/{sid}/permissions/{asked['request_id']}", json={"allow": True}
    )
    assert decided.status_code == 200, decided.text

    # -> the tool wrote hello.txt in the worktree -> final text -> usage recorded
    task = until(lambda: ended(api, sid), timeout=60, what="the task to end")
    assert task["status"] == "completed", task
    assert (path / "hello.txt").read_text() == "hello world\n"
    assert task["result"] == "Done: hello.txt created."
    assert task["input_tokens"] > 0 and task["output_tokens"] > 0
    messages = api.get(f"/api/sessions/{sid}/messages").json()
    SHAPES[agent] = shape(messages)
    assert SHAPES[agent] == [
        ("user", ["text"]),
        ("assistant", ["tool_use"]),
        ("user", ["tool_result"]),
        ("assistant", ["text"]),
    ]
    assert messages[-1]["blocks"][0]["text"] == "Done: hello.txt created."
    if cli is not None:  # the CLI named its own session: the next task resumes it natively
        assert api.get(f"/api/sessions/{sid}").json()["native_id"]
    # the user's key, not the deployment's, and Orrery's MCP tools offered
    answered = [r for r in model.requests if r.rule is not None]
    assert answered, "no request reached the model"
    assert {r.key_digest for r in answered} == {key_digest(USER_KEYS[KEY_OF[agent]])}
    assert_orrery_tools_offered(agent, answered)

    # stop mid-run -> stopped within the bound
    reply = api.post(f"/api/sessions/{sid}/prompt", json={"prompt": "tell a long story"})
    assert reply.status_code == 201, reply.text
    until(
        lambda: (
            any(
                m["role"] == "user" and "long story" in str(m["blocks"])
                for m in api.get(f"/api/sessions/{sid}/messages").json()
            )
            and last_task(api, sid).get("status") == "running"
        ),
        timeout=60,
        what="the slow task to run",
    )
    time.sleep(1.0)  # into the slow stream
    stopped_at = time.monotonic()
    assert api.post(f"/api/sessions/{sid}/stop", json={}).status_code == 200
    task = until(lambda: ended(api, sid), timeout=15, what="the stop")
    assert task["status"] == "stopped", task
    assert time.monotonic() - stopped_at < 10.5

    # -> the session takes the next prompt (the same CLI process, or a new one resuming it)
    reply = api.post(f"/api/sessions/{sid}/prompt", json={"prompt": "say hello"})
    assert reply.status_code == 201, reply.text
    task = until(lambda: ended(api, sid), timeout=60, what="the prompt after the stop")
    assert task["status"] == "completed", task
    assert task["result"] == "Hello from the scripted model"


def test_the_builtin_agent_calls_orrerys_mcp_tools(
    stack: tuple[httpx.Client, Path, ScriptedModelServer],
) -> None:
    """The model asks for an Orrery tool; the agent calls the gateway's /mcp with the session's
    token and the answer (this very session) goes back to the model."""
    api, _, model = stack
    worktree = api.post("/api/worktrees", json={"repo": "app", "name": "wt-mcp"})
    assert worktree.status_code == 201, worktree.text
    sid = api.post("/api/sessions", json={"worktree": "wt-mcp", "agent": "builtin"}).json()["id"]
    reply = api.post(f"/api/sessions/{sid}/prompt", json={"prompt": "which session am i"})
    assert reply.status_code == 201, reply.text
    task = until(lambda: ended(api, sid), timeout=60, what="the task to end")
    assert task["status"] == "completed", task
    messages = api.get(f"/api/sessions/{sid}/messages").json()
    assert shape(messages) == [
        ("user", ["text"]),
        ("assistant", ["tool_use"]),
        ("user", ["tool_result"]),
        ("assistant", ["text"]),
    ]
    result = messages[2]["blocks"][0]
    assert not result.get("is_error"), result
    assert json.loads(result["content"])["id"] == sid  # the tool saw this session, via its token
    after_tool = [r for r in model.requests if "tool_result" in str(r.body)]
    assert any(sid in str(r.body) for r in after_tool)
