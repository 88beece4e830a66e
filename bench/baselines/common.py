"""What the two baselines share: a bare-ASGI server with Tessera's API shape, the wire types, the
venue as bitmaps, the seat-map bytes, request coalescing and the adjacent-run search.

Bare ASGI rather than Litestar: routing four paths by hand costs less per request than a
framework, and the baselines should be as fast as their designs allow.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Generic, TypeVar

import msgspec

import tessera_core as tc
from tessera import auth, limits
from tessera.venue import Venue, VenueError

ENV_DATABASE: Final = "BENCH_BASELINE_DATABASE_URL"
ENV_REDIS: Final = "BENCH_BASELINE_REDIS_URL"
ENV_VENUE: Final = "BENCH_BASELINE_VENUE"
ENV_SECRET: Final = "BENCH_BASELINE_JWT_SECRET"
ENV_POOL: Final = "BENCH_BASELINE_POOL"
ENV_REDIS_POOL: Final = "BENCH_BASELINE_REDIS_POOL"
ENV_HOLD_TTL: Final = "BENCH_BASELINE_HOLD_TTL_S"
JSON_TYPE: Final = b"application/json"
SEATMAP_TYPE: Final = b"application/vnd.tessera.seatmap"
# Tessera's fan body cap (docs/api.md).
BODY_BYTES_MAX: Final = 16 * 1024
APPROVED_TOKEN: Final = "tok_approve"
log: Final = logging.getLogger("baseline")
T = TypeVar("T")
Scope = dict[str, Any]


# --- the wire: the same bodies as Tessera's API (docs/api.md) ---

SeatId = Annotated[str, msgspec.Meta(min_length=5, max_length=limits.seat_id_chars_max)]
SectionId = Annotated[str, msgspec.Meta(min_length=1, max_length=limits.venue_id_chars_max)]


class BestAvailable(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    quantity: Annotated[int, msgspec.Meta(ge=1, le=limits.seats_per_hold_max)]
    sections: Annotated[list[SectionId], msgspec.Meta(max_length=limits.event_sections_max)] = []
    adjacent: bool = True  # accepted; both baselines always look for adjacent seats


class CreateHold(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    seats: (
        Annotated[list[SeatId], msgspec.Meta(min_length=1, max_length=limits.seats_per_hold_max)]
        | None
    ) = None
    best_available: BestAvailable | None = None


class CreateOrder(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    hold_id: uuid.UUID
    payment_token: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class HoldView(msgspec.Struct):
    hold_id: str
    event_id: str
    status: str
    seats: list[str]
    expires_at: str
    extended: bool = False


class OrderView(msgspec.Struct):
    order_id: str
    hold_id: str
    event_id: str
    seats: list[str]
    amount: int
    currency: str
    status: str = "confirmed"


_hold_decoder: Final = msgspec.json.Decoder(CreateHold)
_order_decoder: Final = msgspec.json.Decoder(CreateOrder)
encoder: Final = msgspec.json.Encoder()


def rfc3339(at: datetime | float) -> str:
    """A time as Tessera's replies carry it (UTC, microseconds, `Z`)."""
    moment = at if isinstance(at, datetime) else datetime.fromtimestamp(at, UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# --- replies and requests ---


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: bytes = JSON_TYPE
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[bytes, bytes]
    body: bytes

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")


def error(status: int, code: str, message: str, **details: object) -> Reply:
    return Reply(status, encoder.encode({"error": {"code": code, "message": message, **details}}))


def json_reply(status: int, value: object) -> Reply:
    return Reply(status, encoder.encode(value))


@dataclass(frozen=True)
class Ask:
    """Who asks for a hold of which event, with which Idempotency-Key, and the new hold's id."""

    event: str
    user: str
    key: str
    hold_id: uuid.UUID


class Refused(Exception):
    """A request refused with `reply` (bad input, no credentials, …)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def fan(request: Request, secret: str) -> tuple[str, str]:
    """The caller's user id and the request's Idempotency-Key, or `Refused`."""
    try:
        user = auth.verify_token(auth.bearer_token(request.header(b"authorization")), secret)
    except auth.AuthError as exc:
        raise Refused(error(401, "unauthorized", str(exc), reason=exc.args[0])) from None
    key = request.header(b"idempotency-key")
    if not key or len(key) > 128:
        raise Refused(error(400, "idempotency_key_required", "send an Idempotency-Key header"))
    return user.user_id, key


def decode_hold(body: bytes) -> CreateHold:
    return _decode(_hold_decoder, body)


def decode_order(body: bytes) -> CreateOrder:
    return _decode(_order_decoder, body)


def _decode(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise Refused(error(422, "invalid_request", str(exc))) from None
    except msgspec.DecodeError as exc:
        raise Refused(error(400, "malformed_json", str(exc))) from None


Router = Callable[[Request], Awaitable[Reply]]
Lifespan = Callable[[], AbstractAsyncContextManager[None]]


def asgi_app(router: Router, lifespan: Lifespan) -> Any:
    """A bare ASGI app: the body read (413 past BODY_BYTES_MAX), `router` answers; an exception
    it raises is logged and answered 503 (retry with the same Idempotency-Key)."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, lifespan)
            return
        if scope["type"] != "http":
            return
        body, too_big, more = b"", False, True
        while more:
            message = await receive()
            chunk = message.get("body", b"")
            too_big = too_big or len(body) + len(chunk) > BODY_BYTES_MAX
            if not too_big:
                body += chunk
            more = message.get("more_body", False)
        if too_big:
            reply = error(413, "payload_too_large", f"bodies are at most {BODY_BYTES_MAX} bytes")
        else:
            request = Request(scope["method"], scope["path"], dict(scope["headers"]), body)
            try:
                reply = await router(request)
            except Refused as refused:
                reply = refused.reply
            except Exception as exc:
                log.exception("request failed: %s %s", scope["method"], scope["path"])
                reply = error(503, "unavailable", f"{type(exc).__name__}; retry")
        headers = [(b"content-type", reply.content_type), *reply.headers]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    return app


async def _lifespan(receive: Any, send: Any, lifespan: Lifespan) -> None:
    context: AbstractAsyncContextManager[None] | None = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            context = lifespan()
            try:
                await context.__aenter__()
            except Exception as exc:
                log.exception("startup failed")
                await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if context is not None:
                await context.__aexit__(None, None, None)
            await send({"type": "lifespan.shutdown.complete"})
            return


def route(path: str) -> tuple[str, str] | None:
    """("seatmap" | "holds" | "orders", event) for `/v1/events/{event}/seatmap|holds|orders`,
    ("readyz", "") for `/readyz`, else None."""
    if path == "/readyz":
        return "readyz", ""
    parts = path.split("/")
    if (
        len(parts) == 5
        and parts[1:3] == ["v1", "events"]
        and parts[3]
        and parts[4] in ("seatmap", "holds", "orders")
    ):
        return parts[4], parts[3]
    return None


def configure_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


# --- the venue as bitmaps ---


class VenueIndex:
    """Sections by position (venue order, the seat maps' order), availability as one int per
    section (bit i set: seat i available), rows in rank order for best-available."""

    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self.layouts = venue.layouts
        self.positions = {layout.section_id: p for p, layout in enumerate(venue.layouts)}
        self.seat_counts = [layout.seat_count for layout in venue.layouts]
        self.unblocked: list[bytes] = []
        rows: list[tuple[int, int, int, int]] = []
        for position, layout in enumerate(venue.layouts):
            bits = bytearray(b"\xff" * (layout.seat_count // 8))
            if layout.seat_count % 8:
                bits.append((1 << (layout.seat_count % 8)) - 1)
            for index in layout.blocked_indices:
                bits[index >> 3] &= 0xFF ^ (1 << (index & 7))
            self.unblocked.append(bytes(bits))
            for start, length, rank in zip(
                layout.row_starts, layout.row_lengths, layout.row_ranks, strict=True
            ):
                rows.append((rank, position, start, length))
        # Best rows first: rank, then venue order.
        self.rows = sorted(rows)
        self.section_rows = [[r for r in self.rows if r[1] == p] for p in range(len(self.layouts))]
        tiers = venue.spec.price_tiers
        self.prices = {tier.id: (tier.price_minor, tier.currency) for tier in tiers}

    def locate(self, seat_id: str) -> tuple[int, int]:
        """(section position, seat index) of a public seat id, or `Refused` (422)."""
        try:
            layout, index = self.venue.locate(seat_id)
        except VenueError as exc:
            raise Refused(error(422, "invalid_seat", str(exc), seats=[seat_id])) from None
        return self.positions[layout.section_id], index

    def locate_all(self, seats: Sequence[str]) -> list[tuple[int, int]]:
        keys = [self.locate(seat) for seat in seats]
        if len(set(keys)) != len(keys):
            raise Refused(error(422, "invalid_request", "a seat appears twice in the request"))
        return keys

    def seat_id(self, position: int, index: int) -> str:
        return self.layouts[position].seat_id(index)

    def section_positions(self, sections: Sequence[str]) -> list[int] | None:
        """Positions of `sections` (None: every section), or `Refused` (422)."""
        if not sections:
            return None
        unknown = [s for s in sections if s not in self.positions]
        if unknown:
            raise Refused(error(422, "invalid_request", f"unknown sections {unknown[:5]}"))
        return [self.positions[s] for s in sections]

    def amount(self, keys: Iterable[tuple[int, int]]) -> tuple[int, str]:
        total, currency = 0, "USD"
        for position, index in keys:
            tier = self.layouts[position].price_tier(index)
            if tier is not None and tier in self.prices:
                price, currency = self.prices[tier]
                total += price
        return total, currency

    def availability(self, taken: Iterable[tuple[int, Iterable[int]]]) -> Availability:
        """The seat map with every seat of `taken` ((position, indices) pairs) unavailable."""
        bits = [bytearray(b) for b in self.unblocked]
        for position, indices in taken:
            section = bits[position]
            for index in indices:
                section[index >> 3] &= _CLEAR_BIT[index & 7]
        maps = [tc.SeatMap(bytes(b), n, 0) for b, n in zip(bits, self.seat_counts, strict=True)]
        body = tc.encode_event(maps)
        etag = f'"{hashlib.blake2b(body, digest_size=8).hexdigest()}"'
        return Availability([int.from_bytes(b, "little") for b in bits], body, etag)


_CLEAR_BIT: Final = tuple(0xFF ^ (1 << bit) for bit in range(8))


@dataclass
class Availability:
    """One read of availability: per section an int (bit i set: seat i available), the seat map
    bytes (Tessera's binary event map, versions 0) and their ETag."""

    free: list[int]
    body: bytes
    etag: str


def seatmap_reply(availability: Availability, request: Request) -> Reply:
    """200 with the map, or 304 when `If-None-Match` names its ETag."""
    etag = availability.etag.encode()
    headers = [(b"etag", etag), (b"cache-control", b"no-cache")]
    if request.headers.get(b"if-none-match") == etag:
        return Reply(304, b"", SEATMAP_TYPE, headers)
    return Reply(200, availability.body, SEATMAP_TYPE, headers)


def find_runs(
    index: VenueIndex,
    free: Sequence[int],
    quantity: int,
    positions: Sequence[int] | None,
    limit: int,
) -> list[tuple[int, list[int]]]:
    """Up to `limit` runs of `quantity` adjacent available seats, one per row, best rows first
    (rank, then venue order); in a row, the run nearest its middle. (position, indices) each."""
    if positions is None:
        rows = index.rows
    elif len(positions) == 1:
        rows = index.section_rows[positions[0]]
    else:
        rows = sorted(r for p in positions for r in index.section_rows[p])
    found: list[tuple[int, list[int]]] = []
    for _, position, start, length in rows:
        if length < quantity:
            continue
        row = (free[position] >> start) & ((1 << length) - 1)
        if row.bit_count() < quantity:
            continue
        starts = row
        for _ in range(quantity - 1):
            starts &= starts >> 1
        if not starts:
            continue
        middle = (length - quantity) / 2
        best = -1
        while starts:
            low = starts & -starts
            candidate = low.bit_length() - 1
            if best < 0 or abs(candidate - middle) < abs(best - middle):
                best = candidate
            starts ^= low
        first = start + best
        found.append((position, list(range(first, first + quantity))))
        if len(found) >= limit:
            break
    return found


class SingleFlight(Generic[T]):
    """Concurrent callers share one in-flight computation: a request that arrives while one runs
    gets its result (at most one computation old); the next one after it starts a new one."""

    def __init__(self, compute: Callable[[], Awaitable[T]]) -> None:
        self._compute = compute
        self._task: asyncio.Future[T] | None = None

    async def get(self) -> T:
        task = self._task
        if task is None or task.done():
            task = self._task = asyncio.ensure_future(self._compute())
        return await asyncio.shield(task)


@dataclass
class Ledger:
    """What a system's store says after a sale, for the bench's audit: per seat id its holder
    (hold id, and order id once sold), every confirmed order (hold id, seat ids), and the
    violations its own audit queries found (name -> count)."""

    seats: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    orders: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    violations: dict[str, int] = field(default_factory=dict)
