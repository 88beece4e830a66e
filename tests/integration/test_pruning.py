"""The writer's pruner against real PostgreSQL: what is due goes, in bounded statements; what is
live stays; a pruned Idempotency-Key is a fresh key."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine
from writer_support import WRITER_ADMIN_KEY, WriterApi, event_body

import tessera
from global_writer.app import create_app
from global_writer.db import engine as db_engine
from global_writer.db import migrate
from global_writer.metrics import PruningMetrics
from global_writer.pruning import Pruner
from regional.friends import FriendsIndex
from tessera import contracts, limits

ROOM = {
    "name": "Room",
    "sections": [{"id": "S", "name": "Stalls", "rows": [{"id": "A", "seats": 10, "rank": 1}]}],
}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    migrate.upgrade(database_url)
    engine = db_engine.create_engine(database_url, pool_size=2)
    try:
        yield engine.execution_options(isolation_level="AUTOCOMMIT")
    finally:
        await engine.dispose()


def add_keys(conn: psycopg.Connection[Any], prefix: str, count: int, expires_in_s: int) -> None:
    for n in range(count):
        conn.execute(
            "INSERT INTO idempotency_keys (user_id, key, request_hash, status, expires_at)"
            " VALUES ('ann', %s, '\\x00', 'done', now() + %s * interval '1 second')",
            (f"{prefix}-{n}", expires_in_s),
        )


def add_outbox(
    conn: psycopg.Connection[Any], prefix: str, count: int, sent_ago_s: int | None
) -> None:
    for n in range(count):
        conn.execute(
            "INSERT INTO outbox (subject, msg_id, headers, payload, published_at)"
            " VALUES ('s', %s, '{}', '\\x00',"
            " CASE WHEN %s::int IS NULL THEN NULL ELSE now() - %s * interval '1 second' END)",
            (f"{prefix}-{n}", sent_ago_s, sent_ago_s),
        )


def remaining(database_url: str) -> tuple[list[str], list[str]]:
    with psycopg.connect(database_url) as conn:
        keys = conn.execute("SELECT key FROM idempotency_keys ORDER BY key").fetchall()
        sent = conn.execute("SELECT msg_id FROM outbox ORDER BY msg_id").fetchall()
    return [str(k) for (k,) in keys], [str(m) for (m,) in sent]


@pytest.mark.anyio
async def test_due_rows_go_in_bounded_rounds_and_live_ones_stay(
    engine: AsyncEngine, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        add_keys(conn, "expired", 5, -1)
        add_keys(conn, "live", 2, 3_600)
        add_outbox(conn, "old", 5, 7_200)
        add_outbox(conn, "recent", 2, 60)
        add_outbox(conn, "unsent", 2, None)
        # An unsent row as old as the oldest sent ones: still owed to the stream.
        conn.execute("UPDATE outbox SET created_at = now() - interval '3 hours'")
    registry = CollectorRegistry()
    pruner = Pruner(
        engine, PruningMetrics(registry), rows_max=2, batches_max=2, outbox_retention_s=3_600
    )
    # Two statements of two rows per table per round: four of five go now, the last next round.
    assert await pruner.prune_once() == {"idempotency_keys": 4, "outbox": 4}
    assert await pruner.prune_once() == {"idempotency_keys": 1, "outbox": 1}
    assert await pruner.prune_once() == {"idempotency_keys": 0, "outbox": 0}
    keys, outbox = remaining(database_url)
    assert keys == ["live-0", "live-1"]
    assert outbox == ["recent-0", "recent-1", "unsent-0", "unsent-1"]
    for table in ("idempotency_keys", "outbox"):
        assert registry.get_sample_value("tessera_rows_pruned_total", {"table": table}) == 5


def test_a_pruned_key_is_a_fresh_key(writer_settings: Any, database_url: str) -> None:
    """A key past its 24 h is pruned by the running writer's pruner; the same key then starts a
    new request (201 for another body) instead of replaying or refusing, and `/metrics` counts
    the row."""
    app = create_app(writer_settings)
    api = WriterApi(None, None)  # type: ignore[arg-type]
    with TestClient(app) as client:
        created = client.post(
            "/v1/admin/events",
            headers={"X-Admin-Key": WRITER_ADMIN_KEY},
            json=event_body(ROOM, per_user_limit=4),
        )
        assert created.status_code == 201, created.text
        holds = f"/v1/events/{created.json()['event_id']}/holds"
        key = f"k-{uuid.uuid4().hex}"
        first = client.post(holds, headers=api.headers("ann", key), json={"seats": ["S:A:1"]})
        assert first.status_code == 201, first.text
        other = client.post(holds, headers=api.headers("ann", key), json={"seats": ["S:A:2"]})
        assert other.status_code == 422, other.text  # the same live key with another body
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE idempotency_keys SET expires_at = now() - interval '1 second'"
                " WHERE key = %s",
                (key,),
            )
        pruned = client.blocking_portal.call(app.state.writer.pruner.prune_once)
        assert pruned["idempotency_keys"] == 1
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT 1 FROM idempotency_keys WHERE key = %s", (key,)).fetchone()
        assert row is None
        again = client.post(holds, headers=api.headers("ann", key), json={"seats": ["S:A:2"]})
        assert again.status_code == 201, again.text
        assert again.json()["hold_id"] != first.json()["hold_id"]
        metrics = client.get("/metrics").text
        assert 'tessera_rows_pruned_total{table="idempotency_keys"} 1.0' in metrics


def test_the_friends_index_forgets_orders_past_the_feeds_retention() -> None:
    """A read node's friends index holds what the region's feed still has, however long the node
    has run: older orders go as new ones arrive, counted in `tessera_rows_pruned_total`."""
    mirror = Path(tessera.__file__).parent / "resources/nats/jetstream/regional/SEATS.mirror.json"
    assert json.loads(mirror.read_text())["max_age_s"] == limits.friends_order_retention_s
    registry = CollectorRegistry()
    index = FriendsIndex(registry, retention_s=3_600)
    for user, friend in (("ann", "bob"), ("bob", "ann")):
        index.set_user(contracts.UserRecord(user_id=user, share_purchases=True, friends=[friend]))
    event_id, now = uuid.uuid4(), datetime.now(UTC)

    def order(seat: str, age: timedelta) -> contracts.OrderEvent:
        return contracts.OrderEvent(
            order_id=uuid.uuid4(),
            event_id=event_id,
            user_id="bob",
            seats=[seat],
            share_purchases=True,
            created_at=now - age,
        )

    old = order("S:A:1", timedelta(hours=2))
    index.add_order(old, now=old.created_at)
    assert index.friends_at(event_id, "ann") == [{"user_id": "bob", "seats": ["S:A:1"]}]
    index.add_order(order("S:A:2", timedelta(minutes=1)), now=now)
    assert index.friends_at(event_id, "ann") == [{"user_id": "bob", "seats": ["S:A:2"]}]
    assert old.order_id not in index.orders
    assert registry.get_sample_value("tessera_rows_pruned_total", {"table": "friends_orders"}) == 1
    # A duplicate of a live order is still recognised. Orders go in arrival order: one that
    # arrives late and old waits behind newer ones, then goes with them; the last order going
    # empties the event.
    latest = order("S:A:3", timedelta(0))
    index.add_order(latest, now=now)
    index.add_order(latest, now=now)
    index.add_order(order("S:A:4", timedelta(hours=3)), now=now)
    seats = ["S:A:2", "S:A:3", "S:A:4"]
    assert index.friends_at(event_id, "ann") == [{"user_id": "bob", "seats": seats}]
    assert len(index.orders) == 3
    assert index.prune(now + timedelta(hours=2)) == 3
    assert index.friends_at(event_id, "ann") == [] and not index.purchases and not index.orders
    assert registry.get_sample_value("tessera_rows_pruned_total", {"table": "friends_orders"}) == 4
