"""The write path under contention: Tessera's global writer against a textbook row-locking
baseline, on the same PostgreSQL, in one run, on the 70,000-seat stadium.

    .venv/bin/python bench/write_path.py [--clients 64,256,512] [--requests 6000] [--json OUT]

Starts its own PostgreSQL, Valkey and NATS (tessera_ops.servers, in a temporary directory,
all stopped at the end), one fresh database per side, then:

- Tessera: `python -m global_writer` (start_writer), one event per run (onsale in the past,
  hold_ttl_s 600, per_user_limit 8), holds through `POST /v1/events/{event}/holds`.
- Baseline: the textbook design's hold-only Litestar app (bench/baselines/textbook.py,
  `create_hold_only_app`), served by Granian in a subprocess
  (`bench/write_path.py --serve-baseline ...`) with the writer's Granian settings. Table
  `seats(event, section, seat_index, status, hold_id, user_id)`, one row per stadium seat and a
  fresh event per run. `POST /v1/events/{event}/holds` is the textbook hold: one READ COMMITTED
  transaction per request, `SELECT … WHERE (section, seat_index) IN (…) ORDER BY … FOR UPDATE`,
  all available? `UPDATE` them to held and commit (201), else roll back (409).

Both sides get the same requests, byte for byte: 2-seat explicit holds (`{"seats": [a, b]}`),
a Bearer token (many distinct users), a unique Idempotency-Key. The pair is drawn with Zipf skew
from the pairs that start at the venue's best 5,000 seats (row rank, then nearness to the row's
middle), so popular pairs collide, and the same request stream is replayed against each side.

1. Closed loop, C clients each sending its next request as soon as the last one is answered, for
   each C: successful holds/s, requests/s, p50/p99 latency (all requests, and successful ones),
   409s, every other status (5xx and transport errors counted separately), CPU used per process.
2. After each run, the audit: Tessera's `tessera_ops.audit.audit` and, for both sides, the
   holds the clients were told they got (201) checked against the database: no seat in two
   successful holds, every acknowledged seat held by its hold, and the count of held seats.
3. Open loop against Tessera at half its peak request rate (the requests/s of its run with the
   most holds/s): Poisson arrivals, each latency counted from the scheduled send time, so a late
   load generator shows up as latency, not as a lower rate.

Prints a markdown table (measure | tessera | baseline | ratio | target | met) and exits 1 if a
target is missed; `--json OUT` also writes every run. The load generator (one asyncio loop in this
process; a minimal keep-alive HTTP/1.1 client by default, `--client httpx` for httpx, see "the
load generator" below) runs on the same 2 cores as every server: each run prints the cores each
process used, the connections the load generator opened and the PostgreSQL sessions the server
under test opened. Fairness: the baseline verifies the same JWT and parses the same seat ids,
but keeps no idempotency keys, hold rows, outbox, Redis mirror or NATS feed, and uses asyncpg
directly: it does less work per request than the writer, so the comparison favours it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import random
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final

import httpx
import loadgen
import msgspec
import psycopg
from baselines import textbook
from baselines.common import ENV_DATABASE, ENV_POOL, ENV_SECRET, ENV_VENUE
from baselines.textbook import hold_only_event, hold_only_schema
from loadgen import (
    REQUEST_TIMEOUT_S,
    percentile_ms,
    print_table,
    serve,
    start_script_server,
    write_json,
)
from stack import (
    HTTP_TIMEOUT_S,
    JSON_TYPE,
    JWT_SECRET,
    Stack,
    add_stack_args,
    create_event,
    print_machine,
    run_in_stack,
    start_bench_writer,
    start_servers,
)

from global_writer.db.engine import MAX_OVERFLOW_DEFAULT, POOL_SIZE_DEFAULT
from tessera import auth, limits
from tessera.http1 import HttpError, Pool, header_pairs
from tessera.venue import Venue
from tessera_ops.audit import audit
from tessera_ops.processes import ServiceProcess
from tessera_ops.servers import create_database

SEED: Final = 20261127
HOT_SEATS: Final = 5_000
SEATS_PER_HOLD: Final = 2
ZIPF_S: Final = 0.8
CLIENTS: Final = (64, 256, 512)
REQUESTS_PER_RUN: Final = 6_000
# A closed-loop run stops sending after this long even if its requests are not all sent.
RUN_LIMIT_S: Final = 30.0
OPEN_LOOP_S: Final = 10.0
# Distinct fans. Request i comes from user i % USERS; with 2-seat holds and per_user_limit 8, a
# user may win 4 holds, so runs of up to 4 * USERS requests never hit the per-user limit.
USERS: Final = 10_000
HOLD_TTL_S: Final = 600
PER_USER_LIMIT: Final = 8
# Targets (the issue's): holds/s at peak at least 5 times the baseline's; p99 ≤ 50 ms at half
# of the writer's peak rate.
PEAK_RATIO_MIN: Final = 5.0
HALF_PEAK_P99_MS_MAX: Final = 50.0
# Baseline server: the writer's Granian settings (one worker); an asyncpg pool as large as the
# writer's SQLAlchemy pool can grow (10 + 10 overflow).
BASELINE_WORKERS: Final = 1
BASELINE_POOL: Final = textbook.POOL_SIZE


# --- the baseline server: bench/baselines/textbook.py's hold-only app, in its own process ---


def serve_baseline(port: int, database_url: str, venue: Path, pool: int, workers: int) -> None:
    os.environ[ENV_DATABASE] = database_url
    os.environ[ENV_VENUE] = str(venue.resolve())
    os.environ.setdefault(ENV_SECRET, JWT_SECRET)
    os.environ[ENV_POOL] = str(pool)
    serve("baselines.textbook:create_hold_only_app", port, workers)


# --- the workload ---


def hot_pairs(venue: Venue, count: int) -> list[tuple[str, str]]:
    """Adjacent pairs starting at the `count` best seats: best row rank, then the seat nearest
    the row's middle. Seats next to a blocked seat are left out."""
    starts: list[tuple[int, float, int, int]] = []
    for position, layout in enumerate(venue.layouts):
        blocked = set(layout.blocked_indices)
        for row_start, length, rank in zip(
            layout.row_starts, layout.row_lengths, layout.row_ranks, strict=True
        ):
            middle = (length - 2) / 2
            for offset in range(length - 1):
                index = row_start + offset
                if index not in blocked and index + 1 not in blocked:
                    starts.append((rank, abs(offset - middle), position, index))
    starts.sort()
    return [
        (venue.layouts[p].seat_id(i), venue.layouts[p].seat_id(i + 1))
        for _, _, p, i in starts[:count]
    ]


@dataclass(frozen=True)
class HoldRequest:
    body: bytes
    seats: tuple[str, ...]
    user: int
    key: str


class Workload:
    def __init__(self, pairs: Sequence[tuple[str, str]], zipf_s: float) -> None:
        self.pairs = list(pairs)
        self.bodies = [
            json.dumps({"seats": list(p)}, separators=(",", ":")).encode() for p in pairs
        ]
        self.cum_weights = list(
            itertools.accumulate(1 / (r + 1) ** zipf_s for r in range(len(pairs)))
        )

    def stream(self, label: str, count: int, seed: int) -> list[HoldRequest]:
        rng = random.Random(seed)
        ranks = rng.choices(range(len(self.pairs)), cum_weights=self.cum_weights, k=count)
        return [
            HoldRequest(self.bodies[r], self.pairs[r], i % USERS, f"{label}-{i}-{uuid.uuid4().hex}")
            for i, r in enumerate(ranks)
        ]


# --- the load generator ---
#
# Every simulated fan owns one keep-alive connection. Two implementations: "raw", the house's
# HTTP/1.1 client (tessera/http1.py: a pool of one connection per fan, the default), and "httpx",
# one httpx.AsyncClient per fan (one connection each). aiohttp is not installed. A single pooled
# httpx.AsyncClient was measured on this machine at ~350 requests/s with 64 connections while using
# a whole core (the pool's bookkeeping grows with its size), and even one client per fan costs ~0.5
# ms of CPU per request (~1,600 requests/s per core), so with httpx the load generator, not the
# servers, would set the peak; the raw client costs ~0.05 ms per request.


class HoldReply(msgspec.Struct):
    hold_id: str
    seats: list[str]


_reply_decoder: Final = msgspec.json.Decoder(HoldReply)


@dataclass
class Sample:
    status: int  # 0: transport error
    latency_s: float
    hold_id: str = ""
    seats: tuple[str, ...] = ()
    error: str = ""


class TransportError(Exception):
    """No answer (refused, reset, timed out, malformed), whichever client."""


class HttpxConnection:
    def __init__(self, base_url: str) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=HTTP_TIMEOUT_S,
        )

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        try:
            response = await self.http.request(method, path, headers=headers, content=body)
        except httpx.HTTPError as error:
            raise TransportError(type(error).__name__) from error
        return response.status_code, response.content

    async def close(self) -> None:
        await self.http.aclose()


class Client:
    """Connections to one server, one per concurrent request, and the hold request itself."""

    def __init__(self, base_url: str, kind: str, tokens: Sequence[str]) -> None:
        self.base_url = base_url
        self.kind = kind
        self.auth = [f"Bearer {token}" for token in tokens]
        self.idle: list[Pool | HttpxConnection] = []
        self.opened = 0

    def _new(self) -> Pool | HttpxConnection:
        self.opened += 1
        if self.kind == "raw":
            return Pool(self.base_url, connections_max=1, timeout_s=REQUEST_TIMEOUT_S)
        return HttpxConnection(self.base_url)

    def acquire(self) -> Pool | HttpxConnection:
        return self.idle.pop() if self.idle else self._new()

    def release(self, connection: Pool | HttpxConnection) -> None:
        self.idle.append(connection)

    async def send(
        self,
        connection: Pool | HttpxConnection,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes = b"",
    ) -> tuple[int, bytes]:
        if isinstance(connection, HttpxConnection):
            return await connection.request(method, path, headers, body)
        try:
            answer = await connection.request(
                method.encode(), path.encode(), header_pairs(headers), body
            )
        except HttpError as error:
            raise TransportError(type(error).__name__) from error
        return answer.status, answer.body

    async def warm_up(self, connections: int) -> None:
        """Open (and use once) this many connections before the clock starts."""
        opened = [self.acquire() for _ in range(connections - len(self.idle))]
        await asyncio.gather(*(self.send(c, "GET", "/readyz", {}) for c in opened))
        self.idle.extend(opened)

    async def hold(self, path: str, request: HoldRequest, started: float | None = None) -> Sample:
        headers = {
            "authorization": self.auth[request.user],
            "idempotency-key": request.key,
            "content-type": JSON_TYPE,
        }
        connection = self.acquire()
        begin = time.perf_counter() if started is None else started
        try:
            status, body = await self.send(connection, "POST", path, headers, request.body)
        except TransportError as error:
            return Sample(0, time.perf_counter() - begin, error=str(error))
        finally:
            self.release(connection)
        latency = time.perf_counter() - begin
        if status == 201:
            reply = _reply_decoder.decode(body)
            return Sample(201, latency, reply.hold_id, tuple(reply.seats))
        return Sample(status, latency)

    async def close(self) -> None:
        idle, self.idle = self.idle, []
        await asyncio.gather(*(c.close() for c in idle))


async def closed_loop(
    client: Client, path: str, stream: Sequence[HoldRequest], clients: int
) -> tuple[list[Sample], float, list[float]]:
    """`clients` fans, each sending its next request as soon as the last one is answered."""
    samples: list[Sample] = []
    position = 0
    deadline = time.perf_counter() + RUN_LIMIT_S

    async def fan() -> None:
        nonlocal position
        while position < len(stream) and time.perf_counter() < deadline:
            request = stream[position]
            position += 1
            samples.append(await client.hold(path, request))

    started = time.perf_counter()
    await asyncio.gather(*(fan() for _ in range(clients)))
    return samples, time.perf_counter() - started, []


async def open_loop(
    client: Client, path: str, stream: Sequence[HoldRequest], rate: float, seconds: float
) -> tuple[list[Sample], float, list[float]]:
    """Poisson arrivals at `rate`/s for `seconds`, each on an idle connection (a new one if none
    is idle); each latency counts from its scheduled time. Returns the samples, the elapsed time
    and how late each request left (dispatcher lag)."""
    rng = random.Random(SEED + 99)
    arrivals: list[float] = []
    at = 0.0
    while True:
        at += rng.expovariate(rate)
        if at >= seconds or len(arrivals) >= len(stream):
            break
        arrivals.append(at)
    tasks: list[asyncio.Task[Sample]] = []
    lags: list[float] = []
    origin = time.perf_counter()
    for request, offset in zip(stream, arrivals, strict=False):
        delay = origin + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(max(0.0, time.perf_counter() - origin - offset))
        tasks.append(asyncio.create_task(client.hold(path, request, origin + offset)))
    samples = list(await asyncio.gather(*tasks))
    return samples, time.perf_counter() - origin, lags


@dataclass
class Check:
    """The holds the clients were told they got, against the database after the run."""

    acknowledged_holds: int = 0
    held_seats_in_db: int = 0
    seats_in_two_holds: int = 0  # a seat in two successful (201) replies: an oversell
    seats_not_held_by_their_hold: int = 0  # a 201 the database does not show: also an oversell
    unacknowledged_holds_in_db: int = 0  # held in the database, never answered 201
    audit_violations: dict[str, int] = field(default_factory=dict)

    @property
    def oversells(self) -> int:
        return (
            self.seats_in_two_holds
            + self.seats_not_held_by_their_hold
            + sum(self.audit_violations.values())
        )


@dataclass
class Run:
    side: str
    mode: str
    clients: int
    requests: int
    elapsed_s: float
    holds: int
    conflicts: int
    statuses: dict[str, int]
    requests_per_s: float
    holds_per_s: float
    p50_ms: float
    p99_ms: float
    p50_ok_ms: float
    p99_ok_ms: float
    server_errors: int
    cpu_cores: dict[str, float]
    check: Check = field(default_factory=Check)
    arrival_rate: float = 0.0
    dispatch_lag_p99_ms: float = 0.0
    connections_opened: int = 0  # by the load generator, warm-up included
    db_sessions_opened: int = 0  # PostgreSQL sessions the server under test opened in the run


def summarize(
    side: str,
    mode: str,
    clients: int,
    samples: list[Sample],
    *,
    elapsed: float,
    cpu: dict[str, float],
) -> Run:
    statuses = Counter(str(s.status) if s.status else f"transport:{s.error}" for s in samples)
    ok = [s.latency_s for s in samples if s.status == 201]
    every = [s.latency_s for s in samples]
    return Run(
        side=side,
        mode=mode,
        clients=clients,
        requests=len(samples),
        elapsed_s=elapsed,
        holds=len(ok),
        conflicts=statuses.get("409", 0),
        statuses=dict(sorted(statuses.items())),
        requests_per_s=len(samples) / elapsed,
        holds_per_s=len(ok) / elapsed,
        p50_ms=percentile_ms(every, 50),
        p99_ms=percentile_ms(every, 99),
        p50_ok_ms=percentile_ms(ok, 50),
        p99_ok_ms=percentile_ms(ok, 99),
        server_errors=sum(1 for s in samples if s.status == 0 or s.status >= 500),
        cpu_cores={name: seconds / elapsed for name, seconds in cpu.items()},
    )


def check_holds(samples: list[Sample], held: list[tuple[str, str]]) -> Check:
    """`held`: (hold id, seat id) of every seat the database shows held for the run's event."""
    check = Check(held_seats_in_db=len(held))
    holder = {seat: hold_id for hold_id, seat in held}
    acknowledged: dict[str, str] = {}
    hold_ids: set[str] = set()
    for sample in samples:
        if sample.status != 201:
            continue
        check.acknowledged_holds += 1
        hold_ids.add(sample.hold_id)
        for seat in sample.seats:
            if seat in acknowledged:
                check.seats_in_two_holds += 1
            acknowledged[seat] = sample.hold_id
            if holder.get(seat) != sample.hold_id:
                check.seats_not_held_by_their_hold += 1
    check.unacknowledged_holds_in_db = len({h for h, _ in held} - hold_ids)
    return check


def tessera_held(database_url: str, venue: Venue, event_id: str) -> list[tuple[str, str]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT hold_id::text, section_id, seat_index FROM seat_claims WHERE event_id = %s",
            (event_id,),
        ).fetchall()
    return [(h, venue.section(s).seat_id(i)) for h, s, i in rows]


def baseline_held(database_url: str, venue: Venue, event: str) -> tuple[list[tuple[str, str]], int]:
    """Held seats of `event`, and how many holds do not have exactly SEATS_PER_HOLD seats."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT hold_id::text, section, seat_index FROM seats "
            "WHERE event = %s AND status = 'held'",
            (event,),
        ).fetchall()
        odd = conn.execute(
            "SELECT count(*) FROM (SELECT hold_id FROM seats WHERE event = %s AND status = 'held'"
            " GROUP BY hold_id HAVING count(*) <> %s) AS odd",
            (event, SEATS_PER_HOLD),
        ).fetchone()
    return [(h, venue.section(s).seat_id(i)) for h, s, i in rows], int(odd[0]) if odd else 0


# --- the run ---


@dataclass
class WriteStack(Stack):
    tessera_url: str = ""
    baseline_url: str = ""

    def problem(self, line: str) -> str | None:
        """Log lines of the writer's and Granian's formats at warning level or above, and raised
        exceptions."""
        logged = _LOGGED.match(line)
        if logged is not None:
            level = logged["l1"] or logged["l2"]
            return f"{level} {logged['message'][:200]}"
        if _RAISED.match(line):
            return f"  raised {line[:200]}"
        return None


_LOGGED: Final = re.compile(
    r"^(?:\[(?P<l1>WARNING|ERROR|CRITICAL)\] |(?P<l2>WARNING|ERROR|CRITICAL) - [-\d]+ [\d:,]+ - )"
    r"(?P<message>.*)$"
)
_RAISED: Final = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exhausted|Lease)\w*: ")


def start_baseline(stack: Stack, database_url: str, pool: int, workers: int) -> ServiceProcess:
    flags = ["--serve-baseline", "--database-url", database_url, "--venue", str(stack.venue_path)]
    flags += ["--baseline-pool", str(pool), "--baseline-workers", str(workers)]
    return start_script_server(
        stack.workdir, "baseline", Path(__file__), flags, {ENV_SECRET: JWT_SECRET}
    )


def new_event(stack: WriteStack) -> str:
    """A fresh event on the stadium in the writer (one per Tessera run)."""
    return create_event(
        stack.tessera_url,
        stack.venue_path,
        name="Write path bench",
        hold_ttl_s=HOLD_TTL_S,
        per_user_limit=PER_USER_LIMIT,
    )


def cpu_seconds(groups: Mapping[str, Iterable[int]]) -> dict[str, float]:
    """CPU seconds so far of each group of process trees, and of this process (the load
    generator)."""
    used = loadgen.cpu_seconds(groups)
    return {name: used[name] for name in groups} | {"load generator": used["bench process"]}


@dataclass
class Bench:
    stack: WriteStack
    workload: Workload
    tokens: list[str]
    tessera_db: str
    baseline_db: str
    cpu_groups: dict[str, list[int]]
    client_kind: str
    runs: list[Run] = field(default_factory=list)

    async def measure(
        self,
        side: str,
        mode: str,
        connections: int,
        run: Callable[[Client], Awaitable[tuple[list[Sample], float, list[float]]]],
    ) -> tuple[Run, list[Sample]]:
        """Warm up `connections`, then time `run`; the run's statistics and its samples."""
        base = self.stack.tessera_url if side == "tessera" else self.stack.baseline_url
        database = self.tessera_db if side == "tessera" else self.baseline_db
        client = Client(base, self.client_kind, self.tokens)
        try:
            await client.warm_up(connections)
            sessions = db_sessions(database)
            before = cpu_seconds(self.cpu_groups)
            samples, elapsed, lags = await run(client)
            after = cpu_seconds(self.cpu_groups)
            # Backends report their counters at most once a second: let them.
            await asyncio.sleep(1.5)
            sessions = db_sessions(database) - sessions - 1  # not our own query's session
        finally:
            await client.close()
        cpu = {name: after[name] - before[name] for name in after}
        result = summarize(side, mode, connections, samples, elapsed=elapsed, cpu=cpu)
        result.db_sessions_opened = sessions
        result.connections_opened = client.opened
        if lags:
            result.dispatch_lag_p99_ms = percentile_ms(lags, 99)
        return result, samples

    async def tessera_closed(self, clients: int, stream: list[HoldRequest]) -> Run:
        event_id = new_event(self.stack)
        path = f"/v1/events/{event_id}/holds"
        run, samples = await self.measure(
            "tessera", "closed", clients, lambda c: closed_loop(c, path, stream, clients)
        )
        run.check = self.tessera_check(samples, event_id)
        return run

    def tessera_check(self, samples: list[Sample], event_id: str) -> Check:
        check = check_holds(samples, tessera_held(self.tessera_db, self.stack.venue, event_id))
        report = audit(self.tessera_db)
        check.audit_violations = {name: len(rows) for name, rows in report.violations.items()}
        return check

    async def baseline_closed(self, clients: int, stream: list[HoldRequest]) -> Run:
        event = f"stadium-c{clients}"
        hold_only_event(self.baseline_db, self.stack.venue, event)
        path = f"/v1/events/{event}/holds"
        run, samples = await self.measure(
            "baseline", "closed", clients, lambda c: closed_loop(c, path, stream, clients)
        )
        held, odd = baseline_held(self.baseline_db, self.stack.venue, event)
        run.check = check_holds(samples, held)
        run.check.audit_violations = {"hold_without_exactly_2_seats": odd}
        return run

    async def tessera_open(self, rate: float, seconds: float, stream: list[HoldRequest]) -> Run:
        event_id = new_event(self.stack)
        path = f"/v1/events/{event_id}/holds"
        # 64 connections are opened before the clock starts; more if that many are busy.
        run, samples = await self.measure(
            "tessera", "open", 64, lambda c: open_loop(c, path, stream, rate, seconds)
        )
        run.arrival_rate = rate
        run.check = self.tessera_check(samples, event_id)
        return run


def db_sessions(database_url: str) -> int:
    """Sessions (connections) ever opened to this database (pg_stat_database, PostgreSQL 14+)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def print_run(run: Run) -> None:
    statuses = ", ".join(f"{k}: {v:,}" for k, v in run.statuses.items())
    cores = ", ".join(f"{k} {v:.2f}" for k, v in run.cpu_cores.items())
    label = f"C={run.clients}" if run.mode == "closed" else f"open loop {run.arrival_rate:,.0f}/s"
    print(
        f"  {run.side:8} {label}: {run.requests:,} requests in {run.elapsed_s:.2f} s = "
        f"{run.requests_per_s:,.0f} req/s, {run.holds:,} holds = {run.holds_per_s:,.0f} holds/s; "
        f"p50/p99 {run.p50_ms:.1f}/{run.p99_ms:.1f} ms (201s: {run.p50_ok_ms:.1f}/"
        f"{run.p99_ok_ms:.1f} ms); statuses {{{statuses}}}"
    )
    lag = f", dispatcher lag p99 {run.dispatch_lag_p99_ms:.1f} ms" if run.mode == "open" else ""
    print(
        f"           cores used: {cores}; client connections {run.connections_opened:,}, "
        f"PostgreSQL sessions opened by the server {run.db_sessions_opened:,}{lag}"
    )
    check = run.check
    violations = {k: v for k, v in check.audit_violations.items() if v}
    print(
        f"           audit: {check.acknowledged_holds:,} holds acknowledged, "
        f"{check.held_seats_in_db:,} seats held in the database, {check.seats_in_two_holds} "
        f"seats in two 201s, {check.seats_not_held_by_their_hold} acknowledged seats not held, "
        f"{check.unacknowledged_holds_in_db} unacknowledged holds, "
        f"violations {violations or 'none'}",
        flush=True,
    )


@dataclass
class Row:
    name: str
    tessera: str
    baseline: str
    ratio: str
    target: str = ""
    met: bool | None = None


def table(runs: list[Run]) -> list[Row]:
    rows: list[Row] = []
    closed = [r for r in runs if r.mode == "closed"]
    for clients in sorted({r.clients for r in closed}):
        t = next(r for r in closed if r.side == "tessera" and r.clients == clients)
        b = next(r for r in closed if r.side == "baseline" and r.clients == clients)
        rows.append(
            Row(
                f"successful holds/s, C={clients}",
                f"{t.holds_per_s:,.0f}",
                f"{b.holds_per_s:,.0f}",
                f"{t.holds_per_s / b.holds_per_s:.1f}×" if b.holds_per_s else "—",
            )
        )
        rows.append(
            Row(
                f"requests/s; p50 / p99 ms (all), C={clients}",
                f"{t.requests_per_s:,.0f}; {t.p50_ms:.0f} / {t.p99_ms:.0f}",
                f"{b.requests_per_s:,.0f}; {b.p50_ms:.0f} / {b.p99_ms:.0f}",
                f"{t.requests_per_s / b.requests_per_s:.1f}×" if b.requests_per_s else "—",
            )
        )
    t_peak = max((r for r in closed if r.side == "tessera"), key=lambda r: r.holds_per_s)
    b_peak = max((r for r in closed if r.side == "baseline"), key=lambda r: r.holds_per_s)
    ratio = t_peak.holds_per_s / b_peak.holds_per_s if b_peak.holds_per_s else math.inf
    rows.append(
        Row(
            "**holds/s at peak** (best C of each side)",
            f"{t_peak.holds_per_s:,.0f} (C={t_peak.clients})",
            f"{b_peak.holds_per_s:,.0f} (C={b_peak.clients})",
            f"{ratio:.1f}×",
            f"≥ {PEAK_RATIO_MIN:.0f}× baseline",
            ratio >= PEAK_RATIO_MIN,
        )
    )
    for run in (r for r in runs if r.mode == "open"):
        rows.append(
            Row(
                f"**p99 at half peak** ({run.arrival_rate:,.0f} req/s open loop; p50, p99 of 201s)",
                f"{run.p99_ms:.1f} ms (p50 {run.p50_ms:.1f}; 201s {run.p99_ok_ms:.1f})",
                "—",
                "",
                f"≤ {HALF_PEAK_P99_MS_MAX:.0f} ms",
                run.p99_ms <= HALF_PEAK_P99_MS_MAX,
            )
        )
    t_over = sum(r.check.oversells for r in runs if r.side == "tessera")
    b_over = sum(r.check.oversells for r in runs if r.side == "baseline")
    rows.append(
        Row(
            "**oversells** (audit after every run)",
            str(t_over),
            str(b_over),
            "",
            "0 both",
            t_over == 0 and b_over == 0,
        )
    )
    t_5xx = sum(r.server_errors for r in runs if r.side == "tessera")
    b_5xx = sum(r.server_errors for r in runs if r.side == "baseline")
    rows.append(
        Row(
            "5xx and transport errors",
            str(t_5xx),
            str(b_5xx),
            "",
            "0 both",
            t_5xx == 0 and b_5xx == 0,
        )
    )
    return rows


async def bench(args: argparse.Namespace, stack: WriteStack) -> list[Run]:
    postgres, valkey, nats = start_servers(stack)
    tessera_db = create_database(postgres.url, "bench_tessera")
    baseline_db = create_database(postgres.url, "bench_baseline")
    hold_only_schema(baseline_db)
    writer = start_bench_writer(stack, tessera_db, valkey, nats)
    stack.tessera_url = writer.url
    baseline = start_baseline(stack, baseline_db, args.baseline_pool, args.baseline_workers)
    stack.services.append(baseline)
    stack.baseline_url = baseline.url
    assert writer.process is not None
    assert baseline.process is not None
    cpu_groups = {
        "writer": [writer.process.pid],
        "baseline": [baseline.process.pid],
        "postgres": [postgres.pid],
        "valkey+nats": [valkey.pid, nats.pid],
    }
    tokens = [auth.mint_token(f"fan-{n:05d}", JWT_SECRET) for n in range(USERS)]
    workload = Workload(hot_pairs(stack.venue, HOT_SEATS), args.zipf_s)
    b = Bench(stack, workload, tokens, tessera_db, baseline_db, cpu_groups, args.client)
    print(
        f"writer {writer.url} (pid {writer.process.pid}; 1 Granian worker, SQLAlchemy pool "
        f"{POOL_SIZE_DEFAULT} + {MAX_OVERFLOW_DEFAULT} overflow, batch window "
        f"{limits.batch_window_ms} ms, at most {limits.batch_requests_max} requests per batch)",
        flush=True,
    )
    print(
        f"baseline {baseline.url} (pid {baseline.process.pid}; {args.baseline_workers} Granian "
        f"worker, asyncpg pool {args.baseline_pool}, READ COMMITTED), PostgreSQL {postgres.url}",
        flush=True,
    )
    print(
        f"workload: {args.requests:,} requests per closed-loop run, 2-seat explicit holds, pairs "
        f"starting at the best {HOT_SEATS:,} seats, Zipf s={args.zipf_s}, {USERS:,} users",
        flush=True,
    )
    for clients in args.clients:
        stream = workload.stream(f"c{clients}", args.requests, SEED + clients)
        print(f"closed loop, C={clients}:", flush=True)
        for side in args.order:
            if side == "tessera":
                run = await b.tessera_closed(clients, stream)
            else:
                run = await b.baseline_closed(clients, stream)
            print_run(run)
            b.runs.append(run)
    t_peak = max((r for r in b.runs if r.side == "tessera"), key=lambda r: r.holds_per_s)
    rate = t_peak.requests_per_s / 2
    print(
        f"open loop: Tessera at half its peak request rate ({t_peak.requests_per_s:,.0f} req/s at "
        f"C={t_peak.clients}, the C of its peak holds/s) = {rate:,.0f} req/s for "
        f"{args.open_loop_s:.0f} s:",
        flush=True,
    )
    count = math.ceil(rate * args.open_loop_s * 1.2) + 100
    run = await b.tessera_open(rate, args.open_loop_s, workload.stream("open", count, SEED + 1))
    print_run(run)
    b.runs.append(run)
    return b.runs


def parse_clients(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_stack_args(parser)
    parser.add_argument("--clients", type=parse_clients, default=list(CLIENTS))
    parser.add_argument("--requests", type=int, default=REQUESTS_PER_RUN)
    parser.add_argument("--zipf-s", type=float, default=ZIPF_S)
    parser.add_argument("--open-loop-s", type=float, default=OPEN_LOOP_S)
    parser.add_argument(
        "--order",
        type=lambda s: s.split(","),
        default=["tessera", "baseline"],
        help="which side runs first at each C (default tessera,baseline)",
    )
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="load generator: minimal asyncio HTTP/1.1 client (default) or httpx, one per fan",
    )
    parser.add_argument("--baseline-pool", type=int, default=BASELINE_POOL)
    parser.add_argument("--baseline-workers", type=int, default=BASELINE_WORKERS)
    parser.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_baseline:
        serve_baseline(
            args.port, args.database_url, args.venue, args.baseline_pool, args.baseline_workers
        )
        return 0
    if args.requests > 4 * USERS:
        parser.error(f"--requests at most {4 * USERS} (per-user limit {PER_USER_LIMIT} seats)")
    stack = WriteStack.create("tessera-write-bench-", args.venue)
    print_machine(
        stack.venue,
        "PostgreSQL, Valkey, NATS, the writer, the baseline and the load generator "
        f"({args.client} HTTP client, one asyncio loop in this process)",
    )
    runs, problems = run_in_stack(stack, args.keep, lambda: bench(args, stack))
    rows = table(runs)
    print_table(["measure", "tessera", "baseline", "ratio", "target", "met"], rows)
    print(
        f"\nwarnings and errors in the writer and baseline logs: {sum(problems.values())}"
        + "".join(f"\n    {count} × {line}" for line, count in problems.items())
    )
    print(
        f"python {sys.version.split()[0]}, client {args.client}; closed loop: "
        f"{args.requests:,} requests per run (stopped after {RUN_LIMIT_S:.0f} s); holds/s = 201s "
        "per second of wall time; latencies from send to full reply"
    )
    if args.json:
        document = {
            "runs": [asdict(r) for r in runs],
            "table": [asdict(r) for r in rows],
            "log_problems": problems,
        }
        write_json(args.json, document)
    return 0 if all(row.met is not False for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
