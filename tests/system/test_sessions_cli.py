"""`orrery session` as a user runs it: the real CLI against `orrery up`, the built-in agent talking
to the scripted model server over HTTP."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from orrery.modelserver import ScriptedModelServer

if TYPE_CHECKING:  # mypy sees the repo root; pytest puts these directories on sys.path
    from tests.gitrepos import make_repo as make_test_repo
    from tests.system.stackctl import ORRERY, orrery, start, stop, until, wait_healthy, with_model
else:
    from gitrepos import make_repo as make_test_repo
    from stackctl import ORRERY, orrery, start, stop, until, wait_healthy, with_model

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
        {"match": {"any": True}, "reply": [{"text": "Hello from the scripted model"}]},
    ]
}


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def created(out: str, what: str) -> str:
    found = re.search(rf"{what} session ([0-9a-f-]{{36}})", out)
    assert found, out
    return found[1]


def test_sessions_from_the_cli(tmp_path: Path) -> None:  # noqa: PLR0915 - one story
    repo = make_test_repo(
        tmp_path / "src" / "app", "environment:\n  start: 'true'\n", {"README.md": "app\n"}, {}
    )
    with ScriptedModelServer(SCRIPT) as model:
        proc, env = start(
            tmp_path / "home",
            extra=with_model(model.url),
        )
        port = int(env["ORRERY_PORT"])
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

        def tasks(session: str) -> list[dict[str, Any]]:
            return api.get(f"/api/sessions/{session}/tasks").json()  # type: ignore[no-any-return]

        try:
            wait_healthy(proc, port, timeout=60)
            ok(orrery(env, "repo", "add", "--adopt", str(repo)))
            worktree = json.loads(ok(orrery(env, "worktree", "add", "one", "-r", "app", "--json")))

            # A session; a prompt whose reply writes a file through a tool, then answers; the
            # reply streams to the terminal. The only session so far: 8 characters name it.
            out = ok(orrery(env, "session", "new", "-w", "one", "--title", "main",
                            "--permission", "allow-all"))  # fmt: skip
            main = created(out, "created")
            out = ok(orrery(env, "session", "prompt", main[:8], "write hello please", "--wait"))
            assert Path(worktree["path"], "hello.txt").read_text() == "hello world\n"
            assert out.index("Writing hello.txt now.") < out.index("→ write: hello.txt")
            assert out.index("→ write: hello.txt") < out.index("Done: wrote hello.txt")
            assert "✓ completed" in out and "tokens" in out and "claude-sonnet" in out

            shown = json.loads(ok(orrery(env, "session", "show", main, "--json")))
            assert (shown["status"], shown["message_count"]) == ("idle", 4)
            [task] = shown["tasks"]
            assert task["status"] == "completed" and task["prompt"] == "write hello please"
            assert task["input_tokens"] > 0 and task["output_tokens"] > 0 and task["cost_usd"] > 0
            assert task["git_start"]["branch"] == "one"

            # Fork and spawn: children of the session, listed with their relation.
            fork = created(ok(orrery(env, "session", "fork", main, "--title", "alt")), "forked")
            kid = created(ok(orrery(env, "session", "spawn", main, "say hi")), "spawned")
            genealogy = api.get(f"/api/sessions/{main}/genealogy").json()
            assert {(c["relation"], c["session"]["id"]) for c in genealogy["children"]} == {
                ("fork", fork),
                ("spawn", kid),
            }
            until(lambda: tasks(kid) and tasks(kid)[-1]["status"] == "completed", timeout=20)
            out = ok(orrery(env, "session", "list", "-w", "one"))
            rows = [
                [cell.strip() for cell in line.split("│")[1:-1]]
                for line in out.splitlines()
                if line.startswith("│")
            ]
            ids = [main, fork, kid]
            # UUIDv7s made within a minute share their first 8 characters: each row shows the
            # shortest prefix that names one session.
            short = [row[0] for row in rows]
            assert [[i for i in ids if i.startswith(p)] for p in short] == [[i] for i in ids], out
            assert [row[1:5] for row in rows] == [
                ["main", "app/one", "", "idle"],
                ["alt", "app/one", f"fork of {short[0]}", "idle"],
                ["", "app/one", f"spawn of {short[0]}", "idle"],
            ], out

            # A new title and model; the next task runs on that model.
            out = ok(orrery(env, "session", "update", main, "--title", "renamed",
                            "--model", "claude-opus-4-1"))  # fmt: skip
            assert "updated" in out and "renamed" in out and "claude-opus-4-1" in out, out
            nothing = orrery(env, "session", "update", main)
            assert nothing.returncode == 2
            assert "say what to change" in nothing.stdout + nothing.stderr
            out = ok(orrery(env, "session", "prompt", main, "hi", "--wait"))
            assert "claude-opus-4-1" in out and "✓ completed" in out, out

            # Ask before writing: `tail` shows the request and the command that approves it,
            # then the rest of the task once approved.
            out = ok(orrery(env, "session", "new", "-w", "one", "write hello again"))
            asker = created(out, "created")
            assert re.search(r"task \S+ {2}running", out), out
            lines: queue.Queue[str] = queue.Queue()
            with subprocess.Popen(
                [ORRERY, "session", "tail", asker, "--once"],
                env={**env, "COLUMNS": "200"},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ) as tail:
                reader = threading.Thread(target=lambda: [*map(lines.put, tail.stdout or [])])
                reader.start()
                try:
                    seen = [lines.get(timeout=20)]
                    while "approve: orrery session approve" not in seen[-1]:  # read, then approve
                        seen.append(lines.get(timeout=20))
                    out = ok(orrery(env, "session", "approve", asker))
                    assert out.startswith("approved write: hello.txt"), out
                    tail.wait(timeout=20)
                finally:
                    tail.kill()
                    reader.join(timeout=5)
            tailed = "".join(seen) + "".join(lines.queue)  # the reader has finished
            assert tail.returncode == 0, tailed
            assert f"approve: orrery session approve {asker} " in tailed
            assert tailed.index("needs permission") < tailed.index("approved")
            assert tailed.index("approved") < tailed.index("Done: wrote hello.txt")
            assert "✓ completed" in tailed

            # An unknown session: one line, exit 2.
            missing = orrery(env, "session", "show", "nope")
            assert missing.returncode == 2
            assert missing.stdout.strip() == "error: no session 'nope' (session.not_found)"
        finally:
            api.close()
            stop(proc)
