"""An event's sales report (`GET /v1/admin/events/{id}/report`, `tessera report --event ID`):
seats sold and held per section and per price tier, revenue, refunds, holds outstanding. Read
from the database in one transaction, so any writer answers it, and the figures agree with each
other (a snapshot). Seats are counted from `seat_claims` (the no-oversell record); money from
`orders` and `payments`. Per tier, revenue is the tier's list price times its seats sold.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections import Counter
from typing import Any, Final

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from global_writer import errors
from global_writer.db.retry import run_transaction
from tessera import money
from tessera.venue import Venue, VenueSpec


class SectionSales(msgspec.Struct, frozen=True, kw_only=True):
    section_id: str
    seats: int
    sold: int
    held: int


class TierSales(msgspec.Struct, frozen=True, kw_only=True):
    tier_id: str
    name: str
    price: int
    sold: int
    revenue: int


class SalesReport(msgspec.Struct, frozen=True, kw_only=True):
    event_id: uuid.UUID
    name: str
    status: str
    currency: str
    seats: int
    sold: int
    held: int
    orders: int
    # What the confirmed orders were paid (minor units), and what was refunded.
    revenue: int
    refunded_orders: int
    refunded_amount: int
    # Refunds the provider has not confirmed yet (the settler's queue, docs/payments.md).
    refunds_pending: int
    # Active holds before their deadline, and the seats they hold.
    holds_outstanding: int
    sections: list[SectionSales]
    tiers: list[TierSales]


_EVENT: Final = sa.text("SELECT name, status, venue FROM events WHERE event_id = :event_id")
_SECTIONS: Final = sa.text(
    "SELECT s.section_id, s.seat_count,"
    " count(c.seat_index) FILTER (WHERE c.state = 'sold'),"
    " count(c.seat_index) FILTER (WHERE c.state = 'held')"
    " FROM sections s LEFT JOIN seat_claims c"
    " ON c.event_id = s.event_id AND c.section_id = s.section_id"
    " WHERE s.event_id = :event_id GROUP BY s.section_id, s.seat_count, s.position"
    " ORDER BY s.position"
)
# Sold seats per (section, seat index): each is located in the venue for its price tier.
_SOLD: Final = sa.text(
    "SELECT section_id, seat_index FROM seat_claims WHERE event_id = :event_id AND state = 'sold'"
)
_ORDERS: Final = sa.text(
    "SELECT o.status, count(*), coalesce(sum(o.amount_minor), 0),"
    " count(*) FILTER (WHERE p.status IN ('refund_pending', 'void_pending'))"
    " FROM orders o LEFT JOIN payments p ON p.order_id = o.order_id"
    " WHERE o.event_id = :event_id GROUP BY o.status"
)
_HOLDS: Final = sa.text(
    "SELECT count(*) FROM holds WHERE event_id = :event_id AND status = 'active'"
    " AND expires_at > now()"
)


async def sales_report(engine: AsyncEngine, event_id: uuid.UUID) -> SalesReport:
    async def read(conn: AsyncConnection) -> tuple[Any, ...]:
        params = {"event_id": event_id}
        event = (await conn.execute(_EVENT, params)).one_or_none()
        if event is None:
            return (None,)
        sections = (await conn.execute(_SECTIONS, params)).all()
        sold = (await conn.execute(_SOLD, params)).all()
        orders = (await conn.execute(_ORDERS, params)).all()
        holds = (await conn.execute(_HOLDS, params)).scalar_one()
        return event, sections, sold, orders, holds

    found = await run_transaction(engine, read)
    if found[0] is None:
        raise errors.NotFound(f"no event {event_id}")
    event, sections, sold, orders, holds = found
    venue = Venue(msgspec.convert(event.venue, VenueSpec))
    by_status = {row[0]: (int(row[1]), int(row[2]), int(row[3])) for row in orders}
    confirmed = by_status.get("confirmed", (0, 0, 0))
    refunded = by_status.get("refunded", (0, 0, 0))
    section_rows = [
        SectionSales(section_id=r[0], seats=r[1], sold=r[2], held=r[3]) for r in sections
    ]
    return SalesReport(
        event_id=event_id,
        name=event.name,
        status=event.status,
        currency=_currency(venue),
        seats=sum(s.seats for s in section_rows),
        sold=sum(s.sold for s in section_rows),
        held=sum(s.held for s in section_rows),
        orders=confirmed[0],
        revenue=confirmed[1],
        refunded_orders=refunded[0],
        refunded_amount=refunded[1],
        refunds_pending=refunded[2],
        holds_outstanding=int(holds),
        sections=section_rows,
        tiers=_tiers(venue, sold),
    )


def _currency(venue: Venue) -> str:
    tiers = list(venue.price_tiers.values())
    return tiers[0].currency if tiers else money.DEFAULT_CURRENCY


def _tiers(venue: Venue, sold: list[Any]) -> list[TierSales]:
    layouts = {layout.section_id: layout for layout in venue.layouts}
    counts: Counter[str] = Counter()
    for section_id, index in sold:
        tier = layouts[section_id].price_tier(index)
        if tier is not None:
            counts[tier] += 1
    return [
        TierSales(
            tier_id=tier.id,
            name=tier.name,
            price=tier.price_minor,
            sold=counts[tier.id],
            revenue=counts[tier.id] * tier.price_minor,
        )
        for tier in venue.price_tiers.values()
    ]


CSV_COLUMNS: Final = (
    "scope",
    "id",
    "name",
    "seats",
    "sold",
    "held",
    "price",
    "revenue",
    "currency",
    "orders",
    "refunded_orders",
    "refunded_amount",
    "holds_outstanding",
)


def _cell(value: object) -> object:
    """Names are the organiser's text: one a spreadsheet would run as a formula is quoted."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def report_csv(report: SalesReport) -> str:
    """One row per section, one per price tier, then the event's totals; cells a row does not
    have are empty. Amounts in minor units of `currency`."""
    rows: list[dict[str, object]] = [
        {"scope": "section", "id": s.section_id, "seats": s.seats, "sold": s.sold, "held": s.held}
        for s in report.sections
    ]
    rows += [
        {
            "scope": "tier",
            "id": t.tier_id,
            "name": t.name,
            "sold": t.sold,
            "price": t.price,
            "revenue": t.revenue,
            "currency": report.currency,
        }
        for t in report.tiers
    ]
    rows.append(
        {
            "scope": "event",
            "id": str(report.event_id),
            "name": report.name,
            "seats": report.seats,
            "sold": report.sold,
            "held": report.held,
            "revenue": report.revenue,
            "currency": report.currency,
            "orders": report.orders,
            "refunded_orders": report.refunded_orders,
            "refunded_amount": report.refunded_amount,
            "holds_outstanding": report.holds_outstanding,
        }
    )
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(value) for key, value in row.items()})
    return out.getvalue()
