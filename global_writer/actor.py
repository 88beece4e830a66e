"""The event actor: every change to an event's claims (holds, releases, expiries, sales) goes
through one queue and is committed in batches (group commit, ARCHITECTURE.md §3).

A batch runs in three steps (after claiming, in one READ COMMITTED statement committed on its
own, the Idempotency-Keys of the hold requests that bring theirs: `claim_keys`):
1. *Pick* in memory: the engine chooses and pre-filters seats for each hold request, tentatively
   holding them so later requests in the batch cannot take the same seats.
2. *Write* one SERIALIZABLE transaction: releases, hold rows, `INSERT … ON CONFLICT DO NOTHING
   RETURNING` of the claims (the database decides who won), sales; then each touched section's
   version is bumped *only where this writer's fencing epoch is still current*; then one outbox
   row per section delta, order events, and the idempotency records of every request. Each of
   these is one statement for the whole batch, of a shape that does not depend on its size.
   A batch that changes nothing (every hold refused in memory) only stores its answers.
3. *Finish* after commit: memory is restored to exactly what was written (states and versions),
   replies are sent, the outbox goes to the publisher.
Any failure before commit restores memory from the snapshot taken in step 1.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import tessera_core as tc
from global_writer import errors, idempotency, outbox, replies
from global_writer.db import tables as t
from global_writer.db.retry import run_transaction
from global_writer.ops import KEY_EXISTS, HoldOp, Idem, Op, Released, ReleaseOp, Reply, SellOp
from global_writer.outbox import OutboxMessage, Pending
from global_writer.runtime import EventRuntime, StaleLease, reload_state
from tessera import contracts, limits
from tessera.observability import Metrics

log = logging.getLogger("global_writer.actor")

AVAILABLE, HELD, SOLD = 0, 1, 2


def _array(name: str, item: Any) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=pg.ARRAY(item))


# The batch's statements are built once, with a shape that does not depend on the batch's size
# (arrays unnested server-side, or executemany), so SQLAlchemy compiles each once and the driver
# prepares each once per connection.
#
# Who won each seat is decided here, by the primary key: rows that conflict are not inserted.
# SQL text because SQLAlchemy does not cache its PostgreSQL `insert(…).on_conflict_…()`
# constructs: it would compile this statement again for every batch.
CLAIM_SEATS: Final = sa.text(
    "INSERT INTO seat_claims (event_id, section_id, seat_index, hold_id, user_id, state)"
    " SELECT :event_id, claim.section_id, claim.seat_index, claim.hold_id, claim.user_id, 'held'"
    " FROM unnest(:section_ids, :seat_indexes, :hold_ids, :user_ids)"
    " AS claim (section_id, seat_index, hold_id, user_id)"
    " ON CONFLICT DO NOTHING"
    " RETURNING section_id, seat_index"
).bindparams(
    sa.bindparam("event_id", type_=pg.UUID(as_uuid=True)),
    _array("section_ids", sa.Text),
    _array("seat_indexes", sa.Integer),
    _array("hold_ids", pg.UUID(as_uuid=True)),
    _array("user_ids", sa.Text),
)
# The fencing check: versions move only where this writer's epoch is still current. `now()` is
# the transaction's timestamp, the same value the holds' `expires_at` was computed from.
BUMP_VERSIONS: Final = (
    t.sections.update()
    .where(
        t.sections.c.event_id == sa.bindparam("fence_event_id"),
        t.sections.c.section_id == sa.any_(_array("fence_section_ids", sa.Text)),
        t.sections.c.lease_owner == sa.bindparam("fence_owner"),
        t.sections.c.lease_epoch == sa.bindparam("fence_epoch"),
    )
    .values(version=t.sections.c.version + 1)
    # clock_timestamp(): when the bump ran, at the end of the batch; now() is its start. The
    # change feed's commit time is the former, or feed lag would include the batch's own work.
    .returning(
        t.sections.c.section_id, t.sections.c.version, sa.func.now(), sa.func.clock_timestamp()
    )
)


class OutOfSync(Exception):
    """Memory and database disagree on a section's version: reload the event."""


@dataclass
class Written:
    """What one attempt of the transaction wrote; rebuilt from scratch on every retry."""

    versions: dict[int, int] = field(default_factory=dict)
    final_states: dict[int, bytes] = field(default_factory=dict)
    expires_at: dict[uuid.UUID, datetime] = field(default_factory=dict)
    lost: dict[uuid.UUID, list[str]] = field(default_factory=dict)
    freed: list[tuple[str, int, str]] = field(default_factory=list)
    sold: dict[uuid.UUID, list[tuple[int, int]]] = field(default_factory=dict)
    released: dict[int, Released] = field(default_factory=dict)
    replies: dict[int, Reply] = field(default_factory=dict)
    outbox: list[OutboxMessage] = field(default_factory=list)
    needs_reload: bool = False
    # The transaction's `now()`, once a statement returned it.
    db_now: datetime | None = None
    # When the versions were bumped (the batch's last statement): the feed's commit time.
    bumped_at: datetime | None = None
    # Orders written, whose events (they carry `db_now`) go to the outbox with the deltas.
    orders: list[tuple[SellOp, list[str], Buyer]] = field(default_factory=list)


@dataclass(frozen=True)
class Buyer:
    """What the order's messages say about its fan, read in the order's transaction."""

    share_purchases: bool
    email: str | None
    phone: str | None


class Publisher(Protocol):
    """What the actor hands committed messages to (publisher.JetStreamPublisher)."""

    def enqueue(self, messages: list[OutboxMessage], snapshots: dict[str, bytes]) -> None: ...


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
        on_commit: Any = None,
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
        self.on_commit = on_commit
        self.metrics = metrics or Metrics()
        self.queue: asyncio.Queue[Op] = asyncio.Queue(limits.actor_queue_ops_max)
        # Holds get `now() + TTL` from the database's clock; the event's TTL never changes.
        self.insert_holds = t.holds.insert().values(
            expires_at=sa.func.now() + sa.text(f"interval '{int(runtime.hold_ttl_s)} seconds'")
        )
        # Set when memory may have drifted from the database; the loop reloads before going on.
        self.reload_wanted = False
        # The batch being committed: its picks are in memory, tentatively, until it commits.
        self.pending: Plan | None = None

    async def submit(self, op: Op) -> Any:
        """Queue `op` and wait for its batch; 503 when the queue is full, or when the op waited
        too long to be taken into a batch (it is then dropped: it never runs, so the caller may
        free its key and void its payment). Once taken, the batch's outcome is awaited however
        long its commit takes: answering before it would let an effect commit after its key was
        freed (a retry would run it twice) or its authorization voided."""
        if not self.runtime.owner:
            raise errors.Unavailable("this writer no longer owns the event; retry")
        try:
            self.queue.put_nowait(op)
        except asyncio.QueueFull:
            raise errors.Unavailable("writer overloaded; retry with the same key") from None
        try:
            async with asyncio.timeout(limits.actor_reply_timeout_s):
                return await asyncio.shield(op.future)
        except TimeoutError:
            if op.taken:
                return await op.future
            op.cancelled = True
            raise errors.Unavailable("commit is taking too long; retry with the same key") from None

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            if self.queue.empty() and self.batch_window_s > 0:
                await asyncio.sleep(self.batch_window_s)
            while len(batch) < self.batch_requests_max and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            batch = [op for op in batch if not op.cancelled]
            for op in batch:
                op.taken = True
            if batch:
                await self.process(batch)
            if self.reload_wanted:
                await self.reload()

    async def reload(self) -> None:
        try:
            await reload_state(self.engine, self.runtime)
            self.reload_wanted = False
        except Exception:
            log.exception("reloading event %s failed; will retry", self.runtime.event_id)
            await asyncio.sleep(limits.relay_interval_s)

    async def process(self, batch: list[Op]) -> None:
        holds = [op for op in batch if isinstance(op, HoldOp)]
        releases = [op for op in batch if isinstance(op, ReleaseOp)]
        sells = [op for op in batch if isinstance(op, SellOp)]
        if any(op.claim_key for op in holds):
            holds = await self.claim_keys(holds)
            if not (holds or releases or sells):
                return
        plan = Plan(self.runtime)
        started = time.perf_counter()
        self.pending = plan
        try:
            pick(plan, holds)
            plan.freeze()
            effects = releases or sells or any(op.failure is None for op in holds)
            written = await run_transaction(
                self.engine if effects else self.answers_engine,
                lambda conn: self.write(conn, plan, holds, releases, sells),
            )
        except Exception as error:
            plan.rollback()
            self.fail(batch, error)
            return
        finally:
            self.pending = None
        self.metrics.batch_commit_latency_s.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(batch))
        self.finish(plan, written, holds, releases, sells)
        self.count(written, holds, releases, sells)

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
        before the effect's transaction (READ COMMITTED, docs/adr/0002), as `KeyClaims` would
        have, one stage and one round trip fewer. A request whose key exists already leaves the
        batch with `KEY_EXISTS`; the holds that stay are returned."""
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

    def count(
        self, written: Written, holds: list[HoldOp], releases: list[ReleaseOp], sells: list[SellOp]
    ) -> None:
        metrics = self.metrics
        metrics.holds_committed.inc(len(written.expires_at))
        rejected: Counter[str] = Counter()
        for op in holds:
            if op.failure is not None:
                rejected[op.failure.code] += 1
            elif op.hold_id in written.lost:
                rejected["claim_conflict"] += 1
        for reason, count in rejected.items():
            metrics.holds_rejected.labels(reason=reason).inc(count)
        if written.lost:
            metrics.claim_conflicts.inc(len(written.lost))
        if written.sold:
            metrics.orders.inc(len(written.sold))
        now = time.time()
        for release in releases:
            if release.reason == "expired":
                for _ in written.released[id(release)].hold_ids:
                    metrics.expiry_lag_s.observe(max(0.0, now - release.due_at))

    def fail(self, batch: list[Op], error: Exception) -> None:
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
        for op in batch:
            if not op.future.done():
                op.future.set_exception(failure)

    async def write(
        self,
        conn: AsyncConnection,
        plan: Plan,
        holds: list[HoldOp],
        releases: list[ReleaseOp],
        sells: list[SellOp],
    ) -> Written:
        written = Written()
        plan.begin_attempt()
        for op in releases:
            await self.write_release(conn, plan, written, op)
        held = await self.write_holds(conn, plan, written, holds)
        for sell in sells:
            await self.write_sell(conn, plan, written, sell)
        pending: list[Pending] = []
        if written.orders:
            pending += self.order_events(written, await self.db_now(conn, written))
        if plan.touched:
            await self.bump_versions(conn, plan, written)
            pending += self.deltas(plan, written)
        if held:
            # What the hold rows got: the transaction's now() plus the event's TTL.
            ttl = timedelta(seconds=self.runtime.hold_ttl_s)
            written.expires_at = dict.fromkeys(held, await self.db_now(conn, written) + ttl)
        written.outbox = await outbox.insert_many(conn, pending)
        await self.write_replies(conn, written, holds, sells)
        return written

    async def db_now(self, conn: AsyncConnection, written: Written) -> datetime:
        """The transaction's `now()`: from a statement that returned it, else asked for."""
        if written.db_now is None:
            written.db_now = (await conn.execute(sa.select(sa.func.now()))).scalar_one()
        return written.db_now

    async def write_release(
        self, conn: AsyncConnection, plan: Plan, written: Written, op: ReleaseOp
    ) -> None:
        conditions = [t.holds.c.hold_id.in_(op.hold_ids), t.holds.c.status == "active"]
        if op.reason == "expired":
            conditions.append(t.holds.c.expires_at <= sa.func.now())
        if op.user_id is not None:
            conditions.append(t.holds.c.user_id == op.user_id)
        released = list(
            (
                await conn.execute(
                    t.holds.update()
                    .where(*conditions)
                    .values(status=op.reason, ended_at=sa.func.now())
                    .returning(t.holds.c.hold_id)
                )
            ).scalars()
        )
        if released:
            freed = (
                await conn.execute(
                    t.seat_claims.delete()
                    .where(t.seat_claims.c.hold_id.in_(released))
                    .returning(
                        t.seat_claims.c.section_id,
                        t.seat_claims.c.seat_index,
                        t.seat_claims.c.user_id,
                    )
                )
            ).all()
            for section_id, index, user_id in freed:
                plan.set_state(self.runtime.positions[section_id], index, AVAILABLE)
                written.freed.append((section_id, index, user_id))
        rest = [h for h in op.hold_ids if h not in set(released)]
        still_active: dict[uuid.UUID, datetime] = {}
        if rest and op.reason == "expired":
            rows = await conn.execute(
                sa.select(t.holds.c.hold_id, t.holds.c.expires_at).where(
                    t.holds.c.hold_id.in_(rest), t.holds.c.status == "active"
                )
            )
            still_active = {row[0]: row[1] for row in rows}
        reply = None
        if op.user_id is not None:
            reply = await release_reply(conn, op, released)
        written.released[id(op)] = Released(released, still_active, reply)

    async def write_holds(
        self, conn: AsyncConnection, plan: Plan, written: Written, holds: list[HoldOp]
    ) -> list[uuid.UUID]:
        """Insert the hold rows (expiring at the database's `now()` + TTL), then claim their
        seats; the ids of the holds that got every seat."""
        ready = [op for op in holds if op.failure is None]
        if not ready:
            return []
        runtime = self.runtime
        await conn.execute(
            self.insert_holds,
            [
                {
                    "hold_id": op.hold_id,
                    "event_id": runtime.event_id,
                    "user_id": op.user_id,
                    "status": "active",
                    "seat_count": len(op.picked),
                    "seats": [runtime.seat_id(p, i) for p, i in op.picked],
                }
                for op in ready
            ],
        )
        section_ids = runtime.section_ids
        picked = [(op, p, i) for op in ready for p, i in op.picked]
        won = {
            (row[0], row[1])
            for row in await conn.execute(
                CLAIM_SEATS,
                {
                    "event_id": runtime.event_id,
                    "section_ids": [section_ids[p] for _, p, _ in picked],
                    "seat_indexes": [i for _, _, i in picked],
                    "hold_ids": [op.hold_id for op, _, _ in picked],
                    "user_ids": [op.user_id for op, _, _ in picked],
                },
            )
        }
        held = []
        lost = []
        for op in ready:
            taken = [(p, i) for p, i in op.picked if (runtime.section_ids[p], i) not in won]
            if taken:
                lost.append(op.hold_id)
                written.lost[op.hold_id] = [runtime.seat_id(p, i) for p, i in taken]
                for p, i in op.picked:
                    if (p, i) not in taken:
                        plan.set_state(p, i, AVAILABLE)
            else:
                held.append(op.hold_id)
        if lost:
            # The engine was wrong about these seats (only another writer could have taken them):
            # undo this request, reload the section from the database after commit.
            written.needs_reload = True
            await conn.execute(t.seat_claims.delete().where(t.seat_claims.c.hold_id.in_(lost)))
            await conn.execute(t.holds.delete().where(t.holds.c.hold_id.in_(lost)))
        return held

    async def write_sell(
        self, conn: AsyncConnection, plan: Plan, written: Written, op: SellOp
    ) -> None:
        bought_row = (
            await conn.execute(
                t.holds.update()
                .where(
                    t.holds.c.hold_id == op.hold_id,
                    t.holds.c.user_id == op.user_id,
                    t.holds.c.status == "active",
                    t.holds.c.expires_at > sa.func.now(),
                )
                .values(status="purchased", ended_at=sa.func.now())
                .returning(t.holds.c.seats, sa.func.now())
            )
        ).one_or_none()
        if bought_row is None:
            return
        bought, written.db_now = bought_row
        claims = (
            await conn.execute(
                t.seat_claims.update()
                .where(t.seat_claims.c.hold_id == op.hold_id)
                .values(state="sold", order_id=op.order_id)
                .returning(t.seat_claims.c.section_id, t.seat_claims.c.seat_index)
            )
        ).all()
        seats = [(self.runtime.positions[s], i) for s, i in claims]
        for position, index in seats:
            plan.set_state(position, index, SOLD)
        written.sold[op.order_id] = seats
        await self.write_order(conn, written, op, list(bought))

    async def write_order(
        self, conn: AsyncConnection, written: Written, op: SellOp, seats: list[str]
    ) -> None:
        runtime = self.runtime
        await conn.execute(
            t.orders.insert().values(
                order_id=op.order_id,
                event_id=runtime.event_id,
                user_id=op.user_id,
                hold_id=op.hold_id,
                seats=seats,
                amount_minor=op.amount_minor,
                currency=op.currency,
                status="confirmed",
            )
        )
        await conn.execute(
            t.payments.insert().values(
                payment_id=uuid.uuid4(),
                hold_id=op.hold_id,
                order_id=op.order_id,
                user_id=op.user_id,
                provider=op.provider,
                provider_ref=op.provider_ref,
                amount_minor=op.amount_minor,
                currency=op.currency,
                status="authorized",
            )
        )
        await conn.execute(pg_insert(t.users).values(user_id=op.user_id).on_conflict_do_nothing())
        user = (
            await conn.execute(
                sa.select(t.users.c.share_purchases, t.users.c.email, t.users.c.phone).where(
                    t.users.c.user_id == op.user_id
                )
            )
        ).one()
        written.orders.append((op, seats, Buyer(user.share_purchases, user.email, user.phone)))

    def order_events(self, written: Written, db_now: datetime) -> list[Pending]:
        """Per order: its event on the change feed (friends index) and its confirmation on the
        notifier's work queue, both committed with the sale so neither can be lost."""
        runtime = self.runtime
        subject = contracts.orders_subject(runtime.event_id)
        confirmed_subject = contracts.order_confirmed_subject(runtime.event_id)
        headers = {contracts.HEADER_EVENT: str(runtime.event_id)}
        pending = []
        for op, seats, buyer in written.orders:
            event = contracts.OrderEvent(
                order_id=op.order_id,
                event_id=runtime.event_id,
                user_id=op.user_id,
                seats=seats,
                share_purchases=buyer.share_purchases,
                created_at=db_now,
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
                confirmed_at=db_now,
                email=buyer.email,
                phone=buyer.phone,
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

    async def bump_versions(self, conn: AsyncConnection, plan: Plan, written: Written) -> None:
        runtime = self.runtime
        ids = [runtime.section_ids[p] for p in sorted(plan.touched)]
        rows = (
            await conn.execute(
                BUMP_VERSIONS,
                {
                    "fence_event_id": runtime.event_id,
                    "fence_section_ids": ids,
                    "fence_owner": self.owner,
                    "fence_epoch": runtime.lease_epoch,
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

    async def write_replies(
        self, conn: AsyncConnection, written: Written, holds: list[HoldOp], sells: list[SellOp]
    ) -> None:
        """Every request's answer, stored with its key in this transaction (one statement)."""
        runtime = self.runtime
        done: list[tuple[Idem, Reply]] = []
        for op in holds:
            reply = replies.hold_reply(runtime, op, written.expires_at, written.lost)
            written.replies[id(op)] = reply
            if op.idem is not None:
                done.append((op.idem, reply))
        for sell in sells:
            if sell.order_id in written.sold:
                reply = replies.order_reply(runtime, sell, written.sold[sell.order_id])
                written.replies[id(sell)] = reply
                if sell.idem is not None:
                    done.append((sell.idem, reply))
        await idempotency.complete(conn, done)

    def finish(
        self,
        plan: Plan,
        written: Written,
        holds: list[HoldOp],
        releases: list[ReleaseOp],
        sells: list[SellOp],
    ) -> None:
        runtime = self.runtime
        for position, states in written.final_states.items():
            runtime.seats.restore(position, states, written.versions[position])
        for op in holds:
            if op.hold_id in written.expires_at:
                runtime.user_seats[op.user_id] = runtime.user_seats.get(op.user_id, 0) + len(
                    op.picked
                )
                deadline = written.expires_at[op.hold_id]
                runtime.wheel.schedule(str(op.hold_id), int(deadline.timestamp() * 1000))
        for _, _, user_id in written.freed:
            runtime.user_seats[user_id] = max(0, runtime.user_seats.get(user_id, 0) - 1)
        for release in releases:
            for hold_id in written.released[id(release)].hold_ids:
                runtime.wheel.cancel(str(hold_id))
        for sell in sells:
            runtime.wheel.cancel(str(sell.hold_id))
        snapshots = self.due_snapshots(written)
        if self.crash_after_commit and written.outbox:
            os.kill(os.getpid(), signal.SIGKILL)
        self.publisher.enqueue(written.outbox, snapshots)
        if self.on_commit is not None:
            self.on_commit(runtime, written, holds, releases, sells)
        self.resolve(written, holds, releases, sells)
        self.reload_wanted = self.reload_wanted or written.needs_reload

    def resolve(
        self, written: Written, holds: list[HoldOp], releases: list[ReleaseOp], sells: list[SellOp]
    ) -> None:
        for op in holds:
            op.future.set_result(written.replies[id(op)])
        for release in releases:
            release.future.set_result(written.released[id(release)])
        for sell in sells:
            sell.future.set_result(written.replies.get(id(sell)))

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


class Plan:
    """The batch's view of memory: snapshots of every section it touches (for rollback and for
    the deltas' base), and the section states the transaction is writing."""

    def __init__(self, runtime: EventRuntime) -> None:
        self.runtime = runtime
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
        if have + wanted > runtime.per_user_limit:
            op.failure = errors.LimitExceeded(
                f"at most {runtime.per_user_limit} seats per fan for this event; you have {have}",
                limit=runtime.per_user_limit,
                held_or_bought=have,
            )
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


def group_by_section(chosen: list[tuple[int, int]]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for position, index in chosen:
        groups[position].append(index)
    return groups


async def release_reply(conn: AsyncConnection, op: ReleaseOp, released: list[uuid.UUID]) -> Reply:
    """DELETE /v1/holds/{id}: 204 when released now or already ended without a sale."""
    if released:
        return Reply(204, b"")
    row = (
        await conn.execute(
            sa.select(t.holds.c.status, t.holds.c.user_id).where(
                t.holds.c.hold_id == op.hold_ids[0]
            )
        )
    ).one_or_none()
    if row is None or row.user_id != op.user_id:
        return replies.error_reply(errors.NotFound("no such hold"))
    if row.status == "purchased":
        return replies.error_reply(
            errors.HoldNotActive("the hold was bought; it cannot be released")
        )
    return Reply(204, b"")
