"""Wire contracts of the writer's HTTP API: msgspec Structs with bounds, one decoder per type.
Documented in docs/api.md."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Final, TypeVar

import msgspec

from global_writer import errors
from tessera import contracts, limits
from tessera.venue import VenueSpec

SeatId = Annotated[str, msgspec.Meta(min_length=5, max_length=limits.seat_id_chars_max)]
SectionId = Annotated[str, msgspec.Meta(min_length=1, max_length=limits.venue_id_chars_max)]
Region = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
PaymentToken = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    pass


PresaleCode = Annotated[
    str,
    msgspec.Meta(
        min_length=limits.presale_code_chars_min,
        max_length=limits.presale_code_chars_max,
        pattern=r"^[A-Za-z0-9_-]+$",
    ),
]


class PresaleCodeSpec(Strict, frozen=True, kw_only=True):
    code: PresaleCode
    # How many fans the code admits (a fan counts once; docs/presales.md).
    uses_max: Annotated[int, msgspec.Meta(ge=1, le=limits.presale_code_uses_max)]


class PresaleAccess(Strict, frozen=True, kw_only=True):
    """Exactly one of `codes` and `eligible_users` (global_writer/presales.py checks)."""

    codes: Annotated[list[PresaleCodeSpec], msgspec.Meta(max_length=limits.presale_codes_max)] = []
    eligible_users: Annotated[
        list[contracts.UserId], msgspec.Meta(max_length=limits.presale_eligible_users_max)
    ] = []


class PresaleWave(Strict, frozen=True, kw_only=True):
    """One presale wave of an event (docs/presales.md): its own window before the general sale,
    its own fans (by code or by list), per-fan limit and sections."""

    wave_id: Annotated[
        str,
        msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=limits.presale_wave_id_chars_max),
    ]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=limits.presale_name_chars_max)]
    starts_at: Annotated[datetime, msgspec.Meta(tz=True)]
    ends_at: Annotated[datetime, msgspec.Meta(tz=True)]
    per_user_limit: Annotated[int, msgspec.Meta(ge=1, le=limits.per_user_limit_max)]
    # Empty: every section of the venue.
    section_ids: Annotated[list[SectionId], msgspec.Meta(max_length=limits.event_sections_max)] = []
    access: PresaleAccess


class CreateEvent(Strict, frozen=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=limits.venue_name_chars_max)]
    venue: VenueSpec
    onsale_at: datetime
    hold_ttl_s: Annotated[int, msgspec.Meta(ge=limits.hold_ttl_s_min, le=limits.hold_ttl_s_max)]
    per_user_limit: Annotated[int, msgspec.Meta(ge=1, le=limits.per_user_limit_max)]
    home_region: Region
    # How long after buying a fan may cancel their own order (0: never; docs/api.md).
    fan_cancel_window_s: Annotated[int, msgspec.Meta(ge=0, le=limits.fan_cancel_window_s_max)] = 0
    # Presale waves before `onsale_at` (docs/presales.md); none: the general sale only.
    presales: Annotated[list[PresaleWave], msgspec.Meta(max_length=limits.presale_waves_max)] = []


class BestAvailable(Strict, frozen=True, kw_only=True):
    quantity: Annotated[int, msgspec.Meta(ge=1, le=limits.seats_per_hold_max)]
    sections: Annotated[list[SectionId], msgspec.Meta(max_length=limits.event_sections_max)] = []
    adjacent: bool = True


class CreateHold(Strict, frozen=True, kw_only=True):
    """Exactly one of `seats` and `best_available`."""

    seats: Annotated[list[SeatId], msgspec.Meta(min_length=1, max_length=10_000)] | None = None
    best_available: BestAvailable | None = None
    # A presale wave's access code (docs/presales.md); ignored once the general sale is open.
    presale_code: PresaleCode | None = None


class CreateOrder(Strict, frozen=True, kw_only=True):
    hold_id: uuid.UUID
    payment_token: PaymentToken


class Contact(Strict, frozen=True, kw_only=True):
    """PUT /v1/me/contact: where order confirmations go. PUT replaces both: a missing field is
    null, and null removes that channel."""

    email: contracts.Email | None = None
    phone: contracts.Phone | None = None


class Profile(msgspec.Struct, kw_only=True):
    """GET /v1/me: the sharing choice and friends (as readers see them) and the contact
    details (which never leave the writer's database except in the fan's own confirmations)."""

    user_id: str
    share_purchases: bool
    friends: list[str]
    email: str | None
    phone: str | None


class EventCreated(msgspec.Struct):
    event_id: uuid.UUID


class HoldView(msgspec.Struct):
    hold_id: uuid.UUID
    event_id: uuid.UUID
    status: str
    seats: list[str]
    expires_at: datetime
    extended: bool
    # What buying the hold costs: the sum of its seats' price tiers, in `currency`'s minor unit.
    amount: int
    currency: str


class OrderView(msgspec.Struct):
    order_id: uuid.UUID
    hold_id: uuid.UUID
    event_id: uuid.UUID
    seats: list[str]
    amount: int
    currency: str
    status: str


T = TypeVar("T")

_decoders: Final[dict[type[Any], msgspec.json.Decoder[Any]]] = {
    kind: msgspec.json.Decoder(kind) for kind in (CreateEvent, CreateHold, CreateOrder, Contact)
}
encoder: Final = msgspec.json.Encoder()


def decode(kind: type[T], body: bytes) -> T:
    """Malformed JSON is a 400; JSON of the wrong shape (types, bounds, unknown fields) a 422."""
    try:
        return _decoders[kind].decode(body)  # type: ignore[no-any-return]
    except msgspec.ValidationError as error:
        raise errors.InvalidRequest(str(error)) from None
    except msgspec.DecodeError as error:
        raise errors.MalformedJson(f"request body is not valid JSON: {error}") from None
