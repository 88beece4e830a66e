"""An onsale under fire, for the fault suite (tests/faults/test_onsale_faults.py): a load generator
that records every acknowledgement, and the checks that nothing acknowledged was lost.

`OnsaleLoad` runs N concurrent fans against one event through the writer's HTTP API (a writer or
an edge in front of it: the API is the same). Each fan loops: a hold (best-available, or seats
picked from the event's layout, which races the other fans), then a checkout (`tok_approve`), a
release or nothing (the hold is left to expire). Every state-changing request carries an
`Idempotency-Key`; on 502/503/504, a connection error, a timeout or 409
`idempotency_key_in_flight` it is sent again with the SAME key (bounded), to the next base URL
when there are several. The ledger records every acknowledgement: a hold's 201 (id, seats,
`expires_at`), an order's 201 (id, hold, seats), a release's 204.

`check_ledger` then holds the database to the ledger (docs/architecture.md §8.1-2): every acknowledged
order is there, confirmed, with exactly its seats sold to it; every acknowledged hold is there with
its seats and a status its later acknowledgements allow; an active hold owns the claims of all its
seats (nobody else can have them); an expired hold did not end before its `expires_at`, and one
past it by more than the reaper's slack is not still active; and `tessera audit` is clean.
`expect_convergence` holds every regional node to the writer (§8.3), and the writer to the
database, within a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import msgspec
import psycopg
from writer_support import WRITER_JWT_SECRET

from tessera.auth import mint_token
from tessera.venue import load_venue
from tessera_ops.audit import AuditReport, AuditTarget, audit, audit_event

PAYMENT_TOKEN: Final = "tok_approve"
# Past the writer's own reply timeout (10 s), so the writer answers before the client gives up.
REQUEST_TIMEOUT_S: Final = 12.0
# How long one request is retried (same key) at most: covers a writer or database restart.
RETRY_WINDOW_S: Final = 20.0
RETRY_ATTEMPTS_MAX: Final = 60
BACKOFF_S_BASE: Final = 0.05
BACKOFF_S_MAX: Final = 0.5
# A key left `in_flight` by a crash is refused with 409 for 30 s (limits.idempotency_in_flight_s_max);
# past this the fan gives it up (nothing was acknowledged, so nothing is owed).
IN_FLIGHT_RETRY_S: Final = 2.0
RETRY_STATUSES: Final = frozenset({502, 503, 504})
# The writer releases an expired hold within ~1 s (docs/architecture.md §3); the check allows this.
EXPIRY_SLACK_S: Final = 3.0
# The settler captures or voids a payment within a pass of its commit (it is woken by it), and
# again every second while the provider is down: a case's payments all settle within this.
SETTLE_S: Final = 15.0


@dataclass(frozen=True)
class HoldAck:
    hold_id: str
    user_id: str
    seats: tuple[str, ...]
    expires_at: datetime
    # When the fan got the 201 (this machine's clock, the database's too): a hold answered
    # after its deadline is one the fan could never have bought.
    answered_at: datetime


@dataclass(frozen=True)
class OrderAck:
    order_id: str
    hold_id: str
    user_id: str
    seats: tuple[str, ...]


@dataclass
class Ledger:
    """Every acknowledgement the fans received, and what they tried without one."""

    event_id: str
    holds: dict[str, HoldAck] = field(default_factory=dict)
    orders: dict[str, OrderAck] = field(default_factory=dict)
    released: set[str] = field(default_factory=set)
    # Holds whose checkout or release was sent but never acknowledged (gave up, or stopped):
    # the database may show either outcome for them.
    order_tried: set[str] = field(default_factory=set)
    release_tried: set[str] = field(default_factory=set)
    # (kind, final status) per request, "retry <why>" per resend, "gave up <kind>" per abandon.
    outcomes: Counter[str] = field(default_factory=Counter)
    # How long each 503 `overloaded` took to come back: a refusal must be fast.
    shed_latencies_s: list[float] = field(default_factory=list)

    @property
    def retries(self) -> int:
        return sum(n for what, n in self.outcomes.items() if what.startswith("retry"))

    def summary(self) -> str:
        return (
            f"{len(self.holds)} holds, {len(self.orders)} orders, {len(self.released)} releases "
            f"acknowledged; {self.retries} retries; "
            + ", ".join(f"{what}: {n}" for what, n in sorted(self.outcomes.items()))
        )


@dataclass(frozen=True)
class LoadShape:
    """What a fan does after a hold, and how fast it loops."""

    fans: int = 24
    order_share: float = 0.2
    release_share: float = 0.6  # the rest is left to expire
    picked_share: float = 0.3  # holds of picked seats (racing), else best-available
    think_s_max: float = 0.03


class _GaveUp(Exception):
    pass


@dataclass(frozen=True)
class _Request:
    kind: str  # hold, order, release
    method: str
    path: str
    user: str
    key: str | None
    body: dict[str, Any] | None


class OnsaleLoad:
    """N fans against `event_id` at `base_urls` (rotated on retryable failures) until `stop()`."""

    def __init__(
        self,
        base_urls: Sequence[str],
        event_id: str,
        *,
        shape: LoadShape | None = None,
        seed: int = 1,
    ) -> None:
        self.base_urls = list(base_urls)
        self.event_id = event_id
        self.shape = shape or LoadShape()
        self.seed = seed
        self.run_id = uuid.uuid4().hex[:8]
        self.ledger = Ledger(event_id)
        self._stopping = asyncio.Event()
        self._going = asyncio.Event()
        self._going.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._tokens: dict[str, str] = {}
        self._rows: list[list[str]] = []
        self._sections: list[str] = []
        self._client = httpx.AsyncClient(
            timeout=REQUEST_TIMEOUT_S,
            limits=httpx.Limits(max_connections=4 * self.shape.fans),
        )

    async def start(self) -> None:
        document = (await self._client.get(f"{self.base_urls[0]}/v1/events/{self.event_id}")).json()
        self._sections = [section["section_id"] for section in document["sections"]]
        self._rows = [row["seats"] for section in document["sections"] for row in section["rows"]]
        self._tasks = [asyncio.create_task(self._fan(n)) for n in range(self.shape.fans)]

    async def run_for(self, seconds: float) -> None:
        """Let the load run (failing at once if a fan crashed)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for task in self._tasks:
                if task.done() and task.exception() is not None:
                    raise AssertionError("a fan crashed") from task.exception()
            await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def pause(self) -> None:
        """Hold every fan's next request (and retry) back until `resume()`; requests already
        sent go on."""
        self._going.clear()

    def resume(self) -> None:
        self._going.set()

    async def stop(self) -> Ledger:
        """Let every fan finish what it is doing (its retries included), then the ledger."""
        self._stopping.set()
        self._going.set()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self._client.aclose()
        return self.ledger

    async def __aenter__(self) -> OnsaleLoad:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self._stopping.is_set():
            self._stopping.set()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._client.aclose()

    # --- one fan ---

    async def _fan(self, fan: int) -> None:
        rng = random.Random(self.seed * 10_007 + fan)
        generation = 0
        for n in itertools.count():
            if self._stopping.is_set():
                return
            user = f"{self.run_id}-f{fan}-{generation}"
            key = f"{self.run_id}-{fan}-{n}"
            try:
                path = f"/v1/events/{self.event_id}/holds"
                status, body = await self._send(
                    fan, _Request("hold", "POST", path, user, key + "-h", self._hold_body(rng))
                )
                if status == 403 and _code(body) == "limit_exceeded":
                    generation += 1  # this fan's cap is reached: a new fan takes its place
                elif status == 201:
                    await self._after_hold(fan, rng, user, key, self.record_hold(user, body))
            except _GaveUp:
                pass
            await asyncio.sleep(rng.uniform(0, self.shape.think_s_max))

    def _hold_body(self, rng: random.Random) -> dict[str, Any]:
        if rng.random() < self.shape.picked_share:
            row = rng.choice(self._rows)
            count = rng.randint(1, 2)
            start = rng.randrange(0, len(row) - count + 1)
            return {"seats": row[start : start + count]}
        best: dict[str, Any] = {"quantity": rng.randint(1, 3)}
        if rng.random() < 0.5:
            best["sections"] = [rng.choice(self._sections)]
        return {"best_available": best}

    def record_hold(self, user: str, body: Any) -> HoldAck:
        """Add a hold's 201 body to the ledger (the fans', or a test's own request's)."""
        ack = HoldAck(
            hold_id=body["hold_id"],
            user_id=user,
            seats=tuple(body["seats"]),
            expires_at=datetime.fromisoformat(body["expires_at"]),
            answered_at=datetime.now(UTC),
        )
        self.ledger.holds[ack.hold_id] = ack
        return ack

    async def _after_hold(
        self, fan: int, rng: random.Random, user: str, key: str, hold: HoldAck
    ) -> None:
        choice = rng.random()
        if choice < self.shape.order_share:
            self.ledger.order_tried.add(hold.hold_id)
            order = {"hold_id": hold.hold_id, "payment_token": PAYMENT_TOKEN}
            status, body = await self._send(
                fan,
                _Request(
                    "order", "POST", f"/v1/events/{self.event_id}/orders", user, key + "-o", order
                ),
            )
            if status == 201:
                self.ledger.orders[body["order_id"]] = OrderAck(
                    order_id=body["order_id"],
                    hold_id=body["hold_id"],
                    user_id=user,
                    seats=tuple(body["seats"]),
                )
        elif choice < self.shape.order_share + self.shape.release_share:
            self.ledger.release_tried.add(hold.hold_id)
            path = f"/v1/events/{self.event_id}/holds/{hold.hold_id}"
            status, _ = await self._send(fan, _Request("release", "DELETE", path, user, None, None))
            if status in (200, 204):
                self.ledger.released.add(hold.hold_id)

    async def _send(self, fan: int, request: _Request) -> tuple[int, Any]:
        """The final answer (status, JSON body or None), resending with the same key while the
        failure is one a retry may cure; `_GaveUp` when the retries run out."""
        kind = request.kind
        headers = {"Authorization": f"Bearer {self._token(request.user)}"}
        if request.key is not None:
            headers["Idempotency-Key"] = request.key
        started = time.monotonic()
        for attempt in range(RETRY_ATTEMPTS_MAX):
            url = self.base_urls[(fan + attempt) % len(self.base_urls)] + request.path
            why = await self._attempt(request.method, url, headers, request.body)
            if isinstance(why, tuple):
                status, data, replayed = why
                self.ledger.outcomes[f"{kind} {status}"] += 1
                if replayed:  # committed before an earlier try's answer was lost
                    self.ledger.outcomes[f"{kind} replayed"] += 1
                return status, data
            self.ledger.outcomes[f"retry {why}"] += 1
            waited = time.monotonic() - started
            window = IN_FLIGHT_RETRY_S if why == "409 in flight" else RETRY_WINDOW_S
            if waited > window:
                break
            await asyncio.sleep(min(BACKOFF_S_MAX, BACKOFF_S_BASE * 2**attempt))
        self.ledger.outcomes[f"gave up {kind}"] += 1
        raise _GaveUp

    async def _attempt(
        self, method: str, url: str, headers: dict[str, str], body: dict[str, Any] | None
    ) -> tuple[int, Any, bool] | str:
        """One try: the answer (status, body, replayed?), or why it should be tried again."""
        await self._going.wait()
        sent = time.monotonic()
        try:
            response = await self._client.request(method, url, headers=headers, json=body)
        except httpx.TimeoutException:
            return "timeout"
        except httpx.TransportError:
            return "connection"
        data: Any = None
        if response.content:
            with contextlib.suppress(ValueError):
                data = response.json()
        if response.status_code in RETRY_STATUSES:
            if _code(data) == "overloaded":
                self.ledger.shed_latencies_s.append(time.monotonic() - sent)
                return "503 overloaded"
            return str(response.status_code)
        if response.status_code == 409 and _code(data) == "idempotency_key_in_flight":
            return "409 in flight"
        replayed = response.headers.get("idempotent-replayed") == "true"
        return response.status_code, data, replayed

    def _token(self, user: str) -> str:
        token = self._tokens.get(user)
        if token is None:
            token = self._tokens[user] = mint_token(user, WRITER_JWT_SECRET)
        return token


def _code(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        return code if isinstance(code, str) else None
    return None


# --- the checks ---


@dataclass
class _Database:
    """What the database says about the ledger's holds and orders, read in one transaction."""

    now: datetime
    holds: dict[str, Any]
    orders: dict[str, Any]
    # hold id → {(section, seat index): (state, order id)}
    claims: dict[str, dict[tuple[str, int], tuple[str, str | None]]]
    orders_by_hold: dict[str, Any]
    # seat id → (section, seat index), from the event's venue
    seat_index: dict[str, tuple[str, int]]


def _read_database(database_url: str, ledger: Ledger) -> _Database:
    hold_ids = [uuid.UUID(h) for h in ledger.holds]
    with psycopg.connect(database_url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT now(), venue FROM events WHERE event_id = %s", (ledger.event_id,))
        row = cursor.fetchone()
        assert row is not None, f"no event {ledger.event_id} in the database"
        now, venue_json = row
        cursor.execute(
            "SELECT hold_id::text, user_id, status, seats, expires_at, ended_at FROM holds"
            " WHERE hold_id = ANY(%s)",
            (hold_ids,),
        )
        holds = {r[0]: r for r in cursor.fetchall()}
        cursor.execute(
            "SELECT order_id::text, hold_id::text, user_id, status, seats FROM orders"
            " WHERE event_id = %s",
            (ledger.event_id,),
        )
        orders = {r[0]: r for r in cursor.fetchall()}
        cursor.execute(
            "SELECT hold_id::text, section_id, seat_index, state, order_id::text"
            " FROM seat_claims WHERE event_id = %s",
            (ledger.event_id,),
        )
        claims: dict[str, dict[tuple[str, int], tuple[str, str | None]]] = {}
        for hold_id, section, index, state, order_id in cursor.fetchall():
            claims.setdefault(hold_id, {})[(section, index)] = (state, order_id)
    venue = load_venue(msgspec.json.encode(venue_json))
    seat_index = {
        layout.seat_id(i): (layout.section_id, i)
        for layout in venue.layouts
        for i in range(layout.seat_count)
    }
    orders_by_hold = {r[1]: r for r in orders.values()}
    return _Database(now, holds, orders, claims, orders_by_hold, seat_index)


def _order_problems(db: _Database, ledger: Ledger) -> list[str]:
    problems = []
    for ack in ledger.orders.values():
        row = db.orders.get(ack.order_id)
        if row is None:
            problems.append(f"order {ack.order_id}: acknowledged, not in the database")
            continue
        _, hold_id, user_id, status, seats = row
        if (hold_id, user_id, status) != (ack.hold_id, ack.user_id, "confirmed"):
            problems.append(f"order {ack.order_id}: {hold_id} {user_id} {status}, acked {ack}")
        if sorted(seats) != sorted(ack.seats):
            problems.append(f"order {ack.order_id}: seats {sorted(seats)}, acked {ack.seats}")
        wanted = {db.seat_index[seat]: ("sold", ack.order_id) for seat in ack.seats}
        if db.claims.get(ack.hold_id) != wanted:
            problems.append(f"order {ack.order_id}: claims {db.claims.get(ack.hold_id)}")
    return problems


def _allowed_statuses(ledger: Ledger, hold_id: str) -> set[str]:
    """What an acknowledged hold may have become, given the acknowledgements that followed."""
    if any(order.hold_id == hold_id for order in ledger.orders.values()):
        return {"purchased"}
    if hold_id in ledger.released:
        return {"released", "expired"}  # a release after the expiry is a 204 too
    allowed = {"active", "expired"}
    if hold_id in ledger.order_tried:
        allowed.add("purchased")
    if hold_id in ledger.release_tried:
        allowed.add("released")
    return allowed


def _hold_problems(db: _Database, ledger: Ledger) -> list[str]:
    problems = []
    for ack in ledger.holds.values():
        row = db.holds.get(ack.hold_id)
        where = f"hold {ack.hold_id}"
        if row is None:
            problems.append(f"{where}: acknowledged, not in the database")
            continue
        _, user_id, status, seats, expires_at, ended_at = row
        if user_id != ack.user_id or list(seats) != list(ack.seats):
            problems.append(f"{where}: {user_id} {list(seats)}, acked {ack.user_id} {ack.seats}")
        problems += _deadline_problems(where, ack, expires_at)
        if status not in _allowed_statuses(ledger, ack.hold_id):
            problems.append(f"{where}: {status}, allowed {_allowed_statuses(ledger, ack.hold_id)}")
        claimed = db.claims.get(ack.hold_id, {})
        if status == "active":
            wanted = {db.seat_index[seat]: ("held", None) for seat in ack.seats}
            if claimed != wanted:
                problems.append(f"{where}: active, its claims are {claimed}")
            if (db.now - expires_at).total_seconds() > EXPIRY_SLACK_S:
                problems.append(f"{where}: still active {db.now - expires_at} after expiry")
        elif status == "purchased":
            if ack.hold_id not in db.orders_by_hold:
                problems.append(f"{where}: purchased without an order")
        elif claimed:
            problems.append(f"{where}: {status} but still claims {claimed}")
        if status == "expired" and (ended_at is None or ended_at < expires_at):
            problems.append(f"{where}: expired at {ended_at}, before its {expires_at}")
    return problems


def _deadline_problems(where: str, ack: HoldAck, expires_at: datetime) -> list[str]:
    problems = []
    if expires_at != ack.expires_at:
        problems.append(f"{where}: expires {expires_at}, acked {ack.expires_at}")
    if ack.answered_at >= ack.expires_at:
        problems.append(f"{where}: answered at {ack.answered_at}, after it expired")
    return problems


@dataclass
class LedgerReport:
    problems: list[str]
    audit: AuditReport

    @property
    def ok(self) -> bool:
        return not self.problems and self.audit.ok

    def describe(self) -> str:
        lines = [self.audit.summary(), *self.audit.details(), *self.problems[:40]]
        if len(self.problems) > 40:
            lines.append(f"... {len(self.problems) - 40} more")
        return "\n".join(lines)


def check_ledger(database_url: str, ledger: Ledger) -> LedgerReport:
    """Every acknowledged hold and order accounted for in the database, and the audit clean,
    money included: once every payment of the event has settled (`wait_settled`), every order
    is captured exactly once for its amount and no authorization is left open."""
    wait_settled(database_url, ledger.event_id)
    db = _read_database(database_url, ledger)
    problems = _order_problems(db, ledger) + _hold_problems(db, ledger)
    return LedgerReport(problems, audit(database_url, settle_s=0))


def wait_settled(database_url: str, event_id: str, within_s: float = SETTLE_S) -> None:
    """Until no payment of the event is still to be captured, voided or refunded."""
    deadline = time.monotonic() + within_s
    while True:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM payments p JOIN holds h ON h.hold_id = p.hold_id"
                " WHERE h.event_id = %s"
                " AND p.status IN ('authorized', 'void_pending', 'refund_pending')",
                (event_id,),
            ).fetchone()
        if row is not None and row[0] == 0:
            return
        if time.monotonic() > deadline:
            return  # the audit names what is still open
        time.sleep(0.1)


async def expect_convergence(
    writer_url: str,
    regional_urls: Mapping[str, str],
    database_url: str,
    event_id: str,
    *,
    since: float,
    within_s: float,
) -> float:
    """Wait until every regional node's maps equal the writer's, and the writer's the
    database's, at most until `since + within_s` (monotonic clock); the seconds since `since`
    it took. Fails with the audit's details otherwise."""
    started = time.monotonic()
    target = AuditTarget(writer_url, dict(regional_urls), database_url)
    report = await audit_event(target, event_id, converge_s=max(0.0, since + within_s - started))
    assert report.ok, (
        f"not converged within {within_s} s of the heal "
        f"({time.monotonic() - since:.1f} s):\n" + "\n".join([report.summary(), *report.details()])
    )
    return started - since + (report.converged_s or 0.0)
