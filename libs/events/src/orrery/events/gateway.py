"""Gateway context: users, their sign-ins, personal API keys, encrypted secrets and defaults.

One subject per user, ``gateway.evt.user.<user_id>``, and the user id is derived from the email
(``user_id_for``), so two creates of the same email meet in one aggregate and the second is
refused: no read-model race decides uniqueness.

Nothing secret is ever in an event in the clear: passwords are argon2 hashes, API keys and
refresh tokens SHA-256 digests (they are long random strings, so a fast digest is enough), and a
user's provider keys and environment variables are sealed with AES-GCM under the deployment's
master key (``sealed``: base64 of nonce + ciphertext, the user id and name as associated data).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar, Literal

import msgspec
from orrery.events.base import Command, Event
from orrery.events.registry import Registry

Role = Literal["viewer", "member", "admin", "owner"]
ROLES: tuple[Role, ...] = ("viewer", "member", "admin", "owner")
SecretKind = Literal["api_key", "env"]
LoginEnd = Literal["logout", "reused", "revoked"]

_USERS = uuid.UUID("5d1c3c3e-6a43-4e55-9b0e-0c7a1f2a9e10")


def user_id_for(email: str) -> str:
    """The one id an email gets (case-insensitive)."""
    return str(uuid.uuid5(_USERS, email.strip().lower()))


def rank(role: str) -> int:
    """viewer 0 < member 1 < admin 2 < owner 3; anything else -1."""
    return ROLES.index(role) if role in ROLES else -1


class AgentDefaults(msgspec.Struct, frozen=True, kw_only=True):
    """A user's defaults for new sessions of one agent (``None``: the agent's own default)."""

    model: str | None = None
    permission_mode: str | None = None
    thinking: str | None = None


# --- events ---------------------------------------------------------------------------------


class UserCreated(Event, tag="gateway.UserCreated", frozen=True):
    user_id: str
    email: str
    name: str
    role: Role
    password_hash: str
    emoji: str = "🙂"


class UserUpdated(Event, tag="gateway.UserUpdated", frozen=True):
    user_id: str
    name: str
    emoji: str


class UserRoleChanged(Event, tag="gateway.UserRoleChanged", frozen=True):
    user_id: str
    role: Role


class UserPasswordChanged(Event, tag="gateway.UserPasswordChanged", frozen=True):
    user_id: str
    password_hash: str


class UserDeleted(Event, tag="gateway.UserDeleted", frozen=True):
    user_id: str


class LoginStarted(Event, tag="gateway.LoginStarted", frozen=True):
    """A sign-in: a refresh-token family. ``refresh_hash`` is the digest of its current token."""

    user_id: str
    login_id: str
    refresh_hash: str
    expires_at: datetime
    client: str = ""


class LoginRefreshed(Event, tag="gateway.LoginRefreshed", frozen=True):
    """The refresh token was used and replaced (rotation): the old one is spent."""

    user_id: str
    login_id: str
    refresh_hash: str
    expires_at: datetime
    rotated_at: datetime | None = None  # when: a racing refresh within seconds is not a theft


class LoginEnded(Event, tag="gateway.LoginEnded", frozen=True):
    """``reused``: a spent refresh token was presented again, so the whole family ends (one of
    the two holders is not the user)."""

    user_id: str
    login_id: str
    reason: LoginEnd


class ApiKeyCreated(Event, tag="gateway.ApiKeyCreated", frozen=True):
    user_id: str
    key_id: str
    name: str
    prefix: str
    key_hash: str
    role: Role | None = None  # at most this role (None: the user's)


class ApiKeyRevoked(Event, tag="gateway.ApiKeyRevoked", frozen=True):
    user_id: str
    key_id: str


class SecretSet(Event, tag="gateway.SecretSet", frozen=True):
    user_id: str
    kind: SecretKind
    name: str
    sealed: str


class SecretCleared(Event, tag="gateway.SecretCleared", frozen=True):
    user_id: str
    kind: SecretKind
    name: str


class DefaultsSet(Event, tag="gateway.DefaultsSet", frozen=True):
    user_id: str
    agent: str
    defaults: AgentDefaults


# --- commands -------------------------------------------------------------------------------


class CreateUser(Command, tag="gateway.CreateUser", frozen=True):
    CONTEXT: ClassVar[str] = "gateway"
    user_id: str
    email: str
    name: str
    role: Role
    password_hash: str
    emoji: str = "🙂"


class UpdateUser(Command, tag="gateway.UpdateUser", frozen=True):
    CONTEXT: ClassVar[str] = "gateway"
    user_id: str
    name: str | None = None
    emoji: str | None = None


class ChangeRole(Command, tag="gateway.ChangeRole", frozen=True):
    CONTEXT: ClassVar[str] = "gateway"
    user_id: str
    role: Role


class ChangePassword(Command, tag="gateway.ChangePassword", frozen=True):
    """Also ends the user's sign-ins but ``keep_login`` (the one changing it)."""

    CONTEXT: ClassVar[str] = "gateway"
    user_id: str
    password_hash: str
    keep_login: str | None = None


class DeleteUser(Command, tag="gateway.DeleteUser", frozen=True):
    CONTEXT: ClassVar[str] = "gateway"
    user_id: str


class StartLogin(Command, tag="gateway.StartLogin", frozen=True):
    CONTEXT: ClassVar[str] = "gateway"
    user_id: str
    login_id: str
    refresh_hash: str
    expires_at: datetime
    client: str = ""


class RefreshLogin(Command, tag="gateway.RefreshLogin", frozen=True):
    """Rotate: ``presented_hash`` must be the family's current token; a spent one ends the
    family (``LoginEnded(reused)``) and the command is answered with that event."""

    CONTEXT: ClassVar[str] = "gateway"
    user_id: str
    login_id: str
    presented_hash: str
    refresh_hash: str
    expires_at: datetime


class EndLogin(Command, tag="gateway.EndLogin", frozen=True):
    CONTEXT: ClassVar[str] = "gateway"
    user_id: str
    login_id: str
    reason: LoginEnd = "logout"


class CreateApiKey(Command, tag="gateway.CreateApiKey", frozen=True):
    CONTEXT: ClassVar[str] = "gateway"
    user_id: str
    key_id: str
    name: str
    prefix: str
    key_hash: str
    role: Role | None = None


class RevokeApiKey(Command, tag="gateway.RevokeApiKey", frozen=True):
    CONTEXT: ClassVar[str] = "gateway"
    user_id: str
    key_id: str


class SetSecret(Command, tag="gateway.SetSecret", frozen=True):
    CONTEXT: ClassVar[str] = "gateway"
    user_id: str
    kind: SecretKind
    name: str
    sealed: str


class ClearSecret(Command, tag="gateway.ClearSecret", frozen=True):
    CONTEXT: ClassVar[str] = "gateway"
    user_id: str
    kind: SecretKind
    name: str


class SetDefaults(Command, tag="gateway.SetDefaults", frozen=True):
    CONTEXT: ClassVar[str] = "gateway"
    user_id: str
    agent: str
    defaults: AgentDefaults


CLASSES: tuple[type[Event] | type[Command], ...] = (
    UserCreated,
    UserUpdated,
    UserRoleChanged,
    UserPasswordChanged,
    UserDeleted,
    LoginStarted,
    LoginRefreshed,
    LoginEnded,
    ApiKeyCreated,
    ApiKeyRevoked,
    SecretSet,
    SecretCleared,
    DefaultsSet,
    CreateUser,
    UpdateUser,
    ChangeRole,
    ChangePassword,
    DeleteUser,
    StartLogin,
    RefreshLogin,
    EndLogin,
    CreateApiKey,
    RevokeApiKey,
    SetSecret,
    ClearSecret,
    SetDefaults,
)


def register_upcasters(registry: Registry) -> None:
    """No upcasters yet: every gateway event is at version 1."""
