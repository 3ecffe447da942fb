"""``users`` v1 (schema ``gateway``): users, sign-ins, API keys, secrets and agent defaults, from
the gateway's own log. Read by the gateway for every request it authenticates.

``users``: one row per user ever created (``deleted`` set on delete). ``logins``: one row per
sign-in with the digest of its current refresh token. ``api_keys``: the digest, never the key.
``secrets``: sealed values (AES-GCM); the API only says which names are set. ``defaults``: per
user and agent, JSON text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import msgspec
from orrery.events import Envelope, Event, subjects
from orrery.events import gateway as g

_json = msgspec.json.Encoder()


@dataclass(frozen=True)
class UsersProjection:
    name: str = "users"
    version: int = 1
    schema: str = "gateway"
    stream: str = subjects.event_stream("gateway")
    subjects: Sequence[str] = (subjects.event_subjects("gateway", "user"),)
    tables: Sequence[str] = ("users", "logins", "api_keys", "secrets", "defaults")

    def ddl(self, schema: str) -> Sequence[str]:
        q = f'"{schema}"'
        return [
            f"""CREATE TABLE {q}.users (
                user_id text PRIMARY KEY,
                email text NOT NULL,
                name text NOT NULL,
                emoji text NOT NULL,
                role text NOT NULL,
                password_hash text NOT NULL,
                deleted boolean NOT NULL DEFAULT false,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL
            )""",
            f"""CREATE TABLE {q}.logins (
                login_id text PRIMARY KEY,
                user_id text NOT NULL,
                refresh_hash text NOT NULL,
                expires_at timestamptz NOT NULL,
                client text NOT NULL DEFAULT '',
                started_at timestamptz NOT NULL,
                ended text
            )""",
            f"""CREATE TABLE {q}.api_keys (
                key_id text PRIMARY KEY,
                user_id text NOT NULL,
                name text NOT NULL,
                prefix text NOT NULL,
                key_hash text NOT NULL UNIQUE,
                role text,
                created_at timestamptz NOT NULL,
                revoked_at timestamptz
            )""",
            f"""CREATE TABLE {q}.secrets (
                user_id text NOT NULL,
                kind text NOT NULL,
                name text NOT NULL,
                sealed text NOT NULL,
                updated_at timestamptz NOT NULL,
                PRIMARY KEY (user_id, kind, name)
            )""",
            f"""CREATE TABLE {q}.defaults (
                user_id text NOT NULL,
                agent text NOT NULL,
                defaults text NOT NULL,
                PRIMARY KEY (user_id, agent)
            )""",
        ]

    async def apply(  # noqa: PLR0912 - one case per event
        self, conn: asyncpg.Connection, schema: str, events: Sequence[Envelope[Event]]
    ) -> None:
        q = f'"{schema}"'
        for env in events:
            e, at = env.event, env.occurred_at
            match e:
                case g.UserCreated():
                    await conn.execute(
                        f"INSERT INTO {q}.users VALUES ($1, $2, $3, $4, $5, $6, false, $7, $7)"
                        " ON CONFLICT (user_id) DO UPDATE SET email = $2, name = $3, emoji = $4,"
                        " role = $5, password_hash = $6, deleted = false, updated_at = $7",
                        e.user_id, e.email, e.name, e.emoji, e.role, e.password_hash, at,
                    )  # fmt: skip
                case g.UserUpdated():
                    await conn.execute(
                        f"UPDATE {q}.users SET name = CASE WHEN $2 = '' THEN name ELSE $2 END,"
                        " emoji = CASE WHEN $3 = '' THEN emoji ELSE $3 END, updated_at = $4"
                        " WHERE user_id = $1",
                        e.user_id, e.name, e.emoji, at,
                    )  # fmt: skip
                case g.UserRoleChanged():
                    await conn.execute(
                        f"UPDATE {q}.users SET role = $2, updated_at = $3 WHERE user_id = $1",
                        e.user_id, e.role, at,
                    )  # fmt: skip
                case g.UserPasswordChanged():
                    await conn.execute(
                        f"UPDATE {q}.users SET password_hash = $2, updated_at = $3"
                        " WHERE user_id = $1",
                        e.user_id, e.password_hash, at,
                    )  # fmt: skip
                case g.UserDeleted():
                    await conn.execute(
                        f"UPDATE {q}.users SET deleted = true, updated_at = $2 WHERE user_id = $1",
                        e.user_id, at,
                    )  # fmt: skip
                    await conn.execute(
                        f"UPDATE {q}.logins SET ended = 'deleted' WHERE user_id = $1"
                        " AND ended IS NULL",
                        e.user_id,
                    )
                    await conn.execute(
                        f"UPDATE {q}.api_keys SET revoked_at = $2 WHERE user_id = $1"
                        " AND revoked_at IS NULL",
                        e.user_id, at,
                    )  # fmt: skip
                    # a user made again with this email (the same id) starts with none
                    await conn.execute(f"DELETE FROM {q}.secrets WHERE user_id = $1", e.user_id)
                    await conn.execute(f"DELETE FROM {q}.defaults WHERE user_id = $1", e.user_id)
                case g.LoginStarted():
                    await conn.execute(
                        f"INSERT INTO {q}.logins VALUES ($1, $2, $3, $4, $5, $6, NULL)"
                        " ON CONFLICT (login_id) DO NOTHING",
                        e.login_id, e.user_id, e.refresh_hash, e.expires_at, e.client, at,
                    )  # fmt: skip
                case g.LoginRefreshed():
                    await conn.execute(
                        f"UPDATE {q}.logins SET refresh_hash = $2, expires_at = $3"
                        " WHERE login_id = $1",
                        e.login_id, e.refresh_hash, e.expires_at,
                    )  # fmt: skip
                case g.LoginEnded():
                    await conn.execute(
                        f"UPDATE {q}.logins SET ended = $2 WHERE login_id = $1",
                        e.login_id, e.reason,
                    )  # fmt: skip
                case g.ApiKeyCreated():
                    await conn.execute(
                        f"INSERT INTO {q}.api_keys VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)"
                        " ON CONFLICT (key_id) DO NOTHING",
                        e.key_id, e.user_id, e.name, e.prefix, e.key_hash, e.role, at,
                    )  # fmt: skip
                case g.ApiKeyRevoked():
                    await conn.execute(
                        f"UPDATE {q}.api_keys SET revoked_at = $2 WHERE key_id = $1",
                        e.key_id, at,
                    )  # fmt: skip
                case g.SecretSet():
                    await conn.execute(
                        f"INSERT INTO {q}.secrets VALUES ($1, $2, $3, $4, $5)"
                        " ON CONFLICT (user_id, kind, name) DO UPDATE SET sealed = $4,"
                        " updated_at = $5",
                        e.user_id, e.kind, e.name, e.sealed, at,
                    )  # fmt: skip
                case g.SecretCleared():
                    await conn.execute(
                        f"DELETE FROM {q}.secrets WHERE user_id = $1 AND kind = $2 AND name = $3",
                        e.user_id, e.kind, e.name,
                    )  # fmt: skip
                case g.DefaultsSet():
                    await conn.execute(
                        f"INSERT INTO {q}.defaults VALUES ($1, $2, $3)"
                        " ON CONFLICT (user_id, agent) DO UPDATE SET defaults = $3",
                        e.user_id, e.agent, _json.encode(e.defaults).decode(),
                    )  # fmt: skip
