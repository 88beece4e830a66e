"""Wire contracts between tiers on NATS (ARCHITECTURE.md §3-4). Section deltas travel as the
binary seat-map delta (docs/seatmap-format.md) with these headers; order events as JSON."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Final

import msgspec

from tessera import limits

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


SeatId = Annotated[str, msgspec.Meta(min_length=5, max_length=limits.seat_id_chars_max)]


class OrderEvent(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Published on `orders.<event_id>` when an order commits; feeds the friends index."""

    order_id: uuid.UUID
    event_id: uuid.UUID
    user_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    seats: Annotated[list[SeatId], msgspec.Meta(min_length=1, max_length=limits.seats_per_hold_max)]
    share_purchases: bool
    created_at: datetime


order_event_decoder: Final = msgspec.json.Decoder(OrderEvent)
order_event_encoder: Final = msgspec.json.Encoder()
