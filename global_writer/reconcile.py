"""Reconciliation: what the payment provider holds open that the database does not account for.

The payment saga (docs/payments.md) ends every authorization the database records. One it never
recorded is the gap: a checkout authorized, then its writer crashed (or its database went away)
before the batch committed, so only the provider knows the authorization. `reconcile` lists the
authorizations still open at the provider that are older than a grace period, matches them to
`payments.provider_ref`, and ends those that no order can hold:

- **unknown to the database, made by Tessera** (the provider kept the writer's key,
  `<user>:<Idempotency-Key>:<attempt>`): the attempt is fenced first (its claim of the key is
  ended if still in flight, global_writer/idempotency.py `fence`), so its batch can no longer
  commit a sale; then, if the database still has no payment for it, it is voided. A batch that
  was committing holds the key's lock, and the fence waits for it: an authorization is never
  voided while an order may hold it.
- **recorded `voided`** but open at the provider: voided again (the settler's void was lost or
  undone outside Tessera).
- **recorded `authorized`, `void_pending`**: the settler's; left alone.
- **recorded `captured`, `refunded`, `refund_pending` or `capture_failed`** but open at the
  provider: the two disagree, and no automatic move is safe; reported for an operator.
- **not made by Tessera** (no key, or a key of another shape): reported, never touched.

`apply=False` reports what it would do and changes nothing (no fence, no void).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from global_writer import idempotency
from global_writer.checkout import parse_attempt_key
from global_writer.db import tables as t
from global_writer.db.retry import run_transaction
from global_writer.payments import OpenAuthorization, PaymentError, PaymentProvider

log = logging.getLogger("global_writer.reconcile")

Finding = Literal[
    "voided_orphan",  # unknown to the database, made by Tessera: fenced and voided
    "orphan",  # the same, with apply=False: would be fenced and voided
    "recorded_after_fence",  # its batch committed after all: the settler's
    "voided_again",  # recorded voided, open at the provider: voided again
    "void_again",  # the same, with apply=False
    "settling",  # recorded authorized or void_pending: the settler's
    "mismatch",  # recorded captured / refunded / capture_failed, open at the provider
    "foreign",  # not made by Tessera: never touched
    "failed",  # the fence, the lookup or the void failed: run again
]
SETTLER_STATUSES: Final = frozenset({"authorized", "void_pending"})


class Item(msgspec.Struct, frozen=True, kw_only=True):
    authorization_id: str
    provider: str
    amount_minor: int
    currency: str
    created_at: datetime
    finding: Finding
    status: str | None = None  # the database's, when it has the payment
    detail: str | None = None


class Report(msgspec.Struct, kw_only=True):
    checked_at: datetime
    created_before: datetime
    applied: bool
    open_at_provider: int = 0
    items: list[Item] = msgspec.field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.items:
            counts[item.finding] = counts.get(item.finding, 0) + 1
        return counts

    @property
    def ok(self) -> bool:
        """Nothing left for an operator: no mismatch, no failure, no orphan left open."""
        return not any(
            item.finding in ("mismatch", "failed", "orphan", "void_again") for item in self.items
        )


@dataclass
class Reconciler:
    engine: AsyncEngine  # READ COMMITTED is enough: each read and fence is one statement
    provider: PaymentProvider

    async def run(self, *, older_than_s: float, apply: bool) -> Report:
        now = datetime.now(UTC)
        created_before = now - timedelta(seconds=older_than_s)
        opened = await self.provider.list_open_authorizations(created_before)
        report = Report(
            checked_at=now,
            created_before=created_before,
            applied=apply,
            open_at_provider=len(opened),
        )
        recorded = await self.statuses([item.authorization.id for item in opened])
        for each in opened:
            report.items.append(await self.one(each, recorded.get(each.authorization.id), apply))
        for item in report.items:
            if item.finding in ("mismatch", "failed", "foreign"):
                log.warning(
                    "reconcile: authorization %s %s (%s)",
                    item.authorization_id,
                    item.finding,
                    item.detail or item.status,
                )
        return report

    async def one(self, opened: OpenAuthorization, status: str | None, apply: bool) -> Item:
        if status is None:
            return await self.unknown(opened, apply)
        if status in SETTLER_STATUSES:
            return found(opened, "settling", status)
        if status != "voided":
            return found(opened, "mismatch", status, f"recorded {status}, open at the provider")
        if not apply:
            return found(opened, "void_again", status)
        try:
            await self.provider.void(opened.authorization)
        except PaymentError as error:
            return found(opened, "failed", status, f"void: {error.code}")
        return found(opened, "voided_again", status)

    async def unknown(self, opened: OpenAuthorization, apply: bool) -> Item:
        """An authorization the database has no payment for: fence its attempt, look again,
        and void it if the database still has none."""
        authorization = opened.authorization
        claim = parse_attempt_key(opened.idempotency_key) if opened.idempotency_key else None
        if claim is None:
            return found(opened, "foreign", None, "not made by Tessera (no attempt key)")
        if not apply:
            return found(opened, "orphan", None)
        user_id, key, attempt = claim
        try:
            await idempotency.fence(self.engine, user_id, key, attempt)
            status = (await self.statuses([authorization.id])).get(authorization.id)
        except Exception as error:  # the database: nothing was voided, run again
            return found(opened, "failed", None, f"fence: {type(error).__name__}")
        if status is not None:
            return found(opened, "recorded_after_fence", status)
        try:
            await self.provider.void(authorization)
        except PaymentError as error:
            return found(opened, "failed", None, f"void: {error.code}")
        log.info("reconcile: voided orphaned authorization %s", authorization.id)
        return found(opened, "voided_orphan", None)

    async def statuses(self, refs: Sequence[str]) -> dict[str, str]:
        """The database's status of each provider reference it has a payment for."""
        if not refs:
            return {}

        async def read(conn: AsyncConnection) -> dict[str, str]:
            rows = await conn.execute(
                sa.select(t.payments.c.provider_ref, t.payments.c.status).where(
                    t.payments.c.provider_ref.in_(list(refs))
                )
            )
            return {row.provider_ref: row.status for row in rows}

        return await run_transaction(self.engine, read)


def found(
    opened: OpenAuthorization, finding: Finding, status: str | None, detail: str | None = None
) -> Item:
    authorization = opened.authorization
    return Item(
        authorization_id=authorization.id,
        provider=authorization.provider,
        amount_minor=authorization.amount_minor,
        currency=authorization.currency,
        created_at=opened.created_at,
        finding=finding,
        status=status,
        detail=detail,
    )


class ReportBody(msgspec.Struct, frozen=True, kw_only=True):
    """The report as the writer's endpoint answers it (`tessera payments reconcile` prints it)."""

    checked_at: datetime
    created_before: datetime
    applied: bool
    open_at_provider: int
    items: list[Item]
    counts: dict[str, int]  # by finding
    ok: bool  # nothing left for an operator (`Report.ok`)


def report_body(report: Report) -> ReportBody:
    return ReportBody(
        checked_at=report.checked_at,
        created_before=report.created_before,
        applied=report.applied,
        open_at_provider=report.open_at_provider,
        items=report.items,
        counts=report.counts,
        ok=report.ok,
    )
