"""One event as the writer holds it in memory: its venue, the seat engine mirroring the committed
claims, per-user seat counts, its live holds, the lease it writes under, and the expiry wheel of
its holds.

Invariant: for every section, the engine's version equals `sections.version` of the last batch
this process committed, and its states equal the committed claims (the actor restores both from
what each transaction wrote). Only the lease holder changes claims, so nothing else moves them.
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import tessera_core as tc
from global_writer import errors
from global_writer import presales as waves
from global_writer.db import tables as t
from global_writer.db.retry import run_transaction
from global_writer.ops import LiveHold
from tessera import limits, money
from tessera.venue import Venue, VenueError, VenueSpec

STATE_BYTE = {"held": 1, "sold": 2}


class StaleLease(Exception):
    """Another writer took this event's sections (a higher fencing epoch): stop writing."""


@dataclass
class EventRuntime:
    event_id: uuid.UUID
    name: str
    venue: Venue
    onsale_at: datetime
    hold_ttl_s: int
    per_user_limit: int
    home_region: str
    seats: tc.EventSeats
    section_ids: list[str]
    lease_epoch: int
    owner: bool = True
    # `events.status`: `paused` refuses new holds, `closed` holds and checkouts too
    # (global_writer/event_admin.py).
    status: str = "scheduled"
    user_seats: dict[str, int] = field(default_factory=dict)
    # Every active hold this writer committed (ops.LiveHold), by id.
    holds: dict[uuid.UUID, LiveHold] = field(default_factory=dict)
    wheel: tc.ExpiryWheel = field(
        default_factory=lambda: tc.ExpiryWheel(limits.wheel_capacity_max, now_ms())
    )
    # Scratch sections (one per venue section) used to encode a batch's result before commit.
    scratch: list[tc.Section] = field(default_factory=list)
    snapshot_versions: dict[int, int] = field(default_factory=dict)
    snapshot_times: dict[int, float] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)
    # Presale waves before `onsale_at`, by start (global_writer/presales.py).
    presales: list[waves.Wave] = field(default_factory=list)
    _event_document: bytes | None = None
    # What the cached document says of the sale (on sale, active wave): rebuilt when it changes.
    _document_phase: tuple[bool, str | None] = (False, None)

    @functools.cached_property
    def currency(self) -> str:
        tiers = list(self.venue.price_tiers.values())
        return tiers[0].currency if tiers else money.DEFAULT_CURRENCY

    @functools.cached_property
    def currency_exponent(self) -> int:
        # Events are created only in accepted currencies (flows.create_event); 2 covers any
        # stored before that check rather than failing to load them.
        return money.EXPONENTS.get(self.currency, 2)

    def on_sale(self, now: datetime) -> bool:
        return now >= self.onsale_at

    def parse_seat(self, seat_id: str) -> tuple[int, int]:
        """`"<section>:<row>:<seat>"` → `(section position, seat index)`, or 422."""
        try:
            layout, index = self.venue.locate(seat_id)
        except VenueError as error:
            raise errors.InvalidSeat(str(error), seats=[seat_id]) from None
        return self.position_of[layout.section_id], index

    def seat_id(self, position: int, index: int) -> str:
        return self.venue.layouts[position].seat_id(index)

    def section_position(self, section_id: str) -> int:
        position = self.position_of.get(section_id)
        if position is None:
            raise errors.InvalidRequest(f"unknown section {section_id!r}", sections=[section_id])
        return position

    @property
    def position_of(self) -> dict[str, int]:
        return self.positions

    def price(self, seats: list[tuple[int, int]]) -> int:
        total = 0
        for position, index in seats:
            tier = self.venue.layouts[position].price_tier(index)
            if tier is not None:
                total += self.venue.price_tiers[tier].price_minor
        return total

    def document(self) -> bytes:
        """`GET /v1/events/{id}`: built once, the venue never changes."""
        now = datetime.now(self.onsale_at.tzinfo)
        wave = waves.active_wave(self.presales, now)
        phase = (self.on_sale(now), None if wave is None else wave.wave_id)
        if self._event_document is None or phase != self._document_phase:
            self._event_document = msgspec.json.encode(event_view(self))
            self._document_phase = phase
        return self._event_document


def now_ms() -> int:
    return int(time.time() * 1000)


def event_view(runtime: EventRuntime) -> dict[str, Any]:
    sections = []
    for layout, spec in zip(runtime.venue.layouts, runtime.venue.spec.sections, strict=True):
        rows = []
        for row, row_id in enumerate(layout.row_ids):
            start = layout.row_starts[row]
            seats = [layout.seat_id(i) for i in range(start, start + layout.row_lengths[row])]
            document: dict[str, Any] = {
                "row_id": row_id,
                "rank": layout.row_ranks[row],
                "seats": seats,
                "price_tier": layout.row_price_tiers[row],
            }
            # Seat label -> tier, as in the venue file; left out when no seat differs.
            overrides = spec.rows[row].seat_price_tiers
            if overrides:
                document["seat_price_tiers"] = dict(overrides)
            rows.append(document)
        section = {"section_id": layout.section_id, "name": layout.name, "rows": rows}
        sections.append(section)
    tiers = [
        {"id": tier.id, "name": tier.name, "price": tier.price_minor, "currency": tier.currency}
        for tier in runtime.venue.price_tiers.values()
    ]
    return {
        "event_id": str(runtime.event_id),
        "name": runtime.name,
        "status": "onsale"
        if runtime.on_sale(datetime.now(runtime.onsale_at.tzinfo))
        else "scheduled",
        "onsale_at": runtime.onsale_at.isoformat(),
        "hold_ttl_s": runtime.hold_ttl_s,
        "per_user_limit": runtime.per_user_limit,
        "home_region": runtime.home_region,
        "currency": runtime.currency,
        "currency_exponent": runtime.currency_exponent,
        "price_tiers": tiers,
        "sections": sections,
        **presale_view(runtime),
    }


def presale_view(runtime: EventRuntime) -> dict[str, Any]:
    """The waves and the one open now (docs/presales.md); none once the general sale is open."""
    now = datetime.now(runtime.onsale_at.tzinfo)
    wave = None if runtime.on_sale(now) else waves.active_wave(runtime.presales, now)
    return {
        "presales": [each.view() for each in runtime.presales],
        "active_presale": None if wave is None else wave.view(),
    }


def section_states(venue: Venue, position: int) -> bytearray:
    """A fresh section's states: everything available but the venue's blocked seats."""
    layout = venue.layouts[position]
    states = bytearray(layout.seat_count)
    for index in layout.blocked_indices:
        states[index] = 3
    return states


# The lease is one row per event (`event_leases`), never a column of the rows every batch
# writes: renewing it every few seconds must not conflict with the batches' version bumps.
ACQUIRE_LEASE: Final = sa.text(
    "INSERT INTO event_leases (event_id, owner, epoch, expires_at)"
    " VALUES (:event_id, :owner, 1, now() + :ttl_s * interval '1 second')"
    " ON CONFLICT (event_id) DO UPDATE SET owner = excluded.owner,"
    " epoch = event_leases.epoch + 1, expires_at = excluded.expires_at"
    " WHERE event_leases.owner = excluded.owner OR event_leases.expires_at < now()"
    " RETURNING epoch"
).bindparams(
    sa.bindparam("event_id", type_=pg.UUID(as_uuid=True)),
    sa.bindparam("ttl_s", limits.lease_ttl_s, type_=sa.Integer),
)
RENEW_LEASE: Final = sa.text(
    "UPDATE event_leases SET expires_at = now() + :ttl_s * interval '1 second'"
    " WHERE event_id = :event_id AND owner = :owner AND epoch = :epoch"
).bindparams(
    sa.bindparam("event_id", type_=pg.UUID(as_uuid=True)),
    sa.bindparam("ttl_s", limits.lease_ttl_s, type_=sa.Integer),
)


async def acquire_lease(conn: AsyncConnection, event_id: uuid.UUID, owner: str) -> int:
    """Take the event under a new fencing epoch, if its lease is free, expired or ours."""
    epoch = (
        await conn.execute(ACQUIRE_LEASE, {"event_id": event_id, "owner": owner})
    ).scalar_one_or_none()
    if epoch is None:
        raise StaleLease(f"event {event_id} is leased by another writer")
    return int(epoch)


async def renew_lease(engine: AsyncEngine, runtime: EventRuntime, owner: str) -> None:
    """Push the lease's expiry out, under the same epoch."""

    async def work(conn: AsyncConnection) -> int:
        renewed = await conn.execute(
            RENEW_LEASE,
            {"event_id": runtime.event_id, "owner": owner, "epoch": runtime.lease_epoch},
        )
        return int(renewed.rowcount)

    if await run_transaction(engine, work) != 1:
        raise StaleLease(f"lost the lease of event {runtime.event_id}")


async def load_event(engine: AsyncEngine, event_id: uuid.UUID, owner: str) -> EventRuntime:
    """Rebuild the event from the database (claims, versions, live holds), under a freshly taken
    lease."""

    async def work(conn: AsyncConnection) -> tuple[Any, int, dict[str, int], Any, Any]:
        row = (await conn.execute(sa.select(t.events).where(t.events.c.event_id == event_id))).one()
        epoch = await acquire_lease(conn, event_id, owner)
        versions = await section_versions(conn, event_id)
        claims = await event_claims(conn, event_id)
        return row, epoch, versions, claims, await active_holds(conn, event_id)

    row, epoch, versions, claims, active = await run_transaction(engine, work)
    runtime = build_runtime(row, epoch)
    runtime.presales = await run_transaction(engine, lambda conn: waves.load(conn, event_id))
    restore_claims(runtime, claims, versions)
    restore_holds(runtime, active)
    return runtime


async def reload_state(engine: AsyncEngine, runtime: EventRuntime) -> None:
    """Bring memory back to the committed claims, versions and live holds (after a detected
    drift, or a batch that may have committed unseen)."""

    async def work(conn: AsyncConnection) -> tuple[dict[str, int], Any, Any]:
        event_id = runtime.event_id
        versions = await section_versions(conn, event_id)
        return versions, await event_claims(conn, event_id), await active_holds(conn, event_id)

    versions, claims, active = await run_transaction(engine, work)
    runtime.user_seats.clear()
    restore_claims(runtime, claims, versions)
    restore_holds(runtime, active)


async def section_versions(conn: AsyncConnection, event_id: uuid.UUID) -> dict[str, int]:
    rows = await conn.execute(
        sa.select(t.sections.c.section_id, t.sections.c.version).where(
            t.sections.c.event_id == event_id
        )
    )
    return {row[0]: row[1] for row in rows}


async def active_holds(conn: AsyncConnection, event_id: uuid.UUID) -> Any:
    """The event's active holds: what the live-hold index and the expiry wheel must know."""
    return (
        await conn.execute(
            sa.select(
                t.holds.c.hold_id,
                t.holds.c.user_id,
                t.holds.c.seats,
                t.holds.c.expires_at,
                t.holds.c.extended,
            ).where(t.holds.c.event_id == event_id, t.holds.c.status == "active")
        )
    ).all()


async def event_claims(conn: AsyncConnection, event_id: uuid.UUID) -> Any:
    return (
        await conn.execute(
            sa.select(
                t.seat_claims.c.section_id,
                t.seat_claims.c.seat_index,
                t.seat_claims.c.state,
                t.seat_claims.c.user_id,
            ).where(t.seat_claims.c.event_id == event_id)
        )
    ).all()


def build_runtime(row: Any, epoch: int) -> EventRuntime:
    venue = Venue(msgspec.convert(row.venue, VenueSpec))
    seats = tc.EventSeats([(layout.row_lengths, layout.row_ranks) for layout in venue.layouts])
    return EventRuntime(
        event_id=row.event_id,
        name=row.name,
        venue=venue,
        onsale_at=row.onsale_at,
        hold_ttl_s=row.hold_ttl_s,
        per_user_limit=row.per_user_limit,
        home_region=row.home_region,
        seats=seats,
        section_ids=[layout.section_id for layout in venue.layouts],
        lease_epoch=epoch,
        status=row.status,
        scratch=[tc.Section(layout.row_lengths, layout.row_ranks) for layout in venue.layouts],
        positions={layout.section_id: p for p, layout in enumerate(venue.layouts)},
    )


def restore_holds(runtime: EventRuntime, active: Any) -> None:
    """The live-hold index and the expiry wheel, from the database's active holds."""
    runtime.holds.clear()
    for hold_id, user_id, seats, expires_at, extended in active:
        located = [runtime.parse_seat(seat) for seat in seats]
        runtime.holds[hold_id] = LiveHold(hold_id, user_id, located, expires_at, extended)
        runtime.wheel.schedule(str(hold_id), int(expires_at.timestamp() * 1000))


def restore_claims(runtime: EventRuntime, claims: Any, versions: dict[str, int]) -> None:
    states = [section_states(runtime.venue, p) for p in range(len(runtime.section_ids))]
    positions = runtime.position_of
    for section_id, index, state, user_id in claims:
        states[positions[section_id]][index] = STATE_BYTE[state]
        runtime.user_seats[user_id] = runtime.user_seats.get(user_id, 0) + 1
    for position, section_id in enumerate(runtime.section_ids):
        runtime.seats.restore(position, bytes(states[position]), versions[section_id])
