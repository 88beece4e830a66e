"""Orders over time against a real writer (PostgreSQL, Valkey, NATS, the sandbox provider): a
fan's orders page by page, and an organiser's refund of one order (docs/api.md, docs/payments.md
refunds): money back through the provider, seats back on sale, tickets refunded, audit clean."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from writer_support import WRITER_ADMIN_KEY, WriterApi, event_body

from global_writer.db import migrate
from tessera import limits, webhooks
from tessera_ops.audit import MONEY_QUERIES, QUERIES, AuditTarget, audit, audit_event

pytestmark = pytest.mark.anyio

ADMIN = {"X-Admin-Key": WRITER_ADMIN_KEY}
SETTLED_WITHIN_S = 20.0


async def buy(api: WriterApi, event_id: str, user: str, seats: list[str], n: int) -> Any:
    hold = await api.hold(event_id, user, {"seats": seats}, key=f"hold-{user}-{n}")
    assert hold.status_code == 201, hold.text
    order = await api.order(user, hold.json()["hold_id"], "tok_approve", key=f"order-{user}-{n}")
    assert order.status_code == 201, order.text
    return order.json()


async def my_orders(api: WriterApi, user: str, **params: Any) -> Any:
    return await api.client.get("/v1/me/orders", headers=api.headers(user), params=params)


def payment_status(database_url: str, order_id: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT status FROM payments WHERE order_id = %s", (order_id,))
        return [row[0] for row in rows.fetchall()]


async def wait_for_payment(database_url: str, order_id: str, status: str) -> None:
    deadline = time.monotonic() + SETTLED_WITHIN_S
    while payment_status(database_url, order_id) != [status]:
        assert time.monotonic() < deadline, payment_status(database_url, order_id)
        await asyncio.sleep(0.1)


async def test_my_orders_come_newest_first_a_page_at_a_time(writer_api: WriterApi) -> None:
    api = writer_api
    event_id = await api.create_event()
    bought = [
        (await buy(api, event_id, "ann", [f"ORCH:A:{100 + n}"], n))["order_id"] for n in range(1, 6)
    ]
    await buy(api, event_id, "bob", ["ORCH:B:101"], 1)

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        answer = await my_orders(api, "ann", **params)
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "private, no-store"
        page = answer.json()
        assert len(page["orders"]) <= 2
        seen += [order["order_id"] for order in page["orders"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    # Every order once, newest first (orders of one batch share created_at: order_id breaks it).
    assert sorted(seen) == sorted(bought)
    everything = (await my_orders(api, "ann")).json()
    assert [order["order_id"] for order in everything["orders"]] == seen
    assert everything["next_cursor"] is None
    first = everything["orders"][0]
    assert first["status"] == "confirmed" and first["refunded_at"] is None
    assert first["event_id"] == event_id and len(first["seats"]) == 1
    stamps = [(o["created_at"], o["order_id"]) for o in everything["orders"]]
    assert stamps == sorted(stamps, reverse=True)

    only_bob = (await my_orders(api, "bob")).json()["orders"]
    assert [order["seats"] for order in only_bob] == [["ORCH:B:101"]]
    assert (await my_orders(api, "nobody")).json() == {"orders": [], "next_cursor": None}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": limits.orders_page_size_max + 1},
        {"limit": "ten"},
        {"cursor": "not-a-cursor"},
        {"cursor": "W10"},  # base64url of "[]": JSON, but no position
        {"cursor": "x" * (limits.orders_cursor_chars_max + 1)},
    ],
)
async def test_bad_paging_is_a_422(writer_api: WriterApi, params: dict[str, Any]) -> None:
    answer = await my_orders(writer_api, "ann", **params)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "invalid_request"


async def test_my_orders_need_a_token(writer_api: WriterApi) -> None:
    answer = await writer_api.client.get("/v1/me/orders")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"


async def test_an_organiser_refund_returns_money_seats_and_voids_tickets(
    writer_api: WriterApi, writer_process: Any, database_url: str
) -> None:
    api = writer_api
    event_id = await api.create_event(per_user_limit=2)
    seats = ["ORCH:A:101", "ORCH:A:102"]
    order = await buy(api, event_id, "ann", seats, 1)
    kept = await buy(api, event_id, "cat", ["ORCH:A:103"], 1)
    order_id = order["order_id"]
    await wait_for_payment(database_url, order_id, "captured")
    path = f"/v1/admin/orders/{order_id}/refund"

    assert (await api.client.post(path)).status_code == 401
    wrong = await api.client.post(path, headers={"X-Admin-Key": "k" * 40})
    assert wrong.status_code == 401
    unknown = await api.client.post(f"/v1/admin/orders/{uuid.uuid4()}/refund", headers=ADMIN)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    malformed = await api.client.post("/v1/admin/orders/not-an-id/refund", headers=ADMIN)
    assert malformed.status_code == 404

    refunded = await api.client.post(path, headers=ADMIN)
    assert refunded.status_code == 200, refunded.text
    body = refunded.json()
    assert body["status"] == "refunded" and body["refunded_at"] is not None
    assert body["payment_status"] in ("refund_pending", "refunded")
    # The settler refunds it at the provider (key `refund-{payment_id}`) after the answer.
    await wait_for_payment(database_url, order_id, "refunded")

    # The seats are on sale again, and the fan's count is free again (limit 2, had 2).
    again = await api.hold(event_id, "bob", {"seats": seats}, key="hold-bob")
    assert again.status_code == 201, again.text
    more = await api.hold(
        event_id, "ann", {"seats": ["ORCH:A:104", "ORCH:A:105"]}, key="hold-ann-2"
    )
    assert more.status_code == 201, more.text
    tickets = await api.client.get(f"/v1/me/orders/{order_id}/tickets", headers=api.headers("ann"))
    assert {t["status"] for t in tickets.json()["tickets"]} == {"refunded"}

    # A second refund changes nothing and answers the same; another order is untouched.
    repeat = await api.client.post(path, headers=ADMIN)
    assert repeat.status_code == 200
    assert repeat.json() | {"payment_status": None} == body | {"payment_status": None}
    assert payment_status(database_url, order_id) == ["refunded"]
    listed = (await my_orders(api, "ann")).json()["orders"]
    assert [o["status"] for o in listed if o["order_id"] == order_id] == ["refunded"]
    assert (await my_orders(api, "cat")).json()["orders"][0]["order_id"] == kept["order_id"]

    report = await audit_event(
        AuditTarget(writer_process.url, {}, database_url), event_id, converge_s=5.0
    )
    assert report.ok, report.details()

    # Integrators hear of it once: `order.refunded` in the refund's own transaction's outbox.
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT subject, payload FROM outbox WHERE msg_id = %s", (f"order.refunded.{order_id}",)
        ).fetchall()
    assert len(rows) == 1 and rows[0][0] == webhooks.events_subject(event_id)
    event = webhooks.webhook_event_decoder.decode(rows[0][1])
    assert event.type == "order.refunded"
    assert event.data | {"refunded_at": None} == {
        "order_id": order_id,
        "event_id": event_id,
        "user_id": "ann",
        "seats": seats,
        "refunded_at": None,
    }


async def test_a_refund_before_capture_voids_the_authorization(
    writer_api: WriterApi, database_url: str
) -> None:
    """Refunded as soon as it is bought: whether the settler captured it first or not, the
    payment ends given back (voided before capture, or captured then refunded)."""
    api = writer_api
    event_id = await api.create_event()
    order = await buy(api, event_id, "dan", ["ORCH:C:101"], 1)
    answer = await api.client.post(f"/v1/admin/orders/{order['order_id']}/refund", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + SETTLED_WITHIN_S
    while payment_status(database_url, order["order_id"]) not in (["voided"], ["refunded"]):
        assert time.monotonic() < deadline, payment_status(database_url, order["order_id"])
        await asyncio.sleep(0.1)
    assert audit(database_url, event_id).ok


# --- the audit's refund checks, on a ledger built by hand ---


@pytest.fixture
def ledger(database_url: str) -> Iterator[psycopg.Connection[object]]:
    migrate.upgrade(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def refunded_sale(
    conn: psycopg.Connection[object], payment: str | None, *, ticket: str = "refunded"
) -> uuid.UUID:
    event_id, hold_id, order_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    conn.execute(
        "INSERT INTO events (event_id, name, status, venue, onsale_at, hold_ttl_s,"
        " per_user_limit, home_region) VALUES (%s, 'e', 'scheduled', '{}', now(), 60, 8, 'x')",
        (event_id,),
    )
    conn.execute(
        "INSERT INTO holds (hold_id, event_id, user_id, status, seat_count, seats, expires_at)"
        " VALUES (%s, %s, 'ann', 'refunded', 1, '{S:A:1}', now())",
        (hold_id, event_id),
    )
    conn.execute(
        "INSERT INTO orders (order_id, event_id, user_id, hold_id, seats, amount_minor,"
        " currency, status, refunded_at)"
        " VALUES (%s, %s, 'ann', %s, '{S:A:1}', 5000, 'EUR', 'refunded', now())",
        (order_id, event_id, hold_id),
    )
    conn.execute(
        "INSERT INTO tickets (ticket_id, order_id, event_id, user_id, seat, kid, token, status,"
        " issued_at) VALUES (%s, %s, %s, 'ann', 'S:A:1', 'k', 't', %s, now())",
        (uuid.uuid4(), order_id, event_id, ticket),
    )
    if payment is not None:
        conn.execute(
            "INSERT INTO payments (payment_id, hold_id, order_id, user_id, provider,"
            " provider_ref, amount_minor, currency, status, created_at)"
            " VALUES (%s, %s, %s, 'ann', 'sandbox', 'ref', 5000, 'EUR', %s,"
            " now() - interval '1 hour')",
            (uuid.uuid4(), hold_id, order_id, payment),
        )
    return event_id


def violations(database_url: str, event_id: uuid.UUID) -> dict[str, int]:
    report = audit(database_url, str(event_id), settle_s=60)
    return {name: len(report.violations[name]) for name in {**QUERIES, **MONEY_QUERIES}}


@pytest.mark.parametrize("payment", ["refunded", "voided", "refund_pending"])
def test_a_refunded_order_given_back_is_clean(
    ledger: psycopg.Connection[object], database_url: str, payment: str
) -> None:
    # refund_pending: sold an hour ago but refunded just now, so still within the bound.
    event_id = refunded_sale(ledger, payment)
    assert sum(violations(database_url, event_id).values()) == 0


@pytest.mark.parametrize(
    ("payment", "ticket", "name"),
    [
        (None, "refunded", "refunded_order_not_refunded_once"),
        ("captured", "refunded", "refunded_order_not_refunded_once"),
        ("refunded", "valid", "refunded_order_ticket_valid"),
    ],
)
def test_each_broken_refund_is_reported(
    ledger: psycopg.Connection[object],
    database_url: str,
    payment: str | None,
    ticket: str,
    name: str,
) -> None:
    event_id = refunded_sale(ledger, payment, ticket=ticket)
    assert violations(database_url, event_id)[name] == 1
    assert not audit(database_url, str(event_id), settle_s=60).ok


def test_a_refund_stuck_past_the_bound_is_reported(
    ledger: psycopg.Connection[object], database_url: str
) -> None:
    event_id = refunded_sale(ledger, "refund_pending")
    ledger.execute("UPDATE orders SET refunded_at = now() - interval '2 minutes'")
    assert violations(database_url, event_id)["authorization_left_open"] == 1


# --- a fan's cancellation, an event's cancellation ---


async def event_with_window(api: WriterApi, window_s: int) -> Any:
    return await api.client.post(
        "/v1/admin/events", headers=ADMIN, json=event_body() | {"fan_cancel_window_s": window_s}
    )


async def test_a_fan_cancels_their_order_within_the_events_window_only(
    writer_api: WriterApi, database_url: str
) -> None:
    api = writer_api
    for bad in (-1, limits.fan_cancel_window_s_max + 1):
        refused = await event_with_window(api, bad)
        assert refused.status_code == 422, refused.text
    created = await event_with_window(api, 3_600)
    assert created.status_code == 201, created.text
    event_id = created.json()["event_id"]
    order = await buy(api, event_id, "ann", ["ORCH:A:101"], 1)
    late = await buy(api, event_id, "ann", ["ORCH:A:102"], 2)
    cancel = f"/v1/me/orders/{order['order_id']}/cancel"

    assert (await api.client.post(cancel)).status_code == 401
    assert (await api.client.post(cancel, headers=api.headers("bob"))).status_code == 404
    done = await api.client.post(cancel, headers=api.headers("ann"))
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "refunded"
    again = await api.client.post(cancel, headers=api.headers("ann"))
    assert again.status_code == 200 and again.json()["status"] == "refunded"
    await wait_for_payment(database_url, order["order_id"], "refunded")
    taken = await api.hold(event_id, "bob", {"seats": ["ORCH:A:101"]}, key="hold-bob")
    assert taken.status_code == 201, taken.text

    # Bought two hours ago: the hour-long window has closed.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE orders SET created_at = now() - interval '2 hours' WHERE order_id = %s",
            (late["order_id"],),
        )
    closed = await api.client.post(
        f"/v1/me/orders/{late['order_id']}/cancel", headers=api.headers("ann")
    )
    assert closed.status_code == 409
    assert closed.json()["error"]["code"] == "cancel_window_closed"

    # An event that sets no window (the default) lets no fan cancel.
    plain = await api.create_event()
    kept = await buy(api, plain, "cat", ["ORCH:A:101"], 1)
    never = await api.client.post(
        f"/v1/me/orders/{kept['order_id']}/cancel", headers=api.headers("cat")
    )
    assert never.status_code == 409
    assert audit(database_url, event_id).ok


async def test_cancelling_an_event_refunds_every_order_and_releases_every_hold(
    writer_api: WriterApi, writer_process: Any, database_url: str
) -> None:
    api = writer_api
    event_id = await api.create_event()
    orders = [
        await buy(api, event_id, "ann", ["ORCH:A:101", "ORCH:A:102"], 1),
        await buy(api, event_id, "bob", ["MEZZ:A:101"], 1),
    ]
    held = await api.hold(event_id, "cat", {"seats": ["BALC:A:101"]}, key="hold-cat")
    assert held.status_code == 201
    path = f"/v1/admin/events/{event_id}/cancel"
    assert (await api.client.post(path)).status_code == 401

    cancelled = await api.client.post(path, headers=ADMIN)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json() == {
        "event_id": event_id,
        "status": "cancelled",
        "refunded_orders": 2,
        "released_holds": 1,
    }
    for order in orders:
        await wait_for_payment(database_url, order["order_id"], "refunded")
    refused = await api.hold(event_id, "dan", {"seats": ["ORCH:A:103"]}, key="hold-dan")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "event_cancelled"
    late = await api.order("cat", held.json()["hold_id"], "tok_approve", key="order-cat")
    assert late.status_code in (403, 409), late.text  # the hold was released
    repeat = await api.client.post(path, headers=ADMIN)
    assert repeat.json() | {"refunded_orders": 0, "released_holds": 0} == repeat.json()
    resume = await api.client.post(f"/v1/admin/events/{event_id}/resume", headers=ADMIN)
    assert resume.status_code == 409

    report = await audit_event(
        AuditTarget(writer_process.url, {}, database_url), event_id, converge_s=5.0
    )
    assert report.ok, report.details()
    assert (report.claims, report.sold) == (0, 0)
