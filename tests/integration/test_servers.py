"""The server fixtures give working, real servers; the server tooling restarts them with their
data and explains failures."""

from __future__ import annotations

import asyncio
import secrets
import socket
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
import redis
import writer_support
from nats.aio.client import Client
from nats.js.api import StorageType

from tessera_ops.processes import start_writer
from tessera_ops.servers import (
    RunningServer,
    ServerStartError,
    create_database,
    drop_database,
    start_nats,
    start_postgres,
)


def _scalar(conn: psycopg.Connection[tuple[object, ...]], query: str) -> object:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# --- PostgreSQL ---


def test_database_url_is_a_fresh_serializable_database(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        assert _scalar(conn, "SHOW transaction_isolation") == "serializable"
        assert _scalar(conn, "SELECT current_database()") == database_url.rsplit("/", 1)[1]
        assert int(str(_scalar(conn, "SHOW max_connections"))) >= 200
        tables = _scalar(
            conn,
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
        )
        assert tables == 0


def test_database_url_works_async(database_url: str) -> None:
    async def query() -> object:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cursor = await conn.execute("SELECT current_setting('transaction_isolation')")
            row = await cursor.fetchone()
            assert row is not None
            return row[0]

    assert asyncio.run(query()) == "serializable"


def test_create_database_isolates_and_recreates_empty(postgres_admin_url: str) -> None:
    token = secrets.token_hex(4)
    name_a, name_b = f"t_iso_a_{token}", f"t_iso_b_{token}"
    url_a = create_database(postgres_admin_url, name_a)
    url_b = create_database(postgres_admin_url, name_b)
    try:
        assert url_a.endswith(f"/{name_a}")
        with psycopg.connect(url_a) as conn:
            conn.execute("CREATE TABLE marker (x int)")
        with psycopg.connect(url_b) as conn:
            assert _scalar(conn, "SELECT to_regclass('marker')") is None
        # A client still connected does not stop re-creation; the new database is empty.
        with psycopg.connect(url_a, autocommit=True) as held:
            assert create_database(postgres_admin_url, name_a) == url_a
            with pytest.raises(psycopg.OperationalError):
                held.execute("SELECT 1")
        with psycopg.connect(url_a) as conn:
            assert _scalar(conn, "SELECT to_regclass('marker')") is None
    finally:
        drop_database(postgres_admin_url, name_a)
        drop_database(postgres_admin_url, name_b)
    with pytest.raises(psycopg.OperationalError, match=name_a):
        psycopg.connect(url_a).close()


@pytest.mark.parametrize(
    "name",
    ["", "Upper", "1st", "a-b", "a" * 64, 'x"; DROP DATABASE postgres; --', "caf\u00e9"],
)
def test_create_database_rejects_unsafe_names(name: str) -> None:
    # Rejected before any connection is attempted: nothing listens at this URL.
    with pytest.raises(ValueError, match="database name"):
        create_database("postgresql://postgres@127.0.0.1:1/postgres", name)


def test_postgres_kill_and_restart_keeps_committed_data(tmp_path: Path) -> None:
    server = start_postgres(tmp_path / "pg")
    try:
        with psycopg.connect(server.url) as conn:
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        old_pid = server.pid
        server.kill()
        assert not server.running
        assert not _accepts_connections(server.port)
        server.restart()
        assert server.pid != old_pid
        with psycopg.connect(server.url) as conn:
            assert _scalar(conn, "SELECT x FROM kept") == 42
    finally:
        server.stop()
    server.stop()  # stopping twice is harmless
    assert not _accepts_connections(server.port)


# --- Redis (Valkey) ---


def test_redis_url_answers(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping() is True
        key = f"test:{secrets.token_hex(4)}"
        assert client.set(key, b"\x00seat\xff", px=10_000) is True
        assert client.get(key) == b"\x00seat\xff"
        assert 0 < int(client.pttl(key)) <= 10_000
    finally:
        client.close()


# --- NATS ---


async def _connect(url: str) -> Client:
    # nats-py's Client directly: ruff counts a bare `import nats` as the repository's nats/ folder.
    nc = Client()
    await nc.connect(url, connect_timeout=5, allow_reconnect=False)
    return nc


async def _publish_and_get(url: str) -> None:
    nc = await _connect(url)
    try:
        js = nc.jetstream()
        token = secrets.token_hex(4)
        stream = f"T_SERVERS_{token}"
        await js.add_stream(name=stream, subjects=[f"t.{token}.>"], storage=StorageType.MEMORY)
        try:
            ack = await js.publish(f"t.{token}.a", b"hello")
            assert ack.stream == stream
            msg = await js.get_msg(stream, ack.seq)
            assert msg.data == b"hello"
            assert msg.subject == f"t.{token}.a"
        finally:
            await js.delete_stream(stream)
    finally:
        await nc.close()


def test_nats_url_has_jetstream(nats_url: str) -> None:
    asyncio.run(_publish_and_get(nats_url))


async def _write_kept(url: str) -> int:
    nc = await _connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="KEPT", subjects=["kept.>"], storage=StorageType.FILE)
        seq = 0
        for i in range(3):
            seq = (await js.publish(f"kept.{i}", f"m{i}".encode())).seq
        return seq
    finally:
        await nc.close()


async def _read_kept(url: str) -> tuple[int, bytes | None]:
    nc = await _connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("KEPT")
        last = await js.get_last_msg("KEPT", "kept.2")
        return info.state.messages, last.data
    finally:
        await nc.close()


def test_fresh_nats_kill_and_restart_keeps_jetstream_data(fresh_nats: RunningServer) -> None:
    assert fresh_nats.url == f"nats://127.0.0.1:{fresh_nats.port}"
    assert asyncio.run(_write_kept(fresh_nats.url)) == 3
    old_pid = fresh_nats.pid
    fresh_nats.kill()
    assert not fresh_nats.running
    assert not _accepts_connections(fresh_nats.port)
    fresh_nats.restart()
    assert fresh_nats.running
    assert fresh_nats.pid != old_pid
    assert asyncio.run(_read_kept(fresh_nats.url)) == (3, b"m2")
    # A graceful stop and a second restart keep it too.
    fresh_nats.stop()
    fresh_nats.restart()
    assert asyncio.run(_read_kept(fresh_nats.url)) == (3, b"m2")


def test_start_failure_quotes_the_server_log(tmp_path: Path) -> None:
    with pytest.raises(ServerStartError, match="nats exited") as info:
        start_nats(tmp_path, config_text="listen: {{ not a config")
    message = str(info.value)
    assert str(tmp_path / "nats.log") in message
    assert "Parse error" in message  # nats-server's own words, from its log


def test_killing_a_service_leaves_no_granian_worker_behind(
    writer_settings: Any, tmp_path: Path
) -> None:
    """SIGKILL reaches Granian's workers too, not just its parent process."""
    service = start_writer(tmp_path / "w", writer_support.writer_env(writer_settings))
    assert service.process is not None
    workers = psutil.Process(service.process.pid).children(recursive=True)
    assert workers, "Granian runs its app in a worker process"
    service.kill()
    _, alive = psutil.wait_procs(workers, timeout=5)
    assert alive == [], f"orphaned workers: {[p.pid for p in alive]}"
