"""``user_info`` v1 (schema ``canvas``): who a trigger's ``user`` is (name, email, role), from
the gateway's log, for the templates' ``user.*``. Nothing secret is kept."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from orrery.events import Envelope, Event, subjects
from orrery.events import gateway as g
from orrery.templating import UserCtx


@dataclass(frozen=True)
class UserInfoProjection:
    name: str = "user_info"
    version: int = 1
    schema: str = "canvas"
    stream: str = subjects.event_stream("gateway")
    subjects: Sequence[str] = (subjects.event_subjects("gateway", "user"),)
    tables: Sequence[str] = ("users",)

    def ddl(self, schema: str) -> Sequence[str]:
        return [
            f"""CREATE TABLE "{schema}".users (
                user_id text PRIMARY KEY,
                name text NOT NULL,
                email text NOT NULL,
                role text NOT NULL
            )"""
        ]

    async def apply(
        self, conn: asyncpg.Connection, schema: str, events: Sequence[Envelope[Event]]
    ) -> None:
        table = f'"{schema}".users'
        for env in events:
            e = env.event
            match e:
                case g.UserCreated():
                    await conn.execute(
                        f"INSERT INTO {table} VALUES ($1, $2, $3, $4) ON CONFLICT (user_id)"
                        " DO UPDATE SET name = $2, email = $3, role = $4",
                        e.user_id, e.name, e.email, e.role,
                    )  # fmt: skip
                case g.UserUpdated() if e.name:
                    await conn.execute(
                        f"UPDATE {table} SET name = $2 WHERE user_id = $1", e.user_id, e.name
                    )
                case g.UserRoleChanged():
                    await conn.execute(
                        f"UPDATE {table} SET role = $2 WHERE user_id = $1", e.user_id, e.role
                    )
                case g.UserDeleted():
                    await conn.execute(f"DELETE FROM {table} WHERE user_id = $1", e.user_id)


async def user_ctx(pool: asyncpg.Pool, user_id: str) -> UserCtx:
    """The template's ``user``: a known user's name, email and role; else the actor as named
    (``anonymous`` on a loopback stack, ``system``)."""
    try:
        row = await pool.fetchrow(
            'SELECT name, email, role FROM "canvas".users WHERE user_id = $1', user_id
        )
    except asyncpg.UndefinedTableError:
        row = None
    if row is None:
        return UserCtx(name=user_id)
    return UserCtx(name=row["name"], email=row["email"], role=row["role"])
