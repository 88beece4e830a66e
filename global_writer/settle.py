"""The settler: drives every payment the writer recorded to its end, after the fan's answer.

A checkout's batch writes its payment `authorized` with the confirmed order, or `void_pending`
when the hold could not be bought (docs/payments.md, the payment saga). The `payments` table is
the durable queue: the settler reads what is due (`next_attempt_at`), asks the provider to
capture, void or refund each (concurrently, a bounded number at a time), and records every
outcome of the pass in one statement. A provider that cannot be reached is retried with capped
backoff, forever; a refusal that no retry can change ends the payment in `capture_failed` (a
capture the provider refuses) or sends a captured authorization that should have been voided on
to `refund_pending`. Nothing is lost to a crash: whatever is still due is found again by the next
pass of any writer, and the provider's idempotency makes a repeated call harmless.

Transitions: authorized → captured | capture_failed; void_pending → voided | refund_pending;
refund_pending → refunded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from global_writer.db.retry import run_transaction
from global_writer.payments import (
    Authorization,
    PaymentError,
    PaymentProvider,
    PaymentUnavailable,
)
from tessera import limits
from tessera.observability import Metrics

log = logging.getLogger("global_writer.settle")

UUID: Final = pg.UUID(as_uuid=True)
UNSETTLED: Final = ("authorized", "void_pending", "refund_pending")

DUE: Final = sa.text(
    "SELECT payment_id, provider, provider_ref, amount_minor, currency, status, attempts"
    " FROM payments"
    " WHERE status IN ('authorized', 'void_pending', 'refund_pending')"
    " AND next_attempt_at <= now()"
    " ORDER BY next_attempt_at LIMIT :limit"
).bindparams(sa.bindparam("limit", type_=sa.Integer))
OLDEST: Final = sa.text(
    "SELECT extract(epoch FROM now() - min(created_at)) FROM payments"
    " WHERE status IN ('authorized', 'void_pending', 'refund_pending')"
)
# Each outcome applies only if the payment is still in the state the pass read (another writer's
# settler may have moved it meanwhile); a retry pushes `next_attempt_at` out by its backoff.
RECORD: Final = sa.text(
    "UPDATE payments SET status = o.status, attempts = payments.attempts + 1,"
    " last_error = o.error, updated_at = now(),"
    " next_attempt_at = now() + o.backoff_s * interval '1 second'"
    " FROM unnest(:payment_ids, :was, :statuses, :errors, :backoffs_s)"
    " AS o (payment_id, was, status, error, backoff_s)"
    " WHERE payments.payment_id = o.payment_id AND payments.payment_id = ANY(:payment_ids)"
    " AND payments.status = o.was"
).bindparams(
    sa.bindparam("payment_ids", type_=pg.ARRAY(UUID)),
    sa.bindparam("was", type_=pg.ARRAY(sa.Text)),
    sa.bindparam("statuses", type_=pg.ARRAY(sa.Text)),
    sa.bindparam("errors", type_=pg.ARRAY(sa.Text)),
    sa.bindparam("backoffs_s", type_=pg.ARRAY(sa.Float)),
)


@dataclass(frozen=True, slots=True)
class Due:
    payment_id: Any
    authorization: Authorization
    status: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Outcome:
    due: Due
    status: str
    error: str | None
    backoff_s: float


class Settler:
    def __init__(
        self, engine: AsyncEngine, provider: PaymentProvider, metrics: Metrics | None = None
    ) -> None:
        # READ COMMITTED: each outcome is one guarded single-row transition, and at SERIALIZABLE
        # the pass's reads would conflict with the batches that insert new payments.
        self.engine = engine
        self.provider = provider
        self.metrics = metrics or Metrics()
        self.wake = asyncio.Event()

    def notify(self) -> None:
        """A batch committed payments: settle them now rather than at the next tick."""
        self.wake.set()

    async def run(self) -> None:
        while True:
            try:
                settled = await self.settle_once()
            except Exception:
                log.exception("settling payments failed; will retry")
                settled = 0
            if settled < limits.settle_batch_payments_max:
                # Caught up: wait for the next commit, or the next tick for retries that fall due.
                self.wake.clear()
                try:
                    async with asyncio.timeout(limits.settle_interval_s):
                        await self.wake.wait()
                except TimeoutError:
                    pass

    async def settle_once(self) -> int:
        """One pass: what is due, settled; returns how many payments it read."""
        due = await self.read_due()
        if due:
            outcomes = await self.settle(due)
            await self.record(outcomes)
            for outcome in outcomes:
                self.metrics.payments_settled.labels(outcome.status).inc()
        return len(due)

    async def read_due(self) -> list[Due]:
        async def read(conn: AsyncConnection) -> tuple[Sequence[Any], Any]:
            rows = (await conn.execute(DUE, {"limit": limits.settle_batch_payments_max})).all()
            return rows, (await conn.execute(OLDEST)).scalar_one()

        rows, oldest_s = await run_transaction(self.engine, read)
        self.metrics.payments_unsettled_oldest_s.set(float(oldest_s or 0.0))
        return [
            Due(
                row.payment_id,
                Authorization(
                    id=row.provider_ref,
                    provider=row.provider,
                    amount_minor=row.amount_minor,
                    currency=row.currency,
                ),
                row.status,
                row.attempts,
            )
            for row in rows
        ]

    async def settle(self, due: list[Due]) -> list[Outcome]:
        slots = asyncio.Semaphore(limits.settle_provider_calls_max)

        async def one(item: Due) -> Outcome:
            async with slots:
                return await self.settle_one(item)

        return list(await asyncio.gather(*(one(item) for item in due)))

    async def settle_one(self, due: Due) -> Outcome:
        authorization = due.authorization
        try:
            async with asyncio.timeout(limits.settle_provider_call_s_max):
                if due.status == "authorized":
                    await self.provider.capture(authorization)
                    return Outcome(due, "captured", None, 0.0)
                if due.status == "void_pending":
                    await self.provider.void(authorization)
                    return Outcome(due, "voided", None, 0.0)
                await self.provider.refund(authorization, None, f"refund-{due.payment_id}")
                return Outcome(due, "refunded", None, 0.0)
        except (PaymentUnavailable, TimeoutError, OSError) as error:
            return Outcome(due, due.status, f"retrying: {error}"[:500], backoff_s(due.attempts))
        except PaymentError as error:
            return self.refused(due, error)

    def refused(self, due: Due, error: PaymentError) -> Outcome:
        """The provider said no, and will say so again: end the payment where it must go."""
        message = f"{error.code}: {error}"[:500]
        if due.status == "authorized":
            log.error("capture of payment %s refused: %s", due.payment_id, message)
            return Outcome(due, "capture_failed", message, 0.0)
        if due.status == "void_pending" and error.code == "authorization_captured":
            log.error("payment %s to void was captured: refunding it", due.payment_id)
            return Outcome(due, "refund_pending", message, 0.0)
        log.error("payment %s (%s) refused: %s", due.payment_id, due.status, message)
        return Outcome(due, due.status, message, backoff_s(due.attempts))

    async def record(self, outcomes: list[Outcome]) -> None:
        params = {
            "payment_ids": [o.due.payment_id for o in outcomes],
            "was": [o.due.status for o in outcomes],
            "statuses": [o.status for o in outcomes],
            "errors": [o.error for o in outcomes],
            "backoffs_s": [o.backoff_s for o in outcomes],
        }

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(RECORD, params)

        await run_transaction(self.engine, write)


def backoff_s(attempts: int) -> float:
    """Capped exponential: a provider outage is retried often at first, then every few minutes."""
    exponent = min(attempts, 30)
    return float(min(limits.settle_backoff_s_max, limits.settle_backoff_s_min * 2**exponent))
