"""Tickets, on the writer's side (docs/tickets.md): signing them when a checkout is about to
commit, the keys it publishes, a fan's download, and the door's exactly-once scan.

Signing happens in the checkout's request (`SigningRing.issue`), before the sale is queued, not
in the event's batch: an Ed25519 signature costs ~40 µs, and the batch is the one serial part of
an event's write path. The tickets ride on the sale (`SellOp.tickets`) and are inserted by the
sale's own statement (batch_sql.SELL_HOLDS), so an order never commits without its tickets nor
tickets without their order.

The scan is one conditional UPDATE (`ADMIT`): it sets `scanned_at` only where it is still NULL
and the ticket and its order are still good. However many gates scan one ticket at once, the
database lets exactly one UPDATE find the row unscanned; the others find it scanned and are told
when and where.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import msgspec
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from global_writer import errors
from global_writer.db import tables as t
from global_writer.db.retry import run_transaction
from tessera import limits
from tessera import tickets as tk
from tessera.web import kind

log = logging.getLogger("global_writer.tickets")

DEV_KID: Final = "dev"
_DEV_INFO: Final = b"tessera ticket signing key (development only)"
STAFF_KEY_HEADER: Final = "x-staff-key"
STAFF_CHALLENGE: Final = 'StaffKey realm="tessera-door"'

StaffName = Annotated[
    str,
    msgspec.Meta(
        min_length=1, max_length=limits.door_staff_name_chars_max, pattern=r"^[A-Za-z0-9._-]+$"
    ),
]
StaffKey = Annotated[
    str,
    msgspec.Meta(
        min_length=limits.door_staff_key_chars_min, max_length=limits.door_staff_key_chars_max
    ),
]
EncodedKey = Annotated[str, msgspec.Meta(min_length=43, max_length=43, pattern=r"^[A-Za-z0-9_-]+$")]


class RingSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """TESSERA_TICKET_SIGNING_KEYS: the key that signs now, the private keys (32-byte Ed25519
    seeds, base64url), and retired public keys still published for tickets they signed."""

    current: tk.Kid
    private: Annotated[dict[tk.Kid, EncodedKey], msgspec.Meta(min_length=1)]
    public: dict[tk.Kid, EncodedKey] = {}


_ring_decoder: Final = msgspec.json.Decoder(RingSpec)
_staff_decoder: Final = msgspec.json.Decoder(
    Annotated[dict[StaffName, StaffKey], msgspec.Meta(max_length=limits.door_staff_credentials_max)]
)


@dataclass(frozen=True)
class IssuedTicket:
    ticket_id: uuid.UUID
    seat: str
    kid: str
    token: str
    issued_at: datetime


class SigningRing:
    """The writer's ticket keys: the current one signs, all of them are published."""

    def __init__(
        self,
        current: str,
        private: dict[str, Ed25519PrivateKey],
        public: dict[str, Ed25519PublicKey] | None = None,
    ) -> None:
        if current not in private:
            raise ValueError("TESSERA_TICKET_SIGNING_KEYS: `current` must name a private key")
        published = {kid: key.public_key() for kid, key in private.items()}
        for kid, key in (public or {}).items():
            if kid in published:
                raise ValueError(f"TESSERA_TICKET_SIGNING_KEYS: key {kid!r} given twice")
            published[kid] = key
        self.current = current
        self.signing_key = private[current]
        self.keys = tk.KeySet(published)

    @classmethod
    def parse(cls, text: str, *, dev_secret: str = "") -> SigningRing:
        """The ring from TESSERA_TICKET_SIGNING_KEYS; when that is empty, a development ring
        derived from the HS256 secret (the same in every writer of a local stack, so tickets
        survive restarts), else ValueError naming the variable."""
        if not text:
            if not dev_secret:
                raise ValueError(
                    "TESSERA_TICKET_SIGNING_KEYS: required unless TESSERA_JWT_SECRET is set for "
                    "local development (docs/tickets.md, key rotation)"
                )
            return cls(DEV_KID, {DEV_KID: dev_key(dev_secret)})
        try:
            spec = _ring_decoder.decode(text)
            private = {
                kid: Ed25519PrivateKey.from_private_bytes(tk.unb64url(seed))
                for kid, seed in spec.private.items()
            }
            public = {
                kid: Ed25519PublicKey.from_public_bytes(tk.unb64url(key))
                for kid, key in spec.public.items()
            }
        except (msgspec.DecodeError, ValueError) as error:
            # The message names the field, never a key.
            reason = error if isinstance(error, msgspec.ValidationError) else "not valid keys"
            raise ValueError(f"TESSERA_TICKET_SIGNING_KEYS: {reason}") from None
        if len(private) + len(public) > limits.ticket_keys_max:
            raise ValueError(f"TESSERA_TICKET_SIGNING_KEYS: at most {limits.ticket_keys_max} keys")
        return cls(spec.current, private, public)

    def issue(
        self, *, event_id: uuid.UUID, order_id: uuid.UUID, user_id: str, seats: list[str]
    ) -> list[IssuedTicket]:
        """One signed ticket per seat, under the current key."""
        issued_s = int(time.time())
        issued_at = datetime.fromtimestamp(issued_s, UTC)
        out = []
        for seat in seats:
            claims = tk.TicketClaims(
                v=tk.FORMAT_VERSION,
                kid=self.current,
                ticket_id=uuid.uuid4(),
                event_id=event_id,
                order_id=order_id,
                seat=seat,
                user_id=user_id,
                issued_at=issued_s,
            )
            payload = tk.encode_payload(claims)
            signature = self.signing_key.sign(tk.SIGNING_CONTEXT + payload)
            token = tk.assemble(payload, signature)
            out.append(IssuedTicket(claims.ticket_id, seat, self.current, token, issued_at))
        return out


def dev_key(secret: str) -> Ed25519PrivateKey:
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_DEV_INFO).derive(
        secret.encode()
    )
    return Ed25519PrivateKey.from_private_bytes(seed)


def staff_credentials(text: str) -> dict[str, bytes]:
    """TESSERA_DOOR_STAFF_KEYS: `{name: key}`; each name is what a scan records as `scanned_by`.
    Empty: nobody can scan."""
    if not text:
        return {}
    try:
        named = _staff_decoder.decode(text)
    except msgspec.DecodeError as error:
        reason = error if isinstance(error, msgspec.ValidationError) else "not a JSON object"
        raise ValueError(f"TESSERA_DOOR_STAFF_KEYS: {reason}") from None
    keys = list(named.values())
    if len(set(keys)) != len(keys):
        raise ValueError("TESSERA_DOOR_STAFF_KEYS: two credentials share a key")
    return {name: key.encode() for name, key in named.items()}


def staff_name(given: str | None, credentials: dict[str, bytes]) -> str:
    """Whose credential `X-Staff-Key` is; 401 for none or a wrong one. Every configured key is
    compared, in constant time, so the answer's timing says nothing about which came close."""
    found = ""
    given_bytes = (given or "").encode("utf-8", "surrogatepass")
    for name, key in credentials.items():
        if hmac.compare_digest(given_bytes, key):
            found = name
    if not found:
        raise errors.Unauthorized(
            "a door staff key (X-Staff-Key) is required",
            reason="staff_key_invalid",
            headers={"WWW-Authenticate": STAFF_CHALLENGE},
        )
    return found


# --- the door ---

UUID: Final = pg.UUID(as_uuid=True)

# Admit once: only a row still unscanned, valid, with this exact token, of the event the gate
# scans for, whose order is still confirmed. At READ COMMITTED a concurrent scan of the same row
# waits for this one and then re-checks `scanned_at IS NULL` against the committed row, so it
# updates nothing; under SERIALIZABLE (CockroachDB) it aborts and its rerun finds the row scanned.
ADMIT: Final = sa.text(
    "UPDATE tickets SET scanned_at = now(), scanned_gate = :gate, scanned_by = :staff,"
    " scan_id = :scan_id"
    " WHERE ticket_id = :ticket_id AND event_id = :event_id AND token = :token"
    " AND status = 'valid' AND scanned_at IS NULL"
    " AND NOT EXISTS (SELECT 1 FROM orders WHERE orders.order_id = tickets.order_id"
    " AND orders.status <> 'confirmed')"
    " RETURNING scanned_at"
).bindparams(
    sa.bindparam("ticket_id", type_=UUID),
    sa.bindparam("event_id", type_=UUID),
    sa.bindparam("scan_id", type_=UUID),
)
LOOKUP: Final = sa.text(
    "SELECT tickets.status, tickets.event_id, tickets.token, tickets.scanned_at,"
    " tickets.scanned_gate, tickets.scanned_by, tickets.scan_id, orders.status AS order_status"
    " FROM tickets LEFT JOIN orders ON orders.order_id = tickets.order_id"
    " WHERE tickets.ticket_id = :ticket_id"
).bindparams(sa.bindparam("ticket_id", type_=UUID))

# Marking an order's tickets when the order is refunded or cancelled: one statement for any
# number of orders, for the refund's own transaction (docs/tickets.md). The scan also refuses a
# ticket whose order is no longer `confirmed`, whichever is written first.
MARK_ORDERS: Final = sa.text(
    "UPDATE tickets SET status = :status WHERE order_id = ANY(:order_ids) AND status = 'valid'"
).bindparams(sa.bindparam("order_ids", type_=pg.ARRAY(UUID)))

# The door's refusals: 403 when the token is not a ticket Tessera issued, 409 when it is one that
# cannot enter here and now.
InvalidSignature = kind(403, "invalid_signature", errors.WriterError)
UnknownTicket = kind(403, "unknown_ticket", errors.WriterError)
AlreadyScanned = kind(409, "already_scanned", errors.WriterError)
RefundedTicket = kind(409, "refunded", errors.WriterError)
VoidTicket = kind(409, "void", errors.WriterError)
WrongEvent = kind(409, "wrong_event", errors.WriterError)


class Admitted(msgspec.Struct, frozen=True, kw_only=True):
    admitted: bool
    ticket_id: uuid.UUID
    event_id: uuid.UUID
    order_id: uuid.UUID
    seat: str
    scanned_at: datetime
    gate: str
    scanned_by: str
    # True when this scan's own earlier attempt admitted it (the same `scan_id`).
    replayed: bool = False


async def mark_orders(conn: AsyncConnection, order_ids: list[uuid.UUID], status: str) -> int:
    """Set the still-valid tickets of these orders to `refunded` or `void`, in the caller's
    transaction; returns how many changed."""
    if status not in t.TICKET_STATUSES or status == "valid":
        raise ValueError(f"tickets cannot be marked {status!r}")
    result = await conn.execute(MARK_ORDERS, {"status": status, "order_ids": order_ids})
    return int(getattr(result, "rowcount", 0) or 0)


async def scan(
    engine: AsyncEngine,
    keys: tk.KeySet,
    *,
    token: str,
    event_id: uuid.UUID,
    gate: str,
    staff: str,
    scan_id: uuid.UUID,
) -> Admitted:
    """Admit the ticket once, or raise the refusal that says why not."""
    try:
        claims = keys.verify(token)
    except tk.TicketInvalid as invalid:
        raise InvalidSignature(str(invalid), reason=invalid.reason) from None
    if claims.event_id != event_id:
        raise WrongEvent(
            f"this ticket is for another event ({claims.event_id})",
            ticket_event_id=str(claims.event_id),
            event_id=str(event_id),
        )
    params = {
        "ticket_id": claims.ticket_id,
        "event_id": event_id,
        "token": token,
        "gate": gate,
        "staff": staff,
        "scan_id": scan_id,
    }

    async def admit(conn: AsyncConnection) -> tuple[datetime | None, Any]:
        row = (await conn.execute(ADMIT, params)).first()
        if row is not None:
            return row[0], None
        return None, (await conn.execute(LOOKUP, {"ticket_id": claims.ticket_id})).first()

    scanned_at, found = await run_transaction(engine, admit)
    if scanned_at is not None:
        return admitted(claims, scanned_at, gate, staff, replayed=False)
    return refusal(claims, found, token, scan_id)


def admitted(
    claims: tk.TicketClaims, scanned_at: datetime, gate: str, staff: str, *, replayed: bool
) -> Admitted:
    return Admitted(
        admitted=True,
        ticket_id=claims.ticket_id,
        event_id=claims.event_id,
        order_id=claims.order_id,
        seat=claims.seat,
        scanned_at=scanned_at,
        gate=gate,
        scanned_by=staff,
        replayed=replayed,
    )


def refusal(claims: tk.TicketClaims, row: Any, token: str, scan_id: uuid.UUID) -> Admitted:
    """Why a ticket the UPDATE did not admit is refused (or, for this scan's own retry, that it
    was admitted after all)."""
    if row is None or row.token != token:
        raise UnknownTicket("no such ticket was issued", ticket_id=str(claims.ticket_id))
    if row.status == "refunded" or (row.order_status not in (None, "confirmed")):
        raise RefundedTicket("this ticket's order was refunded", seat=claims.seat)
    if row.status == "void":
        raise VoidTicket("this ticket was voided", seat=claims.seat)
    if row.scanned_at is None:
        # Every condition of ADMIT holds now: the order or ticket changed between the two
        # statements. Not admitted; the scanner may scan again.
        raise errors.Unavailable("the ticket changed while it was scanned; scan it again")
    if row.scan_id == scan_id:
        return admitted(claims, row.scanned_at, row.scanned_gate, row.scanned_by, replayed=True)
    at = row.scanned_at.astimezone(UTC)
    raise AlreadyScanned(
        f"already scanned at {at:%H:%M:%S} UTC on {at:%Y-%m-%d} at gate {row.scanned_gate}",
        scanned_at=at.isoformat().replace("+00:00", "Z"),
        gate=row.scanned_gate,
        scanned_by=row.scanned_by,
        seat=claims.seat,
    )


# --- a fan's tickets ---


class TicketView(msgspec.Struct, frozen=True, kw_only=True):
    ticket_id: uuid.UUID
    seat: str
    status: str
    token: str
    issued_at: datetime
    scanned_at: datetime | None
    qr: str


class OrderTickets(msgspec.Struct, frozen=True, kw_only=True):
    order_id: uuid.UUID
    event_id: uuid.UUID
    tickets: list[TicketView]


async def order_tickets(engine: AsyncEngine, user_id: str, order_id: uuid.UUID) -> OrderTickets:
    """The tickets of the caller's own order; 404 for anyone else's or an unknown order."""

    async def read(conn: AsyncConnection) -> tuple[Any, list[Any]]:
        order = (
            await conn.execute(
                sa.select(t.orders.c.event_id).where(
                    t.orders.c.order_id == order_id, t.orders.c.user_id == user_id
                )
            )
        ).first()
        if order is None:
            return None, []
        rows = await conn.execute(
            sa.select(t.tickets)
            .where(t.tickets.c.order_id == order_id, t.tickets.c.user_id == user_id)
            .order_by(t.tickets.c.seat)
        )
        return order, list(rows)

    order, rows = await run_transaction(engine, read)
    if order is None:
        raise errors.NotFound("no such order")
    return OrderTickets(
        order_id=order_id,
        event_id=order.event_id,
        tickets=[
            TicketView(
                ticket_id=row.ticket_id,
                seat=row.seat,
                status=row.status,
                token=row.token,
                issued_at=row.issued_at,
                scanned_at=row.scanned_at,
                qr=f"/v1/me/orders/{order_id}/tickets/{row.ticket_id}/qr",
            )
            for row in rows
        ],
    )
