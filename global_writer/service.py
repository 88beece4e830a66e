"""The writer as a whole: connections, the events it owns (each with its actor, reaper and
lease), and the request flows the controllers call."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
import nats
import sqlalchemy as sa
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from global_writer import checkout, errors, idempotency, outbox
from global_writer.actor import EventActor, Written
from global_writer.db import migrate
from global_writer.db import tables as t
from global_writer.db.engine import create_engine
from global_writer.db.retry import run_transaction
from global_writer.mirror import HoldMirror
from global_writer.ops import KEY_EXISTS, HoldOp, Idem, Released, ReleaseOp, Reply, SellOp
from global_writer.payments import PaymentProvider, SandboxProvider
from global_writer.publisher import JetStreamPublisher, relay_once
from global_writer.runtime import EventRuntime, StaleLease, load_event, now_ms, renew_lease
from global_writer.schemas import CreateEvent, CreateHold, HoldView, OrderView, encoder
from global_writer.settings import Settings
from global_writer.tokens import VerifiedTokens
from tessera import contracts, limits
from tessera.jetstream import ensure_jetstream, load_definitions
from tessera.observability import Metrics
from tessera.venue import Venue, VenueError

log = logging.getLogger("global_writer")


@dataclass
class EventHandle:
    runtime: EventRuntime
    actor: EventActor
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


class Writer:
    def __init__(self, settings: Settings, payments: PaymentProvider | None = None) -> None:
        self.settings = settings.with_writer_id()
        self.payments = payments or SandboxProvider(slow_delay_s=settings.payment_slow_s)
        self.events: dict[uuid.UUID, EventHandle] = {}
        self.tasks: list[asyncio.Task[Any]] = []
        self.engine: AsyncEngine
        self.keys_engine: AsyncEngine
        self.key_claims: idempotency.KeyClaims
        self.redis: Redis
        self.mirror: HoldMirror
        self.nc: Nats
        self.js: JetStreamContext
        self.publisher: JetStreamPublisher
        self.ready = False
        self.metrics = Metrics()
        self.tokens = VerifiedTokens(self.settings.jwt_secret)

    @property
    def owner(self) -> str:
        return self.settings.writer_id

    async def start(self) -> None:
        await asyncio.to_thread(migrate.upgrade, self.settings.database_url)
        # No pre-ping: every database call goes through run_transaction, which reruns a
        # transaction whose pooled connection turns out dead (a server restart) on a fresh one.
        # Statements outside a transaction (autocommit) run at READ COMMITTED.
        self.engine = create_engine(
            self.settings.database_url, pre_ping=False, implicit_isolation="read committed"
        )
        # Idempotency keys are claimed by one atomic INSERT … ON CONFLICT, which needs no SSI;
        # at SERIALIZABLE, PostgreSQL's page-level predicate locks make concurrent claims of
        # *different* keys abort each other (docs/adr/0002). Effects stay SERIALIZABLE.
        self.keys_engine = self.engine.execution_options(isolation_level="READ COMMITTED")
        # Single statements that need no transaction around them (a batch of key claims, marking
        # outbox rows sent): one round trip instead of three (BEGIN, statement, COMMIT).
        self.autocommit_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.key_claims = idempotency.KeyClaims(self.autocommit_engine, self.keys_engine)
        self.redis = Redis.from_url(
            self.settings.redis_url,
            socket_timeout=limits.redis_timeout_s,
            socket_connect_timeout=limits.redis_timeout_s,
        )
        self.mirror = HoldMirror(self.redis)
        self.nc = await nats.connect(self.settings.nats_url, max_reconnect_attempts=-1)
        self.js = self.nc.jetstream()
        await ensure_jetstream(self.js, load_definitions(replicas=self.settings.jetstream_replicas))
        self.publisher = JetStreamPublisher(self.autocommit_engine, self.js)
        # Whatever a crash left unsent goes out before anything new.
        await relay_once(self.engine, self.js, 0)
        self.spawn(self.publisher.run(), self.publisher.relay())
        for event_id in await self.owned_event_ids():
            if await self.open_event(event_id) is None:
                self.spawn(self.adopt_later(event_id))
        keep_out_of_gc()
        self.ready = True

    def spawn(self, *coroutines: Any) -> None:
        for coroutine in coroutines:
            self.tasks.append(asyncio.create_task(coroutine))

    async def stop(self) -> None:
        self.ready = False
        tasks = self.tasks + [task for handle in self.events.values() for task in handle.tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.nc.drain()
        await self.redis.aclose()
        await self.engine.dispose()

    async def owned_event_ids(self) -> list[uuid.UUID]:
        async def read(conn: AsyncConnection) -> list[uuid.UUID]:
            rows = await conn.execute(
                sa.select(t.events.c.event_id).where(t.events.c.home_region == self.settings.region)
            )
            return list(rows.scalars())

        return await run_transaction(self.engine, read)

    async def open_event(self, event_id: uuid.UUID) -> EventHandle | None:
        try:
            runtime = await load_event(self.engine, event_id, self.owner)
        except StaleLease:
            log.warning("event %s is leased by another writer; not serving it", event_id)
            return None
        actor = EventActor(
            runtime,
            self.engine,
            self.publisher,
            answers_engine=self.autocommit_engine,
            owner=self.owner,
            batch_window_s=self.settings.batch_window_ms / 1000,
            batch_requests_max=self.settings.batch_requests_max,
            crash_after_commit=self.settings.fault_crash_after_commit,
            on_commit=self.after_commit,
            metrics=self.metrics,
        )
        handle = EventHandle(runtime, actor)
        handle.tasks = [
            asyncio.create_task(actor.run()),
            asyncio.create_task(self.reap(handle)),
            asyncio.create_task(self.keep_lease(handle)),
        ]
        self.events[event_id] = handle
        snapshots = {
            contracts.snapshot_key(event_id, section_id): runtime.seats.encode_section(p)
            for p, section_id in enumerate(runtime.section_ids)
        }
        self.publisher.enqueue([], snapshots)
        keep_out_of_gc()
        return handle

    async def adopt_later(self, event_id: uuid.UUID) -> None:
        """Another writer holds the event: try again until its lease lapses."""
        while event_id not in self.events:
            await asyncio.sleep(limits.lease_renew_s)
            with contextlib.suppress(Exception):
                await self.open_event(event_id)

    # --- events ---

    async def create_event(self, body: CreateEvent) -> uuid.UUID:
        try:
            venue = Venue(body.venue)
        except VenueError as error:
            raise errors.InvalidRequest(f"venue: {error}") from None
        if not limits.onsale_at_year_min <= body.onsale_at.year <= limits.onsale_at_year_max:
            raise errors.InvalidRequest(
                f"onsale_at must be in the years {limits.onsale_at_year_min}"
                f"-{limits.onsale_at_year_max}"
            )
        event_id = uuid.uuid4()
        info = contracts.EventInfo(
            event_id=event_id,
            name=body.name,
            onsale_at=body.onsale_at,
            hold_ttl_s=body.hold_ttl_s,
            per_user_limit=body.per_user_limit,
            home_region=body.home_region,
            venue=body.venue,
        )

        async def write(conn: AsyncConnection) -> outbox.OutboxMessage:
            await conn.execute(
                t.events.insert().values(
                    event_id=event_id,
                    name=body.name,
                    status="scheduled",
                    venue=msgspec.to_builtins(body.venue),
                    onsale_at=body.onsale_at,
                    hold_ttl_s=body.hold_ttl_s,
                    per_user_limit=body.per_user_limit,
                    home_region=body.home_region,
                )
            )
            await conn.execute(
                t.sections.insert(),
                [
                    {
                        "event_id": event_id,
                        "section_id": layout.section_id,
                        "position": position,
                        "seat_count": layout.seat_count,
                    }
                    for position, layout in enumerate(venue.layouts)
                ],
            )
            # Readers learn the event's layout from the change feed, never from the database.
            return await outbox.insert(
                conn,
                subject=contracts.kv_subject(contracts.event_info_key(event_id)),
                msg_id=f"event.{event_id}",
                headers={contracts.HEADER_EVENT: str(event_id)},
                payload=msgspec.json.encode(info),
            )

        message = await run_transaction(self.engine, write)
        self.publisher.enqueue([message], {})
        if body.home_region == self.settings.region:
            await self.open_event(event_id)
        return event_id

    async def handle(self, event_id: uuid.UUID) -> EventHandle:
        handle = self.events.get(event_id)
        if handle is not None:
            return handle

        async def read(conn: AsyncConnection) -> str | None:
            return (
                await conn.execute(
                    sa.select(t.events.c.home_region).where(t.events.c.event_id == event_id)
                )
            ).scalar_one_or_none()

        region = await run_transaction(self.engine, read)
        if region is None:
            raise errors.NotFound(f"no event {event_id}")
        raise errors.Unavailable(
            f"event {event_id} is written by its home region {region!r}", home_region=region
        )

    # --- holds ---

    async def hold(self, user_id: str, event_id: uuid.UUID, body: CreateHold, idem: Idem) -> Reply:
        runtime = (await self.handle(event_id)).runtime
        op = self.hold_op(runtime, user_id, body, idem)
        if not runtime.owner:
            # No actor to claim the key: a replay is still answered, anything else is a 503.
            return await self.run_idempotent(idem, lambda: self.submit(event_id, op))
        # The event's actor claims the key with the rest of its batch's (one statement), then
        # runs the hold; a failure after the claim frees the key, as `run_idempotent` does.
        op.claim_key = True
        try:
            reply = await self.submit(event_id, op)
        except BaseException:
            if op.claimed:
                with contextlib.suppress(Exception):
                    await idempotency.abandon(self.keys_engine, idem)
            raise
        if reply is not KEY_EXISTS:
            return reply
        # The key exists: replay its answer, refuse (422, 409), or, if it expired or its
        # request died, claim it now and run the hold after all.
        replay = await idempotency.begin_existing(self.keys_engine, idem)
        if replay is not None:
            return replay.reply
        retry = self.hold_op(runtime, user_id, body, idem)
        return await self.run_effect(idem, lambda: self.submit(event_id, retry))

    def hold_op(self, runtime: EventRuntime, user_id: str, body: CreateHold, idem: Idem) -> HoldOp:
        if (body.seats is None) == (body.best_available is None):
            raise errors.InvalidRequest("give exactly one of `seats` and `best_available`")
        if not runtime.on_sale(datetime.now(UTC)):
            raise errors.NotOnSale(f"on sale from {runtime.onsale_at.isoformat()}")
        if body.seats is not None:
            if len(body.seats) > limits.seats_per_hold_max:
                raise errors.InvalidRequest(
                    f"at most {limits.seats_per_hold_max} seats per hold, got {len(body.seats)}"
                )
            seats = [runtime.parse_seat(seat) for seat in body.seats]
            if len(set(seats)) != len(seats):
                raise errors.InvalidRequest("a seat appears twice in the request")
            return HoldOp(user_id, seats, idem=idem)
        best = body.best_available
        assert best is not None
        within = [runtime.section_position(s) for s in best.sections] or None
        return HoldOp(
            user_id, None, quantity=best.quantity, within=within, adjacent=best.adjacent, idem=idem
        )

    async def submit(self, event_id: uuid.UUID, op: HoldOp | SellOp) -> Reply:
        handle = await self.handle(event_id)
        reply: Reply = await handle.actor.submit(op)
        return reply

    async def run_idempotent(self, idem: Idem, effect: Any) -> Reply:
        """Replay a stored answer, or run `effect` (which stores its own final answer) and
        release the key if it failed without one."""
        replay = await self.key_claims.begin(idem)
        if replay is not None:
            return replay.reply
        return await self.run_effect(idem, effect)

    async def run_effect(self, idem: Idem, effect: Any) -> Reply:
        """Run `effect` under the claimed key; free the key if it failed without an answer."""
        try:
            reply: Reply = await effect()
        except BaseException:
            with contextlib.suppress(Exception):
                await idempotency.abandon(self.keys_engine, idem)
            raise
        return reply

    async def load_hold(self, user_id: str, hold_id: uuid.UUID) -> Any:
        async def read(conn: AsyncConnection) -> Any:
            return (
                await conn.execute(
                    sa.select(t.holds, (t.holds.c.expires_at > sa.func.now()).label("live")).where(
                        t.holds.c.hold_id == hold_id
                    )
                )
            ).one_or_none()

        row = await run_transaction(self.engine, read)
        if row is None or row.user_id != user_id:
            raise errors.NotFound("no such hold")
        return row

    async def get_hold(self, user_id: str, hold_id: uuid.UUID) -> HoldView:
        cached = await self.mirror.get(hold_id)
        if cached is not None and cached[0] == user_id:
            return cached[1]
        row = await self.load_hold(user_id, hold_id)
        status = "expired" if row.status == "active" and not row.live else row.status
        return HoldView(
            hold_id=row.hold_id,
            event_id=row.event_id,
            status=status,
            seats=list(row.seats),
            expires_at=row.expires_at,
            extended=row.extended,
        )

    async def extend(self, user_id: str, hold_id: uuid.UUID, idem: Idem) -> Reply:
        row = await self.load_hold(user_id, hold_id)
        handle = await self.handle(row.event_id)
        seconds = min(handle.runtime.hold_ttl_s, limits.hold_extension_s_max)

        async def write(conn: AsyncConnection) -> tuple[Reply, Any]:
            extended = (
                await conn.execute(
                    t.holds.update()
                    .where(
                        t.holds.c.hold_id == hold_id,
                        t.holds.c.user_id == user_id,
                        t.holds.c.status == "active",
                        t.holds.c.extended.is_(False),
                        t.holds.c.expires_at > sa.func.now(),
                    )
                    .values(
                        expires_at=t.holds.c.expires_at + sa.text(f"interval '{seconds} seconds'"),
                        extended=True,
                    )
                    .returning(t.holds)
                )
            ).one_or_none()
            reply = extend_reply(row, extended)
            await idempotency.complete(conn, [(idem, reply)])
            return reply, extended

        async def effect() -> Reply:
            reply, extended = await run_transaction(self.engine, write)
            if extended is not None:
                deadline = int(extended.expires_at.timestamp() * 1000)
                handle.runtime.wheel.schedule(str(hold_id), deadline)
                await self.mirror.put(user_id, hold_view(extended))
            return reply

        return await self.run_idempotent(idem, effect)

    async def release(self, user_id: str, hold_id: uuid.UUID) -> Reply:
        row = await self.load_hold(user_id, hold_id)
        handle = await self.handle(row.event_id)
        result: Released = await handle.actor.submit(ReleaseOp([hold_id], "released", user_id))
        assert result.reply is not None
        return result.reply

    # --- checkout ---

    async def checkout(self, user_id: str, hold_id: uuid.UUID, token: str, idem: Idem) -> Reply:
        return await self.run_idempotent(idem, lambda: self.buy(user_id, hold_id, token, idem))

    async def buy(self, user_id: str, hold_id: uuid.UUID, token: str, idem: Idem) -> Reply:
        return await checkout.buy(self, user_id, hold_id, token, idem)

    async def get_order(self, user_id: str, order_id: uuid.UUID) -> OrderView:
        async def read(conn: AsyncConnection) -> Any:
            return (
                await conn.execute(sa.select(t.orders).where(t.orders.c.order_id == order_id))
            ).one_or_none()

        row = await run_transaction(self.engine, read)
        if row is None or row.user_id != user_id:
            raise errors.NotFound("no such order")
        return OrderView(
            order_id=row.order_id,
            hold_id=row.hold_id,
            event_id=row.event_id,
            seats=list(row.seats),
            amount=row.amount_minor,
            currency=row.currency,
            status=row.status,
        )

    async def snapshot(self, event_id: uuid.UUID, section_id: str) -> bytes:
        """The section as last committed (never a batch's picks still being written)."""
        handle = await self.handle(event_id)
        position = handle.runtime.positions.get(section_id)
        if position is None:
            raise errors.NotFound(f"no section {section_id!r} in event {event_id}")
        return handle.actor.committed_section(position)

    # --- background work ---

    def after_commit(
        self,
        runtime: EventRuntime,
        written: Written,
        holds: list[HoldOp],
        releases: list[ReleaseOp],
        sells: list[SellOp],
    ) -> None:
        asyncio.get_running_loop().create_task(
            self.mirror_commit(runtime, written, holds, releases, sells)
        )

    async def mirror_commit(
        self,
        runtime: EventRuntime,
        written: Written,
        holds: list[HoldOp],
        releases: list[ReleaseOp],
        sells: list[SellOp],
    ) -> None:
        """Copy the batch's effects to Redis in one round trip (best effort, see mirror.py)."""
        puts = [
            (
                op.user_id,
                HoldView(
                    hold_id=op.hold_id,
                    event_id=runtime.event_id,
                    status="active",
                    seats=[runtime.seat_id(p, i) for p, i in op.picked],
                    expires_at=written.expires_at[op.hold_id],
                    extended=False,
                ),
            )
            for op in holds
            if op.hold_id in written.expires_at
        ]
        drops = [
            hold_id for release in releases for hold_id in written.released[id(release)].hold_ids
        ]
        drops += [sell.hold_id for sell in sells]
        # Only counts this batch changed: new holds, freed seats (a sale keeps the count).
        users = {user for user, _ in puts} | {user for _, _, user in written.freed}
        counts = {user: runtime.user_seats.get(user, 0) for user in users}
        await self.mirror.apply(puts, drops, runtime.event_id, counts)

    async def reap(self, handle: EventHandle) -> None:
        """Release holds within about a tick of their deadline (the wheel knows which)."""
        runtime, actor = handle.runtime, handle.actor
        while True:
            due = runtime.wheel.pop_expired(now_ms(), limits.reaper_batch_holds_max)
            if not due:
                next_ms = runtime.wheel.next_deadline_ms()
                wait_s = limits.reaper_tick_s
                if next_ms is not None:
                    wait_s = min(wait_s, max(0.0, (next_ms - now_ms()) / 1000))
                await asyncio.sleep(wait_s)
                continue
            hold_ids = [uuid.UUID(key) for key, _ in due]
            try:
                due_at = min(deadline for _, deadline in due) / 1000
                result: Released = await actor.submit(ReleaseOp(hold_ids, "expired", due_at=due_at))
            except errors.WriterError:
                for key, deadline in due:
                    runtime.wheel.schedule(key, deadline)
                await asyncio.sleep(limits.reaper_tick_s)
                continue
            for hold_id, expires_at in result.still_active.items():
                runtime.wheel.schedule(str(hold_id), int(expires_at.timestamp() * 1000) + 1)

    async def keep_lease(self, handle: EventHandle) -> None:
        while handle.runtime.owner:
            await asyncio.sleep(limits.lease_renew_s)
            try:
                await renew_lease(self.engine, handle.runtime, self.owner)
            except StaleLease:
                handle.runtime.owner = False
                log.error("lost the lease of event %s", handle.runtime.event_id)
            except Exception:
                log.warning("lease renewal failed; will retry", exc_info=True)


def keep_out_of_gc() -> None:
    """Move every object alive now (the app, the engines, each event's venue and runtime: a
    stadium alone is ~10^5 objects) out of the cyclic garbage collector's sight. They live as long
    as the process or their event, and the collector would otherwise walk them all in each full
    collection: pauses of 100-400 ms measured under load, every few seconds. Objects created
    later (requests, batches) are collected as before."""
    gc.collect()
    gc.freeze()


def hold_view(row: Any) -> HoldView:
    return HoldView(
        hold_id=row.hold_id,
        event_id=row.event_id,
        status=row.status,
        seats=list(row.seats),
        expires_at=row.expires_at,
        extended=row.extended,
    )


def extend_reply(before: Any, extended: Any) -> Reply:
    if extended is not None:
        return Reply(200, encoder.encode(hold_view(extended)))
    if before.status != "active":
        error: errors.WriterError = errors.HoldNotActive(f"the hold is {before.status}")
    elif before.extended:
        error = errors.AlreadyExtended("a hold can be extended once")
    else:
        error = errors.HoldExpired("the hold has expired")
    return Reply(error.status, encoder.encode(error.body()))
