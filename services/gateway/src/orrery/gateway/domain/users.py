"""A user: profile, role, sign-ins (refresh-token families), API keys, sealed secrets and agent
defaults. Pure: the gateway hashes, seals and mints before it sends a command; this decides."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from orrery.events import Event
from orrery.events.errors import Rejection
from orrery.events.gateway import (
    ApiKeyCreated,
    ApiKeyRevoked,
    ChangePassword,
    ChangeRole,
    ClearSecret,
    CreateApiKey,
    CreateUser,
    DefaultsSet,
    DeleteUser,
    EndLogin,
    LoginEnded,
    LoginRefreshed,
    LoginStarted,
    RefreshLogin,
    RevokeApiKey,
    SecretCleared,
    SecretSet,
    SetDefaults,
    SetSecret,
    StartLogin,
    UpdateUser,
    UserCreated,
    UserDeleted,
    UserPasswordChanged,
    UserRoleChanged,
    UserUpdated,
    user_id_for,
)
from orrery.runtime.decider import Aggregate, Deps

EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,190}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
MAX_NAME = 100
MAX_SECRETS = 100


RACE_S = 5  # a spent refresh token presented this soon after its rotation: a race, not a theft


@dataclass(frozen=True)
class Login:
    current: str
    expires_at: datetime
    spent: frozenset[str] = frozenset()
    ended: bool = False
    last_spent: str | None = None
    rotated_at: datetime | None = None


@dataclass(frozen=True)
class User:
    exists: bool = False
    deleted: bool = False
    role: str = "viewer"
    logins: dict[str, Login] = field(default_factory=dict)
    keys: frozenset[str] = frozenset()
    secrets: frozenset[tuple[str, str]] = frozenset()


def evolve(state: User, event: Event) -> User:  # noqa: PLR0911 - one case per event
    match event:
        case UserCreated():
            return User(exists=True, role=event.role)
        case UserRoleChanged():
            return replace(state, role=event.role)
        case UserDeleted():
            return replace(state, deleted=True, logins={})
        case LoginStarted():
            login = Login(event.refresh_hash, event.expires_at)
            return replace(state, logins={**state.logins, event.login_id: login})
        case LoginRefreshed():
            old = state.logins[event.login_id]
            login = Login(
                event.refresh_hash, event.expires_at, old.spent | {old.current},
                last_spent=old.current, rotated_at=event.rotated_at,
            )  # fmt: skip
            return replace(state, logins={**state.logins, event.login_id: login})
        case LoginEnded():
            if event.login_id not in state.logins:
                return state
            ended = replace(state.logins[event.login_id], ended=True)
            return replace(state, logins={**state.logins, event.login_id: ended})
        case ApiKeyCreated():
            return replace(state, keys=state.keys | {event.key_id})
        case ApiKeyRevoked():
            return replace(state, keys=state.keys - {event.key_id})
        case SecretSet():
            return replace(state, secrets=state.secrets | {(event.kind, event.name)})
        case SecretCleared():
            return replace(state, secrets=state.secrets - {(event.kind, event.name)})
        case _:
            return state


USER = Aggregate[User](kind="user", initial=User, evolve=evolve)


def _live(state: User, user_id: str) -> None:
    if not state.exists or state.deleted:
        raise Rejection("user.not_found", f"no user {user_id}", {"user_id": user_id})


def _name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or "\x00" in name:
        raise Rejection("user.invalid_name", f"a name is 1 to {MAX_NAME} characters")
    return name


def decide_create(command: CreateUser, state: User, deps: Deps) -> Sequence[Event]:
    if state.exists and not state.deleted:
        raise Rejection("user.exists", f"a user with email {command.email} exists")
    email = command.email.strip().lower()
    if not EMAIL.fullmatch(email):
        raise Rejection("user.invalid_email", f"{command.email!r} is not an email address")
    if user_id_for(email) != command.user_id:
        raise Rejection("user.invalid_id", "the user id is derived from the email")
    return [
        UserCreated(
            user_id=command.user_id,
            email=email,
            name=_name(command.name),
            role=command.role,
            password_hash=command.password_hash,
            emoji=command.emoji[:16] or "🙂",
        )
    ]


def decide_update(command: UpdateUser, state: User, deps: Deps) -> Sequence[Event]:
    _live(state, command.user_id)
    if command.name is None and command.emoji is None:
        return []
    return [
        UserUpdated(
            user_id=command.user_id,
            name=_name(command.name) if command.name is not None else "",
            emoji=(command.emoji or "")[:16],
        )
    ]


def decide_role(command: ChangeRole, state: User, deps: Deps) -> Sequence[Event]:
    _live(state, command.user_id)
    if state.role == command.role:
        return []
    return [UserRoleChanged(user_id=command.user_id, role=command.role)]


def decide_password(command: ChangePassword, state: User, deps: Deps) -> Sequence[Event]:
    """A new password ends every other sign-in (whoever knew the old one is out)."""
    _live(state, command.user_id)
    ended: list[Event] = [
        LoginEnded(user_id=command.user_id, login_id=login_id, reason="revoked")
        for login_id, login in sorted(state.logins.items())
        if not login.ended and login_id != command.keep_login
    ]
    return [
        UserPasswordChanged(user_id=command.user_id, password_hash=command.password_hash),
        *ended,
    ]


def decide_delete(command: DeleteUser, state: User, deps: Deps) -> Sequence[Event]:
    _live(state, command.user_id)
    return [UserDeleted(user_id=command.user_id)]


def decide_start_login(command: StartLogin, state: User, deps: Deps) -> Sequence[Event]:
    _live(state, command.user_id)
    if command.login_id in state.logins:
        return []  # redelivered
    return [
        LoginStarted(
            user_id=command.user_id,
            login_id=command.login_id,
            refresh_hash=command.refresh_hash,
            expires_at=command.expires_at,
            client=command.client[:200],
        )
    ]


def decide_refresh(command: RefreshLogin, state: User, deps: Deps) -> Sequence[Event]:
    _live(state, command.user_id)
    login = state.logins.get(command.login_id)
    if login is None or login.ended:
        raise Rejection("auth.refresh_invalid", "this sign-in has ended: sign in again")
    if command.presented_hash in login.spent:
        now = deps.clock.now()
        if (
            command.presented_hash == login.last_spent
            and login.rotated_at is not None
            and (now - login.rotated_at).total_seconds() < RACE_S
        ):  # two refreshes of one token at once (two tabs, two commands): refuse the later one
            raise Rejection(
                "auth.refresh_raced",
                "this refresh token was just used by another request: use the new tokens",
            )
        return [LoginEnded(user_id=command.user_id, login_id=command.login_id, reason="reused")]
    if command.presented_hash != login.current:
        raise Rejection("auth.refresh_invalid", "unknown refresh token: sign in again")
    if login.expires_at <= deps.clock.now():
        raise Rejection("auth.refresh_expired", "the refresh token expired: sign in again")
    return [
        LoginRefreshed(
            user_id=command.user_id,
            login_id=command.login_id,
            refresh_hash=command.refresh_hash,
            expires_at=command.expires_at,
            rotated_at=deps.clock.now(),
        )
    ]


def decide_end_login(command: EndLogin, state: User, deps: Deps) -> Sequence[Event]:
    login = state.logins.get(command.login_id)
    if login is None or login.ended:
        return []
    return [LoginEnded(user_id=command.user_id, login_id=command.login_id, reason=command.reason)]


def decide_create_key(command: CreateApiKey, state: User, deps: Deps) -> Sequence[Event]:
    if command.user_id != "anonymous":  # the loopback single user has no record
        _live(state, command.user_id)
    if command.key_id in state.keys:
        return []
    return [
        ApiKeyCreated(
            user_id=command.user_id,
            key_id=command.key_id,
            name=_name(command.name),
            prefix=command.prefix,
            key_hash=command.key_hash,
            role=command.role,
        )
    ]


def decide_revoke_key(command: RevokeApiKey, state: User, deps: Deps) -> Sequence[Event]:
    if command.key_id not in state.keys:
        raise Rejection("apikey.not_found", f"no API key {command.key_id}")
    return [ApiKeyRevoked(user_id=command.user_id, key_id=command.key_id)]


def _secret_name(kind: str, name: str) -> None:
    if not ENV_NAME.fullmatch(name):
        raise Rejection(
            "secret.invalid_name",
            f"{name!r}: a {kind} name is letters, digits and underscores, not starting"
            " with a digit",
        )


def decide_set_secret(command: SetSecret, state: User, deps: Deps) -> Sequence[Event]:
    if command.user_id != "anonymous":
        _live(state, command.user_id)
    _secret_name(command.kind, command.name)
    if (command.kind, command.name) not in state.secrets and len(state.secrets) >= MAX_SECRETS:
        raise Rejection("secret.too_many", f"at most {MAX_SECRETS} keys and variables per user")
    return [
        SecretSet(
            user_id=command.user_id, kind=command.kind, name=command.name, sealed=command.sealed
        )
    ]


def decide_clear_secret(command: ClearSecret, state: User, deps: Deps) -> Sequence[Event]:
    if (command.kind, command.name) not in state.secrets:
        raise Rejection("secret.not_found", f"no {command.kind} {command.name} is set")
    return [SecretCleared(user_id=command.user_id, kind=command.kind, name=command.name)]


def decide_defaults(command: SetDefaults, state: User, deps: Deps) -> Sequence[Event]:
    if command.user_id != "anonymous":
        _live(state, command.user_id)
    return [DefaultsSet(user_id=command.user_id, agent=command.agent, defaults=command.defaults)]
