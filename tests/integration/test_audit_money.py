"""`tessera audit`'s money checks (docs/payments.md, the payment saga): each broken invariant,
built by hand in a real PostgreSQL, is reported under its own name; a sound ledger is clean."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from global_writer.db import migrate
from tessera_ops.audit import MONEY_QUERIES, audit


@pytest.fixture
def ledger(database_url: str) -> Iterator[psycopg.Connection[object]]:
    migrate.upgrade(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def event(conn: psycopg.Connection[object]) -> uuid.UUID:
    event_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO events (event_id, name, status, venue, onsale_at, hold_ttl_s,"
        " per_user_limit, home_region) VALUES (%s, 'e', 'scheduled', '{}', now(), 60, 8, 'x')",
        (event_id,),
    )
    return event_id


def sale(
    conn: psycopg.Connection[object],
    event_id: uuid.UUID,
    *,
    order: bool = True,
    payment: str | None = "captured",
    paid_minor: int = 5_000,
    age_s: int = 0,
) -> uuid.UUID:
    """A purchased hold, its confirmed order (for 5,000 EUR minor units) and its payment."""
    hold_id, order_id = uuid.uuid4(), uuid.uuid4()
    conn.execute(
        "INSERT INTO holds (hold_id, event_id, user_id, status, seat_count, seats, expires_at)"
        " VALUES (%s, %s, 'ann', 'purchased', 0, '{}', now())",
        (hold_id, event_id),
    )
    if order:
        conn.execute(
            "INSERT INTO orders (order_id, event_id, user_id, hold_id, seats, amount_minor,"
            " currency, status) VALUES (%s, %s, 'ann', %s, '{}', 5000, 'EUR', 'confirmed')",
            (order_id, event_id, hold_id),
        )
    if payment is not None:
        conn.execute(
            "INSERT INTO payments (payment_id, hold_id, order_id, user_id, provider,"
            " provider_ref, amount_minor, currency, status, created_at)"
            " VALUES (%s, %s, %s, 'ann', 'sandbox', %s, %s, 'EUR', %s,"
            " now() - %s * interval '1 second')",
            (
                uuid.uuid4(),
                hold_id,
                order_id if order else None,
                f"ref-{hold_id}",
                paid_minor,
                payment,
                age_s,
            ),
        )
    return order_id


def found(database_url: str, event_id: uuid.UUID, settle_s: float = 60) -> dict[str, int]:
    report = audit(database_url, str(event_id), settle_s=settle_s)
    return {name: len(report.violations[name]) for name in MONEY_QUERIES}


def test_a_sound_ledger_is_clean(ledger: psycopg.Connection[object], database_url: str) -> None:
    event_id = event(ledger)
    sale(ledger, event_id)  # captured
    sale(ledger, event_id, payment="authorized")  # on its way, within the bound
    sale(ledger, event_id, order=False, payment="voided")  # a checkout that lost its hold
    assert sum(found(database_url, event_id).values()) == 0
    assert audit(database_url, str(event_id), settle_s=60).ok


@pytest.mark.parametrize(
    ("broken", "name"),
    [
        ({"payment": None}, "order_not_paid_once"),
        ({"payment": "authorized", "age_s": 120}, "order_not_paid_once"),
        ({"payment": "voided"}, "order_not_paid_once"),
        ({"paid_minor": 4_999}, "payment_amount_unlike_order"),
        ({"payment": "authorized", "age_s": 120}, "authorization_left_open"),
        ({"order": False, "payment": "void_pending", "age_s": 120}, "authorization_left_open"),
        ({"payment": "capture_failed"}, "capture_failed"),
    ],
)
def test_each_broken_money_invariant_is_reported(
    ledger: psycopg.Connection[object], database_url: str, broken: dict[str, object], name: str
) -> None:
    event_id = event(ledger)
    sale(ledger, event_id)
    sale(ledger, event_id, **broken)  # type: ignore[arg-type]
    assert found(database_url, event_id)[name] == 1
    assert not audit(database_url, str(event_id), settle_s=60).ok


def test_money_taken_without_an_order_is_reported(
    ledger: psycopg.Connection[object], database_url: str
) -> None:
    event_id = event(ledger)
    sale(ledger, event_id, order=False, payment="void_pending")
    ledger.execute("UPDATE payments SET status = 'refund_pending'")  # void found it captured
    assert found(database_url, event_id)["money_taken_without_order"] == 0
    ledger.execute("ALTER TABLE payments DROP CONSTRAINT ck_payments_order")
    ledger.execute("UPDATE payments SET status = 'captured'")  # what the constraint forbids
    assert found(database_url, event_id)["money_taken_without_order"] == 1
