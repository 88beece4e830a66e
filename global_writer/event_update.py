"""`PATCH /v1/admin/events/{event_id}` (X-Admin-Key): change an event before its onsale: its
name, onsale time, hold TTL, per-fan limit, fan cancellation window and tier prices, validated as
at creation (docs/api.md).

Only before the onsale, by the database's clock (the UPDATE's own guard) and while the event is
`scheduled`: once fans can hold seats, what they were shown stays true. Applied on the event's
owning writer (503 naming the home region elsewhere): the row and the republished event
information (`EventInfo` on the KV bucket, like creation) in one transaction, then the owner's
memory, whose event document is rebuilt. The venue's layout never changes, only its prices, so
the seat engine and every reader's maps stay as they are. A changed per-fan limit is refused (409)
if any fan already counts seats of the event (`fan_seats` refers to the event's limit).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from global_writer import errors, outbox
from global_writer.db import tables as t
from global_writer.db.retry import run_transaction
from global_writer.outbox import OutboxMessage
from global_writer.runtime import EventRuntime
from global_writer.service import Writer
from tessera import contracts, limits
from tessera.venue import Id, PriceMinor, Venue, VenueError, VenueSpec
from tessera.web import kind

EventOnSale = kind(409, "event_already_on_sale", errors.WriterError)
FansCounted = kind(409, "per_user_limit_in_use", errors.WriterError)


class UpdateEvent(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """What may change before the onsale; a field left out keeps its value."""

    name: (
        Annotated[str, msgspec.Meta(min_length=1, max_length=limits.venue_name_chars_max)] | None
    ) = None
    onsale_at: datetime | None = None
    hold_ttl_s: (
        Annotated[int, msgspec.Meta(ge=limits.hold_ttl_s_min, le=limits.hold_ttl_s_max)] | None
    ) = None
    per_user_limit: Annotated[int, msgspec.Meta(ge=1, le=limits.per_user_limit_max)] | None = None
    fan_cancel_window_s: (
        Annotated[int, msgspec.Meta(ge=0, le=limits.fan_cancel_window_s_max)] | None
    ) = None
    # Price tier id → its new price, in the event's currency's minor units.
    prices: (
        Annotated[dict[Id, PriceMinor], msgspec.Meta(max_length=limits.venue_price_tiers_max)]
        | None
    ) = None


update_decoder: Final = msgspec.json.Decoder(UpdateEvent)

_COUNTED: Final = sa.text("SELECT 1 FROM fan_seats WHERE event_id = :event_id LIMIT 1").bindparams(
    sa.bindparam("event_id", type_=t.events.c.event_id.type)
)


def decode_update(body: bytes) -> UpdateEvent:
    try:
        update = update_decoder.decode(body)
    except msgspec.ValidationError as error:
        raise errors.InvalidRequest(str(error)) from None
    except msgspec.DecodeError as error:
        raise errors.MalformedJson(f"request body is not valid JSON: {error}") from None
    if not any(getattr(update, name) is not None for name in update.__struct_fields__):
        raise errors.InvalidRequest("nothing to change: give at least one field")
    if update.onsale_at is not None and not (
        limits.onsale_at_year_min <= update.onsale_at.year <= limits.onsale_at_year_max
    ):
        raise errors.InvalidRequest(
            f"onsale_at must be in the years {limits.onsale_at_year_min}"
            f"-{limits.onsale_at_year_max}"
        )
    return update


def repriced(spec: VenueSpec, prices: dict[str, int]) -> VenueSpec:
    """The venue with its tiers' new prices; 422 for a tier the venue does not have."""
    known = {tier.id for tier in spec.price_tiers}
    unknown = sorted(set(prices) - known)
    if unknown:
        raise errors.InvalidRequest(f"unknown price tiers {unknown}", tiers=unknown)
    tiers = [
        msgspec.structs.replace(tier, price_minor=prices.get(tier.id, tier.price_minor))
        for tier in spec.price_tiers
    ]
    return msgspec.structs.replace(spec, price_tiers=tiers)


async def update_event(writer: Writer, event_id: uuid.UUID, update: UpdateEvent) -> bytes:
    """Apply `update` on the owner; answers the event's document as `GET /v1/events/{id}`."""
    handle = await writer.flows.events.handle(event_id)
    runtime = handle.runtime
    if runtime.status != "scheduled" or runtime.on_sale(datetime.now(UTC)):
        raise EventOnSale("the event is on sale (or was): it can no longer change")
    venue = runtime.venue
    if update.prices is not None:
        try:
            venue = Venue(repriced(venue.spec, update.prices))
        except VenueError as error:
            raise errors.InvalidRequest(f"prices: {error}") from None
    values: dict[str, Any] = {
        name: getattr(update, name)
        for name in ("name", "onsale_at", "hold_ttl_s", "per_user_limit", "fan_cancel_window_s")
        if getattr(update, name) is not None
    }
    if update.prices is not None:
        values["venue"] = msgspec.to_builtins(venue.spec)

    async def write(conn: AsyncConnection) -> tuple[Any, OutboxMessage]:
        changing_limit = (
            update.per_user_limit is not None and update.per_user_limit != runtime.per_user_limit
        )
        if changing_limit and (await conn.execute(_COUNTED, {"event_id": event_id})).first():
            raise FansCounted("fans already hold or own seats of this event")
        row = (
            await conn.execute(
                sa.update(t.events)
                .where(
                    t.events.c.event_id == event_id,
                    t.events.c.status == "scheduled",
                    t.events.c.onsale_at > sa.func.now(),
                )
                .values(**values)
                .returning(*t.events.c)
            )
        ).one_or_none()
        if row is None:
            raise EventOnSale("the event is on sale (or was): it can no longer change")
        return row, await outbox.insert(
            conn,
            subject=contracts.kv_subject(contracts.event_info_key(event_id)),
            msg_id=f"event.{event_id}.{uuid.uuid4().hex}",
            headers={contracts.HEADER_EVENT: str(event_id)},
            payload=msgspec.json.encode(event_info(row, venue)),
        )

    row, message = await run_transaction(writer.conns.engine, write)
    apply(runtime, row, venue)
    writer.flows.publisher.enqueue([message], {})
    return runtime.document()


def event_info(row: Any, venue: Venue) -> contracts.EventInfo:
    return contracts.EventInfo(
        event_id=row.event_id,
        name=row.name,
        onsale_at=row.onsale_at,
        hold_ttl_s=row.hold_ttl_s,
        per_user_limit=row.per_user_limit,
        home_region=row.home_region,
        venue=venue.spec,
    )


def apply(runtime: EventRuntime, row: Any, venue: Venue) -> None:
    """The owner's memory, as committed; the event document is rebuilt on its next read."""
    runtime.name = row.name
    runtime.onsale_at = row.onsale_at
    runtime.hold_ttl_s = row.hold_ttl_s
    runtime.per_user_limit = row.per_user_limit
    runtime.venue = venue
    # The runtime caches its document: dropped so the next read rebuilds it.
    runtime._event_document = None
