"""The fan simulator: fans who look at an event's seat map, hold seats and buy them (or walk
away, release, have their card declined), as `tessera onsale` (tessera_ops/onsale.py) and the
onsale benchmark (bench/onsale_vs_baselines.py) both run them, each with its own `Workload`.

A fan's visit (`Crowd.visit`):

1. wants `quantity` seats (drawn from the workload's weights) and prefers one section drawn with
   Zipf skew over the sections ranked by their best row (heavy contention on the best
   sections), then the next two in rank, then anywhere;
2. reads the seat map (with `If-None-Match` once it has one: an unchanged map costs a 304),
   looks at it for `look_s`, then asks for a hold: `pick_share` of fans pick seats they saw free
   in their section (the caller's `Pick` says how), the rest ask for best-available there. A
   409 means: read the map again and try the next preference, `hold_attempts` times at most.
   With `wait_for_returns`, a map showing nothing free sends the fan back to the map a moment
   later without using an attempt (seats come back as holds expire or are released);
3. with a hold, fills in the checkout form for `checkout_s`, then, by role (one draw per fan):
   walks away (the hold must expire), releases the hold, checks out with a declining card
   (402) and then gives up or pays with another card, or buys (`tok_approve`).

Every write carries an Idempotency-Key. A refusal (503, 429: after its Retry-After, capped at
`retry_after_s_max`, with jitter), another 502/504, a transport error or a key still in flight is
sent again with the same key, `send_attempts` sends in all (the point of the key). Once the sale
is over (`Crowd.over`) no fan starts a new request; requests in flight finish.

`Record` keeps what the fans saw: every exchange (latency, refusals, answers after
`slow_answer_s`), each step's latency as the fan saw it (resends included) and each answer's own,
statuses, the acknowledged holds and orders (with their commit times), the seat maps read, and
what became of each fan. The callers make their figures from it.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import random
import time
import uuid
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

import msgspec

import tessera_core as tc
from tessera.http1 import Answer, Header, HttpError, Pool

Role = Literal["buyer", "abandoner", "releaser", "decliner"]
# Sandbox payment tokens (docs/payments.md).
APPROVE: Final = "tok_approve"
DECLINES: Final = ("tok_decline", "tok_insufficient_funds")
# Answers that say "send it again" (with the same Idempotency-Key); 0: no answer at all.
RESENT: Final = frozenset({0, 429, 502, 503, 504})
REFUSALS: Final = frozenset({429, 503})
# Decoded seat maps kept, by ETag: fans who got the same bytes share one decoding.
DECODED_MAX: Final = 256


@dataclass(frozen=True)
class Workload:
    """What fans want and how they behave (module docstring); shares are of all fans."""

    quantities: tuple[int, ...]
    quantity_weights: tuple[float, ...]
    pick_share: float
    abandon_share: float
    decline_share: float = 0.0
    release_share: float = 0.0
    zipf_s: float = 1.0
    look_s: tuple[float, float] = (0.2, 0.8)
    checkout_s: tuple[float, float] = (0.3, 1.0)
    retry_pause_s: tuple[float, float] = (0.05, 0.2)  # after a 409, before looking again
    hold_attempts: int = 4
    send_attempts: int = 5
    retry_after_s_max: float = 5.0
    slow_answer_s: float = 5.0
    wait_for_returns: bool = False

    def role(self, draw: float) -> Role:
        """The role of a fan whose draw in [0, 1) is `draw`."""
        if draw < self.abandon_share:
            return "abandoner"
        if draw < self.abandon_share + self.decline_share:
            return "decliner"
        if draw < self.abandon_share + self.decline_share + self.release_share:
            return "releaser"
        return "buyer"


class SeenMap:
    """One event seat map as fans decode it: a SeatMap per section, and per section an int
    whose bit i is set when seat i is available (computed once, when first asked for)."""

    def __init__(self, maps: list[tc.SeatMap]) -> None:
        self.maps = maps
        self._free: list[int] | None = None

    @classmethod
    def decode(cls, body: bytes, seat_counts: Sequence[int]) -> SeenMap:
        """From an event seat map's bytes (`GET /v1/events/{e}/seatmap`)."""
        return cls(tc.decode_event(body, seat_counts)[2])

    @property
    def free(self) -> list[int]:
        if self._free is None:
            self._free = [int.from_bytes(m.bitmap(), "little") for m in self.maps]
        return self._free

    @property
    def available(self) -> int:
        return sum(m.available_count for m in self.maps)


# What a fan who picks seats chooses in one section: (rng, the map, section position,
# quantity) -> seat ids, or none when the section shows no suitable seats.
Pick = Callable[[random.Random, SeenMap, int, int], list[str]]


# --- what the fans saw ---


@dataclass
class Read:
    """One seat-map answer: when it came (wall clock), how long it took, and the map the fan
    has after it (None: the fan has no map)."""

    received: float
    latency_s: float
    status: int
    map_key: str | None


@dataclass(frozen=True)
class HoldAck:
    hold_id: str
    seats: tuple[str, ...]
    committed: float  # expires_at - TTL (wall clock): the server's clock when it took them
    expires: float


@dataclass(frozen=True)
class OrderAck:
    order_id: str
    hold_id: str
    seats: tuple[str, ...]
    acked: float


class _ErrorBody(msgspec.Struct):
    code: str = "?"
    reason: str | None = None


class _Error(msgspec.Struct):
    error: _ErrorBody


_ERROR_DECODER: Final = msgspec.json.Decoder(_Error)


def error_code(answer: Answer) -> str:
    """`code` (or `code/reason`) of an error body; `-` when the body is not one."""
    try:
        error = _ERROR_DECODER.decode(answer.body).error
    except msgspec.DecodeError:
        return "-"
    return f"{error.code}/{error.reason}" if error.reason else error.code


@dataclass
class Record:
    """Everything one sale's fans saw. `keep_maps`: keep each distinct map's bytes (`maps`)."""

    keep_maps: bool = False
    reads: list[Read] = field(default_factory=list)
    holds: dict[str, HoldAck] = field(default_factory=dict)
    orders: list[OrderAck] = field(default_factory=list)
    # Holds neither bought nor released yet (abandoned ones stay), and the abandoned ones with
    # their owner's token.
    open_holds: dict[str, HoldAck] = field(default_factory=dict)
    abandoned: list[tuple[HoldAck, str]] = field(default_factory=list)
    # Per step: latency as the fan saw it (resends included), and each answer's own (from the
    # moment it had a connection).
    latencies: dict[str, list[float]] = field(default_factory=dict)
    answer_latencies: dict[str, list[float]] = field(default_factory=dict)
    # "<step> <status>" of each request's last answer, "<step> <status> (sent again)" of the
    # others; 0 is no answer.
    statuses: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    fans: Counter[str] = field(default_factory=Counter)
    maps: dict[str, bytes] = field(default_factory=dict)
    ended: float = 0.0  # wall clock when the last fan left
    # Every exchange (each send of a request): how many, how many answered after slow_answer_s;
    # each refusal's (503/429) latency, and how many came without Retry-After.
    exchanges: int = 0
    slow_exchanges: int = 0
    refusal_latencies: list[float] = field(default_factory=list)
    refusals_without_retry_after: int = 0
    # Refusals by "<status> <code>", and failures: a 5xx or no answer that was not sent again.
    rejections: Counter[str] = field(default_factory=Counter)
    resent: int = 0
    errors: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)
    released: int = 0
    declined: int = 0

    def exchange(self, answer: Answer | None, latency_s: float, slow_s: float) -> None:
        self.exchanges += 1
        if latency_s > slow_s:
            self.slow_exchanges += 1
        if answer is not None and answer.status in REFUSALS:
            self.refusal_latencies.append(latency_s)
            if answer.header(b"retry-after") is None:
                self.refusals_without_retry_after += 1

    def answered(
        self, step: str, answer: Answer | None, *, again: bool, read: bool = False
    ) -> None:
        """A request's answer (None: none came); `again`: it is sent again; `read`: a read,
        which the fan makes again later, so that its failure is not final either."""
        status = 0 if answer is None else answer.status
        self.statuses[f"{step} {status} (sent again)" if again else f"{step} {status}"] += 1
        if answer is not None:
            self.answer_latencies.setdefault(step, []).append(answer.elapsed_s)
            if status >= 400:
                self.rejections[f"{status} {error_code(answer)}"] += 1
            if status not in (200, 201, 204, 304, 409):
                self.example(f"{step} {status}", answer.body)
        if (again or read) and status in RESENT:
            self.resent += 1
        elif status == 0 or status >= 500:
            self.errors += 1
            code = "no answer" if answer is None else f"{status} {error_code(answer)}"
            self.error_kinds[f"{step} {code}"] += 1

    def example(self, key: str, body: bytes) -> None:
        self.examples.setdefault(key, body[:300].decode(errors="replace"))

    def latency(self, step: str, seconds: float) -> None:
        self.latencies.setdefault(step, []).append(seconds)


def seats_in_two_orders(orders: Sequence[OrderAck]) -> int:
    """Seats that two different acknowledged orders name."""
    sold_to: dict[str, str] = {}
    twice = 0
    for order in orders:
        for seat in order.seats:
            if sold_to.setdefault(seat, order.order_id) != order.order_id:
                twice += 1
    return twice


def epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


# --- the fans ---


@dataclass
class Fan:
    """One fan: who (`headers` carry the Bearer token and whatever else the caller adds), where
    it reads and writes, its random draws, and its last seat map."""

    user: str
    token: str
    headers: list[Header]  # of its writes
    read_headers: list[Header]  # of its seat-map reads
    reads: Pool
    writes: Pool
    rng: random.Random
    etag: bytes | None = None
    map_key: str | None = None


@dataclass(frozen=True)
class Venue:
    """The event as the fans need it: sections in seat-map order, their seat counts, the rank
    of each one's best row, and how long a hold lasts."""

    event_id: str
    section_ids: list[str]
    seat_counts: list[int]
    ranks: list[int]
    hold_ttl_s: float


class Crowd:
    """Fans of one event, their requests and what they saw (`record`). `pick` chooses seats
    from a map for the fans who pick; `stop_at` (wall clock) ends the sale."""

    def __init__(self, venue: Venue, workload: Workload, record: Record, pick: Pick) -> None:
        self.venue = venue
        self.workload = workload
        self.record = record
        self.pick = pick
        self.stop_at = math.inf
        ranked = sorted(range(len(venue.ranks)), key=lambda p: (venue.ranks[p], p))
        self.ranked = ranked
        self.cum_weights = list(
            itertools.accumulate(1 / (r + 1) ** workload.zipf_s for r in range(len(ranked)))
        )
        self.decoded: OrderedDict[str, SeenMap] = OrderedDict()
        base = f"/v1/events/{venue.event_id}"
        self.seatmap_path = f"{base}/seatmap".encode()
        self.holds_path = f"{base}/holds"
        self.orders_path = f"{base}/orders"

    def over(self) -> bool:
        return time.time() >= self.stop_at

    # --- requests ---

    async def send(
        self, pool: Pool, method: bytes, path: bytes, headers: Sequence[Header], body: bytes = b""
    ) -> tuple[Answer | None, float]:
        """One exchange, counted: the answer (None: none came) and its latency, the wait for a
        connection of the pool included."""
        begin = time.perf_counter()
        try:
            answer: Answer | None = await pool.request(method, path, headers, body)
        except HttpError:
            answer = None
        latency = time.perf_counter() - begin
        self.record.exchange(answer, latency, self.workload.slow_answer_s)
        return answer, latency

    async def write(
        self, fan: Fan, step: str, method: bytes, path: str, body: dict[str, Any] | None = None
    ) -> Answer | None:
        """A state-changing request as the fan, with a new Idempotency-Key, sent again with the
        same key after a refusal, a 502/504, no answer or a key still in flight (module
        docstring). Records the last answer and the latency as the fan saw it."""
        headers = [*fan.headers, (b"idempotency-key", f"{step}-{uuid.uuid4().hex}".encode())]
        data = b""
        if body is not None:
            headers.append((b"content-type", b"application/json"))
            data = msgspec.json.encode(body)
        record, attempts = self.record, self.workload.send_attempts
        begin = time.perf_counter()
        for attempt in range(attempts):
            answer, _ = await self.send(fan.writes, method, path.encode(), headers, data)
            again = attempt < attempts - 1 and not self.over() and resend(answer)
            record.answered(step, answer, again=again)
            if not again:
                break
            await asyncio.sleep(self.retry_pause_s(answer, attempt, fan.rng))
        record.latency(step, time.perf_counter() - begin)
        return answer

    def retry_pause_s(self, answer: Answer | None, attempt: int, rng: random.Random) -> float:
        """How long a fan waits before sending a write again: what Retry-After asks (capped,
        with jitter so the refused do not come back in step), else a short backoff."""
        asked = answer.header(b"retry-after") if answer and answer.status in REFUSALS else None
        if asked is not None and asked.isdigit():
            return min(float(asked), self.workload.retry_after_s_max) * rng.uniform(1.0, 1.5)
        return 0.1 * (attempt + 1)

    # --- the seat map ---

    async def look(self, fan: Fan) -> SeenMap | None:
        """The seat map (revalidated with the fan's ETag): the map the fan has after it."""
        headers = fan.read_headers
        if fan.etag is not None:
            headers = [*headers, (b"if-none-match", fan.etag)]
        answer, latency = await self.send(fan.reads, b"GET", self.seatmap_path, headers)
        received = time.time()
        record = self.record
        record.latency("seatmap", latency)
        status = 0 if answer is None else answer.status
        record.answered("seatmap", answer, again=False, read=True)
        if answer is not None and status == 200:
            body = answer.body
            if answer.header(b"content-encoding") == b"gzip":
                body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
            etag = answer.header(b"etag")
            key = (
                etag.decode("latin-1") if etag else hashlib.blake2b(body, digest_size=8).hexdigest()
            )
            self.remember(key, body)
            fan.etag, fan.map_key = etag, key
        record.reads.append(Read(received, latency, status, fan.map_key))
        return None if fan.map_key is None else self.decoded.get(fan.map_key)

    def remember(self, key: str, body: bytes) -> None:
        if self.record.keep_maps:
            self.record.maps.setdefault(key, body)
        if key in self.decoded:
            self.decoded.move_to_end(key)
            return
        self.decoded[key] = SeenMap.decode(body, self.venue.seat_counts)
        if len(self.decoded) > DECODED_MAX:
            self.decoded.popitem(last=False)

    def choose(
        self, fan: Fan, seen: SeenMap | None, quantity: int, preference: list[int], picks: bool
    ) -> dict[str, Any]:
        """The hold request: seats picked from the map in the first preferred section where
        `pick` finds some, else best-available in the first preferred section, else anywhere."""
        if picks and seen is not None:
            for position in preference:
                seats = self.pick(fan.rng, seen, position, quantity)
                if seats:
                    return {"seats": seats}
        wanted: dict[str, Any] = {"quantity": quantity}
        if preference:
            wanted["sections"] = [self.venue.section_ids[preference[0]]]
        return {"best_available": wanted}

    # --- a visit ---

    async def visit(self, fan: Fan, quantity_max: int | None = None) -> None:
        """The fan's whole visit (module docstring), its outcome counted in `record.fans`."""
        record, rng, workload = self.record, fan.rng, self.workload
        record.fans["arrived"] += 1
        quantity = rng.choices(workload.quantities, workload.quantity_weights)[0]
        if quantity_max is not None:
            quantity = min(quantity, quantity_max)
        first = rng.choices(range(len(self.ranked)), cum_weights=self.cum_weights)[0]
        preference = self.ranked[first : first + 3]
        picks = rng.random() < workload.pick_share
        hold = await self.hold(fan, quantity, preference, picks)
        if hold is not None:
            await self.after_hold(fan, hold)

    async def hold(
        self, fan: Fan, quantity: int, preference: list[int], picks: bool
    ) -> HoldAck | None:
        """Look, choose, hold; again after a 409 (the next preference), at most
        `hold_attempts` times. The acknowledged hold, or None (counted in `record.fans`)."""
        record, rng, workload = self.record, fan.rng, self.workload
        attempt = 0
        while attempt < workload.hold_attempts:
            if self.over():
                record.fans["stopped while shopping"] += 1
                return None
            seen = await self.look(fan)
            if workload.wait_for_returns and seen is not None and not seen.available:
                await asyncio.sleep(rng.uniform(1.0, 2.0))  # sold out for now: wait for returns
                continue
            await asyncio.sleep(rng.uniform(*workload.look_s))
            body = self.choose(fan, seen, quantity, preference[attempt:], picks)
            answer = await self.write(fan, "hold", b"POST", self.holds_path, body)
            if answer is not None and answer.status == 201:
                return self.acknowledge_hold(fan, msgspec.json.decode(answer.body))
            if answer is None or answer.status != 409:
                break
            attempt += 1
            await asyncio.sleep(rng.uniform(*workload.retry_pause_s))
        record.fans["gave up"] += 1
        return None

    def acknowledge_hold(self, fan: Fan, answer: dict[str, Any]) -> HoldAck:
        expires = epoch(answer["expires_at"])
        ack = HoldAck(
            str(answer["hold_id"]),
            tuple(answer["seats"]),
            expires - self.venue.hold_ttl_s,
            expires,
        )
        self.record.holds[ack.hold_id] = ack
        self.record.open_holds[ack.hold_id] = ack
        self.held(fan, ack)
        return ack

    def held(self, fan: Fan, hold: HoldAck) -> None:
        """Called with each acknowledged hold (a caller's subclass may watch it)."""

    async def after_hold(self, fan: Fan, hold: HoldAck) -> None:
        """The checkout form, then what the fan's role says (module docstring)."""
        record, rng = self.record, fan.rng
        await asyncio.sleep(rng.uniform(*self.workload.checkout_s))
        role = self.workload.role(rng.random())
        if role == "abandoner":
            self.abandon(fan, hold)
            return
        if self.over():
            record.fans["stopped with a hold"] += 1
            return
        if role == "releaser":
            await self.release(fan, hold)
            return
        if role == "decliner":
            if await self.checkout(fan, hold, rng.choice(DECLINES)):
                return  # not declined after all: the order is counted
            if rng.random() < 0.5:  # half give up: the hold must expire
                self.abandon(fan, hold)
                return
            await asyncio.sleep(rng.uniform(0.3, 1.0))  # another card
        await self.checkout(fan, hold, APPROVE)

    def abandon(self, fan: Fan, hold: HoldAck) -> None:
        self.record.fans["abandoned a hold"] += 1
        self.record.abandoned.append((hold, fan.token))

    async def release(self, fan: Fan, hold: HoldAck) -> None:
        path = f"{self.holds_path}/{hold.hold_id}"
        answer = await self.write(fan, "release", b"DELETE", path)
        if answer is not None and answer.status == 204:
            self.record.released += 1
            self.record.open_holds.pop(hold.hold_id, None)
            self.record.fans["released a hold"] += 1
        else:
            self.record.fans[f"release {0 if answer is None else answer.status}"] += 1

    async def checkout(self, fan: Fan, hold: HoldAck, payment_token: str) -> bool:
        """Pay for the hold; True when an order came back (counted in `record.fans`)."""
        body = {"hold_id": hold.hold_id, "payment_token": payment_token}
        answer = await self.write(fan, "order", b"POST", self.orders_path, body)
        status = 0 if answer is None else answer.status
        if answer is None or status != 201:
            self.record.declined += status == 402
            self.record.fans["card declined" if status == 402 else f"checkout {status}"] += 1
            return False
        order = msgspec.json.decode(answer.body)
        ack = OrderAck(order["order_id"], order["hold_id"], tuple(order["seats"]), time.time())
        self.record.orders.append(ack)
        self.record.open_holds.pop(hold.hold_id, None)
        self.record.fans["bought"] += 1
        return True


def resend(answer: Answer | None) -> bool:
    """Whether a write's answer asks for it to be sent again with the same key."""
    if answer is None or answer.status in RESENT:
        return True
    return answer.status == 409 and error_code(answer) == "idempotency_key_in_flight"
