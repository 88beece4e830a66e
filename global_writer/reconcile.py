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

Three callers share this code: `tessera payments reconcile` (the admin endpoint), the writer's
own schedule (`AutoReconciler`: every `TESSERA_RECONCILE_INTERVAL_S`, one writer at a time), and
the Stripe webhook (`Reconciler.check`: one authorization as the provider has it now, whatever its
state; a payment the settler still owes is made due at once).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

import msgspec
import sqlalchemy as sa
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from global_writer import idempotency
from global_writer.checkout import parse_attempt_key
from global_writer.db import tables as t
from global_writer.db.retry import run_transaction
from global_writer.metrics import ReconcileMetrics
from global_writer.payments import (
    FoundAuthorization,
    OpenAuthorization,
    PaymentError,
    PaymentProvider,
    SandboxProvider,
)
from tessera import limits

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
    # Only from `check` (one authorization, any state, e.g. a webhook's):
    "young",  # open, unknown to the database, inside the grace: a checkout may still commit it
    "woke_settler",  # ended at the provider, still owed by the settler: made due now
    "in_step",  # the database and the provider agree: nothing to do
]
SETTLER_STATUSES: Final = frozenset({"authorized", "void_pending"})
# What the settler still owes: a webhook that shows the provider moved on makes it due at once.
OWED_STATUSES: Final = ("authorized", "void_pending", "refund_pending")
# Findings that changed something, or need an operator: each one is logged.
ACTIONS: Final = frozenset(
    {"voided_orphan", "voided_again", "recorded_after_fence", "woke_settler", "mismatch", "failed"}
)
MAKE_DUE: Final = sa.text(
    "UPDATE payments SET next_attempt_at = now()"
    " WHERE provider_ref = :ref AND status IN ('authorized', 'void_pending', 'refund_pending')"
)


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
    metrics: ReconcileMetrics | None = None
    source: Literal["manual", "scheduled", "webhook"] = "manual"
    # Called when a payment was made due now (the settler's `notify`).
    on_due: Callable[[], None] | None = None

    async def run(
        self, *, older_than_s: float, apply: bool, items_max: int | None = None
    ) -> Report:
        """The provider's open authorizations older than `older_than_s`, each against the
        database; with `items_max`, only that many of them, oldest first."""
        now = datetime.now(UTC)
        created_before = now - timedelta(seconds=older_than_s)
        opened = await self.provider.list_open_authorizations(created_before)
        report = Report(
            checked_at=now,
            created_before=created_before,
            applied=apply,
            open_at_provider=len(opened),
        )
        if items_max is not None:
            opened = sorted(opened, key=lambda item: item.created_at)[:items_max]
        recorded = await self.statuses([item.authorization.id for item in opened])
        for each in opened:
            report.items.append(await self.one(each, recorded.get(each.authorization.id), apply))
        for item in report.items:
            self.count(item)
            if item.finding == "foreign":
                log.warning("reconcile: authorization %s foreign", item.authorization_id)
        return report

    def count(self, item: Item) -> Item:
        """The finding in the metrics, and in the log when it acted or needs an operator."""
        if self.metrics is not None:
            self.metrics.findings.labels(self.source, item.finding).inc()
        if item.finding in ACTIONS:
            level = logging.WARNING if item.finding in ("mismatch", "failed") else logging.INFO
            log.log(
                level,
                "reconcile (%s): authorization %s %s (%s)",
                self.source,
                item.authorization_id,
                item.finding,
                item.detail or item.status or "no payment recorded",
            )
        return item

    async def check(self, found_now: FoundAuthorization, *, older_than_s: float) -> Item:
        """One authorization as the provider has it now, against the database, acting as a scan
        with `apply` would. Acting on the current state (not a webhook's copy of it) makes
        repeated and out-of-order deliveries harmless."""
        authorization_id = found_now.authorization.id
        status = (await self.statuses([authorization_id])).get(authorization_id)
        opened = found_now.as_open()
        if found_now.state == "open":
            grace_ends = found_now.created_at + timedelta(seconds=older_than_s)
            if status is None and datetime.now(UTC) < grace_ends:
                return self.count(found(opened, "young", None))
            return self.count(await self.one(opened, status, apply=True))
        if status in OWED_STATUSES:
            await self.make_due(authorization_id)
            return self.count(found(opened, "woke_settler", status))
        return self.count(self.compare_ended(found_now, status))

    @staticmethod
    def compare_ended(found_now: FoundAuthorization, status: str | None) -> Item:
        """An authorization the provider ended (captured, voided, or never held money) that the
        settler no longer owes anything: in step, or a disagreement for an operator."""
        opened = found_now.as_open()
        ours = bool(found_now.idempotency_key and parse_attempt_key(found_now.idempotency_key))
        if found_now.state == "captured" and (status == "voided" or (status is None and ours)):
            return found(opened, "mismatch", status, "captured at the provider without an order")
        if found_now.state == "voided" and status in ("captured", "refunded"):
            return found(opened, "mismatch", status, "voided at the provider, recorded taken")
        return found(opened, "in_step", status)

    async def make_due(self, provider_ref: str) -> None:
        async def write(conn: AsyncConnection) -> None:
            await conn.execute(MAKE_DUE, {"ref": provider_ref})

        await run_transaction(self.engine, write)
        if self.on_due is not None:
            self.on_due()

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


# --- the schedule ---

LEASE_KEY: Final = "tessera:payments:reconcile-lease"


@dataclass
class AutoReconciler:
    """`tessera payments reconcile --apply`, run by the writer itself every `interval_s`: an
    authorization orphaned by a crash between authorize and the batch's commit is voided within
    `interval_s` (twice it, when the writer holding the lease dies) after it turns `older_than_s`.

    With a provider whose authorizations all writers share (Stripe), one writer scans per
    round: the one holding a lease in Redis (taken when free, or already its own; it lapses after
    two intervals, so another writer takes over when its holder dies). The lease only saves
    provider calls: two writers reconciling at once are safe (every void follows a fence, every
    step is idempotent), so a writer that cannot reach Redis scans anyway. The sandbox keeps its
    authorizations in each writer's memory, so there every writer reconciles its own.
    """

    reconciler: Reconciler
    redis: Redis
    owner: str
    interval_s: float = limits.reconcile_auto_interval_s
    older_than_s: float = limits.reconcile_auto_older_than_s
    items_max: int = limits.reconcile_auto_items_max
    rounds: int = field(default=0, init=False)

    @property
    def shared(self) -> bool:
        return not isinstance(self.reconciler.provider, SandboxProvider)

    async def run(self) -> None:
        # Writers started together do not all ask for the lease at once.
        await asyncio.sleep(random.SystemRandom().uniform(0, self.interval_s))
        while True:
            await self.round()
            await asyncio.sleep(self.interval_s)

    async def round(self) -> Report | None:
        """One scheduled pass; None when another writer holds the lease or the pass failed."""
        metrics = self.reconciler.metrics
        if self.shared and not await self.take_lease():
            if metrics is not None:
                metrics.rounds.labels("skipped").inc()
            return None
        try:
            report = await self.reconciler.run(
                older_than_s=self.older_than_s, apply=True, items_max=self.items_max
            )
        except Exception:
            log.exception("scheduled reconcile failed; will retry next round")
            if metrics is not None:
                metrics.rounds.labels("failed").inc()
            return None
        self.rounds += 1
        if metrics is not None:
            metrics.rounds.labels("ran").inc()
        return report

    async def take_lease(self) -> bool:
        ttl_ms = int(2 * self.interval_s * 1000)
        try:
            if await self.redis.set(LEASE_KEY, self.owner, nx=True, px=ttl_ms):
                return True
            if await self.redis.get(LEASE_KEY) != self.owner.encode():
                return False
            await self.redis.set(LEASE_KEY, self.owner, xx=True, px=ttl_ms)
        except (RedisError, OSError):
            log.warning("reconcile lease: Redis unreachable; reconciling without it")
        return True
