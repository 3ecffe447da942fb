"""``orrery session``: thin commands over the sessions REST API, and its WebSocket followed live.

Ids are UUIDv7, whose first characters are a timestamp: sessions (or tasks) made within a minute
share their first 8 characters, so lists show the shortest prefix that is unique, never ``[:8]``.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, Literal

import typer
from orrery.cli.api import Api, ApiCallError
from orrery.cli.display import JsonOpt, api
from orrery.cli.display import kv as _kv
from orrery.cli.display import print_json as _print_json
from orrery.cli.display import short_ids as _short
from rich.console import Console
from rich.status import Status
from rich.table import Table
from rich.text import Text
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

console = Console()
session_app = typer.Typer(
    help="Agent sessions: create, prompt, follow, stop, fork, spawn, approve tools, remove."
)

ENDS = {
    "sessions.TaskCompleted", "sessions.TaskFailed", "sessions.TaskStopped",
    "sessions.TaskInterrupted",
}  # fmt: skip
RECONNECTS = 5  # a dropped stream resumes after the last seq seen; then give up with one line


def _one_line(text: str, limit: int = 100) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    more = len(line) > limit or len(text.strip().splitlines()) > 1
    return line[:limit] + (" …" if more else "")


def _tool(name: str, args: dict[str, Any]) -> str:
    """``write hello.txt``, ``bash: make test``: the argument that says what a call does."""
    for key in ("command", "path", "file_path", "pattern", "query", "url"):
        if isinstance(args.get(key), str):
            return f"{name}: {_one_line(args[key], 80)}"
    return f"{name} {_one_line(json.dumps(args), 80)}"


def _usage(t: dict[str, Any]) -> str:
    usage = t.get("usage") or t  # an event's usage, or a task row's columns
    cache = usage.get("cache_read_tokens", 0)
    cost = t.get("cost_usd") or 0.0
    parts = [
        f"{usage.get('input_tokens', 0):,} in / {usage.get('output_tokens', 0):,} out tokens"
        + (f" ({cache:,} cached)" if cache else ""),
        f"${cost:.4f}",
    ]
    if t.get("duration_ms"):
        parts.append(f"{t['duration_ms'] / 1000:.1f}s")
    return "  ".join(parts)


def _git(snap: dict[str, Any] | None) -> str:
    if not snap:
        return "-"
    if snap.get("error"):
        return f"({snap['error']})"
    return f"{snap.get('branch') or 'detached'}@{(snap.get('sha') or '')[:7]}" + (
        " dirty" if snap.get("dirty") else ""
    )


# -- following the WebSocket ---------------------------------------------------------------------


class _Render:
    """Prints a session's frames as they come: deltas inline (thinking dimmed), everything else
    one line each. Deltas are not durable: text they missed after a gap is printed from the
    recorded message, so a reply followed from its start is printed whole; one joined midway
    streams from there (after an ellipsis)."""

    def __init__(self, *, task: str | None = None, waiting: str | None = None) -> None:
        # Only this task's frames (`prompt --wait`; "" until the prompt is sent), else all.
        self.task = task
        self.printed: dict[tuple[str, str], str] = {}  # (message, kind) -> text printed
        self.next_index: dict[str, int] = {}  # message -> the delta index expected next
        self.joined: set[str] = set()  # messages whose first deltas were missed
        self.mid_line: str | None = None  # the kind of delta the current line holds
        self.status: Status | None = console.status(waiting) if waiting else None
        if self.status:
            self.status.start()

    def quiet(self) -> None:
        if self.status:
            self.status.stop()
            self.status = None

    def out(self, text: str, kind: str) -> None:
        self.quiet()
        if self.mid_line not in (None, kind):
            console.out("")
        console.out(text, style="dim" if kind == "thinking" else None, end="", highlight=False)
        self.mid_line = None if text.endswith("\n") else kind

    def end_line(self) -> None:
        if self.mid_line:
            console.out("")
            self.mid_line = None

    def line(self, text: str, style: str | None = None) -> None:
        self.quiet()
        self.end_line()
        console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)

    def frame(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "delta":
            self.delta(frame["delta"])
        elif frame["type"] == "event":
            self.event(frame["event_type"].removeprefix("sessions."), frame["event"])

    def delta(self, d: dict[str, Any]) -> None:
        if self.task is not None and d["task_id"] != self.task:
            return
        message, index = d["message_id"], d["index"]
        expected = self.next_index.get(message, 0)
        if message not in self.next_index and index > 0:  # joined midway: stream from here
            self.joined.add(message)
            expected = index
            if d["kind"] != "tool_input":
                self.out("…", d["kind"])
        if index != expected:  # a gap: the recorded message will show the rest
            self.next_index[message] = -1
            return
        self.next_index[message] = expected + 1
        key = (message, d["kind"])
        if d["kind"] == "tool_input":
            if key not in self.printed:
                self.line("→ preparing a tool call …", "dim")
            self.printed[key] = ""
            return
        self.printed[key] = self.printed.get(key, "") + d["text"]
        self.out(d["text"], d["kind"])

    def message(self, e: dict[str, Any]) -> None:
        blocks = e["blocks"]
        if e["role"] != "assistant":
            for b in blocks:
                if b["type"] == "tool_result":
                    ok = "error" if b.get("is_error") else "ok"
                    self.line(
                        f"  ← {ok}: {_one_line(b['content'])}", "red" if ok != "ok" else "dim"
                    )
                elif b["type"] in ("text", "system") and self.task is None:
                    self.line(f"> {b['text']}" if e["role"] == "user" else b["text"], "bold")
            return
        for kind in ("thinking", "text"):
            final = "".join(b["text"] for b in blocks if b["type"] == kind)
            printed = self.printed.pop((e["message_id"], kind), "")
            if e["message_id"] in self.joined:
                rest = "" if final.endswith(printed) else "\n" + final
            else:
                rest = final[len(printed) :] if final.startswith(printed) else "\n" + final
            if rest:
                self.out(rest, kind)
        for b in blocks:
            if b["type"] == "tool_use":
                self.line(f"→ {_tool(b['name'], b['input'])}", "cyan")
        self.end_line()

    def event(self, name: str, e: dict[str, Any]) -> None:  # noqa: PLR0912 - one branch a type
        sid, task = e["session_id"], e.get("task_id")
        if self.task is not None and task != self.task:
            return
        if name == "MessageRecorded":
            self.message(e)
        elif name == "TaskStarted" and self.task is None:
            self.line(f"── task {task}{' resumed' if e.get('resumed') else ''}", "dim")
        elif name == "TaskCompleted":
            self.line(f"✓ completed  {_usage(e)}  {e['model']}", "green")
        elif name == "TaskFailed":
            self.line(f"✗ failed  {e['code']}: {e['message']}  {_usage(e)}", "red")
        elif name == "TaskStopped":
            self.line(f"■ stopped ({e['how']})", "yellow")
        elif name == "TaskInterrupted":
            self.line(f"interrupted: {e['reason']}", "yellow")
            self.line(f"  run it again: orrery session resume {sid} {task}")
        elif name == "PermissionRequested":
            rid = e["request_id"]
            self.line(f"? {_tool(e['tool'], e['input'])} needs permission ({rid})", "yellow")
            self.line(f"  approve: orrery session approve {sid} {rid}")
            self.line(f"  deny:    orrery session deny {sid} {rid}")
        elif name == "PermissionDecided":
            how = ("approved" if e["allow"] else "denied") + (
                " for the session" if e["scope"] == "session" else ""
            )
            why = f" ({e['reason']})" if e.get("reason") else ""
            self.line(f"  {e['request_id']} {how}{why}", "dim")
        elif name == "StopRequested":
            self.line("stopping …", "yellow")
        elif name == "PromptSteered":
            self.line(f"steered in: {_one_line(e['prompt'], 60)}", "dim")
        elif self.task is not None:
            return  # the rest is about the session, not the task `--wait` follows
        elif name == "TaskQueued":
            self.line(f"queued {task}: {_one_line(e['prompt'], 60)}", "dim")
        elif name == "TaskGitState":
            self.line(f"git at {e['moment']}: {_git(e['git'])}", "dim")
        elif name == "ChildSessionRequested":
            self.line(f"{e['relation']} → {e['child_id']}", "magenta")
        elif name == "ChildReported":
            self.line(f"child {e['child_id']} {e['outcome']}: {_one_line(e['result'])}", "magenta")
        elif name == "SessionCreated":
            s = e["settings"]
            agent = f"{s['agent']} {s['model'] or '(default model)'}, {s['permission_mode']}"
            self.line(f"session {sid} {e['title']!r} ({e['relation']}, {agent})", "dim")
        elif name == "SessionDeleted":
            self.line("session deleted", "red")


def _follow(
    client: Api,
    session_id: str,
    after: int,
    render: _Render,
    *,
    until: Callable[[dict[str, Any]], bool],
    on_open: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Render the session's frames until ``until`` holds for one (returned). A dropped connection
    resumes after the last event seen (the server guarantees no gap and no duplicate)."""
    url = client.url.replace("http", "ws", 1) + f"/ws/sessions/{session_id}"
    last, failures = after, 0
    try:
        while True:
            try:
                token = client.token()  # (the REST call before this one renewed it if due)
                auth = f"&token={urllib.parse.quote(token)}" if token else ""
                with connect(f"{url}?after={last}{auth}", max_size=None) as ws:
                    if on_open:
                        on_open()  # e.g. send the prompt, now that no delta can be missed
                        on_open = None
                    failures = 0
                    while True:
                        frame = json.loads(ws.recv())
                        if frame["type"] == "error":
                            raise ApiCallError(0, frame["code"], frame["message"])
                        if frame["type"] == "event":
                            last = frame["seq"]
                        render.frame(frame)
                        if until(frame):
                            return frame  # type: ignore[no-any-return]
            except (OSError, TimeoutError, WebSocketException) as exc:
                failures += 1
                if failures > RECONNECTS:
                    raise ApiCallError(
                        0, "cli.stream_lost", f"lost the session's stream at {url}: {exc}"
                    ) from None
                time.sleep(0.25 * 2**failures)
    finally:
        render.quiet()
        render.end_line()


def _ended(task: Callable[[], str | None]) -> Callable[[dict[str, Any]], bool]:
    return lambda f: (
        f["type"] == "event" and f["event_type"] in ENDS and f["event"]["task_id"] == task()
    )


def _wait(client: Api, session_id: str, task: str, after: int, waiting: str) -> None:
    """Follow one task to its end; exit 1 unless it completed."""
    render = _Render(task=task, waiting=waiting)
    try:
        end = _follow(client, session_id, after, render, until=_ended(lambda: task))
    except KeyboardInterrupt:
        render.line(f"stopped following; stop the task with `orrery session stop {session_id}`")
        return
    if end["event_type"] != "sessions.TaskCompleted":
        raise typer.Exit(1)


# -- commands ------------------------------------------------------------------------------------


@session_app.command("new")
def session_new(  # noqa: PLR0917 - typer maps each option to a parameter
    prompt: str | None = typer.Argument(None, help="a first prompt, run at once"),
    worktree: str = typer.Option(..., "--worktree", "-w", help="worktree id, prefix or name"),
    title: str = typer.Option("", help="a title"),
    agent: Literal["builtin", "claude-code", "codex", "gemini", "opencode"] = typer.Option(
        "builtin", help="the agent that runs the prompts"
    ),
    model: str = typer.Option("", help="model name (default: the agent's)"),
    permission: Literal["ask", "auto", "allow-all"] = typer.Option(
        "ask", help="ask before tools that change files or run commands, or don't"
    ),
    wait: bool = typer.Option(False, "--wait", help="follow the first prompt to its end"),
    as_json: bool = JsonOpt,
) -> None:
    """Create a session in a worktree; prints its id (and the task of a first prompt)."""
    client = api()
    body = {
        "worktree": worktree, "title": title, "agent": agent, "model": model,
        "permission_mode": permission, "prompt": prompt,
    }  # fmt: skip
    with console.status("creating the session …"):
        s = client.call("POST", "/api/sessions", json=body)
    task = s["active_task"] or (s["queue"] or [None])[0]
    if as_json:
        _print_json(s)
    else:
        console.print(f"[green]created[/] session {s['id']}" + (f"  {title}" if title else ""))
        if task:
            console.print(f"task {task}  {'running' if s['active_task'] == task else 'queued'}")
    if wait and task:
        _wait(client, s["id"], task, 0, "waiting for the agent …")


@session_app.command("prompt")
def session_prompt(
    ref: str = typer.Argument(help="session id or id prefix"),
    text: str = typer.Argument(help="the prompt"),
    steer: bool = typer.Option(
        False, "--steer", help="deliver it into the running task instead of queueing it"
    ),
    wait: bool = typer.Option(False, "--wait", help="print the reply as it streams, to the end"),
) -> None:
    """Prompt a session: runs now if it is idle, else queued (or steered into the running task)."""
    client = api()
    session = client.call("GET", f"/api/sessions/{ref}")
    body = {"prompt": text, "mode": "steer" if steer else "queue"}
    if not wait:
        answer = client.call("POST", f"/api/sessions/{session['id']}/prompt", json=body)
        console.print(f"task {answer['task_id']}  {answer['status']}")
        return
    sent: dict[str, Any] = {}

    def send() -> None:  # once the stream is open, so no delta of the reply is missed
        answer = client.call("POST", f"/api/sessions/{session['id']}/prompt", json=body)
        sent["task"] = answer["task_id"]
        if answer["status"] == "steered":  # the prompt joined the running task
            sent["task"] = client.call("GET", f"/api/sessions/{session['id']}")["active_task"]
        render.task = sent["task"]
        if render.status and answer["status"] == "queued":
            render.status.update("queued behind the running task …")

    render = _Render(task="", waiting="waiting for the agent …")
    try:
        end = _follow(
            client, session["id"], session["last_seq"], render,
            until=_ended(lambda: sent.get("task")), on_open=send,
        )  # fmt: skip
    except KeyboardInterrupt:
        render.line(f"stopped following; stop the task with `orrery session stop {session['id']}`")
        return
    if end["event_type"] != "sessions.TaskCompleted":
        raise typer.Exit(1)


@session_app.command("tail")
def session_tail(
    ref: str = typer.Argument(help="session id or id prefix"),
    after: int = typer.Option(0, help="only events after this seq (default: from the start)"),
    once: bool = typer.Option(
        False, "--once", help="stop when the running task (else the next one) ends"
    ),
) -> None:
    """Follow a session live: replies, tool calls, tasks with usage, permission requests.

    Ctrl-C stops following; the session goes on."""
    client = api()
    session = client.call("GET", f"/api/sessions/{ref}")
    target, last_seq = session["active_task"], session["last_seq"]

    def done(f: dict[str, Any]) -> bool:
        if f["type"] != "event":
            return False
        if f["event_type"] == "sessions.SessionDeleted":
            return True
        if not once or f["event_type"] not in ENDS:
            return False
        return bool(f["event"]["task_id"] == target if target else f["seq"] > last_seq)

    render = _Render()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stop following, quietly
        _follow(client, session["id"], after, render, until=done)


@session_app.command("update")
def session_update(  # noqa: PLR0917 - typer maps each option to a parameter
    ref: str = typer.Argument(help="session id or id prefix"),
    title: str | None = typer.Option(None, help="a new title"),
    model: str | None = typer.Option(None, help="the model of its next tasks"),
    permission: Literal["ask", "auto", "allow-all"] | None = typer.Option(
        None, help="ask before tools that change files or run commands, or don't"
    ),
    thinking: Literal["auto", "off"] | None = typer.Option(None, help="extended thinking"),
    as_json: bool = JsonOpt,
) -> None:
    """Change a session's title, model, permission mode or thinking (from its next task)."""
    fields = {
        "title": title,
        "model": model,
        "permission_mode": permission,
        "thinking": thinking,
    }
    body = {k: v for k, v in fields.items() if v is not None}
    if not body:
        console.print(
            "[red]error:[/] say what to change: --title, --model, --permission, --thinking"
        )
        raise typer.Exit(2)
    s = api().call("PATCH", f"/api/sessions/{ref}", json=body)
    if as_json:
        _print_json(s)
        return
    settings = s["settings"]
    console.print(
        f"[green]updated[/] session {s['id']}  {s['title']}  {settings['agent']}"
        f" {settings['model'] or '(default model)'}  {settings['permission_mode']}"
        f"  thinking {settings['thinking']}"
    )


@session_app.command("stop")
def session_stop(ref: str = typer.Argument(help="session id or id prefix")) -> None:
    """Stop the running task (within 10 s: interrupt, then signal, then kill)."""
    with console.status("stopping …"):
        s = api().call("POST", f"/api/sessions/{ref}/stop")
    after = f"; the next queued task runs: {s['active_task']}" if s["active_task"] else ""
    console.print(f"[green]stopped[/] session {s['id']}{after}")


@session_app.command("fork")
def session_fork(
    ref: str = typer.Argument(help="session id or id prefix"),
    prompt: str | None = typer.Option(None, help="a prompt for the fork, run at once"),
    after_message: int | None = typer.Option(
        None, min=0, help="share the first N messages (default: all)"
    ),
    title: str = typer.Option("", help="the fork's title"),
    as_json: bool = JsonOpt,
) -> None:
    """Fork: a sibling session sharing the conversation so far (or its first N messages)."""
    body = {"prompt": prompt, "after_message": after_message, "title": title}
    with console.status("forking …"):
        child = api().call("POST", f"/api/sessions/{ref}/fork", json=body)
    if as_json:
        _print_json(child)
        return
    console.print(
        f"[green]forked[/] session {child['id']}  from {child['parent_id']}"
        f" after message {child['fork_point']}"
    )


@session_app.command("spawn")
def session_spawn(  # noqa: PLR0917 - typer maps each option to a parameter
    ref: str = typer.Argument(help="session id or id prefix"),
    prompt: str = typer.Argument(help="the child's prompt"),
    title: str = typer.Option("", help="the child's title"),
    agent: Literal["builtin", "claude-code", "codex", "gemini", "opencode"] | None = typer.Option(
        None, help="another agent (default: the parent's)"
    ),
    model: str | None = typer.Option(None, help="another model (default: the parent's)"),
    as_json: bool = JsonOpt,
) -> None:
    """Spawn: a fresh child session on the prompt; it reports its result to this one."""
    body = {"prompt": prompt, "title": title, "agent": agent, "model": model}
    with console.status("spawning …"):
        child = api().call("POST", f"/api/sessions/{ref}/spawn", json=body)
    if as_json:
        _print_json(child)
        return
    console.print(f"[green]spawned[/] session {child['id']}  from {child['parent_id']}")


def _relation(s: dict[str, Any], short: dict[str, str]) -> str:
    if s["relation"] == "root" or not s["parent_id"]:
        return ""
    return f"{s['relation']} of {short.get(s['parent_id'], s['parent_id'][:13])}"


@session_app.command("list")
def session_list(
    worktree: str | None = typer.Option(None, "--worktree", "-w", help="only this worktree's"),
    include_deleted: bool = typer.Option(False, "--all", help="also deleted sessions"),
    as_json: bool = JsonOpt,
) -> None:
    """List sessions, oldest first."""
    client = api()
    params: dict[str, Any] = {"all": include_deleted}
    if worktree:
        params["worktree"] = worktree
    rows = client.call("GET", "/api/sessions", params=params)
    if as_json:
        _print_json(rows)
        return
    trees = client.call("GET", "/api/worktrees", params={"archived": True, "all": True})
    names = {w["id"]: f"{w['repo_slug']}/{w['name']}" for w in trees}
    short = _short([s["id"] for s in rows])
    table = Table(
        "id", "title", "worktree", "relation", "status", "queue", "msgs", "tokens", "cost"
    )
    for s in rows:
        table.add_row(
            short[s["id"]], s["title"], names.get(s["worktree_id"], s["worktree_id"][:13]),
            _relation(s, short), s["status"] + (" (deleted)" if s["deleted"] else ""),
            str(len(s["queue"]) or ""), str(s["message_count"]),
            f"{s['input_tokens']:,} / {s['output_tokens']:,}", f"${s['cost_usd']:.4f}",
        )  # fmt: skip
    console.print(table)


def _pending(client: Api, session_id: str) -> list[dict[str, Any]]:
    perms = client.call("GET", f"/api/sessions/{session_id}/permissions")
    return [p for p in perms if p["status"] == "pending"]


@session_app.command("show")
def session_show(
    ref: str = typer.Argument(help="session id or id prefix"), as_json: bool = JsonOpt
) -> None:
    """One session: status, queue, tasks (tokens, cost, git start → end), permission requests."""
    client = api()
    s = client.call("GET", f"/api/sessions/{ref}")
    tasks = client.call("GET", f"/api/sessions/{s['id']}/tasks")
    perms = client.call("GET", f"/api/sessions/{s['id']}/permissions")
    children = client.call("GET", f"/api/sessions/{s['id']}/genealogy")["children"]
    if as_json:
        _print_json({**s, "tasks": tasks, "permissions": perms, "children": children})
        return
    settings = s["settings"]
    trees = client.call("GET", "/api/worktrees", params={"archived": True, "all": True})
    worktree = next(
        (f"{w['repo_slug']}/{w['name']}" for w in trees if w["id"] == s["worktree_id"]),
        s["worktree_id"],
    )
    _kv([
        ("id", s["id"]), ("title", s["title"]), ("worktree", worktree),
        ("agent", f"{settings['agent']} {settings['model'] or '(default model)'}"),
        ("permissions", settings["permission_mode"]),
        ("relation", _relation(s, {s["parent_id"]: s["parent_id"]} if s["parent_id"] else {})
                     + (f" at message {s['fork_point']}" if s["relation"] == "fork" else "")),
        ("status", s["status"] + (" (deleted)" if s["deleted"] else "")),
        ("running", s["active_task"]), ("queued", ", ".join(s["queue"])),
        ("messages", str(s["message_count"])),
        ("usage", _usage(s)),
        ("children", ", ".join(f"{c['relation']} {c['session']['id']}" for c in children)),
    ])  # fmt: skip
    short = _short([t["id"] for t in tasks])
    table = Table("task", "status", "prompt", "tokens in/out", "cost", "time", "git start → end")
    for t in tasks:
        table.add_row(
            short[t["id"]], t["status"] + (f" #{t['queue_position']}" if t["status"] == "queued"
                                           else ""),
            _one_line(t["prompt"], 50), f"{t['input_tokens']:,} / {t['output_tokens']:,}",
            f"${t['cost_usd']:.4f}", f"{t['duration_ms'] / 1000:.1f}s" if t["duration_ms"] else "",
            f"{_git(t['git_start'])} → {_git(t['git_end'])}" if t["git_start"] else "",
        )  # fmt: skip
        if t["error"]:
            table.add_row("", "", Text(t["error"], style="red"))
    if tasks:
        console.print(table)
    for p in perms:
        if p["status"] == "pending":
            console.print(
                Text(f"? {_tool(p['tool'], p['input'])}", style="yellow"),
                f"needs permission: orrery session approve {s['id']} {p['request_id']}",
                soft_wrap=True, highlight=False,
            )  # fmt: skip


@session_app.command("queue")
def session_queue(
    ref: str = typer.Argument(help="session id or id prefix"), as_json: bool = JsonOpt
) -> None:
    """The prompts waiting for the running task to end, in order."""
    rows = api().call("GET", f"/api/sessions/{ref}/queue")
    if as_json:
        _print_json(rows)
        return
    if not rows:
        console.print("nothing queued")
        return
    table = Table("#", "task", "prompt")
    for n, t in enumerate(rows):
        table.add_row(str(n + 1), t["id"], _one_line(t["prompt"]))
    console.print(table)


def _request(client: Api, session_id: str, ref: str | None) -> str:
    """The pending request ``ref`` names (an id or prefix), or the only one pending."""
    pending: list[str] = [p["request_id"] for p in _pending(client, session_id)]
    matches = [r for r in pending if r == ref] or [r for r in pending if r.startswith(ref or "")]
    if len(matches) == 1:
        return matches[0]
    if ref is None:
        what = f"{len(pending)} requests are pending" if pending else "no request is pending"
        raise ApiCallError(0, "permission.which", f"{what}: give the request id")
    return ref  # the API says why it is not pending


def _decide(ref: str, request: str | None, body: dict[str, Any]) -> None:
    client = api()
    s = client.call("GET", f"/api/sessions/{ref}")
    request_id = _request(client, s["id"], request)
    perms = client.call("POST", f"/api/sessions/{s['id']}/permissions/{request_id}", json=body)
    p = next(p for p in perms if p["request_id"] == request_id)
    console.print(f"[green]{p['status']}[/] {_tool(p['tool'], p['input'])}  ({request_id})")


@session_app.command("approve")
def session_approve(
    ref: str = typer.Argument(help="session id or id prefix"),
    request: str | None = typer.Argument(None, help="request id or prefix (default: the one)"),
    scope: Literal["once", "session"] = typer.Option(
        "once", help="session: also allow this tool for the rest of the task's run"
    ),
) -> None:
    """Let the agent run the tool it asked for."""
    _decide(ref, request, {"allow": True, "scope": scope})


@session_app.command("deny")
def session_deny(
    ref: str = typer.Argument(help="session id or id prefix"),
    request: str | None = typer.Argument(None, help="request id or prefix (default: the one)"),
    reason: str = typer.Option("", help="told to the agent"),
) -> None:
    """Refuse the tool call the agent asked for; it carries on without it."""
    _decide(ref, request, {"allow": False, "reason": reason})


@session_app.command("resume")
def session_resume(
    ref: str = typer.Argument(help="session id or id prefix"),
    task: str = typer.Argument(help="the interrupted task's id or prefix"),
) -> None:
    """Run an interrupted task again, on the conversation recorded so far."""
    client = api()
    s = client.call("GET", f"/api/sessions/{ref}")
    tasks = [t["id"] for t in client.call("GET", f"/api/sessions/{s['id']}/tasks")]
    matches = [t for t in tasks if t == task] or [t for t in tasks if t.startswith(task)]
    task_id = matches[0] if len(matches) == 1 else task
    s = client.call("POST", f"/api/sessions/{s['id']}/resume", json={"task_id": task_id})
    console.print(f"[green]resumed[/] task {task_id}  session {s['status']}")


@session_app.command("rm")
def session_rm(
    ref: str = typer.Argument(help="session id or id prefix"),
    children: Literal["refuse", "delete", "orphan"] = typer.Option(
        "refuse", help="with forks or spawns: refuse, delete them too, or keep them as roots"
    ),
) -> None:
    """Delete a session (a running task is abandoned)."""
    s = api().call("DELETE", f"/api/sessions/{ref}", params={"children": children})
    console.print(f"[green]deleted[/] session {s['id']}")
