"""The audit: what must always hold (docs/architecture.md §8), checked from outside the
services. Used by the tests after every step, by the benchmarks, by `tessera onsale` and by
`tessera audit`.

In the writer's database, by queries (`audit`):

- no seat is sold twice: across all orders of an event, each seat id appears once;
- no seat is in two active holds or orders at once;
- every claim belongs to a hold in the matching state (held → active, sold → purchased), and
  every active or purchased hold has exactly its seats claimed;
- no fan holds or owns more seats than the event allows;
- money (docs/payments.md, the payment saga): every confirmed order has exactly one payment,
  for its amount, captured (or still on its way, within `limits.audit_payment_settle_s_max`);
  no money was taken without an order (a capture with no confirmed order); no authorization is
  left open (to capture, void or refund) past that bound; no capture failed; every refunded
  order has exactly one payment, given back (refunded, or voided before capture) or on its way
  back (a refund is due within the bound from the order's refund, not from its sale);
- no refunded order has a valid ticket left.
(No seat is *claimed* twice by construction: that is `seat_claims`' primary key.)

For one event across the tiers (`audit_event`, which runs the queries above for that event too):

- the writer's in-memory seat map of every section equals the database's (version, and the
  seats that are neither claimed nor blocked);
- every regional node's map of every section equals the writer's. The change feed takes a few
  milliseconds, so a difference is reported only if it is still there after `converge_s`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec
import psycopg

import tessera_core as tc
from tessera import limits
from tessera.http1 import HttpError, Pool
from tessera.venue import Venue, VenueError, load_venue
from tessera_ops.stackfile import Stack, read_stack

# Each query takes `%(event)s`: NULL for the whole database, else one event's id.
QUERIES: dict[str, str] = {
    "seat_sold_twice": """
        SELECT o.event_id, seat, count(*) FROM orders o, unnest(o.seats) AS seat
        WHERE o.status = 'confirmed' AND (%(event)s::uuid IS NULL OR o.event_id = %(event)s::uuid)
        GROUP BY o.event_id, seat HAVING count(*) > 1""",
    "seat_in_two_holds_or_orders": """
        SELECT event_id, seat, count(*) FROM (
            SELECT h.event_id, unnest(h.seats) AS seat FROM holds h
            WHERE h.status = 'active'
              AND (%(event)s::uuid IS NULL OR h.event_id = %(event)s::uuid)
            UNION ALL
            SELECT o.event_id, unnest(o.seats) AS seat FROM orders o
            WHERE o.status = 'confirmed'
              AND (%(event)s::uuid IS NULL OR o.event_id = %(event)s::uuid)
        ) taken GROUP BY event_id, seat HAVING count(*) > 1""",
    "claim_without_matching_hold": """
        SELECT c.event_id, c.section_id, c.seat_index, c.state, h.status
        FROM seat_claims c LEFT JOIN holds h ON h.hold_id = c.hold_id
        WHERE (%(event)s::uuid IS NULL OR c.event_id = %(event)s::uuid) AND (h.hold_id IS NULL
           OR (c.state = 'held' AND h.status <> 'active')
           OR (c.state = 'sold' AND h.status <> 'purchased'))""",
    "hold_seats_not_claimed": """
        SELECT h.hold_id, h.status, h.seat_count, count(c.seat_index)
        FROM holds h LEFT JOIN seat_claims c ON c.hold_id = h.hold_id
        WHERE h.status IN ('active', 'purchased')
          AND (%(event)s::uuid IS NULL OR h.event_id = %(event)s::uuid)
        GROUP BY h.hold_id, h.status, h.seat_count
        HAVING count(c.seat_index) <> h.seat_count""",
    "sold_claim_without_order": """
        SELECT c.event_id, c.section_id, c.seat_index FROM seat_claims c
        LEFT JOIN orders o ON o.order_id = c.order_id
        WHERE c.state = 'sold' AND o.order_id IS NULL
          AND (%(event)s::uuid IS NULL OR c.event_id = %(event)s::uuid)""",
    "over_per_user_limit": """
        SELECT c.event_id, c.user_id, count(*), e.per_user_limit
        FROM seat_claims c JOIN events e ON e.event_id = c.event_id
        WHERE (%(event)s::uuid IS NULL OR c.event_id = %(event)s::uuid)
        GROUP BY c.event_id, c.user_id, e.per_user_limit
        HAVING count(*) > e.per_user_limit""",
    "refunded_order_ticket_valid": """
        SELECT t.ticket_id, t.order_id, t.seat FROM tickets t
        JOIN orders o ON o.order_id = t.order_id
        WHERE o.status = 'refunded' AND t.status = 'valid'
          AND (%(event)s::uuid IS NULL OR o.event_id = %(event)s::uuid)""",
}
# The money checks: `%(settle_s)s` is how long a payment may still be on its way to its end.
MONEY_QUERIES: dict[str, str] = {
    "order_not_paid_once": """
        SELECT o.order_id, count(p.payment_id), array_agg(p.status)
        FROM orders o LEFT JOIN payments p ON p.order_id = o.order_id
        WHERE o.status = 'confirmed' AND (%(event)s::uuid IS NULL OR o.event_id = %(event)s::uuid)
        GROUP BY o.order_id
        HAVING count(p.payment_id) <> 1
            OR bool_or(p.status NOT IN ('captured', 'authorized'))
            OR bool_or(p.status = 'authorized'
                       AND p.created_at < now() - %(settle_s)s * interval '1 second')""",
    "payment_amount_unlike_order": """
        SELECT o.order_id, o.amount_minor, o.currency, p.amount_minor, p.currency
        FROM orders o JOIN payments p ON p.order_id = o.order_id
        WHERE (%(event)s::uuid IS NULL OR o.event_id = %(event)s::uuid)
          AND (o.amount_minor <> p.amount_minor OR o.currency <> p.currency)""",
    "money_taken_without_order": """
        SELECT p.payment_id, p.status, p.order_id FROM payments p
        JOIN holds h ON h.hold_id = p.hold_id
        LEFT JOIN orders o ON o.order_id = p.order_id AND o.status = 'confirmed'
        WHERE (%(event)s::uuid IS NULL OR h.event_id = %(event)s::uuid)
          AND p.status = 'captured' AND o.order_id IS NULL""",
    "authorization_left_open": """
        SELECT p.payment_id, p.status, p.attempts, p.last_error FROM payments p
        JOIN holds h ON h.hold_id = p.hold_id
        LEFT JOIN orders o ON o.order_id = p.order_id
        WHERE (%(event)s::uuid IS NULL OR h.event_id = %(event)s::uuid)
          AND p.status IN ('authorized', 'void_pending', 'refund_pending')
          AND coalesce(o.refunded_at, p.created_at)
              < now() - %(settle_s)s * interval '1 second'""",
    "refunded_order_not_refunded_once": """
        SELECT o.order_id, count(p.payment_id), array_agg(p.status)
        FROM orders o LEFT JOIN payments p ON p.order_id = o.order_id
        WHERE o.status = 'refunded' AND (%(event)s::uuid IS NULL OR o.event_id = %(event)s::uuid)
        GROUP BY o.order_id
        HAVING count(p.payment_id) <> 1
            OR bool_or(p.status NOT IN ('refund_pending', 'refunded', 'void_pending', 'voided'))""",
    "capture_failed": """
        SELECT p.payment_id, p.order_id, p.last_error FROM payments p
        JOIN holds h ON h.hold_id = p.hold_id
        WHERE (%(event)s::uuid IS NULL OR h.event_id = %(event)s::uuid)
          AND p.status = 'capture_failed'""",
}
_COUNTS: Final = """
    SELECT count(*), count(*) FILTER (WHERE state = 'sold') FROM seat_claims c
    WHERE (%(event)s::uuid IS NULL OR c.event_id = %(event)s::uuid)"""

# A differing section lists at most this many seat ids (the count is always exact).
_SEATS_SHOWN: Final = 20


@dataclass(frozen=True)
class SectionDiff:
    """One section whose map on `node` differs from the reference (the writer's map for a
    regional node, the database's for the writer)."""

    node: str
    section: str
    expected_version: int
    # None: the node does not serve the section (404: it never saw the event).
    actual_version: int | None
    # Seats available on one side only: how many, and the first few ids.
    differing: int
    seats: tuple[str, ...]

    def describe(self) -> str:
        where = f"{self.node} section {self.section}"
        if self.actual_version is None:
            return f"{where}: not served (expected v{self.expected_version})"
        shown = ", ".join(self.seats) + (" ..." if self.differing > len(self.seats) else "")
        return (
            f"{where}: v{self.actual_version}, expected v{self.expected_version}; "
            f"{self.differing} seats differ" + (f": {shown}" if shown else "")
        )


@dataclass
class AuditReport:
    violations: dict[str, list[tuple[object, ...]]] = field(default_factory=dict)
    claims: int = 0
    sold: int = 0
    # The rest is filled by `audit_event` only.
    event_id: str | None = None
    # Regional maps still unlike the writer's after the convergence wait.
    regional: list[SectionDiff] = field(default_factory=list)
    # The writer's maps unlike the database's.
    writer: list[SectionDiff] = field(default_factory=list)
    # Nodes (or the database) that could not be asked, with why.
    unreachable: list[str] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)
    sections: int = 0
    # Seconds until every map agreed (None: they never did, or no map was compared).
    converged_s: float | None = None

    @property
    def ok(self) -> bool:
        return not (
            any(self.violations.values()) or self.regional or self.writer or self.unreachable
        )

    @property
    def oversells(self) -> int:
        return len(self.violations.get("seat_sold_twice", []))

    def summary(self) -> str:
        scope = f"event {self.event_id}: " if self.event_id else ""
        if self.ok:
            text = f"audit ok: {scope}{self.claims} claims, {self.sold} sold, 0 oversells"
            if self.regions:
                text += (
                    f"; {len(self.regions)} regions x {self.sections} sections equal to the "
                    f"writer (after {self.converged_s or 0:.2f} s)"
                )
            return text
        found: dict[str, int] = {name: len(rows) for name, rows in self.violations.items() if rows}
        for name, items in (
            ("regional_map_differs", self.regional),
            ("writer_map_differs", self.writer),
            ("unreachable", self.unreachable),
        ):
            if items:
                found[name] = len(items)
        return f"audit FAILED: {scope}{found}"

    def details(self, rows_max: int = 20) -> list[str]:
        """One line per problem found (at most `rows_max` per kind)."""
        lines = [
            f"{name}: {row}" for name, rows in self.violations.items() for row in rows[:rows_max]
        ]
        lines += [diff.describe() for diff in [*self.writer, *self.regional][: 2 * rows_max]]
        lines += [f"unreachable: {what}" for what in self.unreachable]
        return lines


def plain_database_url(url: str) -> str:
    """A URL psycopg accepts: the SQLAlchemy driver suffix dropped (`postgresql+asyncpg://`),
    CockroachDB's scheme turned into PostgreSQL's (it speaks the same protocol)."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme in ("cockroachdb", "postgres"):
        scheme = "postgresql"
    return urlunsplit(parts._replace(scheme=scheme))


def _connect(database_url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(
        plain_database_url(database_url), connect_timeout=int(limits.server_start_timeout_s)
    )


def audit(
    database_url: str,
    event_id: str | None = None,
    *,
    settle_s: float = limits.audit_payment_settle_s_max,
) -> AuditReport:
    """Run every database check against `database_url`, for one event or (None) all of them;
    a payment younger than `settle_s` may still be on its way to its end."""
    report = AuditReport(event_id=event_id)
    params = {"event": event_id, "settle_s": settle_s}
    with _connect(database_url) as conn, conn.cursor() as cursor:
        for name, query in {**QUERIES, **MONEY_QUERIES}.items():
            cursor.execute(query, params)
            report.violations[name] = [tuple(row) for row in cursor.fetchall()]
        cursor.execute(_COUNTS, params)
        row = cursor.fetchone()
        if row is not None:
            report.claims, report.sold = int(row[0]), int(row[1])
    return report


# --- one event across the tiers ---


@dataclass(frozen=True)
class AuditTarget:
    """Where an event lives: the writer, each region's read node by region name, and the
    database (None: skip the database checks and compare the read nodes with the writer only)."""

    writer_url: str
    regional_urls: Mapping[str, str]
    database_url: str | None = None

    @classmethod
    def from_stack(cls, stack: Stack) -> AuditTarget:
        return cls(
            writer_url=stack.writer_url,
            regional_urls={region.name: region.regional_url for region in stack.regions},
            database_url=stack.database_url,
        )


class _Layout(msgspec.Struct):
    """What the audit needs from `GET /v1/events/{id}`: section ids in venue order."""

    sections: list[dict[str, Any]]


class _Unreachable(Exception):
    pass


_IDENTITY: Final = [(b"accept-encoding", b"identity")]


class _Fetcher:
    """GETs of seat maps: the house's light client (tessera/http1.py) for `http://` (hundreds
    of sections per round), httpx for anything else."""

    def __init__(self) -> None:
        self._pools: dict[str, Pool] = {}
        self._client: httpx.AsyncClient | None = None

    async def get(self, base_url: str, path: str) -> tuple[int, bytes]:
        headers = {"Accept-Encoding": "identity"}
        try:
            if base_url.startswith("http://"):
                pool = self._pools.get(base_url)
                if pool is None:
                    pool = self._pools[base_url] = Pool(
                        base_url,
                        connections_max=limits.audit_connections_max,
                        timeout_s=limits.audit_request_timeout_s,
                        resend_stale=True,  # GETs: safe to send again
                    )
                answer = await pool.request(b"GET", path.encode(), _IDENTITY)
                return answer.status, answer.body
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=limits.audit_request_timeout_s)
            response = await self._client.get(base_url.rstrip("/") + path, headers=headers)
            return response.status_code, response.content
        except (HttpError, httpx.HTTPError) as exc:
            raise _Unreachable(f"{base_url}: {exc}") from exc

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.close()
        if self._client is not None:
            await self._client.aclose()


@dataclass
class _Event:
    event_id: str
    section_ids: list[str]
    # Seat ids per section in index order, for naming the seats that differ.
    seat_ids: list[list[str]]
    venue: Venue | None = None


async def _load_event(fetcher: _Fetcher, writer_url: str, event_id: str) -> _Event:
    status, body = await fetcher.get(writer_url, f"/v1/events/{event_id}")
    if status != 200:
        raise _Unreachable(f"the writer does not know event {event_id} ({status})")
    layout = msgspec.json.decode(body, type=_Layout)
    section_ids = [str(section["section_id"]) for section in layout.sections]
    seat_ids = [
        [str(seat) for row in section["rows"] for seat in row["seats"]]
        for section in layout.sections
    ]
    return _Event(event_id, section_ids, seat_ids)


def _bitmap(seat_count: int, unavailable: set[int]) -> bytes:
    available = (1 << seat_count) - 1
    for seat in unavailable:
        available &= ~(1 << seat)
    return available.to_bytes((seat_count + 7) // 8, "little")


def _database_maps(database_url: str, event: _Event) -> dict[str, tc.SeatMap]:
    """Each section as the database has it: its version, and every seat available that is
    neither claimed (held or sold) nor blocked in the venue. One transaction, so the versions
    and the claims are of the same instant."""
    with _connect(database_url) as conn, conn.cursor() as cursor:
        if event.venue is None:
            cursor.execute("SELECT venue FROM events WHERE event_id = %s", (event.event_id,))
            row = cursor.fetchone()
            if row is None:
                raise _Unreachable(f"the database has no event {event.event_id}")
            event.venue = load_venue(msgspec.json.encode(row[0]))
        cursor.execute(
            "SELECT section_id, version FROM sections WHERE event_id = %s", (event.event_id,)
        )
        versions = {str(section): int(version) for section, version in cursor.fetchall()}
        cursor.execute(
            "SELECT section_id, seat_index FROM seat_claims WHERE event_id = %s",
            (event.event_id,),
        )
        claimed: dict[str, set[int]] = {}
        for section, seat in cursor.fetchall():
            claimed.setdefault(str(section), set()).add(int(seat))
    maps = {}
    for layout in event.venue.layouts:
        taken = claimed.get(layout.section_id, set()) | set(layout.blocked_indices)
        bitmap = _bitmap(layout.seat_count, taken)
        version = versions.get(layout.section_id, 0)
        maps[layout.section_id] = tc.SeatMap(bitmap, layout.seat_count, version)
    return maps


async def _node_maps(
    fetcher: _Fetcher, base_url: str, event: _Event, path: str
) -> dict[str, tc.SeatMap | None]:
    """Every section's map as one node serves it (None: 404, the node does not know it)."""

    async def one(section: str) -> tc.SeatMap | None:
        status, body = await fetcher.get(base_url, path.format(e=event.event_id, s=section))
        if status == 404:
            return None
        if status != 200:
            raise _Unreachable(f"{base_url}{path.format(e=event.event_id, s=section)}: {status}")
        try:
            return tc.SeatMap.decode(body)
        except tc.SeatMapError as exc:
            raise _Unreachable(f"{base_url}: section {section}: undecodable map: {exc}") from exc

    found = await asyncio.gather(*(one(section) for section in event.section_ids))
    return dict(zip(event.section_ids, found, strict=True))


def diff_maps(
    node: str,
    expected: Mapping[str, tc.SeatMap],
    actual: Mapping[str, tc.SeatMap | None],
    seat_ids: Mapping[str, list[str]] | None = None,
) -> list[SectionDiff]:
    """Sections whose map on `node` (`actual`) is not `expected`: another version, other
    seats available, or missing. `seat_ids` names the seats (by index otherwise)."""
    diffs = []
    for section, want in expected.items():
        got = actual.get(section)
        if got is not None and got == want:
            continue
        differing: list[int] = []
        if got is not None:
            flipped = int.from_bytes(want.bitmap(), "little") ^ int.from_bytes(
                got.bitmap(), "little"
            )
            if got.seat_count != want.seat_count:  # another layout: every seat differs
                flipped = (1 << max(want.seat_count, got.seat_count)) - 1
            differing = [seat for seat in range(flipped.bit_length()) if flipped >> seat & 1]
        names = (seat_ids or {}).get(section) or []
        diffs.append(
            SectionDiff(
                node=node,
                section=section,
                expected_version=want.version,
                actual_version=None if got is None else got.version,
                differing=len(differing),
                seats=tuple(
                    names[seat] if seat < len(names) else str(seat)
                    for seat in differing[:_SEATS_SHOWN]
                ),
            )
        )
    return diffs


_SNAPSHOT_PATH: Final = "/v1/events/{e}/sections/{s}/snapshot"
_SECTION_MAP_PATH: Final = "/v1/events/{e}/sections/{s}/seatmap"


async def _compare_once(
    fetcher: _Fetcher, target: AuditTarget, event: _Event
) -> tuple[list[SectionDiff], list[SectionDiff]]:
    """One round: (the writer vs the database, each regional node vs the writer)."""
    writer_maps = await _node_maps(fetcher, target.writer_url, event, _SNAPSHOT_PATH)
    if any(found is None for found in writer_maps.values()):
        raise _Unreachable(f"the writer serves no snapshot of some section of {event.event_id}")
    reference = {section: found for section, found in writer_maps.items() if found is not None}
    names = dict(zip(event.section_ids, event.seat_ids, strict=True))
    writer_diffs: list[SectionDiff] = []
    if target.database_url is not None:
        database = await asyncio.to_thread(_database_maps, target.database_url, event)
        writer_diffs = diff_maps("writer", database, writer_maps, names)
    regional_diffs: list[SectionDiff] = []
    for region, url in target.regional_urls.items():
        maps = await _node_maps(fetcher, url, event, _SECTION_MAP_PATH)
        regional_diffs += diff_maps(f"region {region}", reference, maps, names)
    return writer_diffs, regional_diffs


async def audit_event(
    target: Stack | AuditTarget,
    event_id: str | None = None,
    *,
    converge_s: float = limits.audit_converge_s,
) -> AuditReport:
    """Audit one event (default: a stack's demo event): the database checks for it, then the
    writer's maps against the database and every regional node's against the writer, compared
    again every `limits.audit_retry_s` until they agree or `converge_s` has passed."""
    if isinstance(target, Stack):
        event_id = event_id or target.event_id
        target = AuditTarget.from_stack(target)
    if not event_id:
        raise ValueError("audit_event needs an event id")
    report = AuditReport(event_id=event_id, regions=list(target.regional_urls))
    if target.database_url is not None:
        try:
            report = await asyncio.to_thread(audit, target.database_url, event_id)
        except psycopg.Error as exc:
            report.unreachable.append(f"database: {exc}".strip())
            return report
        report.regions = list(target.regional_urls)
    fetcher = _Fetcher()
    try:
        await _compare_until_equal(fetcher, target, event_id, report, converge_s)
    finally:
        await fetcher.aclose()
    return report


async def _compare_until_equal(
    fetcher: _Fetcher, target: AuditTarget, event_id: str, report: AuditReport, converge_s: float
) -> None:
    started = time.monotonic()
    try:
        event = await _load_event(fetcher, target.writer_url, event_id)
        report.sections = len(event.section_ids)
        while True:
            writer_diffs, regional_diffs = await _compare_once(fetcher, target, event)
            if not writer_diffs and not regional_diffs:
                report.converged_s = time.monotonic() - started
                return
            if time.monotonic() - started >= converge_s:
                report.writer, report.regional = writer_diffs, regional_diffs
                return
            await asyncio.sleep(limits.audit_retry_s)
    except _Unreachable as exc:
        report.unreachable.append(str(exc))
    except (psycopg.Error, VenueError) as exc:
        report.unreachable.append(f"database: {exc}".strip())


# --- `tessera audit` ---

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
DATABASE_URL_ENV: Final = "TESSERA_DATABASE_URL"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `tessera audit` to the CLI's sub-commands (its handler is `main`)."""
    check = subparsers.add_parser(
        "audit",
        help="check the invariants: no oversell, claims match holds and orders, every "
        "region's seat maps equal the writer's",
        description="With --event (or no option at all while `tessera up` runs: its demo "
        "event), audit that event across the database, the writer and every regional node. "
        "With only --database-url, run the database checks over every event. Exit 0 when "
        "everything holds, 1 when something does not (or a node cannot be asked), 2 on a "
        "usage error.",
    )
    check.add_argument(
        "--database-url",
        default=os.environ.get(DATABASE_URL_ENV),
        help=f"postgresql:// URL (default: ${DATABASE_URL_ENV}, else the running stack's)",
    )
    check.add_argument("--event", help="event id (default: the running stack's demo event)")
    check.add_argument(
        "--data-dir", type=Path, help="where `tessera up` keeps stack.json (default: .tessera)"
    )
    check.add_argument("--writer-url", help="the global writer (default: the stack's)")
    check.add_argument(
        "--regional-url",
        action="append",
        default=[],
        metavar="[REGION=]URL",
        help="a regional read node to compare (repeatable; default: every region of the stack)",
    )
    check.add_argument(
        "--converge-s",
        type=float,
        default=limits.audit_converge_s,
        help="how long regional maps may take to catch up (default %(default)s)",
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(handler=main)


def _regional_urls(values: list[str]) -> dict[str, str]:
    urls = {}
    for number, value in enumerate(values, 1):
        name, sep, url = value.partition("=")
        if not sep or "://" in name:
            name, url = f"regional{number}", value
        urls[name] = url
    return urls


def _target(args: argparse.Namespace) -> tuple[AuditTarget, str] | str:
    """The event audit's target and event, or why there is none (a usage error)."""
    stack: Stack | None = None
    if not (args.event and args.writer_url and args.regional_url):
        try:
            stack = read_stack(args.data_dir)
        except FileNotFoundError:
            return "no stack is running (`tessera up`); give --event, --writer-url, --regional-url"
        except (OSError, msgspec.DecodeError) as exc:
            return f"cannot read the stack file: {exc}"
    event_id = args.event or (stack.event_id if stack else "")
    writer_url = args.writer_url or (stack.writer_url if stack else "")
    regional = _regional_urls(args.regional_url) or (
        {region.name: region.regional_url for region in stack.regions} if stack else {}
    )
    database_url = args.database_url or (stack.database_url if stack else None)
    return AuditTarget(writer_url, regional, database_url), event_id


def main(args: argparse.Namespace) -> int:
    """`tessera audit`: print the summary and every problem; exit 0, 1 or 2 (see `register`)."""
    event_wanted = args.event or args.writer_url or args.regional_url or not args.database_url
    if not event_wanted:
        report = audit(args.database_url)
    else:
        found = _target(args)
        if isinstance(found, str):
            print(f"tessera audit: {found}", file=sys.stderr)
            return EXIT_USAGE
        target, event_id = found
        report = asyncio.run(audit_event(target, event_id, converge_s=args.converge_s))
    if args.json:
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(report_json(report))))
        sys.stdout.write("\n")
    else:
        print(report.summary())
        for line in report.details():
            print(f"  {line}")
    return EXIT_OK if report.ok else EXIT_FAILED


def report_json(report: AuditReport) -> dict[str, Any]:
    """The report as plain data (violation rows as lists of strings and numbers)."""
    return {
        "ok": report.ok,
        "event_id": report.event_id,
        "claims": report.claims,
        "sold": report.sold,
        "oversells": report.oversells,
        "violations": {
            name: [[v if isinstance(v, int | float) else str(v) for v in row] for row in rows]
            for name, rows in report.violations.items()
        },
        "writer_diffs": [msgspec.to_builtins(d) for d in report.writer],
        "regional_diffs": [msgspec.to_builtins(d) for d in report.regional],
        "unreachable": report.unreachable,
        "regions": report.regions,
        "sections": report.sections,
        "converged_s": report.converged_s,
    }
