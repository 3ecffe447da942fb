"""The sessions issue's acceptance, through `orrery up`, REST and a WebSocket, with the built-in
agent talking to the project's scripted model server over HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import websockets
from orrery.modelserver import ScriptedModelServer

if TYPE_CHECKING:  # mypy sees the repo root; pytest puts these directories on sys.path
    from tests.gitrepos import make_repo as make_test_repo
    from tests.system.stackctl import start, stop, until, wait_healthy, with_model
else:
    from gitrepos import make_repo as make_test_repo
    from stackctl import start, stop, until, wait_healthy, with_model

pytestmark = pytest.mark.system

SCRIPT = {
    "rules": [
        {
            "match": {"last_user_text": "write hello", "tool_offered": "write"},
            "reply": [
                {"text": "Writing hello.txt now."},
                {
                    "tool_use": {
                        "name": "write",
                        "input": {"path": "hello.txt", "content": "hello world\n"},
                    }
                },
            ],
        },
        {"match": {"after_tool_result": True}, "reply": [{"text": "Done: wrote hello.txt"}]},
        {
            "match": {"last_user_text": "slow"},
            "reply": [{"text": "word " * 200, "chunk_chars": 5, "delay_ms": 50}],
        },
        {"match": {"any": True}, "reply": [{"text": "Hello from the scripted model"}]},
    ]
}


async def watch(url: str, until_type: str, limit: float = 30.0) -> list[dict[str, Any]]:
    """Frames of a session's WebSocket until an event of ``until_type`` arrives."""
    frames: list[dict[str, Any]] = []
    async with websockets.connect(url) as ws:
        try:
            async with asyncio.timeout(limit):
                while True:
                    frame = json.loads(await ws.recv())
                    frames.append(frame)
                    if frame["type"] == "event" and frame["event_type"] == until_type:
                        return frames
        except TimeoutError:
            seen = [f.get("event_type", f["type"]) for f in frames]
            raise AssertionError(f"no {until_type} within {limit}s; saw {seen}") from None


def test_the_builtin_agent_end_to_end(tmp_path: Path) -> None:  # noqa: PLR0915 - one story
    repo = make_test_repo(
        tmp_path / "src" / "app",
        "environment:\n  start: 'true'\n",
        {"README.md": "app\n"},
        {},
    )
    with ScriptedModelServer(SCRIPT) as model:
        proc, env = start(
            tmp_path / "home",
            extra=with_model(model.url),
        )
        port = int(env["ORRERY_PORT"])
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        try:
            wait_healthy(proc, port, timeout=60)
            assert (
                api.post("/api/repos", json={"source": str(repo), "adopt": True}).status_code == 201
            )
            worktree = api.post("/api/worktrees", json={"repo": "app", "name": "one"}).json()

            # A prompt: the agent writes a file through a tool call; a WebSocket client sees the
            # deltas and the final messages, in order.
            session = api.post(
                "/api/sessions", json={"worktree": "one", "permission_mode": "allow-all"}
            ).json()
            ws_url = f"ws://127.0.0.1:{port}/ws/sessions/{session['id']}"

            async def prompt_and_watch() -> list[dict[str, Any]]:
                watcher = asyncio.create_task(watch(ws_url, "sessions.TaskCompleted"))
                await asyncio.sleep(0.3)
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                    reply = await client.post(
                        f"/api/sessions/{session['id']}/prompt",
                        json={"prompt": "write hello please"},
                    )
                    assert reply.status_code == 201 and reply.json()["status"] == "running"
                return await watcher

            frames = asyncio.run(prompt_and_watch())
            assert Path(worktree["path"], "hello.txt").read_text() == "hello world\n"
            events = [f for f in frames if f["type"] == "event"]
            deltas = [f["delta"] for f in frames if f["type"] == "delta"]
            seqs = [f["seq"] for f in events]
            assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
            kinds = [f["event_type"] for f in events]
            assert kinds[0] == "sessions.SessionCreated" and kinds[-1] == "sessions.TaskCompleted"
            assert "sessions.TaskStarted" in kinds
            messages = [f["event"] for f in events if f["event_type"] == "sessions.MessageRecorded"]
            assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
            assert [m["index"] for m in messages] == [0, 1, 2, 3]
            assert messages[2]["blocks"][0]["type"] == "tool_result"
            assert messages[3]["blocks"][-1] == {"type": "text", "text": "Done: wrote hello.txt"}
            streamed = "".join(d["text"] for d in deltas if d["kind"] == "text")
            assert "Writing hello.txt now." in streamed and "Done: wrote hello.txt" in streamed
            # The deltas of a message come before the message itself.
            first_done = frames.index(
                next(
                    f
                    for f in frames
                    if f.get("event_type") == "sessions.MessageRecorded"
                    and f["event"]["role"] == "assistant"
                )
            )
            assert any(f["type"] == "delta" for f in frames[:first_done])

            # Resuming the stream after a seq: no gap, no duplicate.
            async def tail_after(after: int) -> list[int]:
                got: list[int] = []
                async with websockets.connect(f"{ws_url}?after={after}") as ws:
                    async with asyncio.timeout(10):
                        while not got or got[-1] < seqs[-1]:
                            frame = json.loads(await ws.recv())
                            if frame["type"] == "event":
                                got.append(frame["seq"])
                return got

            assert asyncio.run(tail_after(seqs[3])) == seqs[4:]

            tasks = until(
                lambda: [
                    t
                    for t in api.get(f"/api/sessions/{session['id']}/tasks").json()
                    if t["status"] == "completed" and t["git_end"]
                ]
            )
            assert tasks[0]["input_tokens"] > 0
            assert tasks[0]["cost_usd"] > 0  # claude-sonnet-4-5 is in the pricing table
            assert tasks[0]["git_start"]["branch"] == "one" and tasks[0]["git_end"]["dirty"] is True
            ledger = api.get("/api/ledger", params={"by": "user"}).json()
            assert ledger[0]["key"] == "anonymous" and ledger[0]["cost_usd"] == tasks[0]["cost_usd"]

            # A change of title and model applies to the next task; nothing to change is a 4xx.
            sid = session["id"]
            changed = api.patch(
                f"/api/sessions/{sid}", json={"title": "renamed", "model": "claude-opus-4-1"}
            )
            assert changed.status_code == 200, changed.text
            assert changed.json()["title"] == "renamed"
            assert changed.json()["settings"]["model"] == "claude-opus-4-1"
            assert changed.json()["settings"]["permission_mode"] == "allow-all"  # unchanged
            empty = api.patch(f"/api/sessions/{sid}", json={})
            assert empty.status_code == 422 and empty.json()["code"] == "session.empty_update"
            bad = api.patch(f"/api/sessions/{sid}", json={"permission_mode": "never"})
            assert bad.status_code == 400, bad.text
            asked = len(model.requests)
            api.post(f"/api/sessions/{sid}/prompt", json={"prompt": "hi after the change"})
            until(lambda: api.get(f"/api/sessions/{sid}/tasks").json()[-1]["status"] == "completed")
            assert {r.body["model"] for r in model.requests[asked:]} == {"claude-opus-4-1"}

            # Stop during a slow stream ends in `stopped`, within the bound.
            api.post(f"/api/sessions/{session['id']}/prompt", json={"prompt": "slow please"})
            until(lambda: api.get(f"/api/sessions/{session['id']}").json()["status"] == "running")
            time.sleep(0.5)
            t0 = time.monotonic()
            stopped = api.post(f"/api/sessions/{session['id']}/stop")
            assert stopped.status_code == 200, stopped.text
            assert time.monotonic() - t0 < 10
            assert stopped.json()["status"] == "idle"
            assert api.get(f"/api/sessions/{session['id']}/tasks").json()[-1]["status"] == "stopped"

            # A prompt to a busy session is queued, then runs.
            api.post(f"/api/sessions/{session['id']}/prompt", json={"prompt": "slow again"})
            queued = api.post(f"/api/sessions/{session['id']}/prompt", json={"prompt": "hi"}).json()
            assert queued["status"] == "queued"
            api.post(f"/api/sessions/{session['id']}/stop")
            until(
                lambda: (
                    api.get(f"/api/sessions/{session['id']}/tasks").json()[-1]["status"]
                    == "completed"
                )
            )

            # Fork and spawn: the expected genealogy.
            fork = api.post(f"/api/sessions/{session['id']}/fork", json={"title": "alt"}).json()
            spawn = api.post(
                f"/api/sessions/{session['id']}/spawn", json={"prompt": "say hi", "title": "kid"}
            ).json()
            assert fork["relation"] == "fork" and fork["fork_point"] > 0
            tree = api.get(f"/api/sessions/{session['id']}/genealogy").json()
            assert {(c["relation"], c["session"]["id"]) for c in tree["children"]} == {
                ("fork", fork["id"]),
                ("spawn", spawn["id"]),
            }
            assert (
                api.get(f"/api/sessions/{spawn['id']}/genealogy").json()["ancestors"][0]["id"]
                == session["id"]
            )
            until(
                lambda: (
                    api.get(f"/api/sessions/{spawn['id']}/tasks").json()[-1]["status"]
                    == "completed"
                )
            )
            # The same Idempotency-Key twice: one session, one prompt.
            headers = {"Idempotency-Key": "create-once-0001"}
            body = {"worktree": "one", "permission_mode": "allow-all", "prompt": "hi"}
            first = api.post("/api/sessions", json=body, headers=headers)
            again = api.post("/api/sessions", json=body, headers=headers)
            assert first.status_code == 201 and again.json()["id"] == first.json()["id"]
            until(
                lambda: (
                    api.get(f"/api/sessions/{first.json()['id']}/tasks").json()[-1]["status"]
                    == "completed"
                )
            )
            assert len(api.get(f"/api/sessions/{first.json()['id']}/tasks").json()) == 1

            refused = api.delete(f"/api/sessions/{session['id']}")
            assert refused.status_code == 409 and refused.json()["code"] == "session.has_children"

            # Twenty sessions at once, each with its own answer.
            ids = [
                api.post(
                    "/api/sessions", json={"worktree": "one", "permission_mode": "allow-all"}
                ).json()["id"]
                for _ in range(20)
            ]

            async def many() -> None:
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}", timeout=60
                ) as client:
                    await asyncio.gather(
                        *(
                            client.post(f"/api/sessions/{i}/prompt", json={"prompt": f"hello {n}"})
                            for n, i in enumerate(ids)
                        )
                    )

            asyncio.run(many())
            for i in ids:

                def completed(i: str = i) -> bool:
                    return bool(
                        api.get(f"/api/sessions/{i}/tasks").json()[-1]["status"] == "completed"
                    )

                until(completed, 60)
                last = api.get(f"/api/sessions/{i}/messages").json()[-1]
                assert last["blocks"] == [{"type": "text", "text": "Hello from the scripted model"}]
        finally:
            api.close()
            stop(proc)
