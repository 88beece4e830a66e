"""Presale waves (docs/presales.md): fan-club and card-holder sales before the general sale, each
with its own window, fans (a list, or access codes), per-fan limit and sections.

The waves are fixed when the event is created (`validate`, `insert`) and loaded into the event's
runtime when a writer opens it (`load`). Before `onsale_at` a hold is admitted only by the active
wave (`admit`, called by global_writer/flows.py while it builds the hold's operation, before the
actor sees it): the wave's sections narrow what may be held, and its per-fan limit is carried on
the operation for the actor's limit check (global_writer/actor.py `pick`).

A code is redeemed (`redeem`) in its own short transaction after the request was checked and
before the hold is queued: the actor's batches stay as they are (no presale table in their
statements), and the count is still exact, because the conditional UPDATE ... WHERE uses <
uses_max is what admits a fan, and the CHECK on `presale_codes` backs it. A code admits a fan,
not a hold: a fan who redeemed it comes back with it (another hold, a retry) without using it
again, and a fan whose hold then finds no seats keeps the admission.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from global_writer import errors
from global_writer.db import tables as t
from global_writer.db.retry import run_transaction
from global_writer.ops import HoldOp
from global_writer.schemas import PresaleWave
from tessera import limits
from tessera.venue import Venue
from tessera.web import kind

CodeInvalid = kind(403, "presale_code_invalid", errors.WriterError)
CodeExhausted = kind(403, "presale_code_exhausted", errors.WriterError)
NotEligible = kind(403, "presale_not_eligible", errors.WriterError)
SectionClosed = kind(403, "presale_section_closed", errors.WriterError)


@dataclass(frozen=True)
class Wave:
    wave_id: str
    name: str
    starts_at: datetime
    ends_at: datetime
    per_user_limit: int
    # Empty: every section.
    section_ids: tuple[str, ...]
    # The listed fans; None: the wave admits by code.
    eligible: frozenset[str] | None

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def view(self) -> dict[str, Any]:
        """What fans are shown of the wave (never its codes nor its list)."""
        return {
            "wave_id": self.wave_id,
            "name": self.name,
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat(),
            "per_user_limit": self.per_user_limit,
            "section_ids": list(self.section_ids),
            "code_required": self.eligible is None,
        }


@dataclass(frozen=True)
class Admission:
    """What the active wave allows a hold: its limit, and the section positions it may use (None:
    every section)."""

    wave: Wave
    positions: frozenset[int] | None
    code_hash: bytes | None


def code_hash(event_id: uuid.UUID, code: str) -> bytes:
    """SHA-256 of the event and the code: the same code in two events is two rows."""
    return hashlib.sha256(event_id.bytes + code.encode()).digest()


def active_wave(waves: list[Wave], now: datetime) -> Wave | None:
    for wave in waves:
        if wave.active(now):
            return wave
    return None


# --- creation ---


def validate(waves: list[PresaleWave], venue: Venue, onsale_at: datetime, limit: int) -> None:
    """Windows ordered, not overlapping, and over before the general sale; limits within the
    event's; known sections; exactly one kind of access; distinct ids and codes. 422 otherwise."""
    if waves and onsale_at.tzinfo is None:
        raise errors.InvalidRequest("onsale_at needs a UTC offset when there are presales")
    sections = {layout.section_id for layout in venue.layouts}
    ordered = sorted(waves, key=lambda wave: wave.starts_at)
    for index, wave in enumerate(ordered):
        where = f"presales[{wave.wave_id}]"
        if wave.starts_at.year < limits.onsale_at_year_min:
            # Python's first instants are stored as -infinity (tessera/limits.py).
            raise errors.InvalidRequest(f"{where}: starts_at before {limits.onsale_at_year_min}")
        if not wave.starts_at < wave.ends_at <= onsale_at:
            raise errors.InvalidRequest(
                f"{where}: needs starts_at < ends_at <= the event's onsale_at"
            )
        if index and ordered[index - 1].ends_at > wave.starts_at:
            raise errors.InvalidRequest(f"{where}: overlaps {ordered[index - 1].wave_id!r}")
        if wave.per_user_limit > limit:
            raise errors.InvalidRequest(f"{where}: per_user_limit above the event's ({limit})")
        unknown = sorted(set(wave.section_ids) - sections)
        if unknown:
            raise errors.InvalidRequest(f"{where}: unknown sections {unknown}", sections=unknown)
        if bool(wave.access.codes) == bool(wave.access.eligible_users):
            raise errors.InvalidRequest(
                f"{where}: access needs exactly one of `codes` and `eligible_users`"
            )
    if len({wave.wave_id for wave in waves}) != len(waves):
        raise errors.InvalidRequest("presales: a wave_id appears twice")
    codes = [code.code for wave in waves for code in wave.access.codes]
    if len(set(codes)) != len(codes):
        raise errors.InvalidRequest("presales: a code appears twice")


async def insert(conn: AsyncConnection, event_id: uuid.UUID, waves: list[PresaleWave]) -> None:
    """The event's waves and codes, one statement each (in the event's creating transaction)."""
    if not waves:
        return
    await conn.execute(
        t.event_presales.insert(),
        [
            {
                "event_id": event_id,
                "wave_id": wave.wave_id,
                "name": wave.name,
                "starts_at": wave.starts_at,
                "ends_at": wave.ends_at,
                "per_user_limit": wave.per_user_limit,
                "section_ids": list(dict.fromkeys(wave.section_ids)),
                "eligible_users": sorted(set(wave.access.eligible_users)) or None,
            }
            for wave in waves
        ],
    )
    codes = [
        {
            "event_id": event_id,
            "code_hash": code_hash(event_id, code.code),
            "wave_id": wave.wave_id,
            "uses_max": code.uses_max,
        }
        for wave in waves
        for code in wave.access.codes
    ]
    if codes:
        await conn.execute(t.presale_codes.insert(), codes)


async def load(conn: AsyncConnection, event_id: uuid.UUID) -> list[Wave]:
    rows = await conn.execute(
        sa.select(t.event_presales)
        .where(t.event_presales.c.event_id == event_id)
        .order_by(t.event_presales.c.starts_at)
    )
    return [
        Wave(
            wave_id=row.wave_id,
            name=row.name,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            per_user_limit=row.per_user_limit,
            section_ids=tuple(row.section_ids),
            eligible=None if row.eligible_users is None else frozenset(row.eligible_users),
        )
        for row in rows
    ]


# --- holds ---


def admit(
    waves: list[Wave],
    positions: dict[str, int],
    event_id: uuid.UUID,
    *,
    user_id: str,
    code: str | None,
    now: datetime,
) -> Admission:
    """The active wave's admission of this fan, or the 403 that says why not."""
    wave = active_wave(waves, now)
    if wave is None:
        upcoming = [w for w in waves if w.starts_at > now]
        if upcoming:
            raise errors.NotOnSale(
                f"not on sale yet; presale {upcoming[0].name!r} opens at "
                f"{upcoming[0].starts_at.isoformat()}",
                wave_id=upcoming[0].wave_id,
            )
        raise errors.NotOnSale("not on sale: no presale is open")
    hashed = None
    if wave.eligible is not None:
        if user_id not in wave.eligible:
            raise NotEligible(f"presale {wave.name!r} is for listed fans", wave_id=wave.wave_id)
    elif code is None:
        raise NotEligible(f"presale {wave.name!r} needs a presale_code", wave_id=wave.wave_id)
    else:
        hashed = code_hash(event_id, code)
    allowed = frozenset(positions[s] for s in wave.section_ids) if wave.section_ids else None
    return Admission(wave, allowed, hashed)


def check_sections(admission: Admission, wanted: list[int], section_ids: list[str]) -> None:
    """Every position the hold names is one of the wave's sections (403 naming the others)."""
    allowed = admission.positions
    if allowed is None:
        return
    closed = sorted({section_ids[p] for p in wanted if p not in allowed})
    if closed:
        raise SectionClosed(
            f"presale {admission.wave.name!r} sells only {list(admission.wave.section_ids)}",
            sections=closed,
        )


def restrict(op: HoldOp, admission: Admission, section_ids: list[str]) -> None:
    """Hold the operation to the wave: its sections (a best-available request without sections
    looks only in them) and its per-fan limit (the actor's `pick` applies it)."""
    op.seat_limit = admission.wave.per_user_limit
    if op.seats is not None:
        check_sections(admission, [position for position, _ in op.seats], section_ids)
    elif op.within is not None:
        check_sections(admission, op.within, section_ids)
    elif admission.positions is not None:
        op.within = sorted(admission.positions)


# The admission itself: the fan's row first (a fan already admitted by the code counts once),
# then the count, only while the code has uses left.
_REDEEM: Final = sa.text(
    "INSERT INTO presale_redemptions (event_id, code_hash, user_id)"
    " VALUES (:event_id, :code_hash, :user_id) ON CONFLICT DO NOTHING RETURNING user_id"
).bindparams(sa.bindparam("event_id", type_=pg.UUID(as_uuid=True)))
_COUNT: Final = sa.text(
    "UPDATE presale_codes SET uses = uses + 1"
    " WHERE event_id = :event_id AND code_hash = :code_hash AND uses < uses_max RETURNING uses"
).bindparams(sa.bindparam("event_id", type_=pg.UUID(as_uuid=True)))


async def redeem(
    engine: AsyncEngine, event_id: uuid.UUID, admission: Admission, user_id: str
) -> None:
    """Admit the fan by the code (counted once per fan), or 403 invalid / exhausted. The
    exhausted case raises inside the transaction, so the fan's row rolls back with it."""
    hashed = admission.code_hash
    assert hashed is not None
    wave_id = admission.wave.wave_id
    key = {"event_id": event_id, "code_hash": hashed}

    async def work(conn: AsyncConnection) -> None:
        row = (
            await conn.execute(
                sa.select(t.presale_codes.c.wave_id).where(
                    t.presale_codes.c.event_id == event_id, t.presale_codes.c.code_hash == hashed
                )
            )
        ).one_or_none()
        if row is None or row.wave_id != wave_id:
            raise CodeInvalid("unknown presale code for this presale", wave_id=wave_id)
        if (await conn.execute(_REDEEM, {**key, "user_id": user_id})).first() is None:
            return  # admitted by this code before: not counted again
        if (await conn.execute(_COUNT, key)).first() is None:
            raise CodeExhausted("this presale code has been used up", wave_id=wave_id)

    await run_transaction(engine, work)
