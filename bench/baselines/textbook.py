"""The textbook design: every request one PostgreSQL transaction that locks the seat rows with
`SELECT … FOR UPDATE`, availability read from the database.

Two apps, each served by Granian with one worker in its own process:

- **hold only** (`create_hold_only_app`, bench/write_path.py): `POST /v1/events/{e}/holds` with
  explicit seats and nothing else. Table `seats(event, section, seat_index, status, hold_id,
  user_id)`; one READ COMMITTED transaction per request: `SELECT … WHERE (section, seat_index)
  IN (…) ORDER BY … FOR UPDATE`, all available? `UPDATE` them to held and commit (201), else roll
  back (409). No idempotency keys, hold rows or expiry.
- **onsale** (`create_app`, bench/onsale_vs_baselines.py): the API the bench's fans use —
  `GET /v1/events/{e}/seatmap`, `POST /v1/events/{e}/holds` (explicit seats or best-available),
  `POST /v1/events/{e}/orders` — with what a careful implementation of this design does to be fast:

  - one `seats` row per seat (status available / held / sold / blocked, hold, order,
    `expires_at`), a `holds` row per hold, an `orders` row per order (`hold_id` UNIQUE, so a
    retried checkout replays), an `idempotency` row per hold request (same transaction);
  - explicit holds: `BEGIN; SELECT … FOR UPDATE` the requested rows in key order (no deadlocks);
    all available (or held by an expired hold)? one statement (CTE) marks them held, inserts the
    hold and the idempotency key; `COMMIT`. 4 round trips, locks held for 2 of them;
  - best-available: `SELECT … WHERE status = 'available' … ORDER BY rank, position, seat_index
    LIMIT n FOR UPDATE SKIP LOCKED` on a partial index (one per section order and one venue-wide),
    so concurrent fans lock different seats instead of queueing on the best ones; the first run of
    `quantity` adjacent seats in one row among the locked rows is taken (up to BEST_WINDOWS
    windows of `8 + 4 * quantity` rows, keyset-continued);
  - expiry: lazy (a held seat whose `expires_at` passed counts as available to explicit holds and
    to the seat map) plus a reaper every REAP_EVERY_S (`FOR UPDATE SKIP LOCKED`, partial index on
    held seats' `expires_at`) that makes them available to best-available again;
  - checkout: one transaction: the hold row `UPDATE … WHERE active AND expires_at >
    clock_timestamp()` (locks it: no double checkout), then one statement turns its seats to
    sold (only if all are still held by it) and inserts the order;
  - the seat map: one `GROUP BY` query of held and sold seats per section, encoded as Tessera's
    binary event map; concurrent requests share one in-flight query (common.SingleFlight);
  - connections: an asyncpg pool of BENCH_BASELINE_POOL (default POOL_SIZE = 20, as large as the
    writer's SQLAlchemy pool can grow) at READ COMMITTED; statements prepared once per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Final

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import msgspec
import psycopg
from litestar import Litestar, Request, Response, get, post

from tessera import auth, limits
from tessera.venue import Venue, VenueError, load_venue_file

from . import common
from .common import (
    ENV_DATABASE,
    ENV_HOLD_TTL,
    ENV_POOL,
    ENV_SECRET,
    ENV_VENUE,
    JSON_TYPE,
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

POOL_SIZE: Final = 20
HOLD_TTL_S: Final = 15
BEST_WINDOWS: Final = 6
REAP_EVERY_S: Final = 0.5
REAP_BATCH: Final = 5_000


# --- hold only (bench/write_path.py) ---

SeatId = Annotated[str, msgspec.Meta(min_length=5, max_length=limits.seat_id_chars_max)]


class HoldBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The same body as Tessera's explicit-seat hold."""

    seats: Annotated[list[SeatId], msgspec.Meta(min_length=1, max_length=limits.seats_per_hold_max)]


class HoldCreated(msgspec.Struct):
    hold_id: uuid.UUID
    seats: list[str]


_hold_decoder: Final = msgspec.json.Decoder(HoldBody)
_encoder: Final = msgspec.json.Encoder()


def _pairs_sql(count: int, first: int) -> str:
    return ", ".join(f"(${first + 2 * k}, ${first + 2 * k + 1})" for k in range(count))


def hold_only_select_sql(count: int) -> str:
    return (
        "SELECT section, seat_index, status FROM seats WHERE event = $1 AND "
        f"(section, seat_index) IN ({_pairs_sql(count, 2)}) "
        "ORDER BY section, seat_index FOR UPDATE"
    )


def hold_only_update_sql(count: int) -> str:
    return (
        "UPDATE seats SET status = 'held', hold_id = $2, user_id = $3 WHERE event = $1 AND "
        f"(section, seat_index) IN ({_pairs_sql(count, 4)})"
    )


def _error(status: int, code: str, message: str, **details: object) -> Response[bytes]:
    body = {"error": {"code": code, "message": message, **details}}
    return Response(_encoder.encode(body), status_code=status, media_type=JSON_TYPE.decode())


class HoldOnly:
    """The textbook hold: one READ COMMITTED transaction per request, rows locked in key order."""

    def __init__(self, database_url: str, venue: Venue, secret: str, pool_size: int) -> None:
        self.database_url = database_url
        self.venue = venue
        self.secret = secret
        self.pool_size = pool_size
        self.pool: Any = None

    @asynccontextmanager
    async def lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        self.pool = await asyncpg.create_pool(
            self.database_url, min_size=self.pool_size, max_size=self.pool_size
        )
        try:
            yield
        finally:
            await self.pool.close()

    def parse(self, body: bytes) -> tuple[list[str], list[tuple[str, int]]] | Response[bytes]:
        """The seat ids and their (section, index) keys, or the error reply."""
        try:
            seats = _hold_decoder.decode(body).seats
        except msgspec.ValidationError as exc:
            return _error(422, "invalid_request", str(exc))
        except msgspec.DecodeError as exc:
            return _error(400, "malformed_json", str(exc))
        keys: list[tuple[str, int]] = []
        for seat in seats:
            try:
                layout, index = self.venue.locate(seat)
            except VenueError as exc:
                return _error(422, "invalid_seat", str(exc), seats=[seat])
            keys.append((layout.section_id, index))
        if len(set(keys)) != len(keys):
            return _error(422, "invalid_request", "a seat appears twice in the request")
        return seats, keys

    async def hold(
        self, event: str, user_id: str, keys: list[tuple[str, int]], hold_id: uuid.UUID
    ) -> list[str]:
        """Hold every seat of `keys` as hold `hold_id`: [] on success, else the ids of the seats
        that were not available (and nothing is written)."""
        flat = [value for key in keys for value in key]
        async with self.pool.acquire() as conn:
            transaction = conn.transaction(isolation="read_committed")
            await transaction.start()
            try:
                rows = await conn.fetch(hold_only_select_sql(len(keys)), event, *flat)
                taken = [
                    self.venue.section(row["section"]).seat_id(row["seat_index"])
                    for row in rows
                    if row["status"] != "available"
                ]
                if taken or len(rows) != len(keys):
                    await transaction.rollback()
                    return taken or ["(unknown seat)"]
                await conn.execute(hold_only_update_sql(len(keys)), event, hold_id, user_id, *flat)
            except BaseException:
                await transaction.rollback()
                raise
            await transaction.commit()
        return []


def create_hold_only_app() -> Litestar:
    """The hold-only baseline as a Litestar app, configured by BENCH_BASELINE_*."""
    service = HoldOnly(
        os.environ[ENV_DATABASE],
        load_venue_file(os.environ[ENV_VENUE]),
        os.environ[ENV_SECRET],
        common.env_int(ENV_POOL, POOL_SIZE),
    )

    @get("/readyz", sync_to_thread=False)
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @post("/v1/events/{event:str}/holds")
    async def hold(request: Request[Any, Any, Any], event: str) -> Response[bytes]:
        try:
            token = auth.bearer_token(request.headers.get("authorization"))
            user_id = auth.verify_token(token, service.secret).user_id
        except auth.AuthError as exc:
            return _error(401, "unauthorized", str(exc))
        parsed = service.parse(await request.body())
        if isinstance(parsed, Response):
            return parsed
        seats, keys = parsed
        hold_id = uuid.uuid4()
        taken = await service.hold(event, user_id, keys, hold_id)
        if taken:
            return _error(409, "seats_unavailable", "seats are taken", seats=taken)
        created = HoldCreated(hold_id=hold_id, seats=seats)
        return Response(_encoder.encode(created), status_code=201, media_type=JSON_TYPE.decode())

    return Litestar(route_handlers=[readyz, hold], lifespan=[service.lifespan], debug=False)


def hold_only_schema(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """CREATE TABLE seats (
                event text NOT NULL,
                section text NOT NULL,
                seat_index integer NOT NULL,
                status text NOT NULL CHECK (status IN ('available', 'held', 'blocked')),
                hold_id uuid,
                user_id text,
                PRIMARY KEY (event, section, seat_index))"""
        )


def hold_only_event(database_url: str, venue: Venue, event: str) -> None:
    """One row per seat of the stadium for `event` (blocked seats are never available)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        with conn.cursor().copy(
            "COPY seats (event, section, seat_index, status) FROM STDIN"
        ) as copy:
            for layout in venue.layouts:
                blocked = set(layout.blocked_indices)
                for index in range(layout.seat_count):
                    status = "blocked" if index in blocked else "available"
                    copy.write_row((event, layout.section_id, index, status))
        conn.execute("VACUUM ANALYZE seats")


# --- the onsale app ---

SCHEMA: Final = (
    """CREATE TABLE seats (
        event text NOT NULL,
        section text NOT NULL,
        seat_index integer NOT NULL,
        position integer NOT NULL,
        row_key integer NOT NULL,
        rank integer NOT NULL,
        status text NOT NULL CHECK (status IN ('available', 'held', 'sold', 'blocked')),
        hold_id uuid,
        order_id uuid,
        expires_at timestamptz,
        PRIMARY KEY (event, section, seat_index))""",
    """CREATE INDEX seats_best ON seats (event, rank, position, seat_index)
        WHERE status = 'available'""",
    """CREATE INDEX seats_best_in_section ON seats (event, position, rank, seat_index)
        WHERE status = 'available'""",
    "CREATE INDEX seats_expiry ON seats (expires_at) WHERE status = 'held'",
    """CREATE TABLE holds (
        hold_id uuid PRIMARY KEY,
        event text NOT NULL,
        user_id text NOT NULL,
        seats text[] NOT NULL,
        expires_at timestamptz NOT NULL,
        status text NOT NULL CHECK (status IN ('active', 'purchased')))""",
    """CREATE TABLE orders (
        order_id uuid PRIMARY KEY,
        hold_id uuid NOT NULL UNIQUE,
        event text NOT NULL,
        user_id text NOT NULL,
        seats text[] NOT NULL,
        amount integer NOT NULL,
        currency text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp())""",
    """CREATE TABLE idempotency (
        user_id text NOT NULL,
        key text NOT NULL,
        hold_id uuid NOT NULL,
        PRIMARY KEY (user_id, key))""",
)

LOCK_SEATS: Final = """
SELECT s.position, s.seat_index, s.status, s.expires_at <= clock_timestamp() AS expired
FROM seats AS s
JOIN unnest($2::text[], $3::integer[]) AS k (section, seat_index)
  ON s.section = k.section AND s.seat_index = k.seat_index
WHERE s.event = $1
ORDER BY s.section, s.seat_index
FOR UPDATE OF s"""

# Marks the seats held, inserts the hold and the idempotency key; the key's primary key makes a
# concurrent duplicate fail (and the transaction roll back).
TAKE_SEATS: Final = """
WITH t AS (SELECT clock_timestamp() + make_interval(secs => $5) AS expires_at),
u AS (
    UPDATE seats AS s SET status = 'held', hold_id = $4, order_id = NULL,
        expires_at = (SELECT expires_at FROM t)
    FROM unnest($2::text[], $3::integer[]) AS k (section, seat_index)
    WHERE s.event = $1 AND s.section = k.section AND s.seat_index = k.seat_index
    RETURNING 1),
h AS (
    INSERT INTO holds (hold_id, event, user_id, seats, expires_at, status)
    SELECT $4, $1, $6, $7, expires_at, 'active' FROM t
    RETURNING hold_id),
i AS (INSERT INTO idempotency (user_id, key, hold_id) SELECT $6, $8, hold_id FROM h)
SELECT (SELECT expires_at FROM t) AS expires_at, (SELECT count(*) FROM u) AS taken"""

BEST_IN_SECTION: Final = """
SELECT position, seat_index, section, row_key, rank FROM seats
WHERE event = $1 AND position = $2 AND status = 'available' AND (rank, seat_index) > ($3, $4)
ORDER BY rank, seat_index
LIMIT $5
FOR UPDATE SKIP LOCKED"""

BEST_ANYWHERE: Final = """
SELECT position, seat_index, section, row_key, rank FROM seats
WHERE event = $1 AND status = 'available' AND (rank, position, seat_index) > ($2, $3, $4)
  AND ($6::integer[] IS NULL OR position = ANY($6))
ORDER BY rank, position, seat_index
LIMIT $5
FOR UPDATE SKIP LOCKED"""

REPLAY_HOLD: Final = """
SELECT h.hold_id, h.seats, h.expires_at FROM idempotency AS i
JOIN holds AS h ON h.hold_id = i.hold_id WHERE i.user_id = $1 AND i.key = $2"""

CLAIM_HOLD: Final = """
UPDATE holds SET status = 'purchased'
WHERE hold_id = $1 AND user_id = $2 AND status = 'active' AND expires_at > clock_timestamp()
RETURNING event, seats"""

SELL_SEATS: Final = """
WITH s AS (
    UPDATE seats AS s SET status = 'sold', order_id = $3
    FROM unnest($5::text[], $6::integer[]) AS k (section, seat_index)
    WHERE s.event = $4 AND s.section = k.section AND s.seat_index = k.seat_index
      AND s.hold_id = $1 AND s.status = 'held'
    RETURNING 1)
INSERT INTO orders (order_id, hold_id, event, user_id, seats, amount, currency)
SELECT $3, $1, $4, $2, $7, $8, $9 WHERE (SELECT count(*) FROM s) = $10
RETURNING order_id"""

HOLD_AND_ORDER: Final = """
SELECT h.user_id, h.status, o.order_id, o.event, o.seats, o.amount, o.currency
FROM holds AS h LEFT JOIN orders AS o ON o.hold_id = h.hold_id WHERE h.hold_id = $1"""

TAKEN_SEATS: Final = """
SELECT position, array_agg(seat_index) AS seats FROM seats
WHERE event = $1 AND (status = 'sold' OR (status = 'held' AND expires_at > clock_timestamp()))
GROUP BY position"""

REAP: Final = """
WITH expired AS (
    SELECT event, section, seat_index FROM seats
    WHERE status = 'held' AND expires_at <= clock_timestamp()
    LIMIT $1 FOR UPDATE SKIP LOCKED)
UPDATE seats AS s SET status = 'available', hold_id = NULL, expires_at = NULL
FROM expired AS e
WHERE s.event = e.event AND s.section = e.section AND s.seat_index = e.seat_index"""


def schema(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in SCHEMA:
            conn.execute(statement)


def load_event(database_url: str, venue: Venue, event: str) -> None:
    """One `seats` row per seat of `venue` for `event`, with its section position, row and rank."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        columns = "event, section, seat_index, position, row_key, rank, status"
        with conn.cursor().copy(f"COPY seats ({columns}) FROM STDIN") as copy:
            for position, layout in enumerate(venue.layouts):
                blocked = set(layout.blocked_indices)
                for row, (start, length, rank) in enumerate(
                    zip(layout.row_starts, layout.row_lengths, layout.row_ranks, strict=True)
                ):
                    row_key = position * 10_000 + row
                    for index in range(start, start + length):
                        status = "blocked" if index in blocked else "available"
                        copy.write_row(
                            (event, layout.section_id, index, position, row_key, rank, status)
                        )
        conn.execute("VACUUM ANALYZE seats")


class Textbook:
    """The onsale app's logic over one asyncpg pool (see the module docstring)."""

    def __init__(self, database_url: str, venue: Venue, secret: str, pool: int, ttl: int) -> None:
        self.database_url = database_url
        self.index = VenueIndex(venue)
        self.secret = secret
        self.pool_size = pool
        self.ttl_s = ttl
        self.pool: Any = None
        self.maps: dict[str, SingleFlight[Availability]] = {}
        self.reaper: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        self.pool = await asyncpg.create_pool(
            self.database_url,
            min_size=self.pool_size,
            max_size=self.pool_size,
            server_settings={"default_transaction_isolation": "read committed"},
        )
        self.reaper = asyncio.create_task(self.reap())
        try:
            yield
        finally:
            self.reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reaper
            await self.pool.close()

    async def reap(self) -> None:
        """Make seats of expired holds available to best-available again."""
        while True:
            await asyncio.sleep(REAP_EVERY_S)
            try:
                await self.pool.execute(REAP, REAP_BATCH)
            except (asyncpg.PostgresError, OSError):
                common.log.exception("reaper")

    async def route(self, request: common.Request) -> Reply:
        found = common.route(request.path)
        if found is None:
            return error(404, "not_found", "no such path")
        kind, event = found
        if kind == "readyz":
            return json_reply(200, {"status": "ready"})
        if kind == "seatmap" and request.method in ("GET", "HEAD"):
            return common.seatmap_reply(await self.seatmap(event), request)
        if request.method != "POST" or kind == "seatmap":
            return error(405, "method_not_allowed", "method not allowed")
        user, key = common.fan(request, self.secret)
        if kind == "holds":
            return await self.hold(event, user, key, common.decode_hold(request.body))
        return await self.checkout(user, common.decode_order(request.body))

    async def seatmap(self, event: str) -> Availability:
        flight = self.maps.get(event)
        if flight is None:
            flight = self.maps[event] = SingleFlight(lambda: self.read_map(event))
        return await flight.get()

    async def read_map(self, event: str) -> Availability:
        rows = await self.pool.fetch(TAKEN_SEATS, event)
        return self.index.availability((row["position"], row["seats"]) for row in rows)

    async def hold(self, event: str, user: str, key: str, body: common.CreateHold) -> Reply:
        if (body.seats is None) == (body.best_available is None):
            return error(422, "invalid_request", "give exactly one of seats and best_available")
        hold_id = uuid.uuid4()
        keys: list[tuple[int, int]] = []
        taken: list[str] = []
        expires: datetime | None = None
        try:
            if body.seats is not None:
                keys = self.index.locate_all(body.seats)
                taken, expires = await self.hold_seats(Ask(event, user, key, hold_id), keys)
            else:
                best = body.best_available
                assert best is not None
                positions = self.index.section_positions(best.sections)
                ask = Ask(event, user, key, hold_id)
                keys, expires = await self.hold_best(ask, best.quantity, positions)
        except asyncpg.UniqueViolationError:
            expires = None  # the same Idempotency-Key committed meanwhile: replayed below
        if expires is None:
            replay = await self.replay_hold(event, user, key)
            if replay is not None:
                return replay
            return error(409, "seats_unavailable", "seats are taken", seats=taken)
        seats = [self.index.seat_id(p, i) for p, i in keys]
        view = HoldView(str(hold_id), event, "active", seats, common.rfc3339(expires))
        return json_reply(201, view)

    async def replay_hold(self, event: str, user: str, key: str) -> Reply | None:
        """The 201 of an earlier request with this Idempotency-Key, if there was one."""
        row = await self.pool.fetchrow(REPLAY_HOLD, user, key)
        if row is None:
            return None
        expires = common.rfc3339(row["expires_at"])
        view = HoldView(str(row["hold_id"]), event, "active", list(row["seats"]), expires)
        return Reply(201, common.encoder.encode(view), headers=[(b"idempotent-replayed", b"true")])

    async def hold_seats(
        self, ask: Ask, keys: list[tuple[int, int]]
    ) -> tuple[list[str], datetime | None]:
        """Lock the requested rows, take them if all are free: ([], expiry) or (taken seat ids,
        None)."""
        sections = [self.index.layouts[p].section_id for p, _ in keys]
        indices = [i for _, i in keys]
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(LOCK_SEATS, ask.event, sections, indices)
            taken = [
                self.index.seat_id(row["position"], row["seat_index"])
                for row in rows
                if row["status"] != "available" and not (row["status"] == "held" and row["expired"])
            ]
            if taken or len(rows) != len(keys):
                return taken or ["(unknown seat)"], None  # nothing written: the commit is empty
            expires = await self.take(conn, ask, keys)
        return [], expires

    async def take(self, conn: Any, ask: Ask, keys: list[tuple[int, int]]) -> datetime:
        sections = [self.index.layouts[p].section_id for p, _ in keys]
        indices = [i for _, i in keys]
        seats = [self.index.seat_id(p, i) for p, i in keys]
        ttl = float(self.ttl_s)
        row = await conn.fetchrow(
            TAKE_SEATS, ask.event, sections, indices, ask.hold_id, ttl, ask.user, seats, ask.key
        )
        if row["taken"] != len(keys):
            raise RuntimeError(f"{row['taken']} of {len(keys)} locked seats updated")
        expires: datetime = row["expires_at"]
        return expires

    async def hold_best(
        self, ask: Ask, quantity: int, positions: list[int] | None
    ) -> tuple[list[tuple[int, int]], datetime | None]:
        """SKIP LOCKED windows of available rows in rank order until one holds `quantity`
        adjacent seats of a row; take them. ([], None) when none was found."""
        event = ask.event
        window = 8 + 4 * quantity
        after = (-1, -1, -1)  # (rank, position, seat_index) of the last row seen
        async with self.pool.acquire() as conn, conn.transaction():
            for _ in range(BEST_WINDOWS):
                if positions is not None and len(positions) == 1:
                    rows = await conn.fetch(
                        BEST_IN_SECTION, event, positions[0], after[0], after[2], window
                    )
                else:
                    rows = await conn.fetch(BEST_ANYWHERE, event, *after, window, positions)
                run = adjacent_run(rows, quantity)
                if run:
                    return run, await self.take(conn, ask, run)
                if len(rows) < window:
                    break
                last = rows[-1]
                after = (last["rank"], last["position"], last["seat_index"])
        return [], None

    async def checkout(self, user: str, body: common.CreateOrder) -> Reply:
        if body.payment_token != common.APPROVED_TOKEN:
            return error(402, "payment_declined", "the card was declined", reason="card_declined")
        order_id = uuid.uuid4()
        async with self.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    claimed = await conn.fetchrow(CLAIM_HOLD, body.hold_id, user)
                    if claimed is not None:
                        view = await self.sell(conn, user, body.hold_id, order_id, claimed)
                        if view is not None:
                            return json_reply(201, view)
                        raise _Rollback  # a seat is no longer this hold's
            except _Rollback:
                pass
            return await self.checkout_refused(conn, user, body.hold_id)

    async def sell(
        self, conn: Any, user: str, hold_id: uuid.UUID, order_id: uuid.UUID, claimed: Any
    ) -> OrderView | None:
        event, seats = claimed["event"], list(claimed["seats"])
        keys = [self.index.locate(seat) for seat in seats]
        sections = [self.index.layouts[p].section_id for p, _ in keys]
        amount, currency = self.index.amount(keys)
        sold = await conn.fetchval(
            SELL_SEATS,
            hold_id,
            user,
            order_id,
            event,
            sections,
            [i for _, i in keys],
            seats,
            amount,
            currency,
            len(keys),
        )
        if sold is None:
            return None
        return OrderView(str(order_id), str(hold_id), event, seats, amount, currency)

    async def checkout_refused(self, conn: Any, user: str, hold_id: uuid.UUID) -> Reply:
        """Why a hold cannot be bought now: 404 (unknown or someone else's), the order again
        (bought already: a retried checkout), else 409 (expired or its seats lost)."""
        row = await conn.fetchrow(HOLD_AND_ORDER, hold_id)
        if row is None or row["user_id"] != user:
            return error(404, "not_found", "no such hold")
        if row["order_id"] is not None:
            view = OrderView(
                str(row["order_id"]),
                str(hold_id),
                row["event"],
                list(row["seats"]),
                row["amount"],
                row["currency"],
            )
            replayed = [(b"idempotent-replayed", b"true")]
            return Reply(201, common.encoder.encode(view), headers=replayed)
        return error(409, "hold_expired", "the hold has expired")


class _Rollback(Exception):
    """Raised inside `checkout`'s transaction block to roll it back."""


def adjacent_run(rows: list[Any], quantity: int) -> list[tuple[int, int]]:
    """The first `quantity` consecutive seats of one row among `rows` (in rank order), else []."""
    run: list[tuple[int, int]] = []
    previous: tuple[int, int] | None = None
    for row in rows:
        here = (row["row_key"], row["seat_index"])
        if previous is not None and here == (previous[0], previous[1] + 1):
            run.append((row["position"], row["seat_index"]))
        else:
            run = [(row["position"], row["seat_index"])]
        previous = here
        if len(run) == quantity:
            return run
    return []


def create_app() -> Any:
    """The onsale textbook app (bare ASGI), configured by BENCH_BASELINE_*."""
    common.configure_logging()
    service = Textbook(
        os.environ[ENV_DATABASE],
        load_venue_file(os.environ[ENV_VENUE]),
        os.environ[ENV_SECRET],
        common.env_int(ENV_POOL, POOL_SIZE),
        common.env_int(ENV_HOLD_TTL, HOLD_TTL_S),
    )
    return common.asgi_app(service.route, service.lifespan)


# --- the audit (bench side) ---

AUDIT: Final = {
    "seat_in_two_orders": """
        SELECT seat FROM orders, unnest(seats) AS seat WHERE event = %(event)s
        GROUP BY seat HAVING count(*) > 1""",
    "sold_seat_without_order": """
        SELECT s.section, s.seat_index FROM seats AS s
        LEFT JOIN orders AS o ON o.order_id = s.order_id
        WHERE s.event = %(event)s AND s.status = 'sold' AND o.order_id IS NULL""",
    "purchased_hold_without_order": """
        SELECT h.hold_id FROM holds AS h LEFT JOIN orders AS o ON o.hold_id = h.hold_id
        WHERE h.event = %(event)s AND h.status = 'purchased' AND o.order_id IS NULL""",
}


def ledger(database_url: str, venue: Venue, event: str) -> Ledger:
    """The seats, orders and audit violations of `event` in the textbook database."""
    found = Ledger()
    with psycopg.connect(database_url) as conn:
        for name, query in AUDIT.items():
            found.violations[name] = len(conn.execute(query, {"event": event}).fetchall())
        rows = conn.execute(
            "SELECT section, seat_index, hold_id::text, order_id::text FROM seats "
            "WHERE event = %s AND status IN ('held', 'sold')",
            (event,),
        ).fetchall()
        for section, index, hold_id, order_id in rows:
            found.seats[venue.section(section).seat_id(index)] = (hold_id, order_id)
        for order_id, hold_id, seats in conn.execute(
            "SELECT order_id::text, hold_id::text, seats FROM orders WHERE event = %s", (event,)
        ).fetchall():
            found.orders[order_id] = (hold_id, frozenset(seats))
    return found
