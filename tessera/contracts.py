"""Wire contracts between tiers on NATS (ARCHITECTURE.md §3-4). Section deltas travel as the
binary seat-map delta (docs/seatmap-format.md) with these headers; order events as JSON."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Final

import msgspec

from tessera import limits
from tessera.venue import VenueSpec

SEATS_SUBJECT_PREFIX: Final = "seats"
ORDERS_SUBJECT_PREFIX: Final = "orders"
HEADER_EVENT: Final = "Tessera-Event"
HEADER_SECTION: Final = "Tessera-Section"
HEADER_VERSION: Final = "Tessera-Version"
HEADER_COMMITTED_MS: Final = "Tessera-Committed-Ms"
SEATMAP_KV_BUCKET: Final = "seatmap"


def seats_subject(event_id: uuid.UUID, section_id: str) -> str:
    return f"{SEATS_SUBJECT_PREFIX}.{event_id}.{section_id}"


def orders_subject(event_id: uuid.UUID) -> str:
    return f"{ORDERS_SUBJECT_PREFIX}.{event_id}"


def delta_msg_id(event_id: uuid.UUID, section_id: str, version: int) -> str:
    """`Nats-Msg-Id` of a section delta: the stream drops a republished duplicate."""
    return f"{event_id}.{section_id}.{version}"


def snapshot_key(event_id: uuid.UUID, section_id: str) -> str:
    return f"{event_id}.{section_id}"


# The same bucket carries what readers need besides seat maps, under prefixes no event id (a
# UUID) can take: the event's layout and the fans' sharing choices and friend lists.
EVENT_INFO_PREFIX: Final = "events"
USER_RECORD_PREFIX: Final = "users"


def event_info_key(event_id: uuid.UUID) -> str:
    return f"{EVENT_INFO_PREFIX}.{event_id}"


def user_record_key(user_id: str) -> str:
    return f"{USER_RECORD_PREFIX}.{user_id}"


def kv_subject(key: str) -> str:
    """Publishing to this subject is a put into the bucket (how the outbox writes the KV)."""
    return f"$KV.{SEATMAP_KV_BUCKET}.{key}"


SeatId = Annotated[str, msgspec.Meta(min_length=5, max_length=limits.seat_id_chars_max)]


class OrderEvent(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Published on `orders.<event_id>` when an order commits; feeds the friends index."""

    order_id: uuid.UUID
    event_id: uuid.UUID
    user_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    seats: Annotated[list[SeatId], msgspec.Meta(min_length=1, max_length=limits.seats_per_hold_max)]
    share_purchases: bool
    created_at: datetime


UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class EventInfo(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """An event as readers need it (its venue gives sections, seat ids and order)."""

    event_id: uuid.UUID
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=limits.venue_name_chars_max)]
    onsale_at: datetime
    hold_ttl_s: int
    per_user_limit: int
    home_region: str
    venue: VenueSpec


class UserRecord(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A fan's sharing choice and friend list, written by the writer on every change."""

    user_id: UserId
    share_purchases: bool
    friends: Annotated[list[UserId], msgspec.Meta(max_length=limits.friends_per_user_max)]


order_event_decoder: Final = msgspec.json.Decoder(OrderEvent)
order_event_encoder: Final = msgspec.json.Encoder()
event_info_decoder: Final = msgspec.json.Decoder(EventInfo)
user_record_decoder: Final = msgspec.json.Decoder(UserRecord)
