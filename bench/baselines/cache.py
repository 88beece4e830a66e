"""The common cache design: a Redis key per held seat, set with `SET NX PX` by one Lua script per
hold (all or nothing), checkout written to PostgreSQL, availability read by scanning Redis.

One bare-ASGI app (`create_app`, served by Granian with one worker in its own process) with the
API the bench's fans use, and what a careful implementation of this design does to be fast:

- **keys**: `s:{event}:<section position>:<seat index>` per taken seat, its value the hold id
  (with the hold's TTL as `PX`) or `sold:<order id>` (no TTL); `h:<hold id>` a hash with the
  hold's fan, event, seat keys, expiry and status (same TTL; persisted once bought);
  `i:<fan>:<Idempotency-Key>` the hold a request created (kept 24 h). Expiry is Redis's own.
- **explicit holds**: HOLD_SCRIPT with one candidate (the seats asked for): if none of the seat
  keys exists, `SET … NX PX` each, write the hold hash and the idempotency key, answer with
  Redis's clock; else the taken seats (409). One round trip; nothing is written on a conflict.
- **best-available**: the app picks candidate runs of `quantity` adjacent seats (best rows first,
  centred, common.find_runs) from its latest scan of Redis (at most VIEW_MAX_AGE_S old, else a
  new scan, shared with seat-map requests), leaving out seats this process has taken or seen
  taken since the scan and the first choices of its requests in flight (a request reserves its
  first choice in process, so concurrent requests pick different seats); HOLD_SCRIPT takes the
  first candidate whose seats are all free, in Redis, atomically. Up to BEST_ROUNDS rounds of
  BEST_CANDIDATES candidates.
- **checkout**: CHECKOUT_SCRIPT checks that the hold is the fan's and that every seat key still
  names it, then turns them into `sold:<order>` (no TTL) and marks the hold bought; then one
  PostgreSQL statement inserts the order and one `order_seats` row per seat (primary key
  `(event, seat)`: the database refuses a seat sold twice). A retried checkout finds the hold
  bought and (re)inserts the same order (`ON CONFLICT DO NOTHING`), so it replays.
- **the seat map**: `SCAN MATCH s:{event}:* COUNT SCAN_COUNT` over the keyspace, encoded as
  Tessera's binary event map; concurrent requests share one in-flight scan (SingleFlight).
- **pools**: redis-py's asyncio client on a blocking pool of BENCH_BASELINE_REDIS_POOL
  (default REDIS_POOL = 32) connections; asyncpg pool of BENCH_BASELINE_POOL (default
  POOL_SIZE = 10; one statement per order) at READ COMMITTED. The scripts are loaded once and
  called by SHA (EVALSHA).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import psycopg
import redis
import redis.asyncio

from tessera.venue import Venue, load_venue_file

from . import common
from .common import (
    ENV_DATABASE,
    ENV_HOLD_TTL,
    ENV_POOL,
    ENV_REDIS,
    ENV_REDIS_POOL,
    ENV_SECRET,
    ENV_VENUE,
    Ask,
    Availability,
    HoldView,
    Ledger,
    OrderView,
    Reply,
    SingleFlight,
    VenueIndex,
    error,
    json_reply,
)

POOL_SIZE: Final = 10
REDIS_POOL: Final = 32
HOLD_TTL_S: Final = 15
SCAN_COUNT: Final = 10_000
VIEW_MAX_AGE_S: Final = 0.25
BEST_CANDIDATES: Final = 4
BEST_ROUNDS: Final = 3
SOLD: Final = "sold:"

# KEYS: idempotency key, hold key. ARGV: hold id, TTL ms, fan, event, candidate count, then per
# candidate its seat count and seat keys. The first candidate whose seats are all free is taken;
# the idempotency key is kept 24 h.
HOLD_SCRIPT: Final = """
local replay = redis.call('GET', KEYS[1])
if replay then return {'replay', replay} end
local hold_id, ttl = ARGV[1], tonumber(ARGV[2])
local at = 6
local taken = {}
for c = 1, tonumber(ARGV[5]) do
  local size = tonumber(ARGV[at])
  local free = true
  for i = at + 1, at + size do
    if redis.call('EXISTS', ARGV[i]) == 1 then
      free = false
      taken[#taken + 1] = ARGV[i]
    end
  end
  if free then
    local seats = {}
    for i = at + 1, at + size do
      redis.call('SET', ARGV[i], hold_id, 'NX', 'PX', ttl)
      seats[#seats + 1] = ARGV[i]
    end
    local now = redis.call('TIME')
    local expires = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + ttl
    local joined = table.concat(seats, ',')
    redis.call('HSET', KEYS[2], 'user', ARGV[3], 'event', ARGV[4], 'seats', joined,
               'expires', expires, 'status', 'active')
    redis.call('PEXPIRE', KEYS[2], ttl)
    redis.call('SET', KEYS[1], hold_id .. '|' .. expires .. '|' .. joined, 'EX', 86400)
    return {'ok', hold_id .. '|' .. expires .. '|' .. joined}
  end
  at = at + size + 1
end
taken[#taken + 1] = 'taken'
return taken
"""

# KEYS: hold key. ARGV: hold id, fan, new order id.
CHECKOUT_SCRIPT: Final = """
local h = redis.call('HMGET', KEYS[1], 'user', 'seats', 'status', 'order', 'event')
if not h[1] or h[1] ~= ARGV[2] then return {'gone'} end
if h[3] == 'purchased' then return {'bought', h[4], h[2], h[5]} end
local seats = {}
for key in string.gmatch(h[2], '[^,]+') do
  if redis.call('GET', key) ~= ARGV[1] then return {'lost'} end
  seats[#seats + 1] = key
end
local sold = 'sold:' .. ARGV[3]
for _, key in ipairs(seats) do redis.call('SET', key, sold) end
redis.call('HSET', KEYS[1], 'status', 'purchased', 'order', ARGV[3])
redis.call('PERSIST', KEYS[1])
return {'sold', ARGV[3], h[2], h[5]}
"""

SCHEMA: Final = (
    """CREATE TABLE orders (
        order_id uuid PRIMARY KEY,
        hold_id uuid NOT NULL UNIQUE,
        event text NOT NULL,
        user_id text NOT NULL,
        seats text[] NOT NULL,
        amount integer NOT NULL,
        currency text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp())""",
    """CREATE TABLE order_seats (
        event text NOT NULL,
        seat text NOT NULL,
        order_id uuid NOT NULL,
        PRIMARY KEY (event, seat))""",
)

INSERT_ORDER: Final = """
WITH o AS (
    INSERT INTO orders (order_id, hold_id, event, user_id, seats, amount, currency)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (order_id) DO NOTHING
    RETURNING order_id)
INSERT INTO order_seats (event, seat, order_id) SELECT $3, unnest($5::text[]), order_id FROM o"""


def schema(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in SCHEMA:
            conn.execute(statement)


def seat_prefix(event: str) -> str:
    return f"s:{{{event}}}:"


@dataclass
class View:
    """The latest scan of one event's seats, as the picker sees it: the scan's availability,
    when it started (monotonic), and seats this process has taken or lost since."""

    availability: Availability
    at: float


class Cache:
    """The app's logic over a Redis client and an asyncpg pool (see the module docstring)."""

    def __init__(
        self, urls: tuple[str, str], venue: Venue, secret: str, pools: tuple[int, int], ttl: int
    ) -> None:
        self.database_url, self.redis_url = urls
        self.index = VenueIndex(venue)
        self.secret = secret
        self.pool_size, self.redis_pool_size = pools
        self.ttl_ms = ttl * 1000
        self.pool: Any = None
        self.redis: Any = None
        self.scripts: dict[str, str] = {}
        self.maps: dict[str, SingleFlight[View]] = {}
        self.views: dict[str, View] = {}
        # Per event, per section: seats requests of this process are trying to hold right now.
        self.pending: dict[str, list[int]] = {}

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        self.pool = await asyncpg.create_pool(
            self.database_url,
            min_size=self.pool_size,
            max_size=self.pool_size,
            server_settings={"default_transaction_isolation": "read committed"},
        )
        connections = redis.asyncio.BlockingConnectionPool.from_url(
            self.redis_url, max_connections=self.redis_pool_size, timeout=30
        )
        self.redis = redis.asyncio.Redis(connection_pool=connections)
        for name, script in (("hold", HOLD_SCRIPT), ("checkout", CHECKOUT_SCRIPT)):
            self.scripts[name] = await self.redis.script_load(script)
        try:
            yield
        finally:
            await self.redis.aclose()
            await connections.aclose()
            await self.pool.close()

    async def route(self, request: common.Request) -> Reply:
        found = common.route(request.path)
        if found is None:
            return error(404, "not_found", "no such path")
        kind, event = found
        if kind == "readyz":
            return json_reply(200, {"status": "ready"})
        if kind == "seatmap" and request.method in ("GET", "HEAD"):
            view = await self.scan(event)
            return common.seatmap_reply(view.availability, request)
        if request.method != "POST" or kind == "seatmap":
            return error(405, "method_not_allowed", "method not allowed")
        user, key = common.fan(request, self.secret)
        if kind == "holds":
            return await self.hold(event, user, key, common.decode_hold(request.body))
        return await self.checkout(user, common.decode_order(request.body))

    # --- availability ---

    async def scan(self, event: str) -> View:
        """A fresh scan (shared by the requests that arrive while it runs)."""
        flight = self.maps.get(event)
        if flight is None:
            flight = self.maps[event] = SingleFlight(lambda: self.read_map(event))
        view = await flight.get()
        if event not in self.views or self.views[event].at < view.at:
            self.views[event] = view
        return view

    async def read_map(self, event: str) -> View:
        started = time.monotonic()
        taken: dict[int, list[int]] = {}
        cursor = 0
        pattern = seat_prefix(event) + "*"
        while True:
            cursor, keys = await self.redis.scan(cursor, match=pattern, count=SCAN_COUNT)
            for key in keys:
                _, _, position, index = key.split(b":")
                taken.setdefault(int(position), []).append(int(index))
            if cursor == 0:
                break
        return View(self.index.availability(taken.items()), started)

    async def view(self, event: str) -> View:
        view = self.views.get(event)
        if view is None or time.monotonic() - view.at > VIEW_MAX_AGE_S:
            view = await self.scan(event)
        return view

    # --- holds ---

    def seat_key(self, event: str, position: int, index: int) -> str:
        return f"{seat_prefix(event)}{position}:{index}"

    def seat_ids(self, keys: str) -> list[str]:
        """Seat ids from comma-joined seat keys."""
        ids = []
        for key in keys.split(","):
            _, _, position, index = key.split(":")
            ids.append(self.index.seat_id(int(position), int(index)))
        return ids

    async def hold(self, event: str, user: str, key: str, body: common.CreateHold) -> Reply:
        if (body.seats is None) == (body.best_available is None):
            return error(422, "invalid_request", "give exactly one of seats and best_available")
        ask = Ask(event, user, key, uuid.uuid4())
        if body.seats is not None:
            candidate = self.index.locate_all(body.seats)
            result = await self.run_hold(ask, [candidate])
            if result[0] != b"ok" and result[0] != b"replay":
                seats = self.seat_ids(",".join(k.decode() for k in result[:-1]))
                return error(409, "seats_unavailable", "seats are taken", seats=seats)
        else:
            best = body.best_available
            assert best is not None
            positions = self.index.section_positions(best.sections)
            found = await self.hold_best(ask, best.quantity, positions)
            if found is None:
                return error(409, "seats_unavailable", "no seats found", seats=[])
            result = found
        hold_id, expires, keys = result[1].decode().split("|")
        view = HoldView(
            hold_id, event, "active", self.seat_ids(keys), common.rfc3339(int(expires) / 1000)
        )
        headers = [(b"idempotent-replayed", b"true")] if result[0] == b"replay" else []
        return Reply(201, common.encoder.encode(view), headers=headers)

    async def run_hold(self, ask: Ask, candidates: list[list[tuple[int, int]]]) -> list[bytes]:
        """HOLD_SCRIPT: [b"ok" | b"replay", b"hold|expires ms|seat keys"] or the taken seat keys
        followed by b"taken"."""
        hold_id = str(ask.hold_id)
        args: list[Any] = [hold_id, self.ttl_ms, ask.user, ask.event, len(candidates)]
        for candidate in candidates:
            args.append(len(candidate))
            args.extend(self.seat_key(ask.event, p, i) for p, i in candidate)
        keys = [f"i:{ask.user}:{ask.key}", f"h:{hold_id}"]
        result: list[bytes] = await self.redis.evalsha(self.scripts["hold"], 2, *keys, *args)
        return result

    async def hold_best(
        self, ask: Ask, quantity: int, positions: list[int] | None
    ) -> list[bytes] | None:
        """Candidates from the latest scan, minus seats in flight here or lost since; the
        script takes the first whose seats are all free."""
        view = await self.view(ask.event)
        free = view.availability.free
        pending = self.pending.setdefault(ask.event, [0] * len(free))
        for _ in range(BEST_ROUNDS):
            usable = [f & ~p for f, p in zip(free, pending, strict=True)]
            candidates = common.find_runs(self.index, usable, quantity, positions, BEST_CANDIDATES)
            reserved = candidates[:1]  # the first choice is kept from other requests meanwhile
            if not candidates:  # everything left is in flight here: some of it may come back
                candidates = common.find_runs(self.index, free, quantity, positions, 1)
                if not candidates:
                    return None
            masks = [(p, sum(1 << i for i in seats)) for p, seats in reserved]
            for position, mask in masks:
                pending[position] |= mask
            try:
                runs = [[(p, i) for i in seats] for p, seats in candidates]
                result = await self.run_hold(ask, runs)
            finally:
                for position, mask in masks:
                    pending[position] &= ~mask
            if result[0] in (b"ok", b"replay"):
                for won in result[1].split(b"|")[2].split(b","):
                    self.forget(free, won)  # not offered again before the next scan
                return result
            for taken in result[:-1]:
                self.forget(free, taken)
        return None

    @staticmethod
    def forget(free: list[int], seat_key: bytes) -> None:
        _, _, position, index = seat_key.split(b":")
        free[int(position)] &= ~(1 << int(index))

    # --- checkout ---

    async def checkout(self, user: str, body: common.CreateOrder) -> Reply:
        if body.payment_token != common.APPROVED_TOKEN:
            return error(402, "payment_declined", "the card was declined", reason="card_declined")
        hold_id = str(body.hold_id)
        order_id = str(uuid.uuid4())
        result: list[bytes] = await self.redis.evalsha(
            self.scripts["checkout"], 1, f"h:{hold_id}", hold_id, user, order_id
        )
        outcome = result[0]
        if outcome == b"gone":
            return error(404, "not_found", "no such hold (or it expired)")
        if outcome == b"lost":
            return error(409, "hold_expired", "the hold has expired")
        order_id, keys, event = (part.decode() for part in result[1:4])
        seats = self.seat_ids(keys)
        amount, currency = self.index.amount(self.index.locate(seat) for seat in seats)
        try:
            await self.pool.execute(
                INSERT_ORDER,
                uuid.UUID(order_id),
                body.hold_id,
                event,
                user,
                seats,
                amount,
                currency,
            )
        except asyncpg.UniqueViolationError:
            common.log.error("PostgreSQL refused order %s: a seat is in another order", order_id)
            return error(409, "seats_unavailable", "a seat is sold to another order", seats=[])
        view = OrderView(order_id, hold_id, event, seats, amount, currency)
        headers = [(b"idempotent-replayed", b"true")] if outcome == b"bought" else []
        return Reply(201, common.encoder.encode(view), headers=headers)


def create_app() -> Any:
    """The cache-design app (bare ASGI), configured by BENCH_BASELINE_*."""
    common.configure_logging()
    service = Cache(
        (os.environ[ENV_DATABASE], os.environ[ENV_REDIS]),
        load_venue_file(os.environ[ENV_VENUE]),
        os.environ[ENV_SECRET],
        (common.env_int(ENV_POOL, POOL_SIZE), common.env_int(ENV_REDIS_POOL, REDIS_POOL)),
        common.env_int(ENV_HOLD_TTL, HOLD_TTL_S),
    )
    return common.asgi_app(service.route, service.lifespan)


# --- the audit (bench side) ---

# Every seat key of an event and its value, as "key=value" lines (the audit, after the sale).
DUMP_SCRIPT: Final = """
local out = {}
local cursor = '0'
repeat
  local found = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 10000)
  cursor = found[1]
  for _, key in ipairs(found[2]) do
    local value = redis.call('GET', key)
    if value then out[#out + 1] = key .. '=' .. value end
  end
until cursor == '0'
return table.concat(out, '\\n')
"""

AUDIT: Final = {
    "seat_in_two_orders": """
        SELECT seat FROM orders, unnest(seats) AS seat WHERE event = %(event)s
        GROUP BY seat HAVING count(*) > 1""",
    "order_without_its_seats": """
        SELECT o.order_id FROM orders AS o
        LEFT JOIN (SELECT order_id, count(*) AS seats FROM order_seats GROUP BY order_id) AS s
          ON s.order_id = o.order_id
        WHERE o.event = %(event)s AND cardinality(o.seats) <> coalesce(s.seats, 0)""",
}


def ledger(database_url: str, redis_url: str, venue: Venue, event: str) -> Ledger:
    """The seats (Redis, read first) and orders (PostgreSQL) of `event`, and the violations:
    the queries above and seats Redis shows sold to an order PostgreSQL does not have. (Order
    seats whose key names someone else are the bench's own check, for every system.)"""
    found = Ledger()
    index = VenueIndex(venue)
    client = redis.Redis.from_url(redis_url)
    try:  # one script, one reply: fast enough that holds live at the audit stay live through it
        dump: bytes = client.eval(DUMP_SCRIPT, 0, seat_prefix(event) + "*")
    finally:
        client.close()
    pairs = [line.split(b"=", 1) for line in dump.split(b"\n") if line]
    with psycopg.connect(database_url) as conn:
        for name, query in AUDIT.items():
            found.violations[name] = len(conn.execute(query, {"event": event}).fetchall())
        for order_id, hold_id, seats in conn.execute(
            "SELECT order_id::text, hold_id::text, seats FROM orders WHERE event = %s", (event,)
        ).fetchall():
            found.orders[order_id] = (hold_id, frozenset(seats))
    unknown_sold = 0
    for key, value in pairs:
        _, _, position, seat = key.decode().split(":")
        seat_id = index.seat_id(int(position), int(seat))
        text = value.decode()
        if text.startswith(SOLD):
            order_id = text[len(SOLD) :]
            hold = found.orders.get(order_id)
            unknown_sold += hold is None
            found.seats[seat_id] = (hold[0] if hold else None, order_id)
        else:
            found.seats[seat_id] = (text, None)
    found.violations["redis_sold_without_order"] = unknown_sold
    return found
