"""What each request does, from a parsed request to its answer: holds, extensions, releases,
checkouts (global_writer/checkout.py), events and the fan's own records.

Every change to an event's seats or holds goes through the event's actor. Requests about a live
hold (extend, release, checkout) find it in the actor's live-hold index, without a database
read; only a hold that has ended is looked up in the database, to say why it cannot be used.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from global_writer import checkout, errors, event_admin, idempotency, outbox, presales, replies
from global_writer.actor import Publisher
from global_writer.connections import Connections
from global_writer.db import tables as t
from global_writer.db.retry import run_transaction
from global_writer.mirror import HoldMirror
from global_writer.ops import KEY_EXISTS, ExtendOp, HoldOp, Idem, Released, ReleaseOp, Reply
from global_writer.ownership import EventHandle, OwnedEvents
from global_writer.payments import PaymentProvider
from global_writer.runtime import EventRuntime
from global_writer.schemas import CreateEvent, CreateHold, CreateOrder, HoldView, OrderView
from global_writer.settings import Settings
from tessera import contracts, limits, money
from tessera.venue import Venue, VenueError, VenueSpec


class Flows:
    def __init__(  # noqa: PLR0917 (the writer's parts, wired once by service.Writer)
        self,
        settings: Settings,
        conns: Connections,
        events: OwnedEvents,
        publisher: Publisher,
        mirror: HoldMirror,
        payments: PaymentProvider,
    ) -> None:
        self.settings = settings
        self.conns = conns
        self.events = events
        self.publisher = publisher
        self.mirror = mirror
        self.payments = payments
        self.key_claims = idempotency.KeyClaims(conns.autocommit_engine, conns.keys_engine)
        self.checkouts = checkout.Checkout(payments, conns.engine, conns.keys_engine)

    # --- holds ---

    async def hold(self, user_id: str, event_id: uuid.UUID, body: CreateHold, idem: Idem) -> Reply:
        handle = await self.events.handle(event_id)
        op, admission = hold_op(handle.runtime, user_id, body, idem)
        if not handle.runtime.owner:
            # No actor to claim the key: a replay is still answered, anything else is a 503.
            return await self.run_idempotent(idem, lambda: handle.actor.submit(op))
        if admission is not None and admission.code_hash is not None:
            # In its own transaction, before the hold is queued (global_writer/presales.py).
            await presales.redeem(self.conns.engine, event_id, admission, user_id)
        # The event's actor claims the key with the rest of its batch's (one statement), then
        # runs the hold; a failure after the claim frees the key, as `run_effect` does.
        op.claim_key = True
        try:
            reply: Reply = await handle.actor.submit(op)
        except BaseException:
            if op.claimed:
                with contextlib.suppress(Exception):
                    await idempotency.abandon(self.conns.keys_engine, idem)
            raise
        if reply is not KEY_EXISTS:
            return reply
        # The key exists: replay its answer, refuse (422, 409), or, if it expired or its
        # request died, claim it now and run the hold after all.
        replay = await idempotency.begin_existing(self.conns.keys_engine, idem)
        if replay is not None:
            return replay.reply
        retry, _ = hold_op(handle.runtime, user_id, body, idem)
        return await self.run_effect(idem, lambda: handle.actor.submit(retry))

    async def extend(
        self, user_id: str, event_id: uuid.UUID, hold_id: uuid.UUID, idem: Idem
    ) -> Reply:
        handle = await self.events.handle(event_id)
        live = handle.runtime.holds.get(hold_id)
        if live is None or live.user_id != user_id:
            ended = await self.ended_hold(user_id, event_id, hold_id)
            return await self.run_idempotent(idem, lambda: self.answer_now(idem, ended))
        seconds = min(handle.runtime.hold_ttl_s, limits.hold_extension_s_max)
        op = ExtendOp(hold_id, user_id, seconds, idem=idem)
        return await self.run_idempotent(idem, lambda: handle.actor.submit(op))

    async def release(self, user_id: str, event_id: uuid.UUID, hold_id: uuid.UUID) -> Reply:
        handle = await self.events.handle(event_id)
        live = handle.runtime.holds.get(hold_id)
        if live is None or live.user_id != user_id:
            ended = await self.ended_hold(user_id, event_id, hold_id)
            if ended.status == "purchased":
                return replies.error_reply(
                    errors.HoldNotActive("the hold was bought; it cannot be released")
                )
            if ended.status == "active" and ended.live:
                # Live in the database, not in this writer's memory: another writer owns the
                # event now (this one lost its lease). Only the owner may release it.
                raise errors.Unavailable("this writer does not hold the event's lease; retry")
            return Reply(204, b"")  # released or expired already: nothing left to release
        result: Released = await handle.actor.submit(ReleaseOp([hold_id], "released", user_id))
        assert result.reply is not None
        return result.reply

    async def checkout(
        self, user_id: str, event_id: uuid.UUID, body: CreateOrder, idem: Idem
    ) -> Reply:
        handle = await self.events.handle(event_id)
        live = handle.runtime.holds.get(body.hold_id)
        if live is None or live.user_id != user_id:
            ended = await self.ended_hold(user_id, event_id, body.hold_id)
            return await self.run_idempotent(idem, lambda: self.answer_now(idem, ended))
        event_admin.check_sales(handle.runtime, buying=True)  # a closed event sells nothing
        handle.actor.check_capacity()  # before the payment is authorized, not after
        return await self.run_idempotent(
            idem, lambda: self.checkouts.buy(handle, user_id, body, idem)
        )

    async def answer_now(self, idem: Idem, hold: Any) -> Reply:
        """The answer about a hold that has ended, stored under the request's key."""
        refusal = ended_refusal(hold)
        if isinstance(refusal, errors.Unavailable):
            raise refusal  # not an answer to keep: the key is freed for the retry
        reply = replies.error_reply(refusal)
        await idempotency.finish(self.conns.keys_engine, idem, reply)
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
                await idempotency.abandon(self.conns.keys_engine, idem)
            raise
        return reply

    async def ended_hold(self, user_id: str, event_id: uuid.UUID, hold_id: uuid.UUID) -> Any:
        """A hold that is not live in its event (ended, someone else's, or unknown): 404 unless
        it is this fan's hold of this event."""
        row = await self.load_hold(hold_id)
        if row is None or row.user_id != user_id or row.event_id != event_id:
            raise errors.NotFound("no such hold")
        return row

    async def load_hold(self, hold_id: uuid.UUID) -> Any:
        async def read(conn: AsyncConnection) -> Any:
            return (
                await conn.execute(
                    sa.select(t.holds, (t.holds.c.expires_at > sa.func.now()).label("live")).where(
                        t.holds.c.hold_id == hold_id
                    )
                )
            ).one_or_none()

        return await run_transaction(self.conns.engine, read)

    # --- reads ---

    async def get_hold(self, user_id: str, hold_id: uuid.UUID) -> HoldView:
        for runtime in self.events.runtimes():
            live = runtime.holds.get(hold_id)
            if live is not None and live.user_id == user_id:
                return replies.live_hold_view(runtime, live)
        cached = await self.mirror.get(hold_id)
        if cached is not None and cached[0] == user_id:
            return cached[1]
        row = await self.load_hold(hold_id)
        if row is None or row.user_id != user_id:
            raise errors.NotFound("no such hold")
        status = "expired" if row.status == "active" and not row.live else row.status
        amount, currency = await self.hold_price(row.event_id, list(row.seats))
        return HoldView(
            hold_id=row.hold_id,
            event_id=row.event_id,
            status=status,
            seats=list(row.seats),
            expires_at=row.expires_at,
            extended=row.extended,
            amount=amount,
            currency=currency,
        )

    async def hold_price(self, event_id: uuid.UUID, seats: list[str]) -> tuple[int, str]:
        """What a hold's seats cost: from the event's venue in memory when this writer has the
        event open, else (a hold read here after its event moved away) from the stored venue."""
        handle = self.events.handles.get(event_id)
        if handle is not None:
            runtime = handle.runtime
            return runtime.price([runtime.parse_seat(seat) for seat in seats]), runtime.currency

        async def read(conn: AsyncConnection) -> Any:
            query = sa.select(t.events.c.venue).where(t.events.c.event_id == event_id)
            return (await conn.execute(query)).scalar_one()

        venue = Venue(msgspec.convert(await run_transaction(self.conns.engine, read), VenueSpec))
        amount = 0
        for seat in seats:
            layout, index = venue.locate(seat)
            tier = layout.price_tier(index)
            amount += 0 if tier is None else venue.price_tiers[tier].price_minor
        currencies = [tier.currency for tier in venue.spec.price_tiers]
        return amount, currencies[0] if currencies else money.DEFAULT_CURRENCY

    async def get_order(self, user_id: str, order_id: uuid.UUID) -> OrderView:
        async def read(conn: AsyncConnection) -> Any:
            return (
                await conn.execute(sa.select(t.orders).where(t.orders.c.order_id == order_id))
            ).one_or_none()

        row = await run_transaction(self.conns.engine, read)
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
        handle = await self.events.handle(event_id)
        position = handle.runtime.positions.get(section_id)
        if position is None:
            raise errors.NotFound(f"no section {section_id!r} in event {event_id}")
        return handle.actor.committed_section(position)

    async def event(self, event_id: uuid.UUID) -> EventHandle:
        return await self.events.handle(event_id)

    # --- events ---

    async def create_event(self, body: CreateEvent) -> uuid.UUID:
        try:
            venue = Venue(body.venue)
        except VenueError as error:
            raise errors.InvalidRequest(f"venue: {error}") from None
        try:
            money.event_currency(tier.currency for tier in venue.spec.price_tiers)
        except money.MoneyError as error:
            raise errors.InvalidRequest(f"venue: price_tiers: {error}") from None
        if not limits.onsale_at_year_min <= body.onsale_at.year <= limits.onsale_at_year_max:
            raise errors.InvalidRequest(
                f"onsale_at must be in the years {limits.onsale_at_year_min}"
                f"-{limits.onsale_at_year_max}"
            )
        presales.validate(body.presales, venue, body.onsale_at, body.per_user_limit)
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
            await insert_event(conn, event_id, body, venue)
            await presales.insert(conn, event_id, body.presales)
            # Readers learn the event's layout from the change feed, never from the database.
            return await outbox.insert(
                conn,
                subject=contracts.kv_subject(contracts.event_info_key(event_id)),
                msg_id=f"event.{event_id}",
                headers={contracts.HEADER_EVENT: str(event_id)},
                payload=msgspec.json.encode(info),
            )

        message = await run_transaction(self.conns.engine, write)
        self.publisher.enqueue([message], {})
        if body.home_region == self.settings.region:
            await self.events.open(event_id)
        return event_id


async def insert_event(
    conn: AsyncConnection, event_id: uuid.UUID, body: CreateEvent, venue: Venue
) -> None:
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
            fan_cancel_window_s=body.fan_cancel_window_s,
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


def hold_op(
    runtime: EventRuntime, user_id: str, body: CreateHold, idem: Idem
) -> tuple[HoldOp, presales.Admission | None]:
    """The hold's operation, and the presale wave admitting it (None in the general sale)."""
    if (body.seats is None) == (body.best_available is None):
        raise errors.InvalidRequest("give exactly one of `seats` and `best_available`")
    admission = presale_admission(runtime, user_id, body)
    event_admin.check_sales(runtime, buying=False)
    op = sale_op(runtime, user_id, body, idem)
    if admission is not None:
        presales.restrict(op, admission, runtime.section_ids)
    return op, admission


def presale_admission(
    runtime: EventRuntime, user_id: str, body: CreateHold
) -> presales.Admission | None:
    now = datetime.now(UTC)
    if runtime.on_sale(now):
        return None
    if not runtime.presales:
        raise errors.NotOnSale(f"on sale from {runtime.onsale_at.isoformat()}")
    return presales.admit(
        runtime.presales,
        runtime.positions,
        runtime.event_id,
        user_id=user_id,
        code=body.presale_code,
        now=now,
    )


def sale_op(runtime: EventRuntime, user_id: str, body: CreateHold, idem: Idem) -> HoldOp:
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


def ended_refusal(row: Any) -> errors.WriterError:
    """Why a hold that is not live cannot be extended or bought."""
    if row.status == "purchased":
        return errors.HoldNotActive("this hold was already bought")
    if row.status != "active":
        return errors.HoldNotActive(f"the hold is {row.status}")
    if not row.live:
        return errors.HoldExpired("the hold has expired")
    # Active and before its deadline, yet not live in its writer's memory: another writer's.
    return errors.Unavailable("this writer does not hold the event's lease; retry")
