"""Payment rows as a checkout's batch writes them, for the tests of what acts on payments later
(the settler, the reconciler, the webhook): one minimal event and hold under each."""

from __future__ import annotations

import uuid

import psycopg

from global_writer.payments import Authorization


def record_payment(
    database_url: str,
    authorization: Authorization,
    status: str,
    *,
    with_order: bool,
    due_in_s: float | None = None,
) -> uuid.UUID:
    """The payment's id. `due_in_s`: its next settler attempt that far away (a settler backing
    off after failures); None leaves the column's default (due now)."""
    event_id, hold_id, payment_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    order_id = uuid.uuid4() if with_order else None
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO events (event_id, name, status, venue, onsale_at, hold_ttl_s,"
            " per_user_limit, home_region) VALUES (%s, 'e', 'scheduled', '{}', now(), 60, 8, 'x')",
            (event_id,),
        )
        conn.execute(
            "INSERT INTO holds (hold_id, event_id, user_id, status, seat_count, seats, expires_at)"
            " VALUES (%s, %s, 'ann', 'purchased', 1, '{S:A:1}', now())",
            (hold_id, event_id),
        )
        conn.execute(
            "INSERT INTO payments (payment_id, hold_id, order_id, user_id, provider, provider_ref,"
            " amount_minor, currency, status) VALUES (%s, %s, %s, 'ann', %s, %s, %s, %s, %s)",
            (
                payment_id,
                hold_id,
                order_id,
                authorization.provider,
                authorization.id,
                authorization.amount_minor,
                authorization.currency,
                status,
            ),
        )
        if due_in_s is not None:
            conn.execute(
                "UPDATE payments SET next_attempt_at = now() + %s * interval '1 second'"
                " WHERE payment_id = %s",
                (due_in_s, payment_id),
            )
    return payment_id
