"""The stack the benchmarks run against, and the setup they share (bench/read_path.py,
bench/write_path.py, bench/edge_bench.py; each runs as a script, so `import stack` finds this
file).

- `Stack`: the servers (PostgreSQL, Valkey, NATS from tessera_ops.servers) and services
  (tessera_ops.processes) of one run, in a temporary directory, all stopped at the end, and
  the warnings, errors and exceptions their logs show.
- `start_servers`, `start_bench_writer`: the servers and the global writer, as every bench starts
  them; `create_event` on the writer's admin API.
- `start_stack`: servers, writer, one event on the venue, and a regional read node (read_path,
  edge_bench).
- `sell_and_converge`: sell part of the venue through the writer (`Seller`: concurrent fans, each
  holding best-available seats and buying them; a 503 is retried with the same Idempotency-Key),
  then wait until the node is ready, its section maps equal the writer's snapshots
  (CHECKED_SECTIONS) and its whole-event map equals, byte for byte, the map computed from the
  writer's database (`NAIVE_SQL`, `event_map`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Self, TypeVar

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import uvloop
from loadgen import percentile_ms, pool

import tessera_core as tc
from tessera import auth
from tessera.http1 import HttpError, fetch, header_pairs
from tessera.venue import Venue, load_venue_file
from tessera_ops.processes import ServiceProcess, start_regional, start_writer
from tessera_ops.servers import (
    RunningServer,
    create_database,
    start_nats,
    start_postgres,
    start_valkey,
)

ROOT: Final = Path(__file__).resolve().parent.parent
T = TypeVar("T")
SEED: Final = 20261127
# The read benches' event: holds live an hour (the sale and the runs never see one expire).
HOLD_TTL_S: Final = 3_600
PER_USER_LIMIT: Final = 10
# Setup: fans ask for best-available holds of these sizes (larger than an onsale's typical 2-4,
# so that half the stadium sells in about 8,000 writer requests) and buy every hold.
HOLD_SIZES: Final = (8, 9, 10)
SETUP_CLIENTS: Final = 64
SETUP_LIMIT_S: Final = 120.0
# A hold or order answered 503 ("retry with the same Idempotency-Key") is sent again, this often.
SETUP_ATTEMPTS: Final = 3
CONVERGE_LIMIT_S: Final = 60.0
# Sections whose node map is compared with the writer's snapshot (positions in venue order).
CHECKED_SECTIONS: Final = (0, 24, 49, 74, 99)
HTTP_TIMEOUT_S: Final = 30.0
ADMIN_KEY: Final = "bench-admin-key-" + "k" * 32
JWT_SECRET: Final = "bench-jwt-secret-" + "s" * 32  # a throwaway local secret
JSON_TYPE: Final = "application/json"


# --- the stack ---


@dataclass
class Stack:
    workdir: Path
    venue: Venue
    venue_path: Path
    servers: list[RunningServer] = field(default_factory=list)
    services: list[ServiceProcess] = field(default_factory=list)

    @classmethod
    def create(cls, prefix: str, venue_path: Path) -> Self:
        """A stack in a new temporary directory, for `venue_path`."""
        workdir = Path(tempfile.mkdtemp(prefix=prefix))
        return cls(workdir, load_venue_file(venue_path), venue_path)

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
        for server in reversed(self.servers):
            server.stop()

    def server(self, name: str) -> RunningServer:
        return next(s for s in self.servers if s.name == name)

    def service(self, name: str) -> ServiceProcess:
        found = next(s for s in self.services if s.name == name)
        assert found.process is not None
        return found

    def cpu_groups(self, services: Iterable[str]) -> dict[str, list[int]]:
        """The process trees whose CPU a run reports (loadgen.cpu_seconds): each of `services`,
        PostgreSQL, and Valkey with NATS."""
        groups = {name: [self.pid(name)] for name in services}
        groups["postgres"] = [self.server("postgres").pid]
        groups["valkey+nats"] = [self.server("valkey").pid, self.server("nats").pid]
        return groups

    def pid(self, service: str) -> int:
        process = self.service(service).process
        assert process is not None
        return process.pid

    def log_problems(self) -> dict[str, int]:
        """Warnings, errors and raised exceptions in the service logs, counted by message."""
        found: Counter[str] = Counter()
        for service in self.services:
            try:
                lines = service.log_path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                problem = self.problem(line)
                if problem is not None:
                    found[f"{service.name}: {problem}"] += 1
        return dict(found)

    def problem(self, line: str) -> str | None:
        """The line as counted by `log_problems` if it logs a warning or an error or names a
        raised exception, else None."""
        if _LOGGED.search(line) is not None:
            return line.strip()[:240]
        if _RAISED.match(line):
            return f"  raised {line[:200]}"
        return None


_LOGGED: Final = re.compile(
    r'\b(?:WARNING|ERROR|CRITICAL)\b|"level": ?"(?:warning|error|critical)"'
)
_RAISED: Final = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exhausted)\w*: ")


def run_in_stack(
    stack: Stack, keep: bool, main: Callable[[], Coroutine[Any, Any, T]]
) -> tuple[T, dict[str, int]]:
    """`main()` on uvloop (the load generator must cost far less than what it loads: uvloop's
    sockets and callbacks cost about half asyncio's); on failure, the end of every service's
    log. Then the stack is stopped, its logs' problems counted and its work directory removed
    (unless `keep`)."""
    try:
        result = uvloop.run(main())
    except BaseException:
        for service in stack.services:
            print(f"--- {service.name} log ({service.log_path}) ends:\n{service.log_tail(20)}")
        raise
    finally:
        stack.stop()
        problems = stack.log_problems()
        if keep:
            print(f"work directory kept: {stack.workdir}")
        else:
            shutil.rmtree(stack.workdir, ignore_errors=True)
    return result, problems


def add_stack_args(parser: argparse.ArgumentParser, *, sold: float | None = None) -> None:
    """--venue, --sold (when the bench sells part of the venue first), --keep and --json."""
    parser.add_argument("--venue", type=Path, default=ROOT / "tessera_ops/venues/stadium-70k.json")
    if sold is not None:
        parser.add_argument("--sold", type=float, default=sold, help="share to sell")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--json", type=Path, help="also write the results here")


def print_machine(venue: Venue, sharing: str) -> None:
    print(f"venue: {venue.name}: {len(venue.layouts)} sections, {venue.seat_count:,} seats")
    print(
        f"machine: {os.cpu_count()} cores shared by {sharing}; load average before the run "
        f"{os.getloadavg()[0]:.2f}",
        flush=True,
    )


def start_servers(stack: Stack) -> tuple[RunningServer, RunningServer, RunningServer]:
    """PostgreSQL, Valkey and NATS, in the stack's work directory."""
    print("starting PostgreSQL, Valkey, NATS ...", flush=True)
    postgres = start_postgres(stack.workdir / "postgres")
    stack.servers.append(postgres)
    valkey = start_valkey(stack.workdir / "valkey")
    stack.servers.append(valkey)
    nats = start_nats(stack.workdir / "nats")
    stack.servers.append(nats)
    return postgres, valkey, nats


def start_bench_writer(
    stack: Stack, database: str, valkey: RunningServer, nats: RunningServer
) -> ServiceProcess:
    writer = start_writer(
        stack.workdir / "writer",
        {
            "TESSERA_DATABASE_URL": database,
            "TESSERA_REDIS_URL": valkey.url,
            "TESSERA_NATS_URL": nats.url,
            "TESSERA_ADMIN_KEY": ADMIN_KEY,
            "TESSERA_JWT_SECRET": JWT_SECRET,
        },
    )
    stack.services.append(writer)
    return writer


def create_event(
    writer_url: str, venue_path: Path, *, name: str, hold_ttl_s: int, per_user_limit: int
) -> str:
    body = {
        "name": name,
        "venue": json.loads(venue_path.read_bytes()),
        "onsale_at": "2020-01-01T00:00:00Z",
        "hold_ttl_s": hold_ttl_s,
        "per_user_limit": per_user_limit,
        "home_region": "local",
    }
    request = urllib.request.Request(
        f"{writer_url}/v1/admin/events",
        data=json.dumps(body).encode(),
        headers={"X-Admin-Key": ADMIN_KEY, "Content-Type": JSON_TYPE},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            status, reply = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, reply = error.code, error.read()
    if status != 201:
        raise RuntimeError(f"creating the event failed: {status} {reply.decode(errors='replace')}")
    event_id: str = json.loads(reply)["event_id"]
    return event_id


async def http_get(url: str, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """One GET for the setup (a connection of its own): status and body."""
    answer = await fetch(url, header_pairs(headers), timeout_s=HTTP_TIMEOUT_S)
    return answer.status, answer.body


# --- the event map computed from the writer's database ---

# Every section of the event with its version and the seat indices claimed (held or sold) in it.
NAIVE_SQL: Final = """
SELECT s.position, s.seat_count, s.version,
       array_agg(c.seat_index) FILTER (WHERE c.seat_index IS NOT NULL) AS claimed
FROM sections AS s
LEFT JOIN seat_claims AS c ON c.event_id = s.event_id AND c.section_id = s.section_id
WHERE s.event_id = $1
GROUP BY s.position, s.seat_count, s.version
ORDER BY s.position
"""
_CLEAR_BIT: Final = tuple(0xFF ^ (1 << bit) for bit in range(8))


def unblocked_bitmaps(venue: Venue) -> list[bytes]:
    """Per section, the bitmap with every seat available except the venue's blocked ones."""
    bitmaps = []
    for layout in venue.layouts:
        bits = bytearray(b"\xff" * (layout.seat_count // 8))
        if layout.seat_count % 8:
            bits.append((1 << (layout.seat_count % 8)) - 1)
        for index in layout.blocked_indices:
            bits[index >> 3] &= _CLEAR_BIT[index & 7]
        bitmaps.append(bytes(bits))
    return bitmaps


def event_map(rows: Iterable[Sequence[Any]], unblocked: Sequence[bytes]) -> tuple[bytes, str]:
    """The binary event map and the ETag the node would serve, from NAIVE_SQL's rows."""
    maps = []
    for position, seat_count, version, claimed in rows:
        bits = bytearray(unblocked[position])
        for index in claimed or ():
            bits[index >> 3] &= _CLEAR_BIT[index & 7]
        maps.append(tc.SeatMap(bytes(bits), seat_count, version))
    etag = f'"{tc.version_tag([m.version for m in maps]):016x}"'
    return tc.encode_event(maps), etag


# --- selling part of the venue, and waiting for the node ---


@dataclass
class Sales:
    holds: int = 0
    orders: int = 0
    seats: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    examples: dict[str, str] = field(default_factory=dict)  # a reply body per failure status
    hold_latencies: list[float] = field(default_factory=list, repr=False)
    order_latencies: list[float] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        return {
            "holds": self.holds,
            "orders": self.orders,
            "seats": self.seats,
            "statuses": dict(sorted(self.statuses.items())),
            "failure_examples": self.examples,
            "elapsed_s": self.elapsed_s,
            "hold_p50_ms": percentile_ms(self.hold_latencies, 50),
            "hold_p99_ms": percentile_ms(self.hold_latencies, 99),
            "order_p50_ms": percentile_ms(self.order_latencies, 50),
            "order_p99_ms": percentile_ms(self.order_latencies, 99),
        }


class Seller:
    """Concurrent fans, each holding best-available seats and buying them, until `target_seats`
    have been asked for (the last holds may fall short when the venue is nearly full)."""

    def __init__(self, writer_url: str, event_id: str, target_seats: int) -> None:
        self.pool = pool(writer_url)
        self.writer_url = writer_url
        self.event_id = event_id
        self.target_seats = target_seats
        self.rng = random.Random(SEED)
        self.sales = Sales()
        self.asked = self.fan = 0
        self.deadline = 0.0

    async def run(self, clients: int) -> Sales:
        started = time.perf_counter()
        self.deadline = started + SETUP_LIMIT_S
        await asyncio.gather(*(self.buyer() for _ in range(clients)))
        self.sales.elapsed_s = time.perf_counter() - started
        await self.pool.close()
        return self.sales

    async def call(self, kind: str, path: str, user: str, body: bytes) -> tuple[int, bytes]:
        """POST as `user`; a 503 ("retry with the same Idempotency-Key") is retried."""
        headers = header_pairs(
            {
                "authorization": f"Bearer {auth.mint_token(user, JWT_SECRET)}",
                "idempotency-key": f"{kind}-{user}",
                "content-type": JSON_TYPE,
            }
        )
        sales = self.sales
        begin = time.perf_counter()
        for attempt in range(SETUP_ATTEMPTS):
            try:
                async with asyncio.timeout(HTTP_TIMEOUT_S):
                    answer = await self.pool.request(b"POST", path.encode(), headers, body)
                status, reply = answer.status, answer.body
            except (HttpError, TimeoutError) as error:
                status, reply = 0, type(error).__name__.encode()
            if status == 201 or attempt == SETUP_ATTEMPTS - 1 or status not in (0, 503):
                break
            sales.statuses[f"{kind} {status}, retried"] += 1
            sales.examples.setdefault(f"{kind} {status}", reply[:300].decode(errors="replace"))
            await asyncio.sleep(0.05 * (attempt + 1))
        (sales.hold_latencies if kind == "hold" else sales.order_latencies).append(
            time.perf_counter() - begin
        )
        sales.statuses[f"{kind} {status}"] += 1
        if status != 201:
            sales.examples.setdefault(f"{kind} {status}", reply[:300].decode(errors="replace"))
        return status, reply

    async def buyer(self) -> None:
        sales = self.sales
        while self.asked < self.target_seats and time.perf_counter() < self.deadline:
            quantity = min(self.rng.choice(HOLD_SIZES), max(1, self.target_seats - self.asked))
            self.asked += quantity
            self.fan += 1
            user = f"fan-{self.fan:06d}"
            body = json.dumps({"best_available": {"quantity": quantity}}).encode()
            status, reply = await self.call("hold", f"/v1/events/{self.event_id}/holds", user, body)
            if status != 201:
                continue
            sales.holds += 1
            hold = json.loads(reply)
            order = json.dumps({"hold_id": hold["hold_id"], "payment_token": "tok_approve"})
            path = f"/v1/events/{self.event_id}/orders"
            status, _ = await self.call("order", path, user, order.encode())
            if status == 201:
                sales.orders += 1
                sales.seats += len(hold["seats"])


async def converge(
    stack: Stack,
    *,
    node_url: str,
    writer_url: str,
    database_url: str,
    event_id: str,
) -> tuple[bytes, float, int]:
    """Wait until the node is ready, matches the writer's snapshots of CHECKED_SECTIONS and serves
    the event map computed from the database, byte for byte. Returns that map, the wait and the
    number of claimed (held or sold) seats in the database."""
    started = time.perf_counter()
    deadline = started + CONVERGE_LIMIT_S
    unblocked = unblocked_bitmaps(stack.venue)
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(NAIVE_SQL, uuid.UUID(event_id))
    finally:
        await conn.close()
    expected, _ = event_map(rows, unblocked)
    claimed = sum(len(row["claimed"] or ()) for row in rows)
    plain = {"accept-encoding": "identity"}
    problem = ""
    while time.perf_counter() < deadline:
        ready, text = await http_get(f"{node_url}/readyz")
        if ready != 200:
            problem = f"/readyz {ready} {text.decode(errors='replace')}"
            await asyncio.sleep(0.1)
            continue
        problem = ""
        for position in CHECKED_SECTIONS:
            section = stack.venue.layouts[position].section_id
            path = f"/v1/events/{event_id}/sections/{section}"
            want_status, want = await http_get(f"{writer_url}{path}/snapshot")
            got_status, got = await http_get(f"{node_url}{path}/seatmap", plain)
            if want_status != 200 or got_status != 200:
                problem = f"section {section}: writer {want_status}, node {got_status}"
                break
            w, g = tc.SeatMap.decode(want), tc.SeatMap.decode(got)
            if w.version != g.version or w.bitmap() != g.bitmap():
                problem = f"section {section}: writer v{w.version}, node v{g.version}"
                break
        if not problem:
            _, whole = await http_get(f"{node_url}/v1/events/{event_id}/seatmap", plain)
            if whole == expected:
                return expected, time.perf_counter() - started, claimed
            problem = "the node's event map differs from the database's"
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the node did not converge in {CONVERGE_LIMIT_S:.0f} s: {problem}")


# --- Prometheus text ---


def metrics_counts(text: str, route: str) -> dict[str, float]:
    """Requests by status on `route` from a service's Prometheus text (its request-latency
    histogram's counts)."""
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("tessera_http_request_duration_seconds_count{") and (
            f'route="{route}"' in line
        ):
            status = re.search(r'status="(\d+)"', line)
            if status:
                counts[status.group(1)] = counts.get(status.group(1), 0) + float(line.split()[-1])
    return counts


async def metrics_text(url: str) -> str:
    _, body = await http_get(f"{url}/metrics")
    return body.decode(errors="replace")


def metric_value(text: str, name: str) -> float:
    """A tessera_feed_* counter's value from the node's Prometheus text (0 when absent)."""
    found = re.search(rf"^tessera_feed_{name}_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


# --- the read stack: servers, writer, event, node ---


async def start_stack(
    stack: Stack,
    *,
    database_name: str,
    event_name: str,
    hold_ttl_s: int = HOLD_TTL_S,
    per_user_limit: int = PER_USER_LIMIT,
) -> tuple[str, ServiceProcess, ServiceProcess, str]:
    """PostgreSQL, Valkey, NATS, the writer, the event, then the node: (database URL, writer,
    node, event id)."""
    started = time.perf_counter()
    postgres, valkey, nats = start_servers(stack)
    database = create_database(postgres.url, database_name)
    writer = start_bench_writer(stack, database, valkey, nats)
    event_id = create_event(
        writer.url,
        stack.venue_path,
        name=event_name,
        hold_ttl_s=hold_ttl_s,
        per_user_limit=per_user_limit,
    )
    node = start_regional(
        stack.workdir / "regional",
        {
            "TESSERA_NATS_URL": nats.url,
            "TESSERA_WRITER_URL": writer.url,
            "TESSERA_JWT_SECRET": JWT_SECRET,
        },
    )
    stack.services.append(node)
    print(
        f"stack up in {time.perf_counter() - started:.1f} s: writer {writer.url}, node "
        f"{node.url}, PostgreSQL {postgres.url}; event {event_id}",
        flush=True,
    )
    return database, writer, node, event_id


async def sell_and_converge(
    sold: float,
    stack: Stack,
    *,
    database: str,
    writer: ServiceProcess,
    node: ServiceProcess,
    event_id: str,
) -> tuple[bytes, dict[str, Any]]:
    """Sell through the writer, wait for the node: the expected event map, and what happened."""
    deadline = time.perf_counter() + CONVERGE_LIMIT_S
    while (await http_get(f"{node.url}/v1/events/{event_id}/seatmap"))[0] != 200:
        if time.perf_counter() > deadline:
            raise RuntimeError("the node never learnt of the event")
        await asyncio.sleep(0.05)
    resyncs_before = metric_value(await metrics_text(node.url), "resyncs")
    target = round(stack.venue.seat_count * sold)
    print(
        f"selling {target:,} seats through the writer: {SETUP_CLIENTS} concurrent fans, "
        f"best-available holds of {HOLD_SIZES[0]}-{HOLD_SIZES[-1]} seats, each bought ...",
        flush=True,
    )
    sales = await Seller(writer.url, event_id, target).run(SETUP_CLIENTS)
    done = sales.summary()
    print(
        f"  {sales.holds:,} holds, {sales.orders:,} orders, {sales.seats:,} seats sold in "
        f"{sales.elapsed_s:.1f} s ({(sales.holds + sales.orders) / sales.elapsed_s:,.0f} "
        f"writer requests/s; hold p50/p99 {done['hold_p50_ms']:.0f}/"
        f"{done['hold_p99_ms']:.0f} ms, order {done['order_p50_ms']:.0f}/"
        f"{done['order_p99_ms']:.0f} ms); statuses {done['statuses']}"
        + "".join(f"\n    {k}: {v}" for k, v in sales.examples.items()),
        flush=True,
    )
    expected, waited, claimed = await converge(
        stack,
        node_url=node.url,
        writer_url=writer.url,
        database_url=database,
        event_id=event_id,
    )
    node_metrics = await metrics_text(node.url)
    resyncs = metric_value(node_metrics, "resyncs") - resyncs_before
    print(
        f"node caught up {waited:.2f} s after the last sale: /readyz 200, sections "
        f"{', '.join(stack.venue.layouts[p].section_id for p in CHECKED_SECTIONS)} equal to the "
        f"writer's snapshots, whole-event map equal to the database's ({len(expected):,} B; "
        f"{claimed:,} seats claimed = {claimed / stack.venue.seat_count:.1%} of the venue); "
        f"resyncs during the sale {resyncs:g}, duplicates "
        f"{metric_value(node_metrics, 'duplicates'):g}, malformed "
        f"{metric_value(node_metrics, 'malformed'):g}",
        flush=True,
    )
    info: dict[str, Any] = {
        "event_id": event_id,
        "sales": done,
        "converge_s": waited,
        "claimed_seats": claimed,
        "resyncs_during_sale": resyncs,
    }
    return expected, info


@dataclass
class SoldStack:
    """The read stack after the sale: the writer's database URL, the writer, the node, the event,
    the event map the node serves (identity) and what happened (`sell_and_converge`)."""

    database: str
    writer: ServiceProcess
    node: ServiceProcess
    event_id: str
    expected: bytes
    info: dict[str, Any]


async def start_sold_stack(stack: Stack, sold: float, *, name: str) -> SoldStack:
    """`start_stack` (database `bench_<name>`, event "<name> bench"), then `sell_and_converge`."""
    database, writer, node, event_id = await start_stack(
        stack, database_name=f"bench_{name}", event_name=f"{name} bench"
    )
    expected, info = await sell_and_converge(
        sold, stack, database=database, writer=writer, node=node, event_id=event_id
    )
    return SoldStack(database, writer, node, event_id, expected, info)
