"""Running an event: the organiser pauses, resumes, closes and cancels its sales (docs/api.md).

`events.status` is the record; the event's owning writer keeps a copy in memory
(`EventRuntime.status`, loaded with the event) and checks it where fans' requests are admitted
(`check_sales`, called by global_writer/flows.py): `paused` refuses new holds (a fan already
holding seats may still buy them), `closed` refuses holds and checkouts (holds left run out),
`cancelled` too, and cancelling refunds every order (global_writer/refunds.py, a bounded batch
of orders per actor step) and releases every live hold.
Only the owner changes the status, so its memory and the row agree; another writer answers 503
naming the home region, as for any write to an event it does not serve.

Transitions: scheduled | onsale → paused → onsale; scheduled | onsale | paused → closed;
anything but cancelled → cancelled (final). Repeating the action already applied is a no-op,
so a cancellation interrupted half-way is finished by asking again.
"""

from __future__ import annotations

import uuid
from typing import Final, Literal

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from global_writer import errors
from global_writer.db import tables as t
from global_writer.db.retry import run_transaction
from global_writer.ops import RefundOp, Released, ReleaseOp
from global_writer.ownership import OwnedEvents
from global_writer.runtime import EventRuntime
from tessera import limits
from tessera.web import kind

SalesPaused = kind(403, "sales_paused", errors.WriterError)
EventClosed = kind(403, "event_closed", errors.WriterError)
EventCancelled = kind(403, "event_cancelled", errors.WriterError)
StatusConflict = kind(409, "event_status_conflict", errors.WriterError)

Action = Literal["pause", "resume", "close", "cancel"]
# Each action: the statuses it applies from, and the one it sets.
TRANSITIONS: Final[dict[str, tuple[tuple[str, ...], str]]] = {
    "pause": (("scheduled", "onsale"), "paused"),
    "resume": (("paused",), "onsale"),
    "close": (("scheduled", "onsale", "paused"), "closed"),
    "cancel": (("scheduled", "onsale", "paused", "closed"), "cancelled"),
}


class EventStatus(msgspec.Struct, frozen=True, kw_only=True):
    event_id: uuid.UUID
    status: str


class Cancellation(msgspec.Struct, frozen=True, kw_only=True):
    event_id: uuid.UUID
    status: str
    # What this call did: orders refunded (their payments handed to the settler) and live holds
    # released. A second call finishes what a first one left (and finds nothing else).
    refunded_orders: int
    released_holds: int


_CONFIRMED: Final = (
    sa.select(t.orders.c.order_id, t.orders.c.hold_id)
    .where(t.orders.c.event_id == sa.bindparam("event_id"), t.orders.c.status == "confirmed")
    .limit(limits.refund_batch_orders_max)
)


def check_sales(runtime: EventRuntime, *, buying: bool) -> None:
    """Refuse a fan's new hold (or, `buying`, checkout) that the event's status forbids."""
    if runtime.status == "cancelled":
        raise EventCancelled("this event was cancelled", event_id=str(runtime.event_id))
    if runtime.status == "closed":
        raise EventClosed("this event's sales are closed", event_id=str(runtime.event_id))
    if runtime.status == "paused" and not buying:
        raise SalesPaused("this event's sales are paused", event_id=str(runtime.event_id))


async def change_status(
    engine: AsyncEngine, events: OwnedEvents, event_id: uuid.UUID, action: Action
) -> EventStatus:
    """Apply `action` on the event's owner: the row first, then memory. Repeating an action
    already applied answers the same status (safe to retry)."""
    handle = await events.handle(event_id)  # 404 unknown, 503 on a writer that is not the owner
    sources, target = TRANSITIONS[action]
    update = (
        sa.update(t.events)
        .where(t.events.c.event_id == event_id, t.events.c.status.in_(sources))
        .values(status=target)
        .returning(t.events.c.status)
    )

    async def write(conn: AsyncConnection) -> str:
        changed = (await conn.execute(update)).scalar_one_or_none()
        if changed is not None:
            return str(changed)
        query = sa.select(t.events.c.status).where(t.events.c.event_id == event_id)
        return str((await conn.execute(query)).scalar_one())

    status = await run_transaction(engine, write)
    handle.runtime.status = status
    if status != target:
        raise StatusConflict(
            f"cannot {action} an event that is {status}",
            event_status=status,
            event_id=str(event_id),
        )
    return EventStatus(event_id=event_id, status=status)


async def cancel_event(
    engine: AsyncEngine, events: OwnedEvents, event_id: uuid.UUID
) -> Cancellation:
    """Cancel the event: its status first (no new hold or checkout is admitted from then on),
    then every confirmed order refunded through its actor, `limits.refund_batch_orders_max` at a
    time, then its live holds released."""
    status = await change_status(engine, events, event_id, "cancel")
    handle = await events.handle(event_id)

    async def next_orders(conn: AsyncConnection) -> list[tuple[uuid.UUID, uuid.UUID]]:
        rows = await conn.execute(_CONFIRMED, {"event_id": event_id})
        return [(row.order_id, row.hold_id) for row in rows]

    refunded = 0
    while batch := await run_transaction(engine, next_orders):
        done: list[uuid.UUID] = await handle.actor.submit(RefundOp(batch))
        refunded += len(done)
        if not done:
            # Nothing of a non-empty batch refunded: memory and database disagree; stop rather
            # than loop (the actor reloads the event; asking again finishes the cancellation).
            raise errors.Unavailable("the cancellation could not refund its orders; retry")
    released = 0
    live = list(handle.runtime.holds)
    if live:
        result: Released = await handle.actor.submit(ReleaseOp(live, "released"))
        released = len(result.hold_ids)
    return Cancellation(
        event_id=event_id,
        status=status.status,
        refunded_orders=refunded,
        released_holds=released,
    )
