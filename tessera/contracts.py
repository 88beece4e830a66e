"""Wire contracts between tiers on NATS (docs/architecture.md §3-4). Section deltas travel as the
binary seat-map delta (docs/seatmap-format.md) with these headers; order events as JSON."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

from tessera import limits
from tessera.venue import Currency, VenueSpec

SEATS_SUBJECT_PREFIX: Final = "seats"
ORDERS_SUBJECT_PREFIX: Final = "orders"
HEADER_EVENT: Final = "Tessera-Event"
HEADER_SECTION: Final = "Tessera-Section"
HEADER_VERSION: Final = "Tessera-Version"
HEADER_COMMITTED_MS: Final = "Tessera-Committed-Ms"
# Following a request (tessera/requests.py): the batch that committed a message, and for an
# order's messages the checkout request's id.
HEADER_BATCH: Final = "Tessera-Batch-Id"
HEADER_REQUEST: Final = "Tessera-Request-Id"
SEATMAP_KV_BUCKET: Final = "seatmap"
# HTTP, edge to writer: the edges' credential (TESSERA_EDGE_WRITER_CREDENTIAL), without which a
# writer that has one refuses fans' writes (docs/edge.md, "Secrets").
HEADER_EDGE_CREDENTIAL: Final = "X-Edge-Credential"
# Its setting: empty (none), or up to three comma-separated values of 32-512 visible ASCII
# characters. Edges send the first; a writer accepts any, so a rotation puts "new,old" on both,
# redeploys the writers then the edges, and finally leaves "new" alone (docs/operations.md).
EDGE_CREDENTIAL_PATTERN: Final = (
    r"^([\x21-\x2b\x2d-\x7e]{32,512}(,[\x21-\x2b\x2d-\x7e]{32,512}){0,2})?$"
)


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


# --- order confirmations: the notifier's work queue (docs/notifications.md) ---
#
# Their own streams, not SEATS: a work queue deletes what its consumer acknowledges, while the
# change feed is replayed from the start by every reader. SEATS binds `orders.*` (two tokens),
# these three tokens, so the subjects never overlap (the server refuses overlapping streams) and
# the writer's and the leaf connections' `orders.>` permissions cover them unchanged.
ORDERS_STREAM: Final = "ORDERS"
ORDERS_DEADLETTER_STREAM: Final = "ORDERS_DEADLETTER"
ORDER_CONFIRMED_PREFIX: Final = "orders.confirmed"
ORDER_DEADLETTER_PREFIX: Final = "orders.deadletter"
# On a replayed confirmation: the only channels still to deliver (comma-separated).
HEADER_NOTIFY_CHANNELS: Final = "Tessera-Notify-Channels"
HEADER_NOTIFY_CHANNEL: Final = "Tessera-Notify-Channel"
HEADER_ORDER: Final = "Tessera-Order"

# ASCII addresses only (no SMTPUTF8): a local part of RFC 5322 atom characters and a dotted
# domain of LDH labels. `\A…\Z`, not `^…$`: `$` also matches before a final newline, and no
# CR/LF may reach a mail header.
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DOMAIN_PATTERN: Final = rf"\A{_LABEL}(?:\.{_LABEL})+\Z"
EMAIL_PATTERN: Final = rf"\A[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~.-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+\Z"
# E.164: "+", a country code not starting with 0, at most 15 digits in all.
PHONE_PATTERN: Final = rf"\A\+[1-9][0-9]{{5,{limits.contact_phone_digits_max - 1}}}\Z"

Email = Annotated[
    str, msgspec.Meta(max_length=limits.contact_email_chars_max, pattern=EMAIL_PATTERN)
]
Phone = Annotated[str, msgspec.Meta(pattern=PHONE_PATTERN)]
Channel = Literal["email", "sms"]
CHANNELS: Final[tuple[Channel, ...]] = ("email", "sms")


def order_confirmed_subject(event_id: uuid.UUID) -> str:
    return f"{ORDER_CONFIRMED_PREFIX}.{event_id}"


def order_deadletter_subject(event_id: uuid.UUID) -> str:
    return f"{ORDER_DEADLETTER_PREFIX}.{event_id}"


def order_confirmed_msg_id(order_id: uuid.UUID) -> str:
    """`Nats-Msg-Id` of a confirmation: a relay's republish is dropped by the stream."""
    return f"confirm.{order_id}"


class TicketCopy(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One ticket of a confirmed order as the notifier renders it (docs/tickets.md): the token
    is what its QR code carries."""

    ticket_id: uuid.UUID
    seat: SeatId
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=limits.ticket_token_chars_max)]


class OrderConfirmation(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Published on `orders.confirmed.<event_id>` (stream ORDERS) in the order's transaction;
    the notifier emails / texts the fan. `amount` is in minor units of `currency`."""

    order_id: uuid.UUID
    event_id: uuid.UUID
    event_name: Annotated[str, msgspec.Meta(min_length=1, max_length=limits.venue_name_chars_max)]
    user_id: UserId
    seats: Annotated[list[SeatId], msgspec.Meta(min_length=1, max_length=limits.seats_per_hold_max)]
    amount: Annotated[int, msgspec.Meta(ge=0, le=limits.payment_amount_minor_max)]
    currency: Currency
    confirmed_at: datetime
    # The fan's contact details when the order committed (PUT /v1/me/contact), if any.
    email: Email | None = None
    phone: Phone | None = None
    # For the email's tickets and calendar file (docs/notifications.md): the venue's name, the
    # event's onsale time (events carry no start time yet), one ticket per seat. Empty for a
    # confirmation written before tickets existed.
    venue_name: Annotated[str, msgspec.Meta(max_length=limits.venue_name_chars_max)] = ""
    onsale_at: datetime | None = None
    tickets: Annotated[list[TicketCopy], msgspec.Meta(max_length=limits.seats_per_hold_max)] = []


class DeadLetter(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Published on `orders.deadletter.<event_id>` (stream ORDERS_DEADLETTER) when one channel
    of a confirmation failed for good: a permanent refusal, or the last attempt used up."""

    confirmation: OrderConfirmation
    channel: Channel
    error: Annotated[str, msgspec.Meta(max_length=limits.notify_error_chars_max)]
    permanent: bool
    attempts: Annotated[int, msgspec.Meta(ge=1)]
    failed_at: datetime
    # The confirmation's sequence in ORDERS (with the channel, the dead letter's Nats-Msg-Id).
    stream_seq: Annotated[int, msgspec.Meta(ge=0)]


order_event_decoder: Final = msgspec.json.Decoder(OrderEvent)
order_event_encoder: Final = msgspec.json.Encoder()
event_info_decoder: Final = msgspec.json.Decoder(EventInfo)
user_record_decoder: Final = msgspec.json.Decoder(UserRecord)
order_confirmation_decoder: Final = msgspec.json.Decoder(OrderConfirmation)
dead_letter_decoder: Final = msgspec.json.Decoder(DeadLetter)
