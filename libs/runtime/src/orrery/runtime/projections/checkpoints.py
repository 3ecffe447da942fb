"""The checkpoint table of a schema: one row per projection, updated in the same transaction as
the projection's rows, so a redelivered event is recognised and skipped."""

from __future__ import annotations

import asyncpg
from orrery.runtime.projections.base import Projection

TABLE = "orrery_projections"


def q(schema: str, table: str) -> str:
    """A quoted, schema-qualified name. Names come from code, never from users."""
    return f'"{schema}"."{table}"'


async def ensure(conn: asyncpg.Connection, projection: Projection) -> int | None:
    """Create the schema, checkpoint table and tables if missing. Returns the stored version of
    the projection (None if it never ran)."""
    schema = projection.schema
    async with conn.transaction():
        # Two projections of one schema starting together would race on CREATE ... IF NOT
        # EXISTS (PostgreSQL then raises a unique violation on its catalog): one at a time.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"orrery.ddl.{schema}")
        return await _ensure(conn, projection)


async def _ensure(conn: asyncpg.Connection, projection: Projection) -> int | None:
    schema = projection.schema
    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    await conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {q(schema, TABLE)} (
            name text PRIMARY KEY,
            version integer NOT NULL,
            stream text NOT NULL,
            last_seq bigint NOT NULL DEFAULT 0,
            rebuilt_at timestamptz,
            updated_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    stored = await conn.fetchval(
        f"SELECT version FROM {q(schema, TABLE)} WHERE name = $1", projection.name
    )
    if stored is None:
        async with conn.transaction():
            for statement in projection.ddl(schema):
                await conn.execute(statement)
            await conn.execute(
                f"INSERT INTO {q(schema, TABLE)} (name, version, stream) VALUES ($1, $2, $3)"
                " ON CONFLICT (name) DO NOTHING",
                projection.name,
                projection.version,
                projection.stream,
            )
    return None if stored is None else int(stored)


async def lock_and_read(conn: asyncpg.Connection, projection: Projection) -> int:
    """Inside a transaction: lock the projection's row and return its last applied sequence.
    A rebuild's switch takes the same lock, so the two never interleave."""
    value = await conn.fetchval(
        f"SELECT last_seq FROM {q(projection.schema, TABLE)} WHERE name = $1 FOR UPDATE",
        projection.name,
    )
    if value is None:
        raise LookupError(f"projection {projection.schema}.{projection.name} is not set up")
    return int(value)


async def advance(conn: asyncpg.Connection, projection: Projection, last_seq: int) -> None:
    await conn.execute(
        f"UPDATE {q(projection.schema, TABLE)} SET last_seq = $2, updated_at = now()"
        " WHERE name = $1",
        projection.name,
        last_seq,
    )


async def read(conn: asyncpg.Connection, projection: Projection) -> tuple[int, int] | None:
    """(version, last_seq) without locking, or None if the projection never ran."""
    try:
        row = await conn.fetchrow(
            f"SELECT version, last_seq FROM {q(projection.schema, TABLE)} WHERE name = $1",
            projection.name,
        )
    except asyncpg.UndefinedTableError:
        return None
    return None if row is None else (int(row["version"]), int(row["last_seq"]))
