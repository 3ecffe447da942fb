# ruff: noqa: PLR0917 - a tool's parameters are its MCP input schema
"""Orrery's MCP server at ``/mcp`` (the official ``mcp`` SDK, streamable HTTP, stateless, JSON
answers): the agent's view of Orrery, and any outside client's with a personal API key.

Every tool is a call to the gateway's own REST API, in process, with the caller's credentials:
a tool emits the same commands, so the same events, and meets the same role checks and
validation as the UI. A session's token (``typ=session``) reaches only that session's worktree
(its sessions, environment, tasks) and the boards the worktree's card is on; the MCP layer checks
that scope, then calls the API as the session's creator capped at member.

A request without valid credentials gets 401 before the SDK sees it: no tool list, no event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from nats.js import JetStreamContext
from orrery.events import Registry
from orrery.gateway import auth
from orrery.gateway.api import follow
from starlette.types import ASGIApp, Receive, Scope, Send

DELEGATED_TTL_S = 60
QUIET_S = 0.3  # a tail returns once no event came for this long
EVENT_CONTEXTS = {"board": ("canvas", "board"), "session": ("sessions", "session")}


class Tools:
    """What the tools share: the REST app (in process), the authenticator, the read models."""

    def __init__(
        self,
        rest: Any,
        authenticator: auth.Authenticator,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        registry: Registry,
    ) -> None:
        self.js = js
        self.registry = registry
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=rest),
            base_url="http://orrery.internal",
            timeout=330.0,
        )
        self.auth = authenticator
        self.pool = pool

    async def principal(self, ctx: Context) -> auth.Principal:
        header = (ctx.headers or {}).get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        principal = await self.auth.authenticate(token) if token else None
        if principal is None:
            raise ToolError("auth.required: send a session token or an API key")
        return principal

    def _credentials(self, principal: auth.Principal, ctx: Context) -> str:
        if principal.kind != "session":
            return (ctx.headers or {}).get("authorization", "")
        token = self.auth.keys.sign(
            {"typ": "delegated", "sub": principal.user_id, "cap": principal.role}, DELEGATED_TTL_S
        )
        return f"Bearer {token}"

    async def call(
        self, ctx: Context, principal: auth.Principal, method: str, path: str, **kwargs: Any
    ) -> Any:
        headers = {"authorization": self._credentials(principal, ctx)}
        response = await self.http.request(method, path, headers=headers, **kwargs)
        if response.status_code == 204:
            return {"ok": True}
        try:
            body = response.json()
        except json.JSONDecodeError:
            body = {"code": f"http.{response.status_code}", "message": response.text[:500]}
        if response.status_code >= 400:
            raise ToolError(f"{body.get('code')}: {body.get('message')} {body.get('detail') or ''}")
        return body

    async def tail(
        self, kind: str, aggregate_id: str, after: int, limit: int, wait_s: float
    ) -> dict[str, Any]:
        """Up to ``limit`` stored events of one board or session after ``after``; waits up to
        ``wait_s`` for the first when there is none yet."""
        ctx_name, kind_name = EVENT_CONTEXTS[kind]
        frames: asyncio.Queue[bytes] = asyncio.Queue()
        sub = await follow(
            self.js, self.registry, ctx_name, kind_name, aggregate_id, after, frames.put
        )
        events: list[Any] = []
        try:
            wait = max(wait_s, QUIET_S)
            while len(events) < limit:
                try:
                    frame = await asyncio.wait_for(frames.get(), wait)
                except TimeoutError:
                    break
                events.append(json.loads(frame))
                wait = QUIET_S
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        last = events[-1]["seq"] if events else after
        return {"events": events, "last_seq": last, "more": len(events) >= limit}

    # -- scope ---------------------------------------------------------------------------------

    async def boards_of(self, worktree_id: str) -> set[str]:
        try:
            rows = await self.pool.fetch(
                'SELECT board_id FROM "canvas".cards WHERE worktree_id = $1', worktree_id
            )
        except asyncpg.UndefinedTableError:
            return set()
        return {r["board_id"] for r in rows}

    def outside(self, what: str) -> ToolError:
        return ToolError(f"auth.out_of_scope: this session's token does not reach {what}")

    async def own_worktree(self, p: auth.Principal, worktree: str | None) -> str | None:
        """For a session: its worktree (a different one is refused). Else what was asked."""
        if p.kind != "session":
            return worktree
        if worktree not in (None, p.worktree_id):
            raise self.outside(f"worktree {worktree}")
        return p.worktree_id

    async def worktree_ref(self, p: auth.Principal, worktree: str | None) -> str:
        """The worktree a tool acts on: a session's own (another is refused), else the one
        given (required)."""
        ref = await self.own_worktree(p, worktree)
        if not ref:
            raise ToolError("request.invalid: give the worktree")
        return ref

    async def check_session(self, ctx: Context, p: auth.Principal, ref: str) -> dict[str, Any]:
        session: dict[str, Any] = await self.call(ctx, p, "GET", f"/api/sessions/{ref}")
        if p.kind == "session" and session.get("worktree_id") != p.worktree_id:
            raise self.outside(f"session {ref}")
        return session

    async def check_board(self, ctx: Context, p: auth.Principal, ref: str) -> dict[str, Any]:
        board: dict[str, Any] = await self.call(ctx, p, "GET", f"/api/boards/{ref}")
        if p.kind == "session" and board["board"]["id"] not in await self.boards_of(
            p.worktree_id or ""
        ):
            raise self.outside(f"board {ref}")
        return board

    def not_for_sessions(self, p: auth.Principal, what: str) -> None:
        if p.kind == "session":
            raise self.outside(what)


def build(tools: Tools) -> MCPServer:  # noqa: PLR0915 - one nested function per tool
    server = MCPServer(
        name="orrery",
        version="0.1.0",
        instructions=(
            "Orrery runs coding agents in git worktrees on a shared canvas. These tools list and"
            " drive sessions, worktrees, their environments and boards. Called from a session,"
            " they reach that session's worktree and the boards its card is on."
        ),
    )
    t = tools

    # -- sessions ------------------------------------------------------------------------------

    @server.tool(description="List sessions (optionally of one worktree, with a status)")
    async def orrery_sessions_list(
        ctx: Context, worktree: str | None = None, status: str | None = None, limit: int = 50
    ) -> Any:
        p = await t.principal(ctx)
        worktree = await t.own_worktree(p, worktree)
        params = {"worktree": worktree} if worktree else {}
        rows: list[dict[str, Any]] = await t.call(ctx, p, "GET", "/api/sessions", params=params)
        if status:
            rows = [r for r in rows if r.get("status") == status]
        return {"sessions": rows[: max(1, min(limit, 1000))]}

    @server.tool(description="A session with its genealogy (id or id prefix)")
    async def orrery_sessions_get(ctx: Context, session: str) -> Any:
        p = await t.principal(ctx)
        found = await t.check_session(ctx, p, session)
        genealogy = await t.call(ctx, p, "GET", f"/api/sessions/{found['id']}/genealogy")
        return {"session": found, "genealogy": genealogy}

    @server.tool(description="The session this token belongs to (introspection)")
    async def orrery_sessions_get_current(ctx: Context) -> Any:
        p = await t.principal(ctx)
        if p.kind != "session":
            raise ToolError("session.none: this is not a session's token")
        return await t.check_session(ctx, p, p.session_id or "")

    @server.tool(description="Create a session in a worktree, optionally with a first prompt")
    async def orrery_sessions_create(
        ctx: Context,
        worktree: str,
        agent: str = "builtin",
        title: str = "",
        model: str = "",
        permission_mode: str | None = None,
        prompt: str | None = None,
    ) -> Any:
        p = await t.principal(ctx)
        worktree = await t.own_worktree(p, worktree) or worktree
        body: dict[str, Any] = {"worktree": worktree, "agent": agent, "title": title}
        body |= {"model": model, "prompt": prompt}
        if permission_mode:
            body["permission_mode"] = permission_mode
        return await t.call(ctx, p, "POST", "/api/sessions", json=body)

    @server.tool(
        description="Prompt a session: continue it (queued if busy), fork it, or start a"
        " subsession (spawn) with the prompt"
    )
    async def orrery_sessions_prompt(
        ctx: Context,
        session: str,
        prompt: str,
        mode: str = "continue",
        title: str = "",
        agent: str | None = None,
    ) -> Any:
        p = await t.principal(ctx)
        found = await t.check_session(ctx, p, session)
        sid = found["id"]
        if mode == "continue":
            return await t.call(
                ctx, p, "POST", f"/api/sessions/{sid}/prompt", json={"prompt": prompt}
            )
        if mode == "fork":
            return await t.call(
                ctx, p, "POST", f"/api/sessions/{sid}/fork", json={"prompt": prompt, "title": title}
            )
        if mode == "subsession":
            body: dict[str, Any] = {"prompt": prompt, "title": title}
            if agent:
                body["agent"] = agent
            return await t.call(ctx, p, "POST", f"/api/sessions/{sid}/spawn", json=body)
        raise ToolError("request.invalid: mode is continue, fork or subsession")

    @server.tool(description="Spawn a child session of the current one and start the prompt")
    async def orrery_sessions_spawn(
        ctx: Context,
        prompt: str,
        title: str = "",
        agent: str | None = None,
        session: str | None = None,
    ) -> Any:
        p = await t.principal(ctx)
        parent = session or p.session_id
        if not parent:
            raise ToolError("request.invalid: give the parent session")
        return await orrery_sessions_prompt(ctx, parent, prompt, "subsession", title, agent)

    @server.tool(
        description="Change a session's title, model, permission_mode (ask | auto | allow-all) or"
        " thinking (auto | off); settings apply from its next task"
    )
    async def orrery_sessions_update(
        ctx: Context,
        session: str | None = None,
        title: str | None = None,
        model: str | None = None,
        permission_mode: str | None = None,
        thinking: str | None = None,
    ) -> Any:
        p = await t.principal(ctx)
        if p.kind == "session" and permission_mode is not None:
            # An agent that asks before its tools run must not be able to stop asking.
            raise ToolError(
                "auth.forbidden: an agent cannot change a permission mode; a person can (the UI,"
                " the API, or this tool with an API key)"
            )
        ref = session or p.session_id
        if not ref:
            raise ToolError("request.invalid: give the session")
        found = await t.check_session(ctx, p, ref)
        body = {
            "title": title,
            "model": model,
            "permission_mode": permission_mode,
            "thinking": thinking,
        }
        return await t.call(
            ctx, p, "PATCH", f"/api/sessions/{found['id']}",
            json={k: v for k, v in body.items() if v is not None},
        )  # fmt: skip

    @server.tool(description="Stop a session's running task (it ends within 10 s)")
    async def orrery_sessions_stop(ctx: Context, session: str) -> Any:
        p = await t.principal(ctx)
        found = await t.check_session(ctx, p, session)
        return await t.call(ctx, p, "POST", f"/api/sessions/{found['id']}/stop")

    @server.tool(description="Answer a session's permission request")
    async def orrery_sessions_decide(
        ctx: Context, session: str, request_id: str, allow: bool, scope: str = "once"
    ) -> Any:
        p = await t.principal(ctx)
        found = await t.check_session(ctx, p, session)
        return await t.call(
            ctx, p, "POST", f"/api/sessions/{found['id']}/permissions/{request_id}",
            json={"allow": allow, "scope": scope},
        )  # fmt: skip

    # -- tasks ---------------------------------------------------------------------------------

    @server.tool(description="A session's tasks with usage, cost and git state")
    async def orrery_tasks_list(ctx: Context, session: str, limit: int = 100) -> Any:
        p = await t.principal(ctx)
        found = await t.check_session(ctx, p, session)
        rows: list[dict[str, Any]] = await t.call(
            ctx, p, "GET", f"/api/sessions/{found['id']}/tasks"
        )
        return {"tasks": rows[-max(1, min(limit, 1000)) :]}

    @server.tool(description="One task of a session")
    async def orrery_tasks_get(ctx: Context, session: str, task: str) -> Any:
        for row in (await orrery_tasks_list(ctx, session, 1000))["tasks"]:
            if str(row.get("id", "")).startswith(task):
                return row
        raise ToolError(f"task.not_found: no task {task} in session {session}")

    # -- worktrees and environments ------------------------------------------------------------

    @server.tool(description="List worktrees (optionally of one repo)")
    async def orrery_worktrees_list(ctx: Context, repo: str | None = None, limit: int = 100) -> Any:
        p = await t.principal(ctx)
        if p.kind == "session":
            return {"worktrees": [await t.call(ctx, p, "GET", f"/api/worktrees/{p.worktree_id}")]}
        params = {"repo": repo} if repo else {}
        rows: list[dict[str, Any]] = await t.call(ctx, p, "GET", "/api/worktrees", params=params)
        return {"worktrees": rows[: max(1, min(limit, 1000))]}

    @server.tool(description="A worktree: path, branch, git state, environment")
    async def orrery_worktrees_get(ctx: Context, worktree: str | None = None) -> Any:
        p = await t.principal(ctx)
        ref = await t.worktree_ref(p, worktree)
        return await t.call(ctx, p, "GET", f"/api/worktrees/{ref}")

    @server.tool(description="Create a worktree and its branch in a repo")
    async def orrery_worktrees_create(
        ctx: Context, repo: str, name: str, branch: str | None = None, base: str | None = None,
        issue_url: str | None = None, pull_request_url: str | None = None,
    ) -> Any:  # fmt: skip
        p = await t.principal(ctx)
        t.not_for_sessions(p, "other worktrees (create one with an API key)")
        body = {"repo": repo, "name": name, "branch": branch, "base": base}
        body |= {"issue_url": issue_url, "pull_request_url": pull_request_url}
        return await t.call(
            ctx, p, "POST", "/api/worktrees", json={k: v for k, v in body.items() if v is not None}
        )

    @server.tool(description="Change a worktree's issue/PR links, notes or context")
    async def orrery_worktrees_update(
        ctx: Context, worktree: str | None = None, issue_url: str | None = None,
        pull_request_url: str | None = None, notes: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> Any:  # fmt: skip
        p = await t.principal(ctx)
        ref = await t.worktree_ref(p, worktree)
        body: dict[str, Any] = {"issue_url": issue_url, "pull_request_url": pull_request_url}
        body |= {"notes": notes, "context": context}
        return await t.call(
            ctx,
            p,
            "PATCH",
            f"/api/worktrees/{ref}",
            json={k: v for k, v in body.items() if v is not None},
        )

    async def _env(ctx: Context, worktree: str | None, action: str) -> Any:
        p = await t.principal(ctx)
        ref = await t.worktree_ref(p, worktree)
        return await t.call(ctx, p, "POST", f"/api/worktrees/{ref}/env/{action}")

    @server.tool(description="Start a worktree's environment (admin)")
    async def orrery_environment_start(ctx: Context, worktree: str | None = None) -> Any:
        return await _env(ctx, worktree, "start")

    @server.tool(description="Stop a worktree's environment (admin)")
    async def orrery_environment_stop(ctx: Context, worktree: str | None = None) -> Any:
        return await _env(ctx, worktree, "stop")

    @server.tool(description="A worktree environment's status and last health check")
    async def orrery_environment_health(ctx: Context, worktree: str | None = None) -> Any:
        found = await orrery_worktrees_get(ctx, worktree)
        return {"environment": found.get("environment")}

    @server.tool(description="The last lines of a worktree environment's log")
    async def orrery_environment_logs(
        ctx: Context, worktree: str | None = None, lines: int = 100
    ) -> Any:
        p = await t.principal(ctx)
        ref = await t.worktree_ref(p, worktree)
        return await t.call(
            ctx,
            p,
            "GET",
            f"/api/worktrees/{ref}/env/logs",
            params={"lines": max(1, min(lines, 1000))},
        )

    @server.tool(description="The URL of a worktree's running app")
    async def orrery_environment_open_app(ctx: Context, worktree: str | None = None) -> Any:
        env = (await orrery_worktrees_get(ctx, worktree)).get("environment") or {}
        return {"app_url": env.get("app_url"), "status": env.get("status")}

    # -- boards --------------------------------------------------------------------------------

    @server.tool(description="List boards")
    async def orrery_boards_list(ctx: Context) -> Any:
        p = await t.principal(ctx)
        rows: list[dict[str, Any]] = await t.call(ctx, p, "GET", "/api/boards")
        if p.kind == "session":
            mine = await t.boards_of(p.worktree_id or "")
            rows = [r for r in rows if r.get("id") in mine]
        return {"boards": rows}

    @server.tool(description="A board with its zones, notes, cards and comments")
    async def orrery_boards_get(ctx: Context, board: str) -> Any:
        p = await t.principal(ctx)
        return await t.check_board(ctx, p, board)

    @server.tool(
        description="Place or move a worktree's card on a board (may fire the zone's trigger)"
    )
    async def orrery_boards_place_card(
        ctx: Context, board: str, x: float, y: float, worktree: str | None = None
    ) -> Any:
        p = await t.principal(ctx)
        found = await t.check_board(ctx, p, board)
        ref = await t.worktree_ref(p, worktree)
        return await t.call(
            ctx, p, "PUT", f"/api/boards/{found['board']['id']}/cards/{ref}", json={"x": x, "y": y}
        )

    @server.tool(
        description="Add a zone to a board, optionally with a prompt template fired on drop"
    )
    async def orrery_boards_add_zone(
        ctx: Context, board: str, label: str, x: float, y: float, width: float = 400,
        height: float = 300, template: str | None = None, behavior: str = "show_picker",
        agent: str = "builtin",
    ) -> Any:  # fmt: skip
        p = await t.principal(ctx)
        found = await t.check_board(ctx, p, board)
        body: dict[str, Any] = {"label": label, "x": x, "y": y, "width": width, "height": height}
        if template:
            body["trigger"] = {"template": template, "behavior": behavior, "agent": agent}
        return await t.call(ctx, p, "POST", f"/api/boards/{found['board']['id']}/zones", json=body)

    @server.tool(description="Move, resize, relabel or lock a zone")
    async def orrery_boards_update_zone(
        ctx: Context, board: str, zone: str, label: str | None = None, x: float | None = None,
        y: float | None = None, width: float | None = None, height: float | None = None,
        locked: bool | None = None,
    ) -> Any:  # fmt: skip
        p = await t.principal(ctx)
        found = await t.check_board(ctx, p, board)
        body = {"label": label, "x": x, "y": y, "width": width, "height": height, "locked": locked}
        return await t.call(
            ctx,
            p,
            "PATCH",
            f"/api/boards/{found['board']['id']}/zones/{zone}",
            json={k: v for k, v in body.items() if v is not None},
        )

    # -- users ---------------------------------------------------------------------------------

    @server.tool(description="List users")
    async def orrery_users_list(ctx: Context) -> Any:
        p = await t.principal(ctx)
        return {"users": await t.call(ctx, p, "GET", "/api/users")}

    @server.tool(description="One user (id, id prefix or email)")
    async def orrery_users_get(ctx: Context, user: str) -> Any:
        p = await t.principal(ctx)
        return await t.call(ctx, p, "GET", f"/api/users/{user}")

    @server.tool(description="The user this token acts for")
    async def orrery_users_get_current(ctx: Context) -> Any:
        p = await t.principal(ctx)
        return {"id": p.user_id, "name": p.name, "email": p.email, "role": p.role, "via": p.kind}

    @server.tool(description="Change your own name or emoji")
    async def orrery_users_update_current(
        ctx: Context, name: str | None = None, emoji: str | None = None
    ) -> Any:
        p = await t.principal(ctx)
        t.not_for_sessions(p, "the user's profile")
        body = {k: v for k, v in {"name": name, "emoji": emoji}.items() if v is not None}
        return await t.call(ctx, p, "PATCH", "/api/me", json=body)

    @server.tool(description="Create a user (admin)")
    async def orrery_user_create(
        ctx: Context, email: str, password: str, name: str, role: str = "member", emoji: str = "🙂"
    ) -> Any:
        p = await t.principal(ctx)
        t.not_for_sessions(p, "user management")
        body = {"email": email, "password": password, "name": name, "role": role, "emoji": emoji}
        return await t.call(ctx, p, "POST", "/api/users", json=body)

    # -- analytics and events ------------------------------------------------------------------

    @server.tool(description="Tokens and cost summed by task, session, user, board or model")
    async def orrery_analytics_leaderboard(
        ctx: Context, by: str = "user", since: str | None = None
    ) -> Any:
        p = await t.principal(ctx)
        t.not_for_sessions(p, "the ledger of other sessions")
        params = {"by": by} | ({"since": since} if since else {})
        return {"rows": await t.call(ctx, p, "GET", "/api/ledger", params=params)}

    @server.tool(
        description="Events of a board or a session after a sequence number (pass the last"
        " seq you saw as after; waits up to wait_s for the first new one)"
    )
    async def orrery_events_tail(
        ctx: Context, board: str | None = None, session: str | None = None, after: int = 0,
        limit: int = 100, wait_s: float = 0,
    ) -> Any:  # fmt: skip
        p = await t.principal(ctx)
        if (board is None) == (session is None):
            raise ToolError("request.invalid: give a board or a session")
        if board is not None:
            found = await t.check_board(ctx, p, board)
            kind, aggregate = "board", found["board"]["id"]
        else:
            kind, aggregate = "session", (await t.check_session(ctx, p, session or ""))["id"]
        limit = max(1, min(limit, 1000))
        return await t.tail(kind, aggregate, after, limit, min(max(wait_s, 0), 30))

    return server


class Guarded:
    """The SDK's ASGI app behind Orrery's credentials: 401 without a valid token or key."""

    def __init__(self, app: ASGIApp, authenticator: auth.Authenticator) -> None:
        self.app = app
        self.auth = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        principal = await self.auth.authenticate(token) if token else None
        if principal is None:
            body = json.dumps(
                {"code": "auth.required", "message": "send a session token or an API key"
                 " as Authorization: Bearer", "detail": {}}
            ).encode()  # fmt: skip
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b'Bearer realm="orrery"'),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def asgi(server: MCPServer, authenticator: auth.Authenticator, host: str) -> ASGIApp:
    """The SDK's streamable HTTP app at ``/mcp`` (stateless: any gateway replica answers any
    request; JSON answers), behind Orrery's credentials."""
    app = server.streamable_http_app(
        streamable_http_path="/mcp", stateless_http=True, json_response=True, host=host
    )
    return Guarded(app, authenticator)


@contextlib.asynccontextmanager
async def running(server: MCPServer) -> AsyncIterator[None]:
    """The SDK's session manager (its task group) for as long as the gateway serves."""
    async with server.session_manager.run():
        yield
