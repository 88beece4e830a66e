"""Orders over time: a fan's orders page by page (`GET /v1/me/orders`), an organiser's refund
of one order (`POST /v1/admin/orders/{id}/refund`), and a fan's cancellation of their own order
within the window the event sets (`POST /v1/me/orders/{id}/cancel`, `fan_cancel_window_s`).
docs/api.md, docs/payments.md (refunds).

A refund goes through the event's actor like every other change to its seats (RefundOp,
global_writer/batch_sql.py REFUND_ORDERS): in one transaction the order becomes `refunded`, its
seats go back on sale (claims deleted, the fan's count lowered, the change feed told by the
batch's deltas), its tickets are marked `refunded`, and its payment is handed back to the
settler (global_writer/settle.py), which refunds it at the provider under the idempotency key
`refund-{payment_id}` (or voids it, if it was not captured yet). The provider is never called
inside the transaction, and a crash after commit loses nothing: the payment row is the queue.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any, Final

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from global_writer import errors
from global_writer.db import tables as t
from global_writer.db.retry import run_transaction
from global_writer.ops import RefundOp
from global_writer.ownership import OwnedEvents
from tessera import limits
from tessera.web import kind

CancelWindowClosed = kind(409, "cancel_window_closed", errors.WriterError)


class OrderRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An order as the fan's history and the organiser see it."""

    order_id: uuid.UUID
    event_id: uuid.UUID
    hold_id: uuid.UUID
    seats: list[str]
    amount: int
    currency: str
    status: str
    created_at: datetime
    refunded_at: datetime | None
    # The payment's state in the saga (docs/payments.md): `refund_pending` until the provider
    # confirmed the refund, then `refunded`. None for an order with no payment row.
    payment_status: str | None = None


class OrdersPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of the fan's orders, newest first; `next_cursor` is None on the last page."""

    orders: list[OrderRecord]
    next_cursor: str | None


class _Cursor(msgspec.Struct, array_like=True, forbid_unknown_fields=True, frozen=True):
    created_at: datetime
    order_id: uuid.UUID


_cursor_decoder: Final = msgspec.json.Decoder(_Cursor)
_cursor_encoder: Final = msgspec.json.Encoder()

_COLUMNS: Final = (
    t.orders.c.order_id,
    t.orders.c.event_id,
    t.orders.c.hold_id,
    t.orders.c.seats,
    t.orders.c.amount_minor,
    t.orders.c.currency,
    t.orders.c.status,
    t.orders.c.created_at,
    t.orders.c.refunded_at,
    t.orders.c.user_id,
)


def encode_cursor(record: OrderRecord) -> str:
    raw = _cursor_encoder.encode(_Cursor(record.created_at, record.order_id))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> _Cursor:
    """The position after which the next page starts; anything else is a 422, never a 500."""
    if len(text) > limits.orders_cursor_chars_max:
        raise errors.InvalidRequest(f"cursor over {limits.orders_cursor_chars_max} characters")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return _cursor_decoder.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise errors.InvalidRequest("cursor is not one this API gave") from None


# A default, not a bound: a page a phone shows without scrolling much.
ORDERS_PAGE_SIZE_DEFAULT: Final = 20


def page_size(text: str | None) -> int:
    if text is None:
        return ORDERS_PAGE_SIZE_DEFAULT
    try:
        size = int(text)
    except ValueError:
        raise errors.InvalidRequest("limit must be an integer") from None
    if not 1 <= size <= limits.orders_page_size_max:
        raise errors.InvalidRequest(f"limit must be in 1..{limits.orders_page_size_max}")
    return size


def _record(row: Any, payment_status: str | None = None) -> OrderRecord:
    return OrderRecord(
        order_id=row.order_id,
        event_id=row.event_id,
        hold_id=row.hold_id,
        seats=list(row.seats),
        amount=row.amount_minor,
        currency=row.currency,
        status=row.status,
        created_at=row.created_at,
        refunded_at=row.refunded_at,
        payment_status=payment_status,
    )


async def my_orders(
    engine: AsyncEngine, user_id: str, size: int, after: _Cursor | None
) -> OrdersPage:
    """One page of the fan's orders, newest first, by keyset (created_at, order_id) on
    `ix_orders_user_id_created_at_order_id`: each page costs the same however deep it is."""
    orders = t.orders
    query = sa.select(*_COLUMNS).where(orders.c.user_id == user_id)
    if after is not None:
        query = query.where(
            sa.tuple_(orders.c.created_at, orders.c.order_id)
            < sa.tuple_(sa.literal(after.created_at), sa.literal(after.order_id))
        )
    query = query.order_by(orders.c.created_at.desc(), orders.c.order_id.desc()).limit(size + 1)

    async def read(conn: AsyncConnection) -> list[Any]:
        return list((await conn.execute(query)).all())

    rows = await run_transaction(engine, read)
    records = [_record(row) for row in rows[:size]]
    more = len(rows) > size
    return OrdersPage(orders=records, next_cursor=encode_cursor(records[-1]) if more else None)


async def load_order(engine: AsyncEngine, order_id: uuid.UUID) -> OrderRecord | None:
    """The order with its payment's state, or None."""
    query = (
        sa.select(*_COLUMNS, t.payments.c.status.label("payment_status"))
        .select_from(t.orders.outerjoin(t.payments, t.payments.c.order_id == t.orders.c.order_id))
        .where(t.orders.c.order_id == order_id)
        .limit(1)
    )

    async def read(conn: AsyncConnection) -> Any:
        return (await conn.execute(query)).first()

    row = await run_transaction(engine, read)
    return None if row is None else _record(row, row.payment_status)


async def refund_order(
    engine: AsyncEngine, events: OwnedEvents, order_id: uuid.UUID
) -> OrderRecord:
    """Refund one order through its event's actor. Refunding a refunded order again changes
    nothing and answers the same (the call is safe to retry)."""
    order = await load_order(engine, order_id)
    if order is None:
        raise errors.NotFound("no such order")
    return await _refund(engine, events, order)


async def _refund(engine: AsyncEngine, events: OwnedEvents, order: OrderRecord) -> OrderRecord:
    if order.status != "confirmed":
        return order
    handle = await events.handle(order.event_id)  # 503 on a writer that is not the owner
    await handle.actor.submit(RefundOp([(order.order_id, order.hold_id)]))
    refunded = await load_order(engine, order.order_id)
    assert refunded is not None
    return refunded


_WITHIN_WINDOW: Final = (
    sa.select(
        (
            t.orders.c.created_at + t.events.c.fan_cancel_window_s * sa.text("interval '1 second'")
            > sa.func.now()
        ).label("within"),
        t.events.c.fan_cancel_window_s,
    )
    .select_from(t.orders.join(t.events, t.events.c.event_id == t.orders.c.event_id))
    .where(t.orders.c.order_id == sa.bindparam("order_id"))
)


async def fan_cancel(
    engine: AsyncEngine, events: OwnedEvents, user_id: str, order_id: uuid.UUID
) -> OrderRecord:
    """The fan cancels their own order, refunded like an organiser's refund, while the event's
    window (`fan_cancel_window_s` after the purchase, by the database's clock) is open. 404 for
    anyone else's order; a cancelled order cancelled again answers the same."""
    order = await load_order(engine, order_id)
    if order is None or (await _owner(engine, order_id)) != user_id:
        raise errors.NotFound("no such order")
    if order.status != "confirmed":
        return order

    async def read(conn: AsyncConnection) -> Any:
        return (await conn.execute(_WITHIN_WINDOW, {"order_id": order_id})).one()

    window = await run_transaction(engine, read)
    if not window.within:
        raise CancelWindowClosed(
            "this order can no longer be cancelled by its fan",
            fan_cancel_window_s=int(window.fan_cancel_window_s),
        )
    return await _refund(engine, events, order)


async def _owner(engine: AsyncEngine, order_id: uuid.UUID) -> str | None:
    async def read(conn: AsyncConnection) -> str | None:
        query = sa.select(t.orders.c.user_id).where(t.orders.c.order_id == order_id)
        return (await conn.execute(query)).scalar_one_or_none()

    return await run_transaction(engine, read)
