"""Rendering of the replies decided inside a batch (they are stored for idempotent replay)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from global_writer import errors
from global_writer.ops import HoldOp, LiveHold, Reply, SellOp
from global_writer.runtime import EventRuntime
from global_writer.schemas import HoldView, OrderView, encoder


def error_reply(error: errors.WriterError) -> Reply:
    return Reply(error.status, encoder.encode(error.body()))


def hold_reply(
    runtime: EventRuntime,
    op: HoldOp,
    expires_at: dict[uuid.UUID, datetime],
    lost: dict[uuid.UUID, list[str]],
) -> Reply:
    if op.failure is not None:
        return error_reply(op.failure)
    if op.hold_id in lost:
        taken = lost[op.hold_id]
        return error_reply(
            errors.SeatsUnavailable(f"{len(taken)} of the seats were just taken", seats=taken)
        )
    view = hold_view(runtime, op.hold_id, op.picked, expires_at[op.hold_id], extended=False)
    return Reply(201, encoder.encode(view))


def order_reply(runtime: EventRuntime, op: SellOp, seats: list[tuple[int, int]]) -> Reply:
    view = OrderView(
        order_id=op.order_id,
        hold_id=op.hold_id,
        event_id=runtime.event_id,
        seats=sorted(runtime.seat_id(p, i) for p, i in seats),
        amount=op.amount_minor,
        currency=op.currency,
        status="confirmed",
    )
    return Reply(201, encoder.encode(view))


def hold_view(
    runtime: EventRuntime,
    hold_id: uuid.UUID,
    seats: list[tuple[int, int]],
    expires_at: datetime,
    *,
    extended: bool,
) -> HoldView:
    """A hold of `runtime`'s event, priced from the venue in memory (no query)."""
    return HoldView(
        hold_id=hold_id,
        event_id=runtime.event_id,
        status="active",
        seats=[runtime.seat_id(p, i) for p, i in seats],
        expires_at=expires_at,
        extended=extended,
        amount=runtime.price(seats),
        currency=runtime.currency,
    )


def live_hold_view(runtime: EventRuntime, hold: LiveHold) -> HoldView:
    return hold_view(runtime, hold.hold_id, hold.seats, hold.expires_at, extended=hold.extended)


def extend_reply(runtime: EventRuntime, hold: LiveHold | None, extended: datetime | None) -> Reply:
    """200 with the extended hold, or why it could not be extended (`hold` is the live hold as
    the batch found it; None when it had ended)."""
    if hold is not None and extended is not None:
        view = live_hold_view(runtime, hold)
        view.expires_at, view.extended = extended, True
        return Reply(200, encoder.encode(view))
    if hold is None:
        return error_reply(errors.HoldNotActive("the hold is no longer active"))
    if hold.extended:
        return error_reply(errors.AlreadyExtended("a hold can be extended once"))
    return error_reply(errors.HoldExpired("the hold has expired"))


def sale_refused(hold: LiveHold | None, db_now: datetime | None) -> Reply:
    """Why a checkout's hold could not be bought when its batch ran."""
    if hold is None:
        return error_reply(errors.HoldNotActive("the hold is no longer active"))
    if hold.expires_at <= (db_now or datetime.now(UTC)):
        return error_reply(errors.HoldExpired("the hold has expired"))
    return error_reply(errors.HoldNotActive("the hold is no longer active"))
