"""The REST API fuzzed from its own OpenAPI document, against `orrery up`: schemathesis generates
requests for every operation of `/schema/openapi.json` (valid and invalid ones), and no answer
may be a 5xx. A 4xx is fine (most generated requests are refused); a 500 is a defect, and so is
a 503, which here means a read model stopped applying the log. Before the fuzzing, a focused test
for each defect it found; after it, the stack must still be healthy (no projection stalled).

The stack has a repo, worktrees, boards, a zone with a trigger, a note, a card, a comment and
sessions. Generated path parameters are random strings that would only ever reach "not found",
so half of the cases (picked by a hash of the generated case: deterministic) get real ones, and
the `repo` / `worktree` their body or query names. Deleting or archiving a worktree, session or
board gets a sacrificial one (`doomed`), never the one the other operations hit (the repo is
refused while it has worktrees); zones, notes, cards and comments may go (then: 404s). A third
of the cases (by the same hash) get one generated value PostgreSQL would refuse: a string with
U+0000 appended, or an integer past int8.

The stack runs in anonymous loopback mode: `token` is None. When the gateway asks for a token,
return one from that fixture; every request of this file sends it.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx
import msgspec
import pytest
import schemathesis
import websockets
from hypothesis import HealthCheck, settings
from orrery.modelserver import ScriptedModelServer
from schemathesis.checks import not_a_server_error

if TYPE_CHECKING:  # mypy sees the repo root; pytest puts these directories on sys.path
    from tests.gitrepos import make_repo as make_test_repo
    from tests.system.stackctl import start, until, wait_healthy, with_model
else:
    from gitrepos import make_repo as make_test_repo
    from stackctl import start, until, wait_healthy, with_model

pytestmark = pytest.mark.system

SCRIPT = {"rules": [{"match": {"any": True}, "reply": [{"text": "Fuzzed."}]}]}
MAX_EXAMPLES = 8  # per operation and generation phase (about 80 operations)


class Stack(NamedTuple):
    url: str
    headers: dict[str, str]
    api: httpx.Client
    real: dict[str, str]  # path parameter (or resource, for `ref`) -> an existing object's ref
    doomed: dict[str, str]  # resource -> the ref deleting or archiving gets instead


@pytest.fixture(scope="module")
def token() -> str | None:
    """The bearer token every request carries: none while the stack runs anonymous on loopback."""
    return None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, token: str | None) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("fuzz")
    repo = make_test_repo(
        root / "src" / "app", "environment:\n  start: 'sleep 600'\n", {"README.md": "app\n"}, {}
    )
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with ScriptedModelServer(SCRIPT) as model:
        proc, env = start(root / "home", extra=with_model(model.url, 40))
        # Every unexpected error is logged with its traceback: read the output as it comes, or
        # the pipe fills up and the stack blocks.
        log = root / "orrery-up.log"
        drain = threading.Thread(target=_drain, args=(proc, log), daemon=True)
        drain.start()
        url = f"http://127.0.0.1:{env['ORRERY_PORT']}"
        api = httpx.Client(base_url=url, headers=headers, timeout=60)
        try:
            wait_healthy(proc, int(env["ORRERY_PORT"]), timeout=60)
            yield Stack(url, headers, api, *_world(api, repo))
        finally:
            api.close()
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
            drain.join(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()
            assert proc.returncode == 0, log.read_text()[-5000:]


def _drain(proc: subprocess.Popen[str], log: Path) -> None:
    assert proc.stdout is not None
    with log.open("w") as out:
        for line in proc.stdout:
            out.write(line)
            out.flush()


def _world(api: httpx.Client, repo: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Something real behind every kind of path parameter; returns (real, doomed)."""

    def made(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code in {200, 201}, response.text
        return response.json()  # type: ignore[no-any-return]

    made(api.post("/api/repos", json={"source": str(repo), "adopt": True}))
    for name in ("one", "doomed"):
        made(api.post("/api/worktrees", json={"repo": "app", "name": name}))
    for name in ("Fuzz", "Doomed"):
        made(api.post("/api/boards", json={"name": name, "context": {"team": "core"}}))
    trigger = {"template": "Look at {{ worktree.name }}", "behavior": "show_picker"}
    zone = made(
        api.post(
            "/api/boards/fuzz/zones",
            json={"label": "Z", "x": 0, "y": 0, "width": 500, "height": 500, "trigger": trigger},
        )
    )
    note = made(api.post("/api/boards/fuzz/notes", json={"x": 600, "y": 0, "content": "n"}))
    placed = made(api.put("/api/boards/fuzz/cards/one", json={"x": 100, "y": 100}))
    comment = made(api.post("/api/boards/fuzz/comments", json={"content": "c"}))
    session = made(api.post("/api/sessions", json={"worktree": "one", "prompt": "hello"}))
    doomed = made(api.post("/api/sessions", json={"worktree": "one", "title": "doomed"}))
    task = until(lambda: api.get(f"/api/sessions/{session['id']}/tasks").json(), what="a task")
    real = {
        "repos": "app",
        "worktrees": "one",
        "sessions": session["id"],
        "boards": "fuzz",
        "zone_id": zone["id"],
        "note_id": note["id"],
        "worktree": "one",
        "trigger_id": placed["trigger"]["id"],
        "comment_id": comment["id"],
        "task_id": task[0]["id"],
        "repo": "app",
    }
    # The repo is refused (409) while it has worktrees, and `one` is never deleted or archived.
    doomed_refs = {"repos": "app", "worktrees": "doomed", "sessions": doomed["id"]}
    return real, doomed_refs | {"boards": "doomed"}


# --- one test per defect the fuzzing found ------------------------------------------------------


def _refused(response: httpx.Response, status: int = 400, code: str = "request.invalid") -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and set(body) == {"code", "message", "detail"}, body
    return str(body["message"])


def test_a_nul_character_is_refused_in_the_path_query_and_body(stack: Stack) -> None:
    """PostgreSQL text cannot hold U+0000: in a path or a query it made the lookup fail (500); in
    a body it was sent on in a command whose event then stopped the projection for good (every
    later change to boards answered 503 ``readmodel.lagging``)."""
    api = stack.api
    for path in (
        "/api/repos/a%00b",
        "/api/worktrees/%00",
        "/api/sessions/x%00",
        "/api/boards/fuzz%00",
        "/api/boards/fuzz/triggers/%00",
    ):
        assert "the path holds a NUL" in _refused(api.get(path))
    for path, params in (
        ("/api/worktrees", {"repo": "\x00"}),
        ("/api/sessions", {"worktree": "a\x00"}),
    ):
        assert "the query holds a NUL" in _refused(api.get(path, params=params))
    for method, path, body in (
        ("POST", "/api/boards", {"name": "a\x00b"}),
        ("POST", "/api/boards", {"name": "ok", "context": {"key\x00": 1}}),
        ("PATCH", "/api/worktrees/one", {"context": {"a": [{"b": "\x00"}]}}),
        ("POST", "/api/boards/fuzz/notes", {"x": 0, "y": 0, "content": "\x00"}),
        ("POST", f"/api/sessions/{stack.real['sessions']}/prompt", {"prompt": "hi\x00"}),
    ):
        assert "the body holds a NUL" in _refused(api.request(method, path, json=body))
    # A backslash and "u0000" is text like any other.
    escaped = api.post("/api/boards", json={"name": "\\u0000"})
    assert escaped.status_code == 201 and escaped.json()["name"] == "\\u0000", escaped.text
    assert api.get("/healthz").json()["status"] == "ok"


def test_a_nul_character_or_a_bad_after_is_refused_on_the_sockets(stack: Stack) -> None:
    """The same NUL on the board and session sockets (in the path: the socket died with 4500;
    in a command frame: the event stopped the projection), and an ``after`` below 0 or past a
    64-bit stream sequence (4500 from JetStream)."""
    ws = stack.url.replace("http", "ws", 1)
    session = stack.real["sessions"]
    refused = (
        "/ws/boards/fuzz%00",
        "/ws/sessions/a%00",
        f"/ws/boards/fuzz?after={2**64}",
        f"/ws/sessions/{session}?after=-1",
        f"/ws/sessions/{session}?after={2**64}",
    )

    async def frames() -> list[dict[str, Any]]:
        got = []
        for path in refused:
            async with websockets.connect(ws + path, additional_headers=stack.headers) as sock:
                got.append(msgspec.json.decode(await sock.recv()))
        async with websockets.connect(
            ws + "/ws/boards/fuzz", additional_headers=stack.headers
        ) as s:
            command = {"type": "canvas.AddNote", "note": {"note_id": "n-nul", "x": 0, "y": 0,
                       "content": "a\x00b"}}  # fmt: skip
            frame = {"type": "command", "id": "nul-00001", "command": command}
            await s.send(msgspec.json.encode(frame).decode())
            while (frame := msgspec.json.decode(await s.recv()))["type"] != "rejected":
                pass
            got.append(frame)
        return got

    async def within() -> list[dict[str, Any]]:
        async with asyncio.timeout(30):
            return await frames()

    *errors, rejected = asyncio.run(within())
    assert [e["code"] for e in errors] == ["request.invalid"] * len(refused), errors
    assert (rejected["id"], rejected["code"]) == ("nul-00001", "frame.invalid"), rejected


def test_a_body_nested_too_deep_is_refused(stack: Stack) -> None:
    """3,000 levels overflowed the decoder's recursion (500); far fewer already reach the
    services' own decoders near their limit."""
    for depth in (101, 3000):
        deep = '{"name": "deep", "context": {"a": ' + "[" * depth + "]" * depth + "}}"
        response = stack.api.post(
            "/api/boards", content=deep, headers={"content-type": "application/json"}
        )
        assert "nests deeper than 100 levels" in _refused(response)
    fine = {"name": "fine", "context": {"a": [[[[{"b": [1]}]]]]}}
    assert stack.api.post("/api/boards", json=fine).status_code == 201


def test_a_message_index_past_int4_is_refused(stack: Stack) -> None:
    """``after`` is compared with an integer column: past 2**31 - 1 the query failed (500)."""
    messages = f"/api/sessions/{stack.real['sessions']}/messages"
    _refused(stack.api.get(messages, params={"after": 2**31}))
    assert stack.api.get(messages, params={"after": 2**31 - 1}).json() == []


def test_a_ledger_since_out_of_range_is_refused(stack: Stack) -> None:
    """A valid date whose time zone puts it outside datetime's range in UTC failed in asyncpg."""
    for since in ("9999-12-31T23:59:59-23:00", "0001-01-01T00:00:00+01:00"):
        assert _refused(stack.api.get("/api/ledger", params={"since": since})) == (
            "since is out of range"
        )
    assert stack.api.get("/api/ledger", params={"since": "2020-01-01T00:00:00Z"}).status_code == 200


def test_malformed_and_too_large_bodies(stack: Stack) -> None:
    json_type = {"content-type": "application/json"}
    bad = stack.api.post("/api/boards", content=b"{bad", headers=json_type)
    assert "JSON is malformed" in _refused(bad)
    huge = b'{"name": "' + b"a" * (1024 * 1024) + b'"}'
    _refused(
        stack.api.post("/api/boards", content=huge, headers=json_type), 413, "request.too_large"
    )


# --- the fuzzing ----------------------------------------------------------------------------------


def _aim(case: schemathesis.Case[Any], stack: Stack) -> None:
    """Real refs for half of the cases, a value PostgreSQL refuses for a third (see the module's
    docstring). The choice is a hash of the generated case: the same case, the same aim."""
    body = case.body if isinstance(case.body, dict | list | str | int | float) else None
    seen = repr((case.method, case.path, case.path_parameters, case.query, body))
    h = zlib.crc32(seen.encode())
    if h % 2 == 0:
        resource = case.path.split("/")[2] if case.path.startswith("/api/") else ""
        destructive = case.path.endswith("/archive") or (
            case.method.upper() == "DELETE" and case.path.count("/") == 3
        )
        for name in case.path_parameters or {}:
            if name == "ref":
                case.path_parameters[name] = (stack.doomed if destructive else stack.real).get(
                    resource, case.path_parameters[name]
                )
            elif name in stack.real:
                case.path_parameters[name] = stack.real[name]
        for container in (case.query, case.body):
            if isinstance(container, dict):
                for name in ("repo", "worktree"):
                    if isinstance(container.get(name), str):
                        container[name] = stack.real[name]
    if h % 3 == 0:
        slots = [
            (container, name)
            for container in (case.path_parameters, case.query, case.body)
            if isinstance(container, dict)
            for name, value in container.items()
            if isinstance(value, str | int) and not isinstance(value, bool)
        ]
        if slots:
            container, name = slots[(h // 6) % len(slots)]
            value: Any = container[name]
            container[name] = value + "\x00" if isinstance(value, str) else value + 2**63


@pytest.fixture
def api_schema(stack: Stack) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict(
        {"generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "no-shrink": True}}
    )
    return schemathesis.openapi.from_url(
        f"{stack.url}/schema/openapi.json", config=config, headers=stack.headers, timeout=10
    )


schema = schemathesis.pytest.from_fixture("api_schema")


@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@schema.parametrize()
@pytest.mark.timeout(170)
def test_no_operation_answers_5xx(case: schemathesis.Case[Any], stack: Stack) -> None:
    _aim(case, stack)
    case.call_and_validate(
        base_url=stack.url, headers=stack.headers, checks=[not_a_server_error], timeout=60
    )


def test_the_stack_is_still_healthy(stack: Stack) -> None:
    """Every projection still applies the log: nothing the fuzzing sent stopped one."""
    health = stack.api.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text
