"""The gateway issue's acceptance for auth, through `orrery up` with ``ORRERY_AUTH=required``:

- an authorization matrix: every route of ``/schema`` by no credentials and each role;
- a WebSocket or MCP client that has not authenticated receives nothing at all;
- the ``mcp`` SDK's own client lists and calls the tools over HTTP, as the API would;
- a session's MCP token reaches its worktree and the boards its card is on, nothing else;
- refresh tokens rotate (a reused one ends the sign-in), sign-out ends the access token, the
  login rate limit answers 429, secrets are never returned nor stored in the clear;
- anonymous mode refuses to start on a non-loopback address.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import httpx2
import nats
import pytest
import websockets
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from orrery.gateway.domain.users import RACE_S
from orrery.runtime.secrets import Keys, master_key

if TYPE_CHECKING:  # mypy sees the repo root; pytest puts these directories on sys.path
    from tests.gitrepos import make_repo as make_test_repo
    from tests.system.stackctl import ORRERY, start, stop, until, wait_healthy, with_model
else:
    from gitrepos import make_repo as make_test_repo
    from stackctl import ORRERY, start, stop, until, wait_healthy, with_model

pytestmark = pytest.mark.system

ROLES = ("viewer", "member", "admin", "owner")
PUBLIC = "public"
# The policy, written out independently of the gateway's table: (method, route) -> least role.
EXPECTED: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/api/auth/status"): PUBLIC,
    ("POST", "/api/auth/setup"): PUBLIC,
    ("POST", "/api/auth/login"): PUBLIC,
    ("POST", "/api/auth/refresh"): PUBLIC,
    ("POST", "/api/auth/logout"): PUBLIC,
    ("GET", "/api/me"): "viewer",
    ("PATCH", "/api/me"): "viewer",
    ("GET", "/api/me/api-keys"): "viewer",
    ("POST", "/api/me/api-keys"): "viewer",
    ("DELETE", "/api/me/api-keys/{key_id}"): "viewer",
    ("GET", "/api/me/secrets"): "viewer",
    ("PUT", "/api/me/secrets/{kind}/{name}"): "viewer",
    ("DELETE", "/api/me/secrets/{kind}/{name}"): "viewer",
    ("GET", "/api/me/defaults"): "viewer",
    ("PUT", "/api/me/defaults/{agent}"): "viewer",
    ("GET", "/api/users"): "viewer",
    ("GET", "/api/users/{ref}"): "viewer",
    ("POST", "/api/users"): "admin",
    ("PATCH", "/api/users/{ref}"): "admin",
    ("DELETE", "/api/users/{ref}"): "admin",
    ("GET", "/api/repos"): "viewer",
    ("GET", "/api/repos/{ref}"): "viewer",
    ("POST", "/api/repos"): "member",
    ("POST", "/api/repos/{ref}/reload"): "member",
    ("DELETE", "/api/repos/{ref}"): "admin",
    ("GET", "/api/worktrees"): "viewer",
    ("GET", "/api/worktrees/{ref}"): "viewer",
    ("GET", "/api/worktrees/{ref}/env/logs"): "viewer",
    ("POST", "/api/worktrees"): "member",
    ("PATCH", "/api/worktrees/{ref}"): "member",
    ("POST", "/api/worktrees/{ref}/git-state"): "member",
    ("POST", "/api/worktrees/reconcile"): "admin",
    ("POST", "/api/worktrees/{ref}/archive"): "admin",
    ("POST", "/api/worktrees/{ref}/unarchive"): "admin",
    ("DELETE", "/api/worktrees/{ref}"): "admin",
    ("POST", "/api/worktrees/{ref}/env/start"): "admin",
    ("POST", "/api/worktrees/{ref}/env/stop"): "admin",
    ("POST", "/api/worktrees/{ref}/env/restart"): "admin",
    ("GET", "/api/ledger"): "viewer",
}
for path in (
    "",
    "/{ref}",
    "/{ref}/genealogy",
    "/{ref}/messages",
    "/{ref}/permissions",
    "/{ref}/queue",
    "/{ref}/tasks",
):
    EXPECTED[("GET", f"/api/sessions{path}")] = "viewer"
for method, path in (
    ("POST", ""),
    ("PATCH", "/{ref}"),
    ("POST", "/{ref}/prompt"),
    ("PUT", "/{ref}/queue"),
    ("DELETE", "/{ref}/queue/{task_id}"),
    ("POST", "/{ref}/stop"),
    ("POST", "/{ref}/resume"),
    ("POST", "/{ref}/fork"),
    ("POST", "/{ref}/spawn"),
    ("DELETE", "/{ref}"),
    ("POST", "/{ref}/permissions/{request_id}"),
):
    EXPECTED[(method, f"/api/sessions{path}")] = "member"
for path in ("", "/{ref}", "/{ref}/triggers/{trigger_id}"):
    EXPECTED[("GET", f"/api/boards{path}")] = "viewer"
for method, path in (
    ("POST", ""),
    ("PATCH", "/{ref}"),
    ("DELETE", "/{ref}"),
    ("POST", "/{ref}/zones"),
    ("PATCH", "/{ref}/zones/{zone_id}"),
    ("DELETE", "/{ref}/zones/{zone_id}"),
    ("POST", "/{ref}/notes"),
    ("PATCH", "/{ref}/notes/{note_id}"),
    ("DELETE", "/{ref}/notes/{note_id}"),
    ("PUT", "/{ref}/cards/{worktree}"),
    ("POST", "/{ref}/cards/{worktree}/unpin"),
    ("DELETE", "/{ref}/cards/{worktree}"),
    ("POST", "/{ref}/triggers/{trigger_id}/choose"),
    ("POST", "/{ref}/triggers/{trigger_id}/dismiss"),
    ("POST", "/{ref}/comments"),
    ("PATCH", "/{ref}/comments/{comment_id}"),
    ("DELETE", "/{ref}/comments/{comment_id}"),
    ("POST", "/{ref}/comments/{comment_id}/resolve"),
    ("POST", "/{ref}/comments/{comment_id}/reopen"),
    ("POST", "/{ref}/comments/{comment_id}/reactions"),
):
    EXPECTED[(method, f"/api/boards{path}")] = "member"

PASSWORD = "a long enough password"


class Stack:
    def __init__(self, url: str, home: Path, env: dict[str, str]) -> None:
        self.url = url
        self.home = home
        self.env = env
        self.api = httpx.Client(base_url=url, timeout=60)
        self.tokens: dict[str, str] = {}  # role -> access token
        self.users: dict[str, dict[str, Any]] = {}
        self.ids: dict[str, str] = {}

    def as_(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def call(self, role: str, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.api.request(method, path, headers=self.as_(role), **kw)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("auth")
    repo = make_test_repo(tmp / "src" / "app", "", {"README.md": "app\n"}, {})
    proc, env = start(
        tmp / "home", extra={**with_model("http://127.0.0.1:9", 20), "ORRERY_AUTH": "required"}
    )
    port = int(env["ORRERY_PORT"])
    s = Stack(f"http://127.0.0.1:{port}", tmp / "home", env)
    try:
        wait_healthy(proc, port, timeout=60)
        # Two setups at once with different emails: one owner, one 409.
        answers = asyncio.run(_setups(s.url, ("olga@example.com", "eve@example.com")))
        assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
        setup = next(a for a in answers if a.status_code == 201)
        again = next(a for a in answers if a.status_code == 409)
        assert again.json()["code"] == "auth.setup_done"
        s.tokens["owner"] = setup.json()["access_token"]
        s.users["owner"] = setup.json()["user"]
        owners = [u for u in s.call("owner", "GET", "/api/users").json() if u["role"] == "owner"]
        assert [u["id"] for u in owners] == [s.users["owner"]["id"]]
        for role in ("viewer", "member", "admin"):
            email = f"{role}@example.com"
            made = s.call(
                "owner",
                "POST",
                "/api/users",
                json={"email": email, "password": PASSWORD, "name": role, "role": role},
            )
            assert made.status_code == 201, made.text
            login = s.api.post("/api/auth/login", json={"email": email, "password": PASSWORD})
            assert login.status_code == 200, login.text
            s.tokens[role] = login.json()["access_token"]
            s.users[role] = login.json()["user"]
        added = s.call("member", "POST", "/api/repos", json={"source": str(repo), "adopt": True})
        assert added.status_code == 201, added.text
        for name in ("one", "two"):
            wt = s.call("member", "POST", "/api/worktrees", json={"repo": "app", "name": name})
            assert wt.status_code == 201, wt.text
            s.ids[name] = wt.json()["id"]
        for board, card in (("Mine", "one"), ("Theirs", "two")):
            made = s.call("member", "POST", "/api/boards", json={"name": board})
            assert made.status_code == 201, made.text
            s.ids[board] = made.json()["id"]
            placed = s.call(
                "member",
                "PUT",
                f"/api/boards/{s.ids[board]}/cards/{s.ids[card]}",
                json={"x": 10, "y": 10},
            )
            assert placed.status_code == 200, placed.text
        session = s.call("member", "POST", "/api/sessions", json={"worktree": "one"})
        assert session.status_code == 201, session.text
        s.ids["session"] = session.json()["id"]
        yield s
    finally:
        s.api.close()
        stop(proc)


async def _setups(url: str, emails: tuple[str, ...]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return list(
            await asyncio.gather(
                *(
                    client.post(
                        "/api/auth/setup",
                        json={"email": email, "password": PASSWORD, "name": email[:4]},
                    )
                    for email in emails
                )
            )
        )


def _filled(route: str) -> str:
    values = {"kind": "env", "name": "ZZ_MISSING", "agent": "nobody"}
    out = []
    for part in route.split("/"):
        if part.startswith("{"):
            out.append(values.get(part.strip("{}"), "zz-missing"))
        else:
            out.append(part)
    return "/".join(out)


def test_every_route_is_checked_against_the_role_matrix(stack: Stack) -> None:
    schema = stack.api.get("/schema/openapi.json").json()
    routes = {
        (method.upper(), path)
        for path, ops in schema["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert routes == set(EXPECTED), (
        f"routes without an expected role: {sorted(routes - set(EXPECTED))};"
        f" expected but gone: {sorted(set(EXPECTED) - routes)}"
    )
    wrong: list[str] = []
    for (method, route), least in sorted(EXPECTED.items()):
        path = _filled(route)
        body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
        anonymous = stack.api.request(method, path, json=body)
        if least == PUBLIC:
            if anonymous.status_code in (401, 403):
                wrong.append(f"{method} {route}: public, got {anonymous.status_code}")
            continue
        if anonymous.status_code != 401 or anonymous.json()["code"] != "auth.required":
            wrong.append(f"{method} {route} without credentials: {anonymous.status_code}")
        for role in ROLES:
            got = stack.call(role, method, path, json=body)
            allowed = ROLES.index(role) >= ROLES.index(least)
            if got.status_code >= 500:
                wrong.append(f"{method} {route} as {role}: {got.status_code} {got.text[:200]}")
            elif allowed and got.status_code in (401, 403):
                wrong.append(f"{method} {route} as {role}: refused ({got.text[:120]})")
            elif not allowed and (got.status_code != 403 or got.json()["code"] != "auth.forbidden"):
                wrong.append(f"{method} {route} as {role}: {got.status_code}, not 403")
    assert wrong == []


def test_sockets_without_credentials_receive_nothing(stack: Stack) -> None:
    ws = stack.url.replace("http", "ws")

    async def refused(url: str) -> None:
        """Refused at the handshake, or closed before a single frame: nothing received."""

        async def first_frame() -> None:
            async with websockets.connect(url, open_timeout=10) as sock:
                frame = await asyncio.wait_for(sock.recv(), 5)
                raise AssertionError(f"{url} sent {frame!r}")

        with pytest.raises((websockets.InvalidStatus, websockets.ConnectionClosed)) as caught:
            await first_frame()
        exc = caught.value
        if isinstance(exc, websockets.InvalidStatus):
            assert exc.response.status_code in (401, 403)
        else:
            assert isinstance(exc, websockets.ConnectionClosed)
            assert exc.rcvd is None or exc.rcvd.code != 1000

    async def scenario() -> None:
        board, session = stack.ids["Mine"], stack.ids["session"]
        for url in (
            f"{ws}/ws/boards/{board}",
            f"{ws}/ws/sessions/{session}",
            f"{ws}/ws/boards/{board}?token=not-a-token",
        ):
            await refused(url)
        # a viewer's socket: the snapshot and events; a command is refused, not applied
        async with websockets.connect(
            f"{ws}/ws/boards/{board}?token={stack.tokens['viewer']}"
        ) as sock:
            first = json.loads(await asyncio.wait_for(sock.recv(), 10))
            assert first["type"] == "snapshot"
            await sock.send("not json")
            await sock.send(
                json.dumps(
                    {
                        "type": "command",
                        "id": "viewer-move-1",
                        "command": {
                            "type": "canvas.MoveCard",
                            "worktree_id": stack.ids["one"],
                            "x": 500,
                            "y": 500,
                        },
                    }
                )
            )
            seen: dict[str, dict[str, Any]] = {}
            async with asyncio.timeout(10):
                while "rejected" not in seen:
                    frame = json.loads(await sock.recv())
                    seen.setdefault(frame["type"], frame)
            assert seen["error"]["code"] == "frame.invalid"
            assert seen["rejected"]["code"] == "auth.forbidden"
        board_now = stack.call("viewer", "GET", f"/api/boards/{board}").json()
        card = next(c for c in board_now["cards"] if c["worktree_id"] == stack.ids["one"])
        assert (card["x"], card["y"]) == (10, 10)

    asyncio.run(scenario())


def test_the_session_socket_speaks_the_same_protocol(stack: Stack) -> None:
    """Tagged frames both ways: a malformed one gets a typed error and the socket goes on; a
    command with an id is answered by that id, the same id twice is one task; a viewer's is
    refused."""
    sid = stack.ids["session"]
    ws = stack.url.replace("http", "ws") + f"/ws/sessions/{sid}"
    prompt = {
        "type": "command",
        "id": "prompt-over-socket-1",
        "command": {"type": "sessions.SubmitPrompt", "prompt": "hello over the socket"},
    }

    async def replies(sock: Any, want: int) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        async with asyncio.timeout(30):
            while len(got) < want:
                frame = json.loads(await sock.recv())
                if frame["type"] in ("error", "accepted", "rejected", "pending"):
                    got.append(frame)
        return got

    async def scenario() -> None:
        async with websockets.connect(f"{ws}?token={stack.tokens['member']}") as sock:
            await sock.send("{not json")
            await sock.send(json.dumps({"type": "command", "id": "x", "command": {}}))
            await sock.send(json.dumps(prompt))
            await sock.send(json.dumps(prompt))
            error, bad_id, first, second = await replies(sock, 4)
        assert error["code"] == "frame.invalid"
        assert bad_id["type"] == "rejected" and bad_id["code"] == "frame.invalid"
        assert {first["type"], second["type"]} == {"accepted"}
        assert first["id"] == second["id"] == "prompt-over-socket-1"
        assert sorted([first["duplicate"], second["duplicate"]]) == [False, True]
        async with websockets.connect(f"{ws}?token={stack.tokens['viewer']}") as sock:
            await sock.send(json.dumps({**prompt, "id": "viewer-prompt-1"}))
            (refused,) = await replies(sock, 1)
        assert refused["type"] == "rejected" and refused["code"] == "auth.forbidden"

    asyncio.run(scenario())
    tasks = stack.call("viewer", "GET", f"/api/sessions/{sid}/tasks").json()
    assert [t["prompt"] for t in tasks] == ["hello over the socket"]


def test_mcp_without_credentials_gets_a_401_and_no_tool(stack: Stack) -> None:
    init = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eDp5"}):
        got = stack.api.post(
            "/mcp", json=init, headers={**headers, "Accept": "application/json, text/event-stream"}
        )
        assert got.status_code == 401, got.text
        assert "orrery_" not in got.text


async def _mcp(
    url: str, token: str, calls: list[tuple[str, dict[str, Any]]]
) -> tuple[list[str], list[Any]]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as client,
        streamable_http_client(f"{url}/mcp", http_client=client) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        tools = [t.name for t in (await session.list_tools()).tools]
        results = []
        for name, args in calls:
            result = await session.call_tool(name, args)
            text = "".join(getattr(c, "text", "") for c in result.content)
            results.append(("error", text) if result.is_error else json.loads(text or "null"))
        return tools, results


def test_the_mcp_sdk_client_lists_and_calls_tools_with_an_api_key(stack: Stack) -> None:
    created = stack.call("member", "POST", "/api/me/api-keys", json={"name": "agent"})
    assert created.status_code == 201
    key = created.json()["key"]
    board, one = stack.ids["Mine"], stack.ids["one"]
    tools, results = asyncio.run(
        _mcp(
            stack.url,
            key,
            [
                ("orrery_users_get_current", {}),
                ("orrery_boards_list", {}),
                ("orrery_boards_place_card", {"board": board, "worktree": one, "x": 40, "y": 60}),
                ("orrery_environment_start", {"worktree": one}),
                ("orrery_sessions_list", {"worktree": "one"}),
                ("orrery_events_tail", {"board": board, "after": 0, "limit": 500}),
                (
                    "orrery_sessions_update",
                    {"session": stack.ids["session"], "title": "by key", "thinking": "off"},
                ),
            ],
        )
    )
    expected = {
        "orrery_sessions_list",
        "orrery_sessions_get",
        "orrery_sessions_get_current",
        "orrery_sessions_spawn",
        "orrery_sessions_prompt",
        "orrery_sessions_create",
        "orrery_sessions_stop",
        "orrery_sessions_update",
        "orrery_worktrees_get",
        "orrery_worktrees_list",
        "orrery_worktrees_create",
        "orrery_worktrees_update",
        "orrery_environment_start",
        "orrery_environment_stop",
        "orrery_environment_health",
        "orrery_environment_logs",
        "orrery_environment_open_app",
        "orrery_boards_get",
        "orrery_boards_list",
        "orrery_boards_place_card",
        "orrery_boards_add_zone",
        "orrery_tasks_list",
        "orrery_tasks_get",
        "orrery_users_list",
        "orrery_users_get",
        "orrery_users_get_current",
        "orrery_users_update_current",
        "orrery_user_create",
        "orrery_analytics_leaderboard",
        "orrery_events_tail",
    }
    assert expected <= set(tools)
    me, boards, placed, env_start, sessions, tail, updated = results
    assert (updated["title"], updated["settings"]["thinking"]) == ("by key", "off")
    assert me["id"] == stack.users["member"]["id"] and me["via"] == "api_key"
    assert {b["id"] for b in boards["boards"]} == {stack.ids["Mine"], stack.ids["Theirs"]}
    assert placed["card"]["x"] == 40
    assert env_start[0] == "error" and "auth.forbidden" in env_start[1]  # admin only, as in REST
    assert [s["id"] for s in sessions["sessions"]] == [stack.ids["session"]]
    moves = [e for e in tail["events"] if e["event_type"] == "canvas.CardMoved"]
    assert moves[-1]["event"]["x"] == 40
    assert moves[-1]["actor"] == stack.users["member"]["id"]  # the same command, the caller's
    # the tool went through the same command as REST: the board shows it
    card = next(
        c
        for c in stack.call("viewer", "GET", f"/api/boards/{board}").json()["cards"]
        if c["worktree_id"] == one
    )
    assert (card["x"], card["y"]) == (40, 60)


def test_a_session_token_reaches_its_worktree_and_boards_only(stack: Stack) -> None:
    keys = Keys.from_master(master_key(stack.home, env={}))
    member = stack.users["member"]["id"]
    token = keys.session_token(member, stack.ids["session"], stack.ids["one"])
    mine, theirs, two = stack.ids["Mine"], stack.ids["Theirs"], stack.ids["two"]
    _, results = asyncio.run(
        _mcp(
            stack.url,
            token,
            [
                ("orrery_sessions_get_current", {}),
                ("orrery_boards_list", {}),
                ("orrery_boards_get", {"board": mine}),
                ("orrery_boards_get", {"board": theirs}),
                ("orrery_boards_place_card", {"board": theirs, "worktree": two, "x": 1, "y": 1}),
                ("orrery_boards_place_card", {"board": mine, "worktree": two, "x": 1, "y": 1}),
                ("orrery_events_tail", {"board": theirs}),
                ("orrery_worktrees_get", {"worktree": "two"}),
                ("orrery_sessions_create", {"worktree": "two"}),
                (
                    "orrery_user_create",
                    {"email": "x@example.com", "password": PASSWORD, "name": "x"},
                ),
                ("orrery_events_tail", {"board": mine, "limit": 500}),
                ("orrery_sessions_update", {"title": "named by its agent"}),
                ("orrery_sessions_update", {"permission_mode": "allow-all"}),
            ],
        )
    )
    current, boards, got_mine, *refused, tail, renamed, unasked = results
    assert renamed["title"] == "named by its agent"
    # an agent that asks before its tools run cannot stop asking
    assert unasked[0] == "error" and "auth.forbidden" in unasked[1], unasked
    after = stack.call("viewer", "GET", f"/api/sessions/{stack.ids['session']}").json()
    assert after["settings"]["permission_mode"] == "ask"
    assert current["id"] == stack.ids["session"]
    assert [b["id"] for b in boards["boards"]] == [mine]
    assert got_mine["board"]["id"] == mine
    for outcome in refused:
        assert outcome[0] == "error" and "auth.out_of_scope" in outcome[1], outcome
    assert tail["events"][0]["event_type"] == "canvas.BoardCreated"
    theirs_now = stack.call("viewer", "GET", f"/api/boards/{theirs}").json()
    assert [(c["x"], c["y"]) for c in theirs_now["cards"]] == [(10, 10)]
    # the token is for /mcp only
    rest = stack.api.get("/api/boards", headers={"Authorization": f"Bearer {token}"})
    assert rest.status_code == 403 and rest.json()["code"] == "auth.session_token"


def test_refresh_rotates_logout_ends_and_failed_logins_are_limited(stack: Stack) -> None:
    login = stack.api.post(
        "/api/auth/login", json={"email": "admin@example.com", "password": PASSWORD}
    ).json()
    first = stack.api.post("/api/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert first.status_code == 200
    fresh = first.json()
    assert (
        stack.api.get(
            "/api/me", headers={"Authorization": f"Bearer {fresh['access_token']}"}
        ).status_code
        == 200
    )
    # at once again (two tabs): refused as a race, the sign-in lives on
    raced = stack.api.post("/api/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert raced.status_code == 401 and raced.json()["code"] == "auth.refresh_raced"
    assert (
        stack.api.get(
            "/api/me", headers={"Authorization": f"Bearer {fresh['access_token']}"}
        ).status_code
        == 200
    )
    time.sleep(RACE_S + 0.5)  # later: a copy of a spent token is a theft
    reused = stack.api.post("/api/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert reused.status_code == 401 and reused.json()["code"] == "auth.refresh_reused"
    # the reuse ended the whole sign-in: the fresh pair is dead too
    assert (
        stack.api.get(
            "/api/me", headers={"Authorization": f"Bearer {fresh['access_token']}"}
        ).status_code
        == 401
    )
    again = stack.api.post("/api/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert again.status_code == 401

    second = stack.api.post(
        "/api/auth/login", json={"email": "admin@example.com", "password": PASSWORD}
    ).json()
    bearer = {"Authorization": f"Bearer {second['access_token']}"}
    assert stack.api.get("/api/me", headers=bearer).status_code == 200
    assert (
        stack.api.post(
            "/api/auth/logout", json={"refresh_token": second["refresh_token"]}
        ).status_code
        == 204
    )
    assert stack.api.get("/api/me", headers=bearer).status_code == 401

    codes = [
        stack.api.post(
            "/api/auth/login", json={"email": "viewer@example.com", "password": "wrong password"}
        ).status_code
        for _ in range(11)
    ]
    assert codes == [401] * 10 + [429]
    limited = stack.api.post(
        "/api/auth/login", json={"email": "viewer@example.com", "password": PASSWORD}
    )
    assert limited.status_code == 429 and limited.json()["detail"]["retry_after"] > 0


def test_secrets_are_sealed_and_never_returned(stack: Stack) -> None:
    value = "sk-ant-do-not-leak-0123456789"
    put = stack.call(
        "member", "PUT", "/api/me/secrets/api_key/ANTHROPIC_API_KEY", json={"value": value}
    )
    assert put.status_code == 200, put.text
    assert put.json()["set"] is True and value not in put.text
    listed = stack.call("member", "GET", "/api/me/secrets")
    assert [(s["kind"], s["name"]) for s in listed.json()] == [("api_key", "ANTHROPIC_API_KEY")]
    assert value not in listed.text
    assert stack.call("viewer", "GET", "/api/me/secrets").json() == []  # each user's own

    async def stored() -> bytes:
        nc = await nats.connect(f"nats://127.0.0.1:{stack.env['ORRERY_NATS_PORT']}")
        try:
            js = nc.jetstream()
            sub = await js.subscribe(
                "gateway.evt.>",
                ordered_consumer=True,
                config=nats.js.api.ConsumerConfig(deliver_policy=nats.js.api.DeliverPolicy.ALL),
            )
            data = b""
            try:
                while True:
                    msg = await sub.next_msg(timeout=2)
                    data += msg.data
            except nats.errors.TimeoutError:
                return data
        finally:
            await nc.close()

    log = asyncio.run(stored())
    assert b"gateway.SecretSet" in log
    assert value.encode() not in log and base64.b64encode(value.encode()) not in log
    assert PASSWORD.encode() not in log  # passwords are stored as argon2 hashes only


def test_a_zone_trigger_renders_the_user_who_dropped_the_card(stack: Stack) -> None:
    board = stack.call("member", "POST", "/api/boards", json={"name": "Templates"}).json()
    zone = {
        "label": "Who",
        "x": 1000,
        "y": 0,
        "width": 400,
        "height": 400,
        "trigger": {
            "template": "{{ user.name }} ({{ user.role }}, {{ user.email }})"
            " on {{ worktree.name }}",
            "behavior": "show_picker",
        },
    }
    made = stack.call("member", "POST", f"/api/boards/{board['id']}/zones", json=zone)
    assert made.status_code == 201, made.text
    placed = stack.call(
        "member",
        "PUT",
        f"/api/boards/{board['id']}/cards/{stack.ids['two']}",
        json={"x": 1100, "y": 100},
    )
    trigger_id = placed.json()["trigger"]["id"]
    offered = until(
        lambda: (
            (
                t := stack.call(
                    "member", "GET", f"/api/boards/{board['id']}/triggers/{trigger_id}"
                ).json()
            )["status"]
            == "offered"
            and t
        ),
        what="the offer",
    )
    assert offered["prompt"] == "member (member, member@example.com) on two"


def test_new_sessions_take_their_creators_defaults(stack: Stack) -> None:
    mine = {"model": "claude-sonnet-4-5", "permission_mode": "auto", "thinking": "off"}
    put = stack.call("admin", "PUT", "/api/me/defaults/claude-code", json=mine)
    assert put.status_code == 200 and put.json()["claude-code"] == mine
    bad = stack.call("admin", "PUT", "/api/me/defaults/claude-code", json={"thinking": "max"})
    assert bad.status_code == 400
    made = stack.call(
        "admin", "POST", "/api/sessions", json={"worktree": "two", "agent": "claude-code"}
    ).json()
    assert made["created_by"] == stack.users["admin"]["id"]
    assert {k: made["settings"][k] for k in mine} == mine
    explicit = stack.call(
        "admin",
        "POST",
        "/api/sessions",
        json={
            "worktree": "two",
            "agent": "claude-code",
            "model": "other",
            "permission_mode": "ask",
        },
    ).json()
    assert (explicit["settings"]["model"], explicit["settings"]["permission_mode"]) == (
        "other",
        "ask",
    )
    assert explicit["settings"]["thinking"] == "off"
    # someone else's sessions are not touched by these defaults
    theirs = stack.call(
        "member", "POST", "/api/sessions", json={"worktree": "two", "agent": "claude-code"}
    ).json()
    assert (theirs["settings"]["model"], theirs["settings"]["permission_mode"]) == ("", "ask")


def test_a_double_submitted_command_has_one_effect(stack: Stack) -> None:
    headers = {**stack.as_("member"), "Idempotency-Key": "board-create-twice-1"}
    first = stack.api.post("/api/boards", json={"name": "Twice"}, headers=headers)
    second = stack.api.post("/api/boards", json={"name": "Twice"}, headers=headers)
    assert first.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    names = [b["name"] for b in stack.call("viewer", "GET", "/api/boards").json()]
    assert names.count("Twice") == 1


def test_anonymous_mode_refuses_a_non_loopback_address(tmp_path: Path) -> None:
    proc, _ = start(tmp_path / "home", extra={"ORRERY_HOST": "0.0.0.0", "ORRERY_AUTH": "anonymous"})
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "loopback" in out and "ORRERY_AUTH" in out
    _ = (ORRERY, subprocess, until)
