"""Checkout: authorize the payment (the provider sees a key unique to this attempt), then the
event's batch turns the hold's claims to sold and writes the order, its payment `authorized`, the
outbox and the idempotency record, and the fan is answered. Capture comes after, from the
`payments` table (global_writer/settle.py), so the answer never waits for it.

A checkout whose hold ended before its batch ran is answered 409 and its authorization recorded
`void_pending` in the same batch (the settler voids it). One whose batch never ran or failed has
its authorization voided here, after fencing its attempt (the batch can then no longer commit),
unless the database shows the batch committed it after all (an ambiguous commit): an
authorization is never voided while an order may hold it.
Card data never reaches Tessera: the client sends a provider token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from global_writer import errors, idempotency
from global_writer.db import tables as t
from global_writer.db.retry import run_transaction
from global_writer.ops import Idem, Reply, SellOp
from global_writer.payments import (
    Authorization,
    PaymentDeclined,
    PaymentProvider,
    PaymentUnavailable,
)
from global_writer.replies import error_reply
from global_writer.schemas import CreateOrder
from global_writer.tickets import SigningRing
from tessera import limits

log = logging.getLogger("global_writer.checkout")


@dataclass
class Checkout:
    """What a checkout needs beyond the event: the provider, and the database to store a refusal
    and to check, after a failed batch, whether its authorization was recorded."""

    payments: PaymentProvider
    engine: AsyncEngine
    keys_engine: AsyncEngine
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    # Signs the order's tickets (global_writer/tickets.py), set by the writer; None: no tickets.
    signer: SigningRing | None = None
    # Test-only (TESSERA_FAULT_CRASH_AFTER_AUTHORIZE): the process SIGKILLs itself once the
    # provider authorized and before the batch runs, leaving an orphan only the provider knows.
    crash_after_authorize: bool = False

    async def buy(self, handle: Any, user_id: str, body: CreateOrder, idem: Idem) -> Reply:
        """The checkout of a hold that is live in `handle`'s event (the caller checked); its
        key is claimed."""
        runtime = handle.runtime
        hold = runtime.holds.get(body.hold_id)
        if hold is None or hold.user_id != user_id:
            raise errors.Unavailable("the hold changed while the checkout began; retry")
        if hold.expires_at <= datetime.now(UTC):
            return await self.refuse(idem, errors.HoldExpired("the hold has expired"))
        amount, currency = runtime.price(hold.seats), runtime.currency
        try:
            authorization = await self.payments.authorize(
                amount_minor=amount,
                currency=currency,
                payment_token=body.payment_token,
                idempotency_key=attempt_key(idem),
            )
        except PaymentDeclined as declined:
            refusal = errors.PaymentDeclinedError(str(declined), reason=declined.code)
            return await self.refuse(idem, refusal)
        except PaymentUnavailable as unavailable:
            raise errors.PaymentUnavailableError(str(unavailable)) from None
        if self.crash_after_authorize:
            os.kill(os.getpid(), signal.SIGKILL)
        op = SellOp(
            hold_id=body.hold_id,
            user_id=user_id,
            amount_minor=amount,
            currency=currency,
            provider=authorization.provider,
            provider_ref=authorization.id,
            idem=idem,
        )
        if self.signer is not None:
            op.tickets = self.signer.issue(
                event_id=runtime.event_id,
                order_id=op.order_id,
                user_id=user_id,
                seats=[runtime.seat_id(p, i) for p, i in hold.seats],
            )
        try:
            reply: Reply = await handle.actor.submit(op)
        except BaseException:
            self.void_unless_recorded(idem, authorization)
            raise
        return reply

    async def refuse(self, idem: Idem, error: errors.WriterError) -> Reply:
        reply = error_reply(error)
        await idempotency.finish(self.keys_engine, idem, reply)
        return reply

    def void_unless_recorded(self, idem: Idem, authorization: Authorization) -> None:
        task = asyncio.get_running_loop().create_task(self.void_if_unrecorded(idem, authorization))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def void_if_unrecorded(self, idem: Idem, authorization: Authorization) -> None:
        """Void an authorization whose batch did not record it: first fence the attempt (after
        that its batch cannot commit a sale; one still committing is waited for), then ask the
        database whether the batch recorded the authorization. If the database cannot be asked
        in time, the authorization is left for `tessera payments reconcile` (docs/payments.md),
        which does the same."""
        for check in range(limits.checkout_void_checks_max):
            try:
                await idempotency.fence(self.keys_engine, idem.user_id, idem.key, idem.attempt)
                if await self.recorded(authorization.id):
                    return  # the batch committed after all: the settler captures or voids it
                await self.payments.void(authorization)
                return
            except Exception:
                log.warning(
                    "void check %d of authorization %s failed",
                    check + 1,
                    authorization.id,
                    exc_info=True,
                )
            await asyncio.sleep(limits.checkout_void_check_interval_s)
        log.error("authorization %s may be orphaned; reconcile", authorization.id)

    async def recorded(self, provider_ref: str) -> bool:
        async def read(conn: AsyncConnection) -> bool:
            found = await conn.execute(
                sa.select(t.payments.c.payment_id).where(t.payments.c.provider_ref == provider_ref)
            )
            return found.first() is not None

        return await run_transaction(self.engine, read)


def attempt_key(idem: Idem) -> str:
    """The provider's idempotency key: the fan's key plus this request's attempt (the claim of
    the key in `idempotency_keys.attempt`). A retry that reused the fan's key alone would get back
    an authorization this writer may have voided for the failed attempt; each attempt's own key
    lets the provider dedupe only its own retries, and tells reconciliation which claim to fence
    (`parse_attempt_key`)."""
    return f"{idem.user_id}:{idem.key}:{idem.attempt.hex}"


def parse_attempt_key(provider_key: str) -> tuple[str, str, uuid.UUID] | None:
    """(user id, Idempotency-Key, attempt) of a provider key `attempt_key` made; None for any
    other (an authorization Tessera did not make, or one made before attempts were recorded).
    User ids have no ':' (tessera/auth.py), keys may; the attempt is 32 hex digits."""
    user_id, sep, rest = provider_key.partition(":")
    key, sep2, attempt = rest.rpartition(":")
    if not (sep and sep2 and user_id and key) or len(attempt) != 32:
        return None
    try:
        return user_id, key, uuid.UUID(hex=attempt)
    except ValueError:
        return None
