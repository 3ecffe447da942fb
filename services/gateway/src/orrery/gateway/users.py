"""REST for signing in and for users: ``/api/auth/*``, ``/api/me`` (the caller's profile, API
keys, secrets and agent defaults) and ``/api/users`` (admins manage others)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, cast

import asyncpg
import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT
from orrery.events import gateway as g
from orrery.gateway import auth
from orrery.gateway.api import ContextApi
from orrery.gateway.errors import ApiError
from orrery.gateway.readmodel import caught_up
from orrery.gateway.worktrees import command_id
from orrery.runtime.clock import UUID7
from orrery.runtime.secrets import Keys

_ids = UUID7()
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254)]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=auth.MAX_PASSWORD)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Emoji = Annotated[str, msgspec.Meta(max_length=16)]
Token = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
AGENTS = ("claude-code", "codex", "gemini", "opencode", "builtin")


# -- bodies -----------------------------------------------------------------------------------


class SetupIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    email: Email
    password: Password
    name: Name


class LoginIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    email: Email
    password: Password
    client: Annotated[str, msgspec.Meta(max_length=200)] = ""


class RefreshIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    refresh_token: Token


class UserIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    email: Email
    password: Password
    name: Name
    role: g.Role = "member"
    emoji: Emoji = "🙂"


class UserPatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Name | None = None
    emoji: Emoji | None = None
    role: g.Role | None = None


class MePatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Name | None = None
    emoji: Emoji | None = None
    password: Password | None = None
    current_password: Password | None = None


class ApiKeyIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Name
    role: g.Role | None = None


class SecretIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    value: Annotated[str, msgspec.Meta(min_length=1, max_length=16384)]


class DefaultsIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    permission_mode: Literal["ask", "auto", "allow-all"] | None = None
    thinking: Literal["auto", "off"] | None = None


# -- answers ----------------------------------------------------------------------------------


class UserOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    email: str
    name: str
    emoji: str
    role: str
    created_at: datetime | None = None


class MeOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    email: str
    name: str
    role: str
    via: str  # anonymous | access | api_key
    auth_mode: str


class TokensOut(msgspec.Struct, frozen=True, kw_only=True):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105 - the scheme, not a secret
    expires_in: int
    user: UserOut


class ApiKeyOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    prefix: str
    role: str | None
    created_at: datetime
    key: str | None = None  # only in the answer that creates it


class SecretOut(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    name: str
    set: bool
    updated_at: datetime


# -- read model -------------------------------------------------------------------------------


def _like_prefix(ref: str) -> str:
    """``ref`` as a LIKE prefix pattern, its own ``%``, ``_`` and backslash taken literally."""
    for special in ("\\", "%", "_"):
        ref = ref.replace(special, "\\" + special)
    return ref + "%"


def _user(row: asyncpg.Record) -> UserOut:
    return UserOut(
        id=row["user_id"], email=row["email"], name=row["name"], emoji=row["emoji"],
        role=row["role"], created_at=row["created_at"],
    )  # fmt: skip


class UsersReadModel:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def _fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        try:
            return list(await self.pool.fetch(sql, *args))
        except asyncpg.UndefinedTableError:
            return []

    async def caught_up(self, sequence: int, timeout: float = 10.0) -> None:
        await caught_up(self.pool, "gateway", "users", sequence, timeout)

    async def users(self) -> list[UserOut]:
        rows = await self._fetch(
            'SELECT * FROM "gateway".users WHERE NOT deleted ORDER BY created_at, email'
        )
        return [_user(r) for r in rows]

    async def any_user(self) -> bool:
        return bool(await self._fetch('SELECT 1 FROM "gateway".users WHERE NOT deleted LIMIT 1'))

    async def owners(self) -> int:
        rows = await self._fetch(
            "SELECT count(*) AS n FROM \"gateway\".users WHERE role = 'owner' AND NOT deleted"
        )
        return int(rows[0]["n"]) if rows else 0

    async def by_email(self, email: str) -> asyncpg.Record | None:
        rows = await self._fetch(
            'SELECT * FROM "gateway".users WHERE user_id = $1 AND NOT deleted',
            g.user_id_for(email),
        )
        return rows[0] if rows else None

    async def user(self, ref: str) -> UserOut:
        rows = await self._fetch(
            'SELECT * FROM "gateway".users WHERE NOT deleted AND'
            " (user_id = $1 OR lower(email) = lower($1) OR user_id LIKE $2) LIMIT 2",
            ref, _like_prefix(ref),
        )  # fmt: skip
        if len(rows) != 1:
            code = "user.ambiguous" if rows else "user.not_found"
            raise ApiError(404 if not rows else 409, code, f"no single user matches {ref!r}")
        return _user(rows[0])

    async def login(self, login_id: str) -> asyncpg.Record | None:
        rows = await self._fetch('SELECT * FROM "gateway".logins WHERE login_id = $1', login_id)
        return rows[0] if rows else None

    async def api_keys(self, user_id: str) -> list[ApiKeyOut]:
        rows = await self._fetch(
            'SELECT * FROM "gateway".api_keys WHERE user_id = $1 AND revoked_at IS NULL'
            " ORDER BY created_at",
            user_id,
        )
        return [
            ApiKeyOut(
                id=r["key_id"],
                name=r["name"],
                prefix=r["prefix"],
                role=r["role"],
                created_at=r["created_at"],
            )
            for r in rows
        ]

    async def secrets(self, user_id: str) -> list[SecretOut]:
        rows = await self._fetch(
            'SELECT kind, name, updated_at FROM "gateway".secrets WHERE user_id = $1'
            " ORDER BY kind, name",
            user_id,
        )
        return [
            SecretOut(kind=r["kind"], name=r["name"], set=True, updated_at=r["updated_at"])
            for r in rows
        ]

    async def defaults(self, user_id: str) -> dict[str, g.AgentDefaults]:
        rows = await self._fetch(
            'SELECT agent, defaults FROM "gateway".defaults WHERE user_id = $1', user_id
        )
        return {r["agent"]: msgspec.json.decode(r["defaults"], type=g.AgentDefaults) for r in rows}


async def agent_defaults(pool: asyncpg.Pool, user_id: str, agent: str) -> g.AgentDefaults:
    """A user's defaults for new sessions of ``agent`` (all ``None`` when unset)."""
    try:
        raw = await pool.fetchval(
            'SELECT defaults FROM "gateway".defaults WHERE user_id = $1 AND agent = $2',
            user_id,
            agent,
        )
    except asyncpg.UndefinedTableError:
        raw = None
    return msgspec.json.decode(raw, type=g.AgentDefaults) if raw else g.AgentDefaults()


class UsersApi(ContextApi[UsersReadModel]):
    """The users handlers' command client and read model, plus what signs and seals."""

    authenticator: auth.Authenticator
    keys: Keys
    limiter: auth.LoginLimiter
    # One setup at a time in this gateway: two at once with different emails would both find
    # no user and make two owners. (Replicas of the gateway do not share it: see the README.)
    setup_lock: asyncio.Lock

    async def tokens(
        self, user: asyncpg.Record | UserOut, login_id: str | None = None, client: str = ""
    ) -> TokensOut:
        """A new sign-in (or, with ``login_id``, the tokens for a rotated one)."""
        out = user if isinstance(user, UserOut) else _user(user)
        refresh_secret = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(seconds=auth.REFRESH_TTL_S)
        lid = login_id or _ids.new()
        if login_id is None:
            await self.send(
                g.StartLogin(
                    command_id=_ids.new(), user_id=out.id, login_id=lid,
                    refresh_hash=auth.digest(refresh_secret), expires_at=expires,
                    client=client,
                ),
                actor=out.id,
            )  # fmt: skip
        return TokensOut(
            access_token=self.authenticator.access_token(out.id, lid),
            refresh_token=f"{lid}.{refresh_secret}",
            expires_in=auth.ACCESS_TTL_S,
            user=out,
        )


def _client_address(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


def _split_refresh(token: str) -> tuple[str, str]:
    login_id, _, secret = token.partition(".")
    if not login_id or not secret:
        raise ApiError(401, "auth.refresh_invalid", "not a refresh token: sign in again")
    return login_id, secret


# -- /api/auth --------------------------------------------------------------------------------


class AuthStatusOut(msgspec.Struct, frozen=True, kw_only=True):
    auth_mode: str
    setup_needed: bool  # no user yet: POST /api/auth/setup makes the first owner


class AuthController(Controller):
    path = "/api/auth"
    tags = ["auth"]

    @get("/status", opt={"public": True}, summary="How this gateway signs people in")
    async def status(self, users: UsersApi) -> AuthStatusOut:
        return AuthStatusOut(
            auth_mode=users.authenticator.mode, setup_needed=not await users.model.any_user()
        )

    @post(
        "/setup",
        opt={"public": True},
        summary="Create the first user, an owner (only when there is none)",
    )
    async def setup(self, data: SetupIn, users: UsersApi) -> Response[TokensOut]:
        async with users.setup_lock:
            if await users.model.any_user():
                raise ApiError(409, "auth.setup_done", "users exist: sign in, or ask an admin")
            user = await _create(
                users,
                UserIn(email=data.email, password=data.password, name=data.name, role="owner"),
                "system",
            )
        row = await users.model.by_email(user.email)
        assert row is not None
        return Response(await users.tokens(row), status_code=HTTP_201_CREATED)

    @post(
        "/login", opt={"public": True}, status_code=200, summary="Sign in with email and password"
    )
    async def login(
        self, request: Request[Any, Any, Any], data: LoginIn, users: UsersApi
    ) -> TokensOut:
        email = data.email.strip().lower()
        address = _client_address(request)
        users.limiter.check(email, address)
        row = await users.model.by_email(email)
        if not await auth.verify_password(row["password_hash"] if row else None, data.password):
            users.limiter.failed(email, address)
            raise ApiError(401, "auth.invalid_credentials", "wrong email or password")
        assert row is not None
        users.limiter.succeeded(email)
        return await users.tokens(row, client=data.client)

    @post(
        "/refresh",
        opt={"public": True},
        status_code=200,
        summary="Trade a refresh token for new tokens (rotation)",
    )
    async def refresh(self, data: RefreshIn, users: UsersApi) -> TokensOut:
        login_id, secret = _split_refresh(data.refresh_token)
        login = await users.model.login(login_id)
        if login is None:
            raise ApiError(401, "auth.refresh_invalid", "unknown refresh token: sign in again")
        user = await users.authenticator.user(login["user_id"])
        if user is None:
            raise ApiError(401, "auth.refresh_invalid", "this user no longer exists")
        new_secret = secrets.token_urlsafe(32)
        await users.send(
            g.RefreshLogin(
                command_id=_ids.new(), user_id=login["user_id"], login_id=login_id,
                presented_hash=auth.digest(secret), refresh_hash=auth.digest(new_secret),
                expires_at=datetime.now(UTC) + timedelta(seconds=auth.REFRESH_TTL_S),
            ),
            actor=login["user_id"],
        )  # fmt: skip
        after = await users.model.login(login_id)
        if after is not None and after["ended"] is not None:
            raise ApiError(
                401,
                "auth.refresh_reused",
                "this refresh token was already used: the sign-in is ended everywhere",
            )
        out = _user(user)
        return TokensOut(
            access_token=users.authenticator.access_token(out.id, login_id),
            refresh_token=f"{login_id}.{new_secret}",
            expires_in=auth.ACCESS_TTL_S,
            user=out,
        )

    @post(
        "/logout", opt={"public": True}, status_code=HTTP_204_NO_CONTENT,
        summary="End a sign-in (its refresh and access tokens stop working)",
    )  # fmt: skip
    async def logout(self, data: RefreshIn, users: UsersApi) -> None:
        login_id, secret = _split_refresh(data.refresh_token)
        login = await users.model.login(login_id)
        if login is None or login["refresh_hash"] != auth.digest(secret):
            return  # nothing to end; say nothing about other people's sign-ins
        await users.send(
            g.EndLogin(command_id=_ids.new(), user_id=login["user_id"], login_id=login_id),
            actor=login["user_id"],
        )


# -- /api/me ----------------------------------------------------------------------------------


def _me() -> auth.Principal:
    return auth.require("viewer")


class MeController(Controller):
    path = "/api/me"
    tags = ["me"]

    @get("/", summary="Who the caller is")
    async def whoami(self, users: UsersApi) -> MeOut:
        me = _me()
        return MeOut(
            id=me.user_id, email=me.email, name=me.name, role=me.role, via=me.kind,
            auth_mode=users.authenticator.mode,
        )  # fmt: skip

    @patch("/", summary="Change the caller's name, emoji or password")
    async def update(
        self, request: Request[Any, Any, Any], data: MePatch, users: UsersApi
    ) -> UserOut:
        me = _registered()
        if data.password is not None:  # checked before anything changes
            row = await users.authenticator.user(me.user_id)
            if data.current_password is None or not await auth.verify_password(
                row["password_hash"] if row else None, data.current_password
            ):
                raise ApiError(403, "auth.invalid_credentials", "the current password is wrong")
            await users.send(
                g.ChangePassword(
                    command_id=_ids.new(),
                    user_id=me.user_id,
                    password_hash=await auth.hash_password(data.password),
                    keep_login=me.login_id,
                )
            )
        if data.name is not None or data.emoji is not None:
            await users.send(
                g.UpdateUser(
                    command_id=command_id(request),
                    user_id=me.user_id,
                    name=data.name,
                    emoji=data.emoji,
                )
            )
        return await users.model.user(me.user_id)

    @get("/api-keys", summary="The caller's API keys (never the keys themselves)")
    async def api_keys(self, users: UsersApi) -> list[ApiKeyOut]:
        return await users.model.api_keys(_me().user_id)

    @post("/api-keys", summary="A new personal API key; the key is in this answer only")
    async def create_api_key(
        self, request: Request[Any, Any, Any], data: ApiKeyIn, users: UsersApi
    ) -> Response[ApiKeyOut]:
        me = _me()
        if data.role is not None and not me.at_least(data.role):
            raise ApiError(
                403, "auth.forbidden", f"a key cannot have more than your role ({me.role})"
            )
        key, prefix = auth.new_api_key()
        key_id = _ids.new()
        await users.send(
            g.CreateApiKey(
                command_id=command_id(request), user_id=me.user_id, key_id=key_id,
                name=data.name, prefix=prefix, key_hash=auth.digest(key), role=data.role,
            )
        )  # fmt: skip
        created = next(k for k in await users.model.api_keys(me.user_id) if k.id == key_id)
        return Response(msgspec.structs.replace(created, key=key), status_code=HTTP_201_CREATED)

    @delete("/api-keys/{key_id:str}", summary="Revoke one of the caller's API keys")
    async def revoke_api_key(self, key_id: str, users: UsersApi) -> None:
        me = _me()
        await users.send(g.RevokeApiKey(command_id=_ids.new(), user_id=me.user_id, key_id=key_id))

    @get("/secrets", summary="Which API keys and variables the caller has set (never the values)")
    async def secrets(self, users: UsersApi) -> list[SecretOut]:
        return await users.model.secrets(_me().user_id)

    @put(
        "/secrets/{kind:str}/{name:str}",
        summary="Set a provider API key or environment variable for the caller's agents",
    )
    async def set_secret(self, kind: str, name: str, data: SecretIn, users: UsersApi) -> SecretOut:
        me = _me()
        sealed = users.keys.seal(me.user_id, kind, name, data.value)
        await users.send(
            g.SetSecret(
                command_id=_ids.new(),
                user_id=me.user_id,
                kind=_kind(kind),
                name=name,
                sealed=sealed,
            )
        )
        found = [
            s for s in await users.model.secrets(me.user_id) if (s.kind, s.name) == (kind, name)
        ]
        return found[0]

    @delete("/secrets/{kind:str}/{name:str}", summary="Clear a key or variable")
    async def clear_secret(self, kind: str, name: str, users: UsersApi) -> None:
        me = _me()
        await users.send(
            g.ClearSecret(command_id=_ids.new(), user_id=me.user_id, kind=_kind(kind), name=name)
        )

    @get("/defaults", summary="The caller's defaults for new sessions, per agent")
    async def defaults(self, users: UsersApi) -> dict[str, g.AgentDefaults]:
        return await users.model.defaults(_me().user_id)

    @put("/defaults/{agent:str}", summary="Set the caller's defaults for one agent")
    async def set_defaults(
        self, agent: str, data: DefaultsIn, users: UsersApi
    ) -> dict[str, g.AgentDefaults]:
        me = _me()
        if agent not in AGENTS:
            raise ApiError(400, "agent.unknown", f"agent is one of {', '.join(AGENTS)}")
        values = g.AgentDefaults(
            model=data.model, permission_mode=data.permission_mode, thinking=data.thinking
        )
        await users.send(
            g.SetDefaults(command_id=_ids.new(), user_id=me.user_id, agent=agent, defaults=values)
        )
        return await users.model.defaults(me.user_id)


def _kind(kind: str) -> g.SecretKind:
    if kind not in ("api_key", "env"):
        raise ApiError(400, "secret.invalid_kind", "kind is api_key or env")
    return cast("g.SecretKind", kind)


def _registered() -> auth.Principal:
    me = _me()
    if me.kind == "anonymous" or me.user_id == auth.ANONYMOUS:
        raise ApiError(409, "user.anonymous", "the loopback user has no profile: create a user")
    return me


# -- /api/users -------------------------------------------------------------------------------


async def _create(users: UsersApi, data: UserIn, actor: str | None = None) -> UserOut:
    user_id = g.user_id_for(data.email)
    await users.send(
        g.CreateUser(
            command_id=_ids.new(), user_id=user_id, email=data.email, name=data.name,
            role=data.role, password_hash=await auth.hash_password(data.password),
            emoji=data.emoji,
        ),
        actor=actor,
    )  # fmt: skip
    return await users.model.user(user_id)


def _grantable(me: auth.Principal, role: str) -> None:
    if role == "owner" and not me.at_least("owner"):
        raise ApiError(403, "auth.forbidden", "only an owner makes or unmakes owners")


class UsersController(Controller):
    path = "/api/users"
    tags = ["users"]

    @get("/", summary="List users")
    async def list_users(self, users: UsersApi) -> list[UserOut]:
        return await users.model.users()

    @get("/{ref:str}", summary="One user (id, id prefix or email)")
    async def get_user(self, ref: str, users: UsersApi) -> UserOut:
        return await users.model.user(ref)

    @post("/", summary="Create a user (admin)")
    async def create(self, data: UserIn, users: UsersApi) -> Response[UserOut]:
        _grantable(auth.require("admin"), data.role)
        return Response(await _create(users, data), status_code=HTTP_201_CREATED)

    @patch("/{ref:str}", summary="Change a user's name, emoji or role (admin)")
    async def update(self, ref: str, data: UserPatch, users: UsersApi) -> UserOut:
        me = auth.require("admin")
        user = await users.model.user(ref)
        if data.name is not None or data.emoji is not None:
            await users.send(
                g.UpdateUser(
                    command_id=_ids.new(), user_id=user.id, name=data.name, emoji=data.emoji
                )
            )
        if data.role is not None and data.role != user.role:
            _grantable(me, data.role)
            _grantable(me, user.role)
            if user.role == "owner" and await users.model.owners() <= 1:
                raise ApiError(409, "user.last_owner", "the last owner keeps the owner role")
            await users.send(g.ChangeRole(command_id=_ids.new(), user_id=user.id, role=data.role))
        return await users.model.user(user.id)

    @delete("/{ref:str}", summary="Delete a user (admin); their sign-ins and keys end")
    async def delete_user(self, ref: str, users: UsersApi) -> None:
        me = auth.require("admin")
        user = await users.model.user(ref)
        _grantable(me, user.role)
        if user.role == "owner" and await users.model.owners() <= 1:
            raise ApiError(409, "user.last_owner", "the last owner cannot be deleted")
        await users.send(g.DeleteUser(command_id=_ids.new(), user_id=user.id))


ROUTES = [AuthController, MeController, UsersController]
