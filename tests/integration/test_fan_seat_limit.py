"""The per-fan seat limit held by the database (docs/adr/0005), against real PostgreSQL.

The writer's memory refuses a hold over the limit before it reaches the database; these tests go
around that check, as a wrong allocator or a second writer would, and show that the database
refuses the excess on its own: the batch statements refuse the offending hold (and only it), and
`fan_seats`' CHECK and foreign key refuse any count over the event's limit, whoever writes it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from litestar.testing import TestClient
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from writer_support import WRITER_ADMIN_KEY, event_body

import tessera_core as tc
from global_writer import batch_sql
from global_writer.actor import Written
from global_writer.app import create_app
from global_writer.db import engine as db_engine
from global_writer.db import migrate
from global_writer.db.retry import sqlstate_of
from global_writer.ops import Batch, HoldOp
from global_writer.runtime import EventRuntime
from tessera_ops.audit import audit

LIMIT = 4
CHECK_VIOLATION = "23514"
FOREIGN_KEY_VIOLATION = "23503"
ROOM = {
    "name": "Room",
    "sections": [{"id": "S", "name": "Stalls", "rows": [{"id": "A", "seats": 20, "rank": 1}]}],
}


# --- the batch statements, called directly (no writer, no memory) ---


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    migrate.upgrade(database_url)
    engine = db_engine.create_engine(database_url, pool_size=2)
    try:
        yield engine
    finally:
        await engine.dispose()


async def new_event(engine: AsyncEngine) -> uuid.UUID:
    event_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO events (event_id, name, status, venue, onsale_at, hold_ttl_s,"
                " per_user_limit, home_region)"
                " VALUES (:event_id, 'e', 'onsale', '{}', now(), 60, :limit, 'x')"
            ),
            {"event_id": event_id, "limit": LIMIT},
        )
    return event_id


async def hold_seats(
    conn: AsyncConnection, event_id: uuid.UUID, holds: list[tuple[uuid.UUID, str, list[int]]]
) -> dict[uuid.UUID, tuple[bool, int, int]]:
    """One HOLD_SEATS batch; per hold: (within the limit, seats its fan had, seats won)."""
    claims = [(hold_id, user, seat) for hold_id, user, seats in holds for seat in seats]
    rows = await conn.execute(
        batch_sql.HOLD_SEATS,
        {
            "event_id": event_id,
            "ttl_s": 60,
            "hold_ids": [hold_id for hold_id, _, _ in holds],
            "hold_users": [user for _, user, _ in holds],
            "seat_counts": [len(seats) for _, _, seats in holds],
            "seat_lists": [" ".join(f"S:A:{s + 1}" for s in seats) for _, _, seats in holds],
            "section_ids": ["S" for _ in claims],
            "seat_indexes": [seat for _, _, seat in claims],
            "claim_holds": [hold_id for hold_id, _, _ in claims],
            "claim_users": [user for _, user, _ in claims],
        },
    )
    result: dict[uuid.UUID, tuple[bool, int, int]] = {}
    for hold_id, within, had, seat_limit, _, section_id, _ in rows:
        assert seat_limit == LIMIT
        _, _, won = result.get(hold_id, (within, had, 0))
        result[hold_id] = (within, had, won + (section_id is not None))
    return result


async def fan_counts(engine: AsyncEngine, event_id: uuid.UUID) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT user_id, seats FROM fan_seats WHERE event_id = :e"), {"e": event_id}
        )
        return {str(user): int(seats) for user, seats in rows.all()}


async def claim_counts(engine: AsyncEngine, event_id: uuid.UUID) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT user_id, count(*) FROM seat_claims WHERE event_id = :e GROUP BY user_id"
            ),
            {"e": event_id},
        )
        return {str(user): int(count) for user, count in rows.all()}


@pytest.mark.anyio
async def test_a_batch_refuses_only_the_hold_over_the_limit(engine: AsyncEngine) -> None:
    event_id = await new_event(engine)
    first, over, bob, fits = (uuid.uuid4() for _ in range(4))
    async with engine.begin() as conn:
        answers = await hold_seats(
            conn,
            event_id,
            [(first, "ann", [0, 1, 2]), (over, "ann", [3, 4]), (bob, "bob", [5, 6])],
        )
    assert answers == {first: (True, 0, 3), over: (False, 3, 0), bob: (True, 0, 2)}
    assert await fan_counts(engine, event_id) == {"ann": 3, "bob": 2}
    assert await claim_counts(engine, event_id) == {"ann": 3, "bob": 2}
    async with engine.connect() as conn:
        refused = await conn.scalar(
            sa.text("SELECT count(*) FROM holds WHERE hold_id = :h"), {"h": over}
        )
    assert refused == 0
    # What still fits is taken; one seat more is not, in a later batch as in the same one.
    async with engine.begin() as conn:
        answers = await hold_seats(conn, event_id, [(fits, "ann", [7])])
    assert answers == {fits: (True, 3, 1)}
    async with engine.begin() as conn:
        answers = await hold_seats(conn, event_id, [(uuid.uuid4(), "ann", [8])])
    assert list(answers.values()) == [(False, 4, 0)]
    assert await fan_counts(engine, event_id) == {"ann": 4, "bob": 2}


@pytest.mark.anyio
async def test_releases_and_lost_claims_leave_the_count(engine: AsyncEngine) -> None:
    event_id = await new_event(engine)
    held, lost = uuid.uuid4(), uuid.uuid4()
    async with engine.begin() as conn:
        await hold_seats(conn, event_id, [(held, "ann", [0, 1]), (lost, "ann", [2, 3])])
    async with engine.begin() as conn:
        freed = await conn.execute(
            batch_sql.RELEASE_HOLDS,
            {
                "event_id": event_id,
                "hold_ids": [held],
                "reasons": ["released"],
                "user_ids": ["ann"],
            },
        )
        assert len(freed.all()) == 2
    assert await fan_counts(engine, event_id) == {"ann": 2}
    async with engine.begin() as conn:
        await conn.execute(batch_sql.DROP_LOST_CLAIMS, {"hold_ids": [lost]})
        await conn.execute(batch_sql.DROP_LOST_HOLDS, {"hold_ids": [lost]})
    assert await fan_counts(engine, event_id) == {"ann": 0}
    assert await claim_counts(engine, event_id) == {}
    # The seats freed count again for their fan: the whole limit is theirs once more.
    async with engine.begin() as conn:
        answers = await hold_seats(conn, event_id, [(uuid.uuid4(), "ann", [0, 1, 2, 3])])
    assert [within for within, _, _ in answers.values()] == [True]


@pytest.mark.anyio
async def test_no_writer_can_count_past_the_limit(engine: AsyncEngine) -> None:
    """Whatever writes `fan_seats` (a second writer with its own statements, an operator): the
    CHECK refuses a count over the copied limit, the foreign key a copy that is not the event's."""
    event_id = await new_event(engine)
    async with engine.begin() as conn:
        await hold_seats(conn, event_id, [(uuid.uuid4(), "ann", [0, 1, 2])])
    attempts = {
        CHECK_VIOLATION: "UPDATE fan_seats SET seats = seats + 2 WHERE event_id = :e",
        FOREIGN_KEY_VIOLATION: "INSERT INTO fan_seats (event_id, user_id, seats, seat_limit)"
        " VALUES (:e, 'bob', 9, 10)",
    }
    for sqlstate, statement in attempts.items():
        with pytest.raises(sa.exc.IntegrityError) as refused:
            async with engine.begin() as conn:
                await conn.execute(sa.text(statement), {"e": event_id})
        assert sqlstate_of(refused.value) == sqlstate
    assert await fan_counts(engine, event_id) == {"ann": 3}


def test_the_migration_counts_existing_claims(database_url: str) -> None:
    """0004 on a database with claims from before it: each fan's count is their claims."""
    migrate.upgrade(database_url, "0003")
    event_id, hold_id = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO events (event_id, name, status, venue, onsale_at, hold_ttl_s,"
            " per_user_limit, home_region) VALUES (%s, 'e', 'onsale', '{}', now(), 60, 4, 'x')",
            (event_id,),
        )
        conn.execute(
            "INSERT INTO holds (hold_id, event_id, user_id, status, seat_count, seats,"
            " expires_at) VALUES (%s, %s, 'ann', 'active', 3, '{}', now())",
            (hold_id, event_id),
        )
        for index, state in enumerate(["held", "held", "sold"]):
            conn.execute(
                "INSERT INTO seat_claims (event_id, section_id, seat_index, hold_id, user_id,"
                " state) VALUES (%s, 'S', %s, %s, 'ann', %s)",
                (event_id, index, hold_id, state),
            )
    migrate.upgrade(database_url, "0004")
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT event_id, user_id, seats, seat_limit FROM fan_seats").fetchall()
    assert rows == [(event_id, "ann", 3, 4)]


# --- the writer, whose memory is made to let too much through ---


def test_the_database_refuses_what_a_wrong_allocator_lets_through(
    writer_settings: Any, database_url: str
) -> None:
    """The event's runtime is given a limit far above the event's: memory now lets every hold
    through, as a wrong allocator would. The database refuses the one over the real limit with
    the same 403 `limit_exceeded` memory gives, and the rest of its batch commits."""
    app = create_app(writer_settings)
    with TestClient(app) as client:
        response = client.post(
            "/v1/admin/events",
            headers={"X-Admin-Key": WRITER_ADMIN_KEY},
            json=event_body(ROOM, per_user_limit=LIMIT),
        )
        assert response.status_code == 201, response.text
        event_id = uuid.UUID(response.json()["event_id"])
        batches: list[Batch] = []

        async def hold_together() -> list[Any]:
            handle = await app.state.writer.events.handle(event_id)
            runtime: EventRuntime = handle.runtime
            runtime.per_user_limit = 1_000

            hook = handle.actor.on_commit

            def record(runtime: EventRuntime, written: Written, batch: Batch) -> None:
                batches.append(batch)
                if hook is not None:
                    hook(runtime, written, batch)

            handle.actor.on_commit = record
            ops = [
                HoldOp(user_id="ann", seats=None, quantity=3),
                HoldOp(user_id="ann", seats=None, quantity=3),
                HoldOp(user_id="bob", seats=None, quantity=2),
            ]
            # Queued before the actor runs again: one batch.
            return list(await asyncio.gather(*(handle.actor.submit(op) for op in ops)))

        replies = client.blocking_portal.call(hold_together)
        assert len(batches) == 1 and len(batches[0].holds) == 3
        assert [reply.status for reply in replies] == [201, 403, 201]
        error = replies[1].body.decode()
        assert '"code":"limit_exceeded"' in error and f'"limit":{LIMIT}' in error, error
        assert '"held_or_bought":3' in error, error
        # Memory holds what was committed: the seats picked for the refused hold are free again.
        snapshot = client.get(f"/v1/events/{event_id}/sections/S/snapshot")
        assert tc.SeatMap.decode(snapshot.content).available_count == 20 - 5
    with psycopg.connect(database_url) as conn:
        counts = conn.execute(
            "SELECT user_id, seats FROM fan_seats WHERE event_id = %s ORDER BY 1", (event_id,)
        ).fetchall()
        claims = conn.execute(
            "SELECT count(*) FROM seat_claims WHERE event_id = %s", (event_id,)
        ).fetchone()
    assert counts == [("ann", 3), ("bob", 2)]
    assert claims == (5,)
    report = audit(database_url)
    assert report.ok, report.summary()
