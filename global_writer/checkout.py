"""Checkout: authorize (the provider sees our idempotency key) → one transaction turns the hold's
claims to sold and writes the order, outbox and idempotency record → capture. If the hold
expired or stopped being active in between, the authorization is voided and the answer is 409.
Card data never reaches Tessera: the client sends a provider token."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from global_writer import errors, idempotency
from global_writer.db import tables as t
from global_writer.db.retry import run_transaction
from global_writer.ops import Idem, Reply, SellOp
from global_writer.payments import Authorization, PaymentDeclined, PaymentUnavailable
from global_writer.replies import error_reply

if TYPE_CHECKING:
    from global_writer.service import Writer

log = logging.getLogger("global_writer.checkout")


async def buy(writer: Writer, user_id: str, hold_id: uuid.UUID, token: str, idem: Idem) -> Reply:
    row = await writer.load_hold(user_id, hold_id)
    handle = await writer.handle(row.event_id)
    runtime = handle.runtime
    refusal = hold_refusal(row)
    if refusal is not None:
        reply = error_reply(refusal)
        await idempotency.finish(writer.keys_engine, idem, reply)
        return reply
    seats = [runtime.parse_seat(seat) for seat in row.seats]
    amount, currency = runtime.price(seats), runtime.currency
    try:
        authorization = await writer.payments.authorize(
            amount_minor=amount,
            currency=currency,
            payment_token=token,
            idempotency_key=f"{idem.user_id}:{idem.key}",
        )
    except PaymentDeclined as declined:
        reply = error_reply(errors.PaymentDeclinedError(str(declined), reason=declined.code))
        await idempotency.finish(writer.keys_engine, idem, reply)
        return reply
    except PaymentUnavailable as unavailable:
        raise errors.PaymentUnavailableError(str(unavailable)) from None
    op = SellOp(
        hold_id=hold_id,
        user_id=user_id,
        amount_minor=amount,
        currency=currency,
        provider=authorization.provider,
        provider_ref=authorization.id,
        idem=idem,
    )
    try:
        sold: Reply | None = await handle.actor.submit(op)
    except BaseException:
        await void_quietly(writer, authorization)
        raise
    if sold is None:
        await void_quietly(writer, authorization)
        reply = error_reply(hold_refusal(await writer.load_hold(user_id, hold_id)) or gone())
        await idempotency.finish(writer.keys_engine, idem, reply)
        return reply
    await capture(writer, authorization, op.order_id)
    return sold


def gone() -> errors.WriterError:
    return errors.HoldNotActive("the hold is no longer active")


def hold_refusal(row: sa.Row[tuple[object, ...]]) -> errors.WriterError | None:
    status = row.status
    if status == "purchased":
        return errors.HoldNotActive("this hold was already bought")
    if status != "active":
        return errors.HoldNotActive(f"the hold is {status}")
    if not row.live:
        return errors.HoldExpired("the hold has expired")
    return None


async def void_quietly(writer: Writer, authorization: Authorization) -> None:
    try:
        await writer.payments.void(authorization)
    except Exception:
        log.exception("void of authorization %s failed; reconcile by hand", authorization.id)


async def capture(writer: Writer, authorization: Authorization, order_id: uuid.UUID) -> None:
    """The order is committed; a failed capture is recorded for reconciliation, not undone.
    Recording the capture is bookkeeping too: if the database cannot be reached for it (the
    order committed a moment before), the payment row stays `authorized` for reconciliation and
    the fan still gets the order, never an error for a sale that happened."""
    status = "captured"
    try:
        await writer.payments.capture(authorization)
    except Exception:
        log.exception("capture of order %s failed", order_id)
        status = "capture_failed"

    async def write(conn: AsyncConnection) -> None:
        await conn.execute(
            t.payments.update()
            .where(t.payments.c.order_id == order_id)
            .values(status=status, updated_at=sa.func.now())
        )

    try:
        await run_transaction(writer.engine, write)
    except Exception:
        log.exception("recording the %s payment of order %s failed; reconcile", status, order_id)
