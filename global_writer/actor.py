"""The event actor: every change to an event's claims and holds (holds, releases, expiries,
extensions, sales) goes through one queue and is committed in batches (group commit,
docs/architecture.md, docs/adr/0004).

A batch runs in three steps (after claiming, in one READ COMMITTED statement committed on its
own, the Idempotency-Keys of the hold requests that bring theirs: `claim_keys`):
1. *Pick* in memory: the engine chooses and pre-filters seats for each hold request, tentatively
   holding them so later requests in the batch cannot take the same seats.
2. *Write* one SERIALIZABLE transaction of at most seven statements whatever the batch's size
   (global_writer/batch_sql.py): releases, extensions, holds with their claims (the database
   decides who won), sales with their orders and payments, the version bump of every touched
   section *only while this writer's lease is current*, the outbox, every request's answer.
3. *Finish* after commit: memory is restored to exactly what was written (states, versions, live
   holds), replies are sent, the outbox goes to the publisher.
Any failure before commit restores memory from the snapshot taken in step 1.

The queue is bounded by time, not only by length (`submit`): a request that would wait longer
than `limits.actor_queue_wait_s_max` to be committed is refused at once with 503 and
`Retry-After`, so accepted work finishes quickly and no fan is answered after their hold expired.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import tessera_core as tc
from global_writer import batch_sql, errors, idempotency, outbox, replies
from global_writer.db.retry import run_transaction
from global_writer.ops import (
    KEY_EXISTS,
    AnyOp,
    Batch,
    ExtendOp,
    HoldOp,
    Idem,
    LiveHold,
    RefundOp,
    Released,
    ReleaseOp,
    Reply,
    SellOp,
)
from global_writer.outbox import OutboxMessage, Pending
from global_writer.runtime import EventRuntime, StaleLease, reload_state
from global_writer.tickets import mark_orders
from tessera import contracts, limits, webhooks
from tessera.observability import Metrics

log = logging.getLogger("global_writer.actor")

AVAILABLE, HELD, SOLD = 0, 1, 2


class OutOfSync(Exception):
    """Memory and database disagree on a section's version: reload the event."""


@dataclass(frozen=True)
class Buyer:
    """What the order's messages say about its fan, read in the order's transaction."""

    share_purchases: bool
    email: str | None
    phone: str | None


@dataclass
class Written:
    """What one attempt of the transaction wrote; rebuilt from scratch on every retry."""

    versions: dict[int, int] = field(default_factory=dict)
    final_states: dict[int, bytes] = field(default_factory=dict)
    # New holds that won every seat, with their deadlines (the database's).
    expires_at: dict[uuid.UUID, datetime] = field(default_factory=dict)
    lost: dict[uuid.UUID, list[str]] = field(default_factory=dict)
    # New holds the database refused for the per-fan limit: the event's limit, and the seats
    # their fan already had.
    over_limit: dict[uuid.UUID, tuple[int, int]] = field(default_factory=dict)
    freed: list[tuple[str, int, str]] = field(default_factory=list)
    released_holds: set[uuid.UUID] = field(default_factory=set)
    extended: dict[uuid.UUID, datetime] = field(default_factory=dict)
    # Order id → the seats it bought.
    sold: dict[uuid.UUID, list[tuple[int, int]]] = field(default_factory=dict)
    released: dict[int, Released] = field(default_factory=dict)
    replies: dict[int, Reply] = field(default_factory=dict)
    outbox: list[OutboxMessage] = field(default_factory=list)
    needs_reload: bool = False
    # The transaction's `now()`, and when the versions were bumped (the feed's commit time).
    db_now: datetime | None = None
    bumped_at: datetime | None = None
    orders: list[tuple[SellOp, list[str], Buyer]] = field(default_factory=list)
    # Refund op → the orders it refunded (those still confirmed when its batch committed), and
    # each refunded order's fan and seats (for its `order.refunded` webhook).
    refunded: dict[int, list[uuid.UUID]] = field(default_factory=dict)
    refunded_orders: dict[uuid.UUID, tuple[str, list[str]]] = field(default_factory=dict)


class Publisher(Protocol):
    """What the actor hands committed messages to (publisher.JetStreamPublisher)."""

    def enqueue(self, messages: list[OutboxMessage], snapshots: dict[str, bytes]) -> None: ...


CommitHook = Callable[[EventRuntime, Written, Batch], None]


@dataclass
class Pace:
    """How long the actor's batches take, smoothed: what `submit` predicts a new request's wait
    from. A request joining `queued` others waits for the rest of the batch committing now (if
    any), then for the batches the queue ahead of it fills (at most `batch_requests_max` each).
    An idle actor makes no one wait, however slow its last batch was: the next batch measures
    afresh, so one stalled commit cannot shut the door for good."""

    batch_requests_max: int
    batch_s: float = 0.0
    # perf_counter() when the batch committing now began; None while none is.
    running_since: float | None = None

    def begin(self) -> None:
        self.running_since = time.perf_counter()

    def end(self) -> None:
        assert self.running_since is not None
        seconds = time.perf_counter() - self.running_since
        self.running_since = None
        if self.batch_s == 0.0:
            self.batch_s = seconds
        else:
            self.batch_s += limits.actor_pace_newest_share * (seconds - self.batch_s)

    def wait_s(self, queued: int) -> float:
        current = 0.0
        if self.running_since is not None:
            elapsed = time.perf_counter() - self.running_since
            # Past its usual time a batch has no known end (a stalled commit): expect it to take
            # as long again as it has so far.
            current = self.batch_s - elapsed if elapsed < self.batch_s else elapsed
        return current + self.batch_s * math.ceil(queued / self.batch_requests_max)


class EventActor:
    def __init__(
        self,
        runtime: EventRuntime,
        engine: AsyncEngine,
        publisher: Publisher,
        *,
        answers_engine: AsyncEngine | None = None,
        owner: str,
        batch_window_s: float,
        batch_requests_max: int,
        crash_after_commit: bool = False,
        crash_after_sale: bool = False,
        on_commit: CommitHook | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.runtime = runtime
        self.engine = engine
        # A batch that changes nothing (every hold refused in memory) only stores its answers:
        # one statement, which needs no SERIALIZABLE transaction of its own (READ COMMITTED,
        # autocommit, like the keys' claims; docs/adr/0002).
        self.answers_engine = answers_engine or engine
        self.publisher = publisher
        self.owner = owner
        self.batch_window_s = batch_window_s
        self.batch_requests_max = batch_requests_max
        self.crash_after_commit = crash_after_commit
        self.crash_after_sale = crash_after_sale
        self.on_commit = on_commit
        self.metrics = metrics or Metrics()
        self.queue: asyncio.Queue[AnyOp] = asyncio.Queue(limits.actor_queue_ops_max)
        self.pace = Pace(batch_requests_max)
        # Set when memory may have drifted from the database; the loop reloads before going on.
        self.reload_wanted = False
        # The batch being committed: its picks are in memory, tentatively, until it commits.
        self.pending: Plan | None = None

    async def submit(self, op: AnyOp) -> Any:
        """Queue `op` and wait for its batch. 503 at once when the queue would make it wait
        longer than `limits.actor_queue_wait_s_max` (or is full); 503 when it waited too long to
        be taken into a batch (it is then dropped: it never runs, so the caller may free its key).
        Once taken, the batch's outcome is awaited however long its commit takes: answering before
        it would let an effect commit after its key was freed (a retry would run it twice)."""
        if not self.runtime.owner:
            raise errors.Unavailable("this writer no longer owns the event; retry")
        self.admit(op)
        try:
            self.queue.put_nowait(op)
        except asyncio.QueueFull:
            raise overloaded(limits.actor_queue_wait_s_max) from None
        try:
            async with asyncio.timeout(limits.actor_reply_timeout_s):
                return await asyncio.shield(op.future)
        except TimeoutError:
            if op.taken:
                return await op.future
            op.cancelled = True
            raise errors.Unavailable("commit is taking too long; retry with the same key") from None

    def admit(self, op: AnyOp) -> None:
        """Refuse a fan's request that would wait past the bound. Expiries are never refused:
        they are the writer's own work, and they free seats for the fans who wait."""
        if isinstance(op, ReleaseOp) and op.reason == "expired":
            return
        self.check_capacity()

    def check_capacity(self) -> None:
        """503 `overloaded` with Retry-After when a request joining the queue now would wait
        longer than `limits.actor_queue_wait_s_max` to be committed."""
        wait_s = self.pace.wait_s(self.queue.qsize())
        if wait_s > limits.actor_queue_wait_s_max:
            self.metrics.requests_shed.inc()
            raise overloaded(wait_s)

    async def run(self) -> None:
        while True:
            ops: list[AnyOp] = [await self.queue.get()]
            if self.queue.empty() and self.batch_window_s > 0:
                await asyncio.sleep(self.batch_window_s)
            while len(ops) < self.batch_requests_max and not self.queue.empty():
                ops.append(self.queue.get_nowait())
            ops = [op for op in ops if not op.cancelled]
            for op in ops:
                op.taken = True
            if ops:
                self.pace.begin()
                try:
                    await self.process(Batch.of(ops))
                finally:
                    self.pace.end()
            if self.reload_wanted:
                await self.reload()

    async def reload(self) -> None:
        try:
            await reload_state(self.engine, self.runtime)
            self.reload_wanted = False
        except Exception:
            log.exception("reloading event %s failed; will retry", self.runtime.event_id)
            await asyncio.sleep(limits.relay_interval_s)

    async def process(self, batch: Batch) -> None:
        if any(op.claim_key for op in batch.holds):
            batch.holds = await self.claim_keys(batch.holds)
            if not len(batch):
                return
        plan = Plan(self.runtime, batch_id=uuid.uuid4().hex[:16])
        started = time.perf_counter()
        self.pending = plan
        try:
            pick(plan, batch.holds)
            plan.freeze()
            written = await run_transaction(
                self.engine if batch.changes_state else self.answers_engine,
                lambda conn: self.write(conn, plan, batch),
            )
        except Exception as error:
            plan.rollback()
            self.fail(batch, error)
            return
        finally:
            self.pending = None
        commit_s = time.perf_counter() - started
        self.metrics.batch_commit_latency_s.observe(commit_s)
        self.metrics.batch_size.observe(len(batch))
        log.info(
            "batch committed",
            extra={
                "event_id": str(self.runtime.event_id),
                "batch_id": plan.batch_id,
                "requests": len(batch),
                "commit_ms": round(commit_s * 1000, 1),
                "request_ids": [op.request_id for op in batch.ops() if op.request_id],
            },
        )
        self.finish(plan, written, batch)
        self.count(written, batch)

    def committed_section(self, position: int) -> bytes:
        """A section's encoded map as last committed. While a batch commits, memory holds its
        picks tentatively under the old version: a reader resyncing from that would keep seats
        taken that the batch may never commit, under a version whose delta then does not fit."""
        pending = self.pending
        if pending is not None and position in pending.base_maps:
            return pending.base_maps[position].encode()
        return self.runtime.seats.encode_section(position)

    async def claim_keys(self, holds: list[HoldOp]) -> list[HoldOp]:
        """Claim the Idempotency-Keys the batch's requests bring, in one statement committed
        before the effect's transaction (READ COMMITTED, docs/adr/0002). A request whose key
        exists already leaves the batch with `KEY_EXISTS`; the holds that stay are returned."""
        claiming = [op for op in holds if op.claim_key]
        idems = [op.idem for op in claiming if op.idem is not None]
        try:
            if len(idems) != len(claiming):
                raise ValueError("a hold asks for its key to be claimed but brings none")
            new = await idempotency.claim_new(self.answers_engine, idems)
        except Exception:
            log.exception("claiming %d idempotency keys failed", len(claiming))
            for op in claiming:
                op.future.set_exception(
                    errors.Unavailable("could not record the Idempotency-Key; retry")
                )
            return [op for op in holds if not op.claim_key]
        for op, claimed in zip(claiming, new, strict=True):
            op.claim_key = False
            op.claimed = claimed
            if not claimed:
                op.future.set_result(KEY_EXISTS)
        return [op for op in holds if not op.future.done()]

    def count(self, written: Written, batch: Batch) -> None:
        metrics = self.metrics
        metrics.holds_committed.inc(len(written.expires_at))
        rejected: Counter[str] = Counter()
        for op in batch.holds:
            if op.failure is not None:
                rejected[op.failure.code] += 1
            elif op.hold_id in written.over_limit:
                rejected[errors.LimitExceeded.code] += 1
            elif op.hold_id in written.lost:
                rejected["claim_conflict"] += 1
        for reason, count in rejected.items():
            metrics.holds_rejected.labels(reason=reason).inc(count)
        if written.lost:
            metrics.claim_conflicts.inc(len(written.lost))
        if written.sold:
            metrics.orders.inc(len(written.sold))
        now = time.time()
        for release in batch.releases:
            if release.reason == "expired":
                for _ in written.released[id(release)].hold_ids:
                    metrics.expiry_lag_s.observe(max(0.0, now - release.due_at))

    def fail(self, batch: Batch, error: Exception) -> None:
        # Memory was rolled back, but the transaction may have committed all the same: a
        # connection lost while COMMIT was answered is ambiguous, and never rerun (db/retry.py).
        # Reload what the database has, holds' deadlines included (found by the fault suite).
        self.reload_wanted = True
        if isinstance(error, StaleLease):
            self.runtime.owner = False
            log.error("stale lease on event %s: stopped writing", self.runtime.event_id)
            failure: errors.WriterError = errors.Unavailable("this writer lost the event's lease")
        else:
            log.exception("batch of %d failed", len(batch), exc_info=error)
            failure = errors.Unavailable("the batch could not be committed; retry")
        for op in batch.ops():
            if not op.future.done():
                op.future.set_exception(failure)

    async def write(self, conn: AsyncConnection, plan: Plan, batch: Batch) -> Written:
        written = Written()
        plan.begin_attempt()
        if batch.releases:
            await self.write_releases(conn, plan, written, batch.releases)
        if batch.extends:
            await self.write_extends(conn, written, batch.extends)
        await self.write_holds(conn, plan, written, batch.holds)
        if batch.sells:
            await self.write_sells(conn, plan, written, batch.sells)
        if batch.refunds:
            await self.write_refunds(conn, plan, written, batch.refunds)
        pending: list[Pending] = []
        if plan.touched:
            await self.bump_versions(conn, plan, written)
            pending += self.deltas(plan, written)
            pending += self.order_events(written, plan.batch_id)
            pending += self.sold_out(plan, written)
            pending += self.refund_events(written)
        elif batch.changes_state:
            await self.check_lease(conn)
        written.outbox = await outbox.insert_many(conn, pending)
        await self.write_replies(conn, written, batch)
        return written

    async def write_releases(
        self, conn: AsyncConnection, plan: Plan, written: Written, releases: list[ReleaseOp]
    ) -> None:
        wanted = [(h, op.reason, op.user_id or "") for op in releases for h in op.hold_ids]
        rows = await conn.execute(
            batch_sql.RELEASE_HOLDS,
            {
                "event_id": self.runtime.event_id,
                "hold_ids": [hold_id for hold_id, _, _ in wanted],
                "reasons": [reason for _, reason, _ in wanted],
                "user_ids": [user_id for _, _, user_id in wanted],
            },
        )
        positions = self.runtime.positions
        for hold_id, section_id, index, user_id in rows:
            plan.set_state(positions[section_id], index, AVAILABLE)
            written.freed.append((section_id, index, user_id))
            written.released_holds.add(hold_id)
        live = self.runtime.holds
        for op in releases:
            released = [h for h in op.hold_ids if h in written.released_holds]
            # An expiry the database's clock refused (an extension, or clocks that disagree):
            # due again at the deadline the writer knows.
            still_active = {
                h: live[h].expires_at
                for h in op.hold_ids
                if h not in written.released_holds and h in live
            }
            reply = Reply(204, b"") if op.user_id is not None else None
            written.released[id(op)] = Released(released, still_active, reply)

    async def write_extends(
        self, conn: AsyncConnection, written: Written, extends: list[ExtendOp]
    ) -> None:
        rows = await conn.execute(
            batch_sql.EXTEND_HOLDS,
            {
                "hold_ids": [op.hold_id for op in extends],
                "user_ids": [op.user_id for op in extends],
                "seconds": [op.seconds for op in extends],
            },
        )
        written.extended = {row[0]: row[1] for row in rows}
        for op in extends:
            written.replies[id(op)] = replies.extend_reply(
                self.runtime, self.runtime.holds.get(op.hold_id), written.extended.get(op.hold_id)
            )

    async def write_holds(
        self, conn: AsyncConnection, plan: Plan, written: Written, holds: list[HoldOp]
    ) -> None:
        """The hold rows and their claims in one statement; a hold that lost a seat (only
        another writer could have taken it) is undone, and memory reloaded after commit."""
        ready = [op for op in holds if op.failure is None]
        if not ready:
            return
        runtime = self.runtime
        section_ids = runtime.section_ids
        picked = [(op, p, i) for op in ready for p, i in op.picked]
        rows = await conn.execute(
            batch_sql.HOLD_SEATS,
            {
                "event_id": runtime.event_id,
                "ttl_s": runtime.hold_ttl_s,
                "hold_ids": [op.hold_id for op in ready],
                "hold_users": [op.user_id for op in ready],
                "seat_counts": [len(op.picked) for op in ready],
                "seat_lists": [seat_list(runtime, op.picked) for op in ready],
                "section_ids": [section_ids[p] for _, p, _ in picked],
                "seat_indexes": [i for _, _, i in picked],
                "claim_holds": [op.hold_id for op, _, _ in picked],
                "claim_users": [op.user_id for op, _, _ in picked],
            },
        )
        won: set[tuple[uuid.UUID, str, int]] = set()
        deadlines: dict[uuid.UUID, datetime] = {}
        for hold_id, within, had, seat_limit, expires_at, section_id, index in rows:
            if not within:
                written.over_limit[hold_id] = (seat_limit, int(had))
                continue
            deadlines[hold_id] = expires_at
            if section_id is not None:
                won.add((hold_id, section_id, index))
        self.refuse_over_limit(plan, written, ready)
        lost = []
        for op in ready:
            if op.hold_id in written.over_limit:
                continue
            taken = [(p, i) for p, i in op.picked if (op.hold_id, section_ids[p], i) not in won]
            if not taken:
                written.expires_at[op.hold_id] = deadlines[op.hold_id]
                continue
            lost.append(op.hold_id)
            written.lost[op.hold_id] = [runtime.seat_id(p, i) for p, i in taken]
            for p, i in op.picked:
                if (p, i) not in taken:
                    plan.set_state(p, i, AVAILABLE)
        if lost:
            written.needs_reload = True
            await conn.execute(batch_sql.DROP_LOST_CLAIMS, {"hold_ids": lost})
            await conn.execute(batch_sql.DROP_LOST_HOLDS, {"hold_ids": lost})

    def refuse_over_limit(self, plan: Plan, written: Written, ready: list[HoldOp]) -> None:
        """Free the seats picked for the holds the database refused for the per-fan limit. Memory
        let them through, so its counts are wrong: reload them after commit."""
        if not written.over_limit:
            return
        written.needs_reload = True
        for op in ready:
            if op.hold_id in written.over_limit:
                for position, index in op.picked:
                    plan.set_state(position, index, AVAILABLE)

    async def write_sells(
        self, conn: AsyncConnection, plan: Plan, written: Written, sells: list[SellOp]
    ) -> None:
        """Every checkout in one statement: a live hold becomes an order with its payment
        `authorized`; any other checkout's authorization is recorded `void_pending`."""
        runtime = self.runtime
        rows = await conn.execute(
            batch_sql.SELL_HOLDS,
            {
                "event_id": runtime.event_id,
                "hold_ids": [op.hold_id for op in sells],
                "user_ids": [op.user_id for op in sells],
                "order_ids": [op.order_id for op in sells],
                "payment_ids": [op.payment_id for op in sells],
                "amounts": [op.amount_minor for op in sells],
                "currencies": [op.currency for op in sells],
                "providers": [op.provider for op in sells],
                "refs": [op.provider_ref for op in sells],
                # No key, no fence (tests drive the actor without one; checkout always has one).
                "idem_keys": [op.idem.key if op.idem else "" for op in sells],
                "attempts": [op.idem.attempt if op.idem else None for op in sells],
                **ticket_params(sells),
            },
        )
        buyers = {}
        by_hold = {op.hold_id: op for op in sells}
        for hold_id, share, email, phone, tickets in rows:
            buyers[hold_id] = Buyer(bool(share), email, phone)
            sell = by_hold[hold_id]
            if tickets != len(sell.tickets):
                # A ticket for a seat the hold does not have: memory and database disagree.
                raise OutOfSync(f"order {sell.order_id}: {tickets} of {len(sell.tickets)} tickets")
        for op in sells:
            if op.hold_id not in buyers:
                continue
            hold = runtime.holds.get(op.hold_id)
            if hold is None:
                # Every active hold is in the index (loaded at start, added at commit): the
                # database sold one memory does not know, so memory has drifted.
                raise OutOfSync(f"hold {op.hold_id} sold but not in the live-hold index")
            for position, index in hold.seats:
                plan.set_state(position, index, SOLD)
            written.sold[op.order_id] = hold.seats
            seat_ids = [runtime.seat_id(p, i) for p, i in hold.seats]
            written.orders.append((op, seat_ids, buyers[op.hold_id]))

    async def write_refunds(
        self, conn: AsyncConnection, plan: Plan, written: Written, refunds: list[RefundOp]
    ) -> None:
        """Every refund in one statement (batch_sql.REFUND_ORDERS), then the refunded orders'
        tickets: their seats are back on sale in memory as in the database."""
        wanted = [pair for op in refunds for pair in op.orders]
        rows = await conn.execute(
            batch_sql.REFUND_ORDERS,
            {
                "event_id": self.runtime.event_id,
                "order_ids": [order_id for order_id, _ in wanted],
                "hold_ids": [hold_id for _, hold_id in wanted],
            },
        )
        positions = self.runtime.positions
        done: set[uuid.UUID] = set()
        for order_id, section_id, index, user_id, buyer, seats in rows:
            done.add(order_id)
            written.refunded_orders[order_id] = (buyer, list(seats))
            if section_id is not None:
                plan.set_state(positions[section_id], index, AVAILABLE)
                written.freed.append((section_id, index, user_id))
        if done:
            await mark_orders(conn, sorted(done), "refunded")
        for op in refunds:
            written.refunded[id(op)] = [order_id for order_id, _ in op.orders if order_id in done]

    async def check_lease(self, conn: AsyncConnection) -> None:
        """The fencing check of a batch that touched no section (only extensions, or sales that
        all failed): at SERIALIZABLE, reading the lease orders the batch before any takeover."""
        runtime = self.runtime
        owned = await conn.execute(
            batch_sql.LEASE_IS_CURRENT,
            {"event_id": runtime.event_id, "owner": self.owner, "epoch": runtime.lease_epoch},
        )
        if owned.first() is None:
            raise StaleLease(f"fencing epoch {runtime.lease_epoch} is no longer current")

    def order_events(self, written: Written, batch_id: str) -> list[Pending]:
        """Per order: its event on the change feed (friends index) and its confirmation on the
        notifier's work queue, both committed with the sale so neither can be lost."""
        if not written.orders:
            return []
        runtime = self.runtime
        assert written.db_now is not None
        subject = contracts.orders_subject(runtime.event_id)
        confirmed_subject = contracts.order_confirmed_subject(runtime.event_id)
        pending = []
        for op, seats, buyer in written.orders:
            headers = {
                contracts.HEADER_EVENT: str(runtime.event_id),
                contracts.HEADER_BATCH: batch_id,
                contracts.HEADER_REQUEST: op.request_id,
            }
            event = contracts.OrderEvent(
                order_id=op.order_id,
                event_id=runtime.event_id,
                user_id=op.user_id,
                seats=seats,
                share_purchases=buyer.share_purchases,
                created_at=written.db_now,
            )
            payload = contracts.order_event_encoder.encode(event)
            pending.append(Pending(subject, f"order.{op.order_id}", headers, payload))
            confirmation = contracts.OrderConfirmation(
                order_id=op.order_id,
                event_id=runtime.event_id,
                event_name=runtime.name,
                user_id=op.user_id,
                seats=seats,
                amount=op.amount_minor,
                currency=op.currency,
                confirmed_at=written.db_now,
                email=buyer.email,
                phone=buyer.phone,
                venue_name=runtime.venue.name,
                onsale_at=runtime.onsale_at,
                tickets=[
                    contracts.TicketCopy(ticket_id=t.ticket_id, seat=t.seat, token=t.token)
                    for t in op.tickets
                ],
            )
            pending.append(
                Pending(
                    confirmed_subject,
                    contracts.order_confirmed_msg_id(op.order_id),
                    {**headers, contracts.HEADER_ORDER: str(op.order_id)},
                    contracts.order_event_encoder.encode(confirmation),
                )
            )
        return pending

    def refund_events(self, written: Written) -> list[Pending]:
        """The `order.refunded` webhook (docs/webhooks.md) of each order the batch refunded, in
        the refund's transaction; its id is the order's, so it is announced once."""
        runtime = self.runtime
        if not written.refunded_orders:
            return []
        assert written.db_now is not None
        headers = {contracts.HEADER_EVENT: str(runtime.event_id)}
        subject = webhooks.events_subject(str(runtime.event_id))
        pending = []
        for order_id, (user_id, seats) in written.refunded_orders.items():
            event = webhooks.WebhookEvent(
                id=f"order.refunded.{order_id}",
                type="order.refunded",
                created=written.db_now,
                data={
                    "order_id": str(order_id),
                    "event_id": str(runtime.event_id),
                    "user_id": user_id,
                    "seats": seats,
                    "refunded_at": written.db_now.isoformat(),
                },
            )
            pending.append(Pending(subject, event.id, headers, webhooks.encoder.encode(event)))
        return pending

    def sold_out(self, plan: Plan, written: Written) -> list[Pending]:
        """The `event.sold_out` webhook (docs/webhooks.md) when this batch's sales leave no seat
        available or held, in the sale's transaction. Its Nats-Msg-Id is the event's, so the
        relay's republishes fold into one; the dispatcher's markers stop a second delivery."""
        runtime = self.runtime
        # The engine's count is cheap and already excludes held seats: most batches stop here.
        if not written.orders or runtime.seats.available_count:
            return []
        for position in range(runtime.seats.section_count):
            states = plan.states.get(position) or runtime.seats.states(position)
            if AVAILABLE in states or HELD in states:
                return []
        assert written.db_now is not None
        event = webhooks.WebhookEvent(
            id=f"event.sold_out.{runtime.event_id}",
            type="event.sold_out",
            created=written.db_now,
            data={"event_id": str(runtime.event_id), "name": runtime.name},
        )
        headers = {contracts.HEADER_EVENT: str(runtime.event_id)}
        subject = webhooks.events_subject(str(runtime.event_id))
        return [Pending(subject, event.id, headers, webhooks.encoder.encode(event))]

    async def bump_versions(self, conn: AsyncConnection, plan: Plan, written: Written) -> None:
        runtime = self.runtime
        ids = [runtime.section_ids[p] for p in sorted(plan.touched)]
        rows = (
            await conn.execute(
                batch_sql.BUMP_VERSIONS,
                {
                    "event_id": runtime.event_id,
                    "section_ids": ids,
                    "owner": self.owner,
                    "epoch": runtime.lease_epoch,
                },
            )
        ).all()
        bumped: dict[str, int] = {row[0]: row[1] for row in rows}
        if len(bumped) != len(ids):
            raise StaleLease(f"fencing epoch {runtime.lease_epoch} is no longer current")
        written.db_now = rows[0][2]
        written.bumped_at = rows[0][3]
        for position in plan.touched:
            version = int(bumped[runtime.section_ids[position]])
            if version != plan.base_maps[position].version + 1:
                raise OutOfSync(f"section {runtime.section_ids[position]} at {version}")
            written.versions[position] = version

    def deltas(self, plan: Plan, written: Written) -> list[Pending]:
        """One change-feed message per touched section: its delta from the batch's base."""
        runtime = self.runtime
        assert written.bumped_at is not None
        committed_ms = str(int(written.bumped_at.timestamp() * 1000))
        pending = []
        for position in sorted(plan.touched):
            version = written.versions[position]
            states = bytes(plan.states[position])
            written.final_states[position] = states
            scratch = runtime.scratch[position]
            scratch.restore(states, version)
            delta = plan.base_maps[position].delta_to(scratch.seat_map())
            section_id = runtime.section_ids[position]
            headers = {
                contracts.HEADER_EVENT: str(runtime.event_id),
                contracts.HEADER_SECTION: section_id,
                contracts.HEADER_VERSION: str(version),
                contracts.HEADER_COMMITTED_MS: committed_ms,
                contracts.HEADER_BATCH: plan.batch_id,
            }
            pending.append(
                Pending(
                    subject=contracts.seats_subject(runtime.event_id, section_id),
                    msg_id=contracts.delta_msg_id(runtime.event_id, section_id, version),
                    headers=headers,
                    payload=delta,
                )
            )
        return pending

    async def write_replies(self, conn: AsyncConnection, written: Written, batch: Batch) -> None:
        """Every request's answer, stored with its key in this transaction (one statement)."""
        runtime = self.runtime
        done: list[tuple[Idem, Reply]] = []
        for op in batch.holds:
            refused = written.over_limit.get(op.hold_id)
            if refused is not None:
                reply = replies.error_reply(over_limit(*refused))
            else:
                reply = replies.hold_reply(runtime, op, written.expires_at, written.lost)
            written.replies[id(op)] = reply
            if op.idem is not None:
                done.append((op.idem, reply))
        for sell in batch.sells:
            seats = written.sold.get(sell.order_id)
            if seats is not None:
                reply = replies.order_reply(runtime, sell, seats)
            else:
                reply = replies.sale_refused(runtime.holds.get(sell.hold_id), written.db_now)
            written.replies[id(sell)] = reply
            if sell.idem is not None:
                done.append((sell.idem, reply))
        for extend in batch.extends:
            if extend.idem is not None:
                done.append((extend.idem, written.replies[id(extend)]))
        await idempotency.complete(conn, done)

    def finish(self, plan: Plan, written: Written, batch: Batch) -> None:
        runtime = self.runtime
        for position, states in written.final_states.items():
            runtime.seats.restore(position, states, written.versions[position])
        self.finish_holds(written, batch)
        snapshots = self.due_snapshots(written)
        if (self.crash_after_commit and written.outbox) or (self.crash_after_sale and written.sold):
            os.kill(os.getpid(), signal.SIGKILL)
        self.publisher.enqueue(written.outbox, snapshots)
        if self.on_commit is not None:
            self.on_commit(runtime, written, batch)
        self.resolve(written, batch)
        self.reload_wanted = self.reload_wanted or written.needs_reload

    def finish_holds(self, written: Written, batch: Batch) -> None:
        """The live-hold index, per-fan counts and the expiry wheel, as committed."""
        runtime = self.runtime
        live, wheel = runtime.holds, runtime.wheel
        for op in batch.holds:
            deadline = written.expires_at.get(op.hold_id)
            if deadline is None:
                continue
            live[op.hold_id] = LiveHold(op.hold_id, op.user_id, op.picked, deadline)
            runtime.user_seats[op.user_id] = runtime.user_seats.get(op.user_id, 0) + len(op.picked)
            wheel.schedule(str(op.hold_id), int(deadline.timestamp() * 1000))
        for _, _, user_id in written.freed:
            runtime.user_seats[user_id] = max(0, runtime.user_seats.get(user_id, 0) - 1)
        for hold_id in written.released_holds:
            live.pop(hold_id, None)
            wheel.cancel(str(hold_id))
        for hold_id, deadline in written.extended.items():
            hold = live.get(hold_id)
            if hold is not None:
                hold.expires_at, hold.extended = deadline, True
                wheel.schedule(str(hold_id), int(deadline.timestamp() * 1000))
        for sell in batch.sells:
            if sell.order_id in written.sold:
                live.pop(sell.hold_id, None)
                wheel.cancel(str(sell.hold_id))

    def resolve(self, written: Written, batch: Batch) -> None:
        for hold in batch.holds:
            hold.future.set_result(written.replies[id(hold)])
        for release in batch.releases:
            release.future.set_result(written.released[id(release)])
        for extend in batch.extends:
            extend.future.set_result(written.replies[id(extend)])
        for sell in batch.sells:
            sell.future.set_result(written.replies[id(sell)])
        for refund in batch.refunds:
            refund.future.set_result(written.refunded[id(refund)])

    def due_snapshots(self, written: Written) -> dict[str, bytes]:
        runtime = self.runtime
        due: dict[str, bytes] = {}
        now = time.monotonic()
        for position, version in written.versions.items():
            last_version = runtime.snapshot_versions.get(position, 0)
            last_time = runtime.snapshot_times.get(position, 0.0)
            by_count = version - last_version >= limits.snapshot_gap_versions_max
            if by_count or now - last_time >= limits.snapshot_interval_s:
                key = contracts.snapshot_key(runtime.event_id, runtime.section_ids[position])
                due[key] = runtime.seats.encode_section(position)
                runtime.snapshot_versions[position] = version
                runtime.snapshot_times[position] = now
        return due


def ticket_params(sells: list[SellOp]) -> dict[str, list[Any]]:
    """The sales' tickets as the sale statement's arrays, one element per ticket."""
    tickets = [(op.hold_id, ticket) for op in sells for ticket in op.tickets]
    return {
        "ticket_ids": [ticket.ticket_id for _, ticket in tickets],
        "ticket_holds": [hold_id for hold_id, _ in tickets],
        "ticket_seats": [ticket.seat for _, ticket in tickets],
        "ticket_kids": [ticket.kid for _, ticket in tickets],
        "ticket_tokens": [ticket.token for _, ticket in tickets],
        "ticket_issued": [ticket.issued_at for _, ticket in tickets],
    }


def overloaded(wait_s: float) -> errors.WriterError:
    retry_after_s = max(1, math.ceil(min(wait_s, limits.overload_retry_after_s_max)))
    return errors.Overloaded(
        "the writer is busy; retry with the same Idempotency-Key",
        headers={"Retry-After": str(retry_after_s)},
    )


class Plan:
    """The batch's view of memory: snapshots of every section it touches (for rollback and for
    the deltas' base), and the section states the transaction is writing."""

    def __init__(self, runtime: EventRuntime, batch_id: str = "") -> None:
        self.runtime = runtime
        # Names the batch in its log line and its outbox messages (following a request).
        self.batch_id = batch_id
        self.base_states: dict[int, bytes] = {}
        self.base_maps: dict[int, tc.SeatMap] = {}
        self.states: dict[int, bytearray] = {}
        self.added: defaultdict[str, int] = defaultdict(int)
        self.picked: dict[int, bytes] = {}

    def freeze(self) -> None:
        """Remember the states after picking: every transaction attempt starts from them."""
        self.picked = {p: bytes(states) for p, states in self.states.items()}

    def begin_attempt(self) -> None:
        self.states = {p: bytearray(states) for p, states in self.picked.items()}

    @property
    def touched(self) -> set[int]:
        return set(self.states)

    def touch(self, position: int) -> None:
        if position not in self.base_states:
            seats = self.runtime.seats
            self.base_states[position] = seats.states(position)
            self.base_maps[position] = seats.seat_map(position)

    def set_state(self, position: int, index: int, state: int) -> None:
        self.touch(position)
        if position not in self.states:
            self.states[position] = bytearray(self.runtime.seats.states(position))
        self.states[position][index] = state

    def rollback(self) -> None:
        seats = self.runtime.seats
        for position, states in self.base_states.items():
            seats.restore(position, states, self.base_maps[position].version)


def pick(plan: Plan, holds: list[HoldOp]) -> None:
    """Choose and tentatively hold seats for each request, in arrival order, in memory."""
    runtime = plan.runtime
    seats = runtime.seats
    for op in holds:
        wanted = len(op.seats) if op.seats is not None else op.quantity
        have = runtime.user_seats.get(op.user_id, 0) + plan.added[op.user_id]
        # A presale wave's own limit is checked here only (the database holds the event's).
        limit = min(op.seat_limit or runtime.per_user_limit, runtime.per_user_limit)
        if have + wanted > limit:
            op.failure = over_limit(limit, have)
            continue
        chosen = choose(runtime, op)
        if chosen is None:
            continue
        for position, group in group_by_section(chosen).items():
            plan.touch(position)
            seats.hold(position, group)
            for index in group:
                plan.set_state(position, index, HELD)
        op.picked = chosen
        plan.added[op.user_id] += len(chosen)


def over_limit(per_user_limit: int, have: int) -> errors.WriterError:
    """The per-fan limit's refusal, the same whether memory or the database found it."""
    return errors.LimitExceeded(
        f"at most {per_user_limit} seats per fan for this event; you have {have}",
        limit=per_user_limit,
        held_or_bought=have,
    )


def choose(runtime: EventRuntime, op: HoldOp) -> list[tuple[int, int]] | None:
    seats = runtime.seats
    if op.seats is not None:
        taken = [
            runtime.seat_id(p, i)
            for p, i in op.seats
            if seats.state(p, i) != tc.SeatState.AVAILABLE
        ]
        if taken:
            op.failure = errors.SeatsUnavailable(
                f"{len(taken)} of the requested seats are not available", seats=taken
            )
            return None
        return op.seats
    found = seats.best_available(op.quantity, op.within, adjacent=op.adjacent)
    if found is None:
        kind = "adjacent " if op.adjacent else ""
        op.failure = errors.SeatsUnavailable(
            f"no {op.quantity} {kind}seats available in the requested sections", seats=[]
        )
        return None
    position, indices = found
    return [(position, i) for i in indices]


def seat_list(runtime: EventRuntime, seats: list[tuple[int, int]]) -> str:
    """A hold's seat ids as the hold statement takes them: split by the server on spaces (seat
    ids never contain one: tessera.venue.ID_PATTERN)."""
    return " ".join(runtime.seat_id(p, i) for p, i in seats)


def group_by_section(chosen: list[tuple[int, int]]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for position, index in chosen:
        groups[position].append(index)
    return groups
