"""Who is calling, and may they: credentials to a ``Principal``, and one guard on every route.

Credentials, in ``Authorization: Bearer ...`` (or ``?token=`` on a WebSocket, which browsers
cannot give headers):

- an access token (JWT, 15 minutes) from ``POST /api/auth/login`` or ``/refresh``;
- a personal API key (``ork_...``), for tools and outside agents;
- a session's MCP token (JWT ``typ=session``): accepted on ``/mcp`` only, scoped there.

With no credentials: the loopback single user (``anonymous``, owner) in anonymous mode, else 401.
The role a request needs comes from ``POLICY`` (by method and route), else viewer for reads and
member for changes; a route marked ``public`` needs nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import ipaddress
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.handlers.base import BaseRouteHandler
from orrery.events.gateway import ROLES, rank
from orrery.gateway.errors import ApiError
from orrery.runtime.errors import ConfigurationError
from orrery.runtime.secrets import Keys

AuthMode = Literal["anonymous", "required"]
ACCESS_TTL_S = 15 * 60
REFRESH_TTL_S = 30 * 24 * 3600
API_KEY_PREFIX = "ork_"
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Principal:
    user_id: str
    role: str
    kind: Literal["anonymous", "access", "api_key", "session", "delegated"]
    name: str = ""
    email: str = ""
    login_id: str | None = None
    key_id: str | None = None
    session_id: str | None = None  # a session token's scope
    worktree_id: str | None = None

    def at_least(self, role: str) -> bool:
        return rank(self.role) >= rank(role)


current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "orrery_principal", default=None
)


def actor() -> str:
    """Who the command being sent is from: the caller's user id (``system`` outside a call)."""
    principal = current.get()
    return principal.user_id if principal is not None else "system"


def require(role: str) -> Principal:
    """The caller, if at least ``role``; else 403 (401 when nobody is signed in)."""
    principal = current.get()
    if principal is None:
        raise ApiError(401, "auth.required", "sign in, or send an API key")
    if not principal.at_least(role):
        raise ApiError(
            403,
            "auth.forbidden",
            f"this needs the {role} role; you are {principal.role}",
            {"needs": role, "role": principal.role},
        )
    return principal


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def mode_for(setting: str, host: str) -> AuthMode:
    """``ORRERY_AUTH``: ``anonymous`` is allowed on a loopback address only; empty picks
    anonymous on loopback and required elsewhere."""
    if setting not in ("", "anonymous", "required"):
        raise ConfigurationError(f"ORRERY_AUTH={setting!r}: use anonymous or required")
    if setting == "anonymous" and not is_loopback(host):
        raise ConfigurationError(
            f"ORRERY_AUTH=anonymous needs a loopback address; ORRERY_HOST={host} would let"
            " anyone on the network in as the owner. Create users (orrery user create) and use"
            " ORRERY_AUTH=required"
        )
    if setting:
        return setting  # type: ignore[return-value]
    return "anonymous" if is_loopback(host) else "required"


def digest(secret: str) -> str:
    """API keys and refresh tokens are 32 random bytes: a plain SHA-256 is the right digest."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_api_key() -> tuple[str, str]:
    """A key and its display prefix (shown in lists so a user can tell keys apart)."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key[: len(API_KEY_PREFIX) + 6]


# -- passwords --------------------------------------------------------------------------------

_hasher = PasswordHasher()  # argon2id, the library's (RFC 9106 low-memory) parameters
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


@functools.cache
def _dummy_hash() -> str:
    """Verified when the email is unknown, so a miss costs what a hit does (no user
    enumeration). Made on first use: an argon2 hash is deliberately slow."""
    return _hasher.hash("orrery-no-such-user")


def check_password_rules(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ApiError(
            400,
            "user.weak_password",
            f"a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters",
        )


async def hash_password(password: str) -> str:
    check_password_rules(password)
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


# -- login rate limit -------------------------------------------------------------------------


@dataclass
class LoginLimiter:
    """Failed sign-ins per email and per client address in a sliding window; past the limit,
    429 until the oldest failure leaves the window. In memory: per gateway process."""

    per_email: int = 10
    per_address: int = 50
    window_s: float = 15 * 60
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def check(self, email: str, address: str) -> None:
        now = time.monotonic()
        for key, limit in ((f"e:{email}", self.per_email), (f"a:{address}", self.per_address)):
            q = self._recent(key, now)
            if len(q) >= limit:
                retry = int(q[0] + self.window_s - now) + 1
                raise ApiError(
                    429,
                    "auth.rate_limited",
                    f"too many failed sign-ins; try again in {retry} s",
                    {"retry_after": retry},
                )

    def failed(self, email: str, address: str) -> None:
        now = time.monotonic()
        for key in (f"e:{email}", f"a:{address}"):
            self._recent(key, now).append(now)
        if len(self._failures) > 100_000:  # forget idle keys rather than grow without bound
            for key in [k for k, q in self._failures.items() if not q]:
                del self._failures[key]

    def succeeded(self, email: str) -> None:
        self._failures.pop(f"e:{email}", None)


# -- credentials to a principal ---------------------------------------------------------------


class Authenticator:
    def __init__(self, pool: asyncpg.Pool, keys: Keys, mode: AuthMode) -> None:
        self.pool = pool
        self.keys = keys
        self.mode = mode

    async def _fetchrow(self, sql: str, *args: object) -> asyncpg.Record | None:
        try:
            return await self.pool.fetchrow(sql, *args)
        except asyncpg.UndefinedTableError:
            return None  # the read model is not created yet: nobody is known

    async def user(self, user_id: str) -> asyncpg.Record | None:
        return await self._fetchrow(
            'SELECT * FROM "gateway".users WHERE user_id = $1 AND NOT deleted', user_id
        )

    def anonymous(self) -> Principal:
        return Principal(user_id=ANONYMOUS, role="owner", kind="anonymous", name="local user")

    async def authenticate(self, token: str | None) -> Principal | None:  # noqa: PLR0911
        """The principal of ``token`` (None: not valid). No token: anonymous mode's user."""
        if not token:
            return self.anonymous() if self.mode == "anonymous" else None
        if token.startswith(API_KEY_PREFIX):
            return await self._api_key(token)
        claims = self.keys.verify(token)
        if claims is None:
            return None
        user_id = str(claims["sub"])
        if user_id == ANONYMOUS:
            if self.mode != "anonymous":
                return None
            base = self.anonymous()
            name, email, role = base.name, "", base.role
        else:
            row = await self.user(user_id)
            if row is None:
                return None
            name, email, role = row["name"], row["email"], row["role"]
        if claims["typ"] == "access":
            login = await self._fetchrow(
                'SELECT ended FROM "gateway".logins WHERE login_id = $1', claims.get("lid")
            )
            if login is None or login["ended"] is not None:
                return None  # signed out: the access token ends with its sign-in
            return Principal(
                user_id=user_id, role=role, kind="access", name=name, email=email,
                login_id=claims.get("lid"),
            )  # fmt: skip
        if claims["typ"] == "delegated":  # the MCP layer calling the API for a session
            cap = str(claims.get("cap", "viewer"))
            return Principal(
                user_id=user_id, role=min(role, cap, key=rank), kind="delegated", name=name,
                email=email,
            )  # fmt: skip
        if claims["typ"] == "session":
            return Principal(
                user_id=user_id, role=min(role, "member", key=rank), kind="session", name=name,
                email=email, session_id=str(claims.get("sid")), worktree_id=str(claims.get("wt")),
            )  # fmt: skip
        return None

    async def _api_key(self, key: str) -> Principal | None:
        row = await self._fetchrow(
            'SELECT key_id, user_id, role FROM "gateway".api_keys'
            " WHERE key_hash = $1 AND revoked_at IS NULL",
            digest(key),
        )
        if row is None:
            return None
        if row["user_id"] == ANONYMOUS:
            if self.mode != "anonymous":
                return None
            user_role, name, email = "owner", "local user", ""
        else:
            user = await self.user(row["user_id"])
            if user is None:
                return None
            user_role, name, email = user["role"], user["name"], user["email"]
        role = min(user_role, row["role"] or user_role, key=rank)
        return Principal(
            user_id=row["user_id"], role=role, kind="api_key", name=name, email=email,
            key_id=row["key_id"],
        )  # fmt: skip

    def access_token(self, user_id: str, login_id: str) -> str:
        return self.keys.sign({"typ": "access", "sub": user_id, "lid": login_id}, ACCESS_TTL_S)


def bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if connection.scope["type"] == ScopeType.WEBSOCKET:
        return connection.query_params.get("token") or None
    return None


# -- the guard --------------------------------------------------------------------------------

# (method, route) -> the least role, where it is not viewer for reads and member for changes.
POLICY: dict[tuple[str, str], str] = {
    ("DELETE", "/api/repos/{ref}"): "admin",
    ("POST", "/api/worktrees/reconcile"): "admin",
    ("POST", "/api/worktrees/{ref}/archive"): "admin",
    ("POST", "/api/worktrees/{ref}/unarchive"): "admin",
    ("DELETE", "/api/worktrees/{ref}"): "admin",
    ("POST", "/api/worktrees/{ref}/env/start"): "admin",
    ("POST", "/api/worktrees/{ref}/env/stop"): "admin",
    ("POST", "/api/worktrees/{ref}/env/restart"): "admin",
    ("POST", "/api/users"): "admin",
    ("PATCH", "/api/users/{ref}"): "admin",
    ("DELETE", "/api/users/{ref}"): "admin",
    # everything a signed-in user does to themselves
    ("PATCH", "/api/me"): "viewer",
    ("POST", "/api/me/api-keys"): "viewer",
    ("DELETE", "/api/me/api-keys/{key_id}"): "viewer",
    ("PUT", "/api/me/secrets/{kind}/{name}"): "viewer",
    ("DELETE", "/api/me/secrets/{kind}/{name}"): "viewer",
    ("PUT", "/api/me/defaults/{agent}"): "viewer",
}


def needed_role(method: str, route: str) -> str:
    return POLICY.get((method, route), "viewer" if method in ("GET", "HEAD") else "member")


def route_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The route template without parameter types: ``/api/repos/{ref}``."""
    template = str(connection.scope.get("path_template") or connection.scope["path"])
    return "/".join(
        part.split(":", 1)[0] + "}" if part.startswith("{") and ":" in part else part
        for part in template.split("/")
    )


def make_guard(auth: Authenticator):  # type: ignore[no-untyped-def]
    async def guard(
        connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        current.set(None)
        if handler.opt.get("public") or connection.scope["path"].startswith("/schema"):
            return
        principal = await auth.authenticate(bearer(connection))
        if principal is None:
            raise ApiError(
                401,
                "auth.required",
                "sign in (orrery login), or send an API key as Authorization: Bearer"
                if not bearer(connection)
                else "the token or API key is not valid (expired, revoked or signed out)",
            )
        if principal.kind == "session":
            raise ApiError(403, "auth.session_token", "a session's token is for /mcp only")
        current.set(principal)
        scope: Any = connection.scope
        method = "GET" if scope["type"] == ScopeType.WEBSOCKET else scope["method"]
        require(needed_role(method, route_of(connection)))

    return guard


__all__ = ["ROLES"]
