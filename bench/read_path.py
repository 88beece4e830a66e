"""The read path: seat-map requests per second and latency on the regional read node serving the
70,000-seat stadium half sold, beside the Python ceiling and a naive PostgreSQL endpoint, in one
run.

    .venv/bin/python bench/read_path.py [--rounds 3] [--duration 4] [--connections 64]
                                        [--load-generator auto] [--keep] [--json OUT]

Setup. Starts its own PostgreSQL, Valkey and NATS (tessera.tooling.servers, in a temporary
directory, all stopped at the end), the global writer and a regional read node
(tessera.tooling.processes), creates the stadium event, then sells half of it through the writer:
64 concurrent fans, each asking for a best-available hold of 8-10 seats
(`POST /v1/events/{e}/holds`) and buying it (`POST /v1/orders`, sandbox token); a 503 is retried
with the same Idempotency-Key. The node learns every sale from the change feed only. The bench
then waits until the node is ready (`/readyz` 200), its section maps equal the writer's
`GET /v1/events/{e}/sections/{s}/snapshot` for five sections, and its whole-event map equals,
byte for byte, the map computed from the writer's database.

Three servers answer `GET /v1/events/{e}/seatmap`, each one Granian worker with the node's
settings (regional/__main__.py):

- **node**: the regional read node (its bare-ASGI fast path, regional/fastpath.py).
- **ceiling**: the raw ASGI app below (`create_constant_app`, `--serve-constant --port P`)
  answering every request with the bytes and headers the node answers the same request with (its
  brotli variant if the node picks that), without looking at the request: the most a Python ASGI
  app serves on this machine with one Granian worker.
- **naive**: the Litestar app below (`create_naive_app`, `--serve-naive --port P`) computing
  availability from PostgreSQL per request: one query over the writer's `sections` and
  `seat_claims` for the event (asyncpg pool of 10, READ COMMITTED), minus the venue's blocked
  seats, encoded as the same **binary** event map the node serves (`tessera_core.encode_event`:
  identical bytes and ETag, checked). It answers uncompressed whatever `Accept-Encoding` says and
  runs in the writer's database while the writer idles: both favour it.

Load, from separate processes. `--load-generator auto` takes wrk, else oha, else the asyncio
client below, and prints which.

1. Closed loop, max throughput: `wrk -t2 -c64 -d4s --timeout 30s` with `Accept-Encoding: br`,
   after a 2 s warm-up per target, in 3 rounds in which the targets take turns (node binary,
   ceiling, naive, node `?format=json`, node with `If-None-Match` = its ETag, i.e. 304s), so that
   a change in the machine's other load hits every target alike; req/s = answers over all rounds.
2. Open loop at half the node's closed-loop rate: the asyncio client below (this process) sends
   at a fixed rate with constant spacing, as wrk2 does, on 128 pre-opened keep-alive connections
   (a new one when all are busy, at most 512), each latency counted from the request's scheduled
   time, so a slow server or a late client shows up as latency, not as a lower rate; node and
   ceiling take turns in 3 rounds. The ceiling at the same rate is the floor that the client, the
   machine and Granian set. When oha is on PATH, `oha -q RATE --latency-correction -c 128` (the
   same fixed-rate measure, from a multi-threaded native client) cross-checks both. The naive
   server gets half its own closed-loop rate.

Targets (the issue's): node binary throughput ≥ 0.6 times the ceiling's; node p99 (asyncio open
loop) ≤ 10 ms at half the node's max rate; no failed request. Prints each run, then a markdown
table (the three servers side by side, node ÷ ceiling, node ÷ naive) and exits 1 if a target is
missed; `--json OUT` also writes every run. Everything shares the machine's cores (2 on the
project's machines): each run prints the cores used by each process, by the kernel's network
work (softirq) and by processes outside the bench (other sessions), from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import brotli
import httpx
from litestar import Litestar, Response, get

import tessera_core as tc
from regional.fastpath import CACHE_CONTROL
from regional.state import SEATMAP_TYPE
from tessera import auth
from tessera.tooling.processes import ServiceProcess, start_regional, start_writer
from tessera.tooling.servers import (
    RunningServer,
    create_database,
    free_port,
    start_nats,
    start_postgres,
    start_valkey,
)
from tessera.venue import Venue, load_venue_file

ROOT: Final = Path(__file__).resolve().parent.parent
SEED: Final = 20261127
# Setup: fans ask for best-available holds of these sizes (larger than an onsale's typical 2-4,
# so that half the stadium sells in about 8,000 writer requests) and buy every hold.
HOLD_SIZES: Final = (8, 9, 10)
SOLD_FRACTION: Final = 0.5
SETUP_CLIENTS: Final = 64
SETUP_LIMIT_S: Final = 120.0
# A hold or order answered 503 ("retry with the same Idempotency-Key") is sent again, this often.
SETUP_ATTEMPTS: Final = 3
CONVERGE_LIMIT_S: Final = 60.0
HOLD_TTL_S: Final = 3_600
PER_USER_LIMIT: Final = 10
# Sections whose node map is compared with the writer's snapshot (positions in venue order).
CHECKED_SECTIONS: Final = (0, 24, 49, 74, 99)
# Load.
# Closed loop: each target gets ROUNDS runs of ROUND_S, the targets taking turns, so that the
# machine's other load (shared cores) changes every target's numbers alike.
ROUNDS: Final = 3
ROUND_S: Final = 4.0
WARMUP_S: Final = 2.0
CONNECTIONS: Final = 64
WRK_THREADS: Final = 2
OPEN_LOOP_S: Final = 10.0
# Open loop: connections opened before the clock starts, and at most open at once (Granian's
# default backpressure is 1,024 concurrent connections per worker; past it new ones wait).
OPEN_LOOP_CONNECTIONS: Final = 128
OPEN_LOOP_CONNECTIONS_MAX: Final = 512
# A request unanswered this long is a failure (wrk's --timeout; the asyncio client's deadline).
REQUEST_TIMEOUT_S: Final = 30.0
HTTP_TIMEOUT_S: Final = 30.0
# A run during which processes outside the bench used this many cores is flagged as disturbed.
DISTURBED_CORES: Final = 0.2
# Targets (the issue's).
CEILING_RATIO_MIN: Final = 0.6
HALF_RATE_P99_MS_MAX: Final = 10.0
# Servers under test: the node's Granian settings (one worker); the naive app's asyncpg pool is
# asyncpg's default size.
NAIVE_POOL: Final = 10
ADMIN_KEY: Final = "bench-admin-key-" + "k" * 32
JWT_SECRET: Final = "bench-jwt-secret-" + "s" * 32  # a throwaway local secret
ENV_CONSTANT_DIR: Final = "BENCH_CONSTANT_DIR"
ENV_DATABASE: Final = "BENCH_NAIVE_DATABASE_URL"
ENV_VENUE: Final = "BENCH_NAIVE_VENUE"
ENV_POOL: Final = "BENCH_NAIVE_POOL"
JSON_TYPE: Final = "application/json"
# Headers the application sets (the rest, such as `date`, come from Granian).
APP_HEADERS: Final = (
    "content-type",
    "content-length",
    "etag",
    "cache-control",
    "vary",
    "content-encoding",
)

Scope = dict[str, Any]


# --- the ceiling: a raw ASGI app returning constant bytes (its own process, under Granian) ---


def create_constant_app() -> Any:
    """Answers every HTTP request with the body and headers saved in BENCH_CONSTANT_DIR."""
    directory = Path(os.environ[ENV_CONSTANT_DIR])
    body = (directory / "body").read_bytes()
    headers = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in json.loads((directory / "headers.json").read_text())
    ]

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    return app


# --- the naive endpoint: availability from PostgreSQL per request (its own process) ---

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


def create_naive_app() -> Litestar:
    """The naive endpoint as a Litestar app, configured by BENCH_NAIVE_* (see `serve`)."""
    database_url = os.environ[ENV_DATABASE]
    pool_size = int(os.environ.get(ENV_POOL, str(NAIVE_POOL)))
    unblocked = unblocked_bitmaps(load_venue_file(os.environ[ENV_VENUE]))
    pools: list[Any] = []

    @asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(
            database_url,
            min_size=pool_size,
            max_size=pool_size,
            server_settings={"default_transaction_isolation": "read committed"},
        )
        pools.append(pool)
        try:
            yield
        finally:
            await pool.close()

    @get("/readyz", sync_to_thread=False)
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @get("/v1/events/{event_id:uuid}/seatmap")
    async def seatmap(event_id: uuid.UUID) -> Response[bytes]:
        rows = await pools[0].fetch(NAIVE_SQL, event_id)
        if not rows:
            body = b'{"error":{"code":"not_found","message":"no such event"}}'
            return Response(body, status_code=404, media_type=JSON_TYPE)
        body, etag = event_map(rows, unblocked)
        headers = {
            "etag": etag,
            "cache-control": CACHE_CONTROL.decode(),
            "vary": "Accept-Encoding",
        }
        return Response(body, media_type=SEATMAP_TYPE, headers=headers)

    return Litestar(route_handlers=[readyz, seatmap], lifespan=[lifespan], debug=False)


def serve(factory: str, port: int) -> None:
    """Serve `factory` of this module as the node does: Granian, ASGI, one worker."""
    from granian import Granian  # noqa: PLC0415  (only the server processes need it)
    from granian.constants import Interfaces  # noqa: PLC0415

    # This file runs as a script, so its directory is on sys.path and it imports by its stem.
    Granian(
        f"{Path(__file__).stem}:{factory}",
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        factory=True,
        log_access=False,
    ).serve()


# --- a minimal keep-alive HTTP/1.1 client (setup, open loop, and the fallback load generator) ---


class HttpError(Exception):
    pass


def _chunked(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked body starting at `start`: (body, end offset), or None while incomplete."""
    body = bytearray()
    at = start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
        at = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n", at)
            return None if trailer_end < 0 else (bytes(body), trailer_end + 2)
        if len(buffer) < at + size + 2:
            return None
        body += buffer[at : at + size]
        at += size + 2


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.usable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HttpError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None and not self.waiter.done():
            try:
                self._parse()
            except (ValueError, IndexError) as error:
                self.usable = False
                self.waiter.set_exception(HttpError(f"bad response: {error}"))

    def _parse(self) -> None:
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buffer[:end])
        status = int(head[9:12])
        length = 0
        chunked = close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = value.strip().lower() == b"close"
        start = end + 4
        if status in (204, 304) or status < 200:
            body, stop = b"", start
        elif chunked:
            found = _chunked(buffer, start)
            if found is None:
                return
            body, stop = found
        else:
            if len(buffer) < start + length:
                return
            body, stop = bytes(buffer[start : start + length]), start + length
        del buffer[:stop]
        if close:
            self.usable = False
            assert self.transport is not None
            self.transport.close()
        assert self.waiter is not None
        self.waiter.set_result((status, body))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if not self.usable or self.transport is None:
            raise HttpError("connection closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter

    def close(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Keep-alive connections to one server: an idle one per request, else a new one while fewer
    than `limit` are open, else the next one released."""

    def __init__(self, base_url: str, limit: int = 1_000_000) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.limit = limit
        self.idle: list[HttpConnection] = []
        self.waiting: list[asyncio.Future[HttpConnection]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.opened = 0
        self.open = 0

    async def connect(self) -> HttpConnection:
        loop = asyncio.get_running_loop()
        self.opened += 1
        self.open += 1
        try:
            _, connection = await loop.create_connection(HttpConnection, self.host, self.port)
        except BaseException:
            self.open -= 1
            raise
        return connection

    async def warm_up(self, count: int) -> None:
        opened = await asyncio.gather(*(self.connect() for _ in range(count - len(self.idle))))
        self.idle.extend(opened)

    async def acquire(self) -> HttpConnection:
        while self.idle:
            connection = self.idle.pop()
            if connection.usable:
                return connection
            self.open -= 1  # closed by the server while idle
        if self.open < self.limit:
            return await self.connect()
        waiter: asyncio.Future[HttpConnection] = asyncio.get_running_loop().create_future()
        self.waiting.append(waiter)
        return await waiter

    def release(self, connection: HttpConnection) -> None:
        if not connection.usable:
            self.open -= 1
            if self.waiting:  # a waiter would otherwise wait for a connection never released
                task = asyncio.get_running_loop().create_task(self.replace())
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            return
        while self.waiting:
            waiter = self.waiting.pop(0)
            if not waiter.done():
                waiter.set_result(connection)
                return
        self.idle.append(connection)

    async def replace(self) -> None:
        with contextlib.suppress(OSError):
            self.release(await self.connect())

    async def send(self, data: bytes) -> tuple[int, bytes]:
        connection = await self.acquire()
        try:
            return await connection.request(data)
        except BaseException:
            connection.close()
            raise
        finally:
            self.release(connection)

    def close(self) -> None:
        idle, self.idle = self.idle, []
        for connection in idle:
            connection.close()


# --- results ---


def percentile_ms(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of seconds, in milliseconds (NaN for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1] * 1000


@dataclass
class Load:
    """One load run against one server."""

    server: str  # node, ceiling, naive
    variant: str  # binary, json, 304
    mode: str  # closed, open (the asyncio client), open-oha (the cross-check)
    generator: str
    connections: int
    elapsed_s: float
    requests: int
    rate: float  # answered requests per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    failures: dict[str, int]  # non-2xx/3xx answers, socket errors, timeouts
    bytes_per_reply: float  # as the generator counts it (wrk: headers included; else body only)
    offered_rate: float = 0.0  # open loop: requests per second sent
    dispatch_lag_p99_ms: float = 0.0  # open loop: how late the client sent (its own delay)
    connections_opened: int = 0
    cpu_cores: dict[str, float] = field(default_factory=dict)
    round_rates: list[float] = field(default_factory=list)  # closed loop: req/s of each round
    # Open loop (asyncio): p99 of each round, and the cores processes outside the bench used in it.
    round_p99_ms: list[float] = field(default_factory=list)
    round_other_cores: list[float] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


# --- load generators ---

WRK_SCRIPT: Final = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
"""


@dataclass
class Round:
    """One closed-loop run of the load generator against one target."""

    requests: int  # answered
    elapsed_s: float
    latency: dict[str, float]  # p50, p90, p99, max in ms
    failures: dict[str, int]
    bytes_per_reply: float
    connections_opened: int


@dataclass
class Spec:
    """A closed-loop target: what to ask whom, and its rounds so far."""

    server: str
    variant: str
    url: str
    headers: dict[str, str]
    rounds: list[Round] = field(default_factory=list)
    cpu: Counter[str] = field(default_factory=Counter)


@dataclass
class Generator:
    """The closed-loop load generator: wrk, oha or the asyncio client of this module."""

    kind: str
    binary: str
    version: str
    workdir: Path
    threads: int

    @staticmethod
    def find(choice: str, workdir: Path, threads: int) -> Generator:
        for kind in ("wrk", "oha") if choice == "auto" else (choice,):
            if kind == "builtin":
                break
            binary = shutil.which(kind)
            if binary is None:
                if choice != "auto":
                    raise SystemExit(f"{kind} is not on PATH")
                continue
            probe = subprocess.run(
                [binary, "--version"], capture_output=True, text=True, check=False
            )
            version = (probe.stdout + probe.stderr).strip().split(" Copyright")[0].splitlines()[:1]
            (workdir / "wrk.lua").write_text(WRK_SCRIPT)
            return Generator(kind, binary, version[0] if version else "?", workdir, threads)
        return Generator("builtin", sys.executable, "asyncio client, one process", workdir, 1)

    def describe(self, connections: int, seconds: float) -> str:
        if self.kind == "wrk":
            return f"wrk -t{self.threads} -c{connections} -d{seconds:g}s"
        if self.kind == "oha":
            return f"oha -c {connections} -z {seconds:g}s"
        return f"asyncio client, {connections} connections, {seconds:g} s"

    async def closed(
        self, url: str, headers: Mapping[str, str], connections: int, seconds: float
    ) -> Round:
        if self.kind == "wrk":
            return await self._wrk(url, headers, connections, seconds)
        if self.kind == "oha":
            return await self._oha(url, headers, connections, seconds)
        return await closed_loop(url, headers, connections, seconds)

    async def _wrk(
        self, url: str, headers: Mapping[str, str], connections: int, seconds: float
    ) -> Round:
        command = [
            self.binary,
            f"-t{self.threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={REQUEST_TIMEOUT_S:g}s",
            "-s",
            str(self.workdir / "wrk.lua"),
        ]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        output = await run_command([*command, url], seconds + REQUEST_TIMEOUT_S + 30)
        line = next((x for x in output.splitlines() if x.startswith("WRKJSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no summary:\n{output}")
        s = json.loads(line[len("WRKJSON ") :])
        failures = {
            "non-2xx/3xx": s["status"],
            "connect": s["connect"],
            "read": s["read"],
            "write": s["write"],
            "timeout": s["timeout"],
        }
        latency = {
            "p50": s["p50_us"] / 1000,
            "p90": s["p90_us"] / 1000,
            "p99": s["p99_us"] / 1000,
            "max": s["max_us"] / 1000,
        }
        requests = int(s["requests"])
        per_reply = s["bytes"] / requests if requests else 0.0
        return Round(requests, s["duration_us"] / 1e6, latency, failures, per_reply, connections)

    async def _oha(
        self, url: str, headers: Mapping[str, str], connections: int, seconds: float
    ) -> Round:
        command = [
            self.binary,
            "--no-tui",
            "--output-format",
            "json",
            "-c",
            str(connections),
            "-z",
            f"{seconds:g}s",
            "-t",
            f"{REQUEST_TIMEOUT_S:g}s",
            "-w",  # wait for the requests in flight at the deadline (else counted as errors)
        ]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        output = await run_command([*command, url], seconds + REQUEST_TIMEOUT_S + 30)
        return parse_oha(output)


def parse_oha(output: str) -> Round:
    """oha's `--output-format json` report as a Round."""
    report = json.loads(output[output.index("{") :])
    summary = report["summary"]
    statuses = {str(k): int(v) for k, v in report.get("statusCodeDistribution", {}).items()}
    failures = {f"status {k}": v for k, v in statuses.items() if not 200 <= int(k) < 400}
    for reason, count in report.get("errorDistribution", {}).items():
        failures[str(reason)[:80]] = int(count)
    requests = sum(v for k, v in statuses.items() if 200 <= int(k) < 400)
    percentiles = report.get("latencyPercentiles", {})
    latency = {
        "p50": float(percentiles.get("p50") or math.nan) * 1000,
        "p90": float(percentiles.get("p90") or math.nan) * 1000,
        "p99": float(percentiles.get("p99") or math.nan) * 1000,
        "max": float(summary.get("slowest") or math.nan) * 1000,
    }
    per_reply = float(summary.get("sizePerRequest") or 0.0)
    return Round(requests, float(summary["total"]), latency, failures, per_reply, 0)


async def run_command(command: list[str], timeout_s: float) -> str:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} exited with {process.returncode}:\n{output.decode()}")
    return output.decode(errors="replace")


def request_bytes(method: str, url: str, headers: Mapping[str, str], body: bytes = b"") -> bytes:
    """One HTTP/1.1 request, as sent on a keep-alive connection."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {path} HTTP/1.1", f"host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method == "POST":
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def closed_loop(
    url: str, headers: Mapping[str, str], connections: int, seconds: float
) -> Round:
    """`connections` clients each sending the next request as soon as the last one is answered."""
    pool = Pool(url)
    data = request_bytes("GET", url, headers)
    await pool.warm_up(connections)
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    size = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal size
        while time.perf_counter() < deadline:
            begin = time.perf_counter()
            try:
                status, body = await pool.send(data)
            except (OSError, HttpError) as error:
                failures[type(error).__name__] += 1
                continue
            latencies.append(time.perf_counter() - begin)
            size += len(body)
            if not 200 <= status < 400:
                failures[f"status {status}"] += 1

    started = time.perf_counter()
    try:
        async with asyncio.timeout(seconds + REQUEST_TIMEOUT_S):
            await asyncio.gather(*(client() for _ in range(connections)))
    except TimeoutError:
        failures["timeout"] += 1
    elapsed = time.perf_counter() - started
    pool.close()
    answered = len(latencies)
    latency = {
        "p50": percentile_ms(latencies, 50),
        "p90": percentile_ms(latencies, 90),
        "p99": percentile_ms(latencies, 99),
        "max": percentile_ms(latencies, 100),
    }
    per_reply = size / answered if answered else 0.0
    return Round(answered, elapsed, latency, dict(failures), per_reply, pool.opened)


class OpenLoopConnection(HttpConnection):
    """A connection of the open-loop client: sends from a callback, reports each answer to its
    `OpenLoop` (no task or future per request)."""

    def __init__(self, runner: OpenLoop) -> None:
        super().__init__()
        self.runner = runner
        self.scheduled = 0.0

    def send_at(self, scheduled: float) -> None:
        assert self.transport is not None
        self.scheduled = scheduled
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(self.runner.data)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        waiter = self.waiter
        if waiter is not None and waiter.done():
            self.waiter = None
            error = waiter.exception()
            self.runner.answered(self, 0 if error else waiter.result()[0], self.scheduled)

    def connection_lost(self, exc: Exception | None) -> None:
        waiter = self.waiter
        super().connection_lost(exc)
        if waiter is not None and waiter.done():
            self.waiter = None
            waiter.exception()  # retrieved: not logged as never retrieved
            self.runner.answered(self, 0, self.scheduled)


class OpenLoop:
    """Requests at a fixed rate (constant spacing), each sent at its time on an idle connection,
    else on a new one while fewer than `limit` are open, else on the next one freed; each
    latency counts from the request's scheduled time."""

    def __init__(self, url: str, headers: Mapping[str, str], limit: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.data = request_bytes("GET", url, headers)
        self.limit = limit
        self.idle: list[OpenLoopConnection] = []
        self.backlog: deque[float] = deque()
        self.open = self.opened = 0
        self.latencies: list[float] = []
        self.lags: list[float] = []
        self.failures: Counter[str] = Counter()
        self.outstanding = 0
        self.finished: asyncio.Event | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        self.open += 1
        self.opened += 1
        try:
            _, connection = await loop.create_connection(
                lambda: OpenLoopConnection(self), self.host, self.port
            )
        except OSError as error:
            self.open -= 1
            self.failures[f"connect: {type(error).__name__}"] += 1
            return
        self.ready(connection)

    def spawn_connect(self) -> None:
        task = asyncio.get_running_loop().create_task(self.connect())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def ready(self, connection: OpenLoopConnection) -> None:
        """A connection is free: give it the oldest waiting request, else keep it idle."""
        if self.backlog:
            connection.send_at(self.backlog.popleft())
        else:
            self.idle.append(connection)

    def due(self, scheduled: float, now: float) -> None:
        self.outstanding += 1
        self.lags.append(now - scheduled)  # how late the client itself was
        while self.idle:
            connection = self.idle.pop()
            if connection.usable:
                connection.send_at(scheduled)
                return
            self.open -= 1  # closed by the server while idle
        self.backlog.append(scheduled)
        if self.open < self.limit:
            self.spawn_connect()

    def answered(self, connection: OpenLoopConnection, status: int, scheduled: float) -> None:
        self.outstanding -= 1
        if status == 0:
            self.failures["transport"] += 1
        else:
            self.latencies.append(time.perf_counter() - scheduled)
            if not 200 <= status < 400:
                self.failures[f"status {status}"] += 1
        if connection.usable:
            self.ready(connection)
        else:
            self.open -= 1
            if self.backlog:
                self.spawn_connect()
        if self.outstanding == 0 and self.finished is not None:
            self.finished.set()

    async def run(self, rate: float, seconds: float, warm: int) -> float:
        """Send for `seconds`, wait for the answers (REQUEST_TIMEOUT_S at most): elapsed s."""
        await asyncio.gather(*(self.connect() for _ in range(warm)))
        count = max(1, int(rate * seconds))
        interval = 1 / rate
        origin = time.perf_counter() + 0.01
        sent = 0
        while sent < count:
            now = time.perf_counter()
            while sent < count and origin + sent * interval <= now:
                self.due(origin + sent * interval, now)
                sent += 1
            if sent < count:
                await asyncio.sleep(max(0.0, origin + sent * interval - time.perf_counter()))
        self.finished = asyncio.Event()
        if self.outstanding:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    await self.finished.wait()
        if self.outstanding:
            self.failures["timeout"] += self.outstanding
        elapsed = time.perf_counter() - origin
        for connection in self.idle:
            connection.close()
        return elapsed


# --- CPU accounting (Linux /proc): who used the cores during a run ---

_TICK_S: Final = 1 / os.sysconf("SC_CLK_TCK")


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of the process and its reaped children)."""
    table: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        ticks = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        table[int(entry.name)] = (int(fields[1]), ticks * _TICK_S)
    return table


def cpu_seconds(groups: Mapping[str, Iterable[int]]) -> dict[str, float]:
    """CPU seconds so far of each group of process trees, of this process (the asyncio client)
    and of its reaped children (wrk, oha)."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    used: dict[str, float] = {}
    for name, roots in groups.items():
        total, todo = 0.0, list(roots)
        while todo:
            pid = todo.pop()
            if pid in table:
                total += table[pid][1]
                todo.extend(children.get(pid, []))
        used[name] = total
    times = os.times()
    used["bench process"] = times.user + times.system
    used["load generator"] = times.children_user + times.children_system
    with Path("/proc/stat").open() as stat:
        # user nice system idle iowait irq softirq steal ...
        ticks = [int(value) for value in stat.readline().split()[1:]]
    used["kernel softirq"] = ticks[6] * _TICK_S  # mostly the loopback network's work
    used["machine"] = (sum(ticks[:8]) - ticks[3] - ticks[4]) * _TICK_S  # busy: not idle, iowait
    return used


# --- the stack ---


@dataclass
class Stack:
    workdir: Path
    venue: Venue
    venue_path: Path
    servers: list[RunningServer] = field(default_factory=list)
    services: list[ServiceProcess] = field(default_factory=list)

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
        for server in reversed(self.servers):
            server.stop()

    def log_problems(self) -> dict[str, int]:
        """Warnings, errors and raised exceptions in the service logs, counted by message."""
        found: Counter[str] = Counter()
        for service in self.services:
            try:
                lines = service.log_path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                logged = _LOGGED.search(line)
                if logged is not None:
                    found[f"{service.name}: {line.strip()[:240]}"] += 1
                elif _RAISED.match(line):
                    found[f"{service.name}:   raised {line[:200]}"] += 1
        return dict(found)


_LOGGED: Final = re.compile(
    r'\b(?:WARNING|ERROR|CRITICAL)\b|"level": ?"(?:warning|error|critical)"'
)
_RAISED: Final = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exhausted)\w*: ")


def start_bench_server(stack: Stack, name: str, flags: list[str], env: dict[str, str]) -> Any:
    port = free_port()
    service = ServiceProcess(
        name=name,
        url=f"http://127.0.0.1:{port}",
        port=port,
        log_path=stack.workdir / f"{name}.log",
        command=[sys.executable, str(Path(__file__).resolve()), *flags, "--port", str(port)],
        env={**os.environ, **env},
    )
    service.start()
    stack.services.append(service)
    return service


def create_event(writer_url: str, venue_path: Path) -> str:
    response = httpx.post(
        f"{writer_url}/v1/admin/events",
        headers={"X-Admin-Key": ADMIN_KEY},
        json={
            "name": "Read path bench",
            "venue": json.loads(venue_path.read_bytes()),
            "onsale_at": "2020-01-01T00:00:00Z",
            "hold_ttl_s": HOLD_TTL_S,
            "per_user_limit": PER_USER_LIMIT,
            "home_region": "local",
        },
        timeout=HTTP_TIMEOUT_S,
    )
    if response.status_code != 201:
        raise RuntimeError(f"creating the event failed: {response.status_code} {response.text}")
    event_id: str = response.json()["event_id"]
    return event_id


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
        self.pool = Pool(writer_url)
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
        self.pool.close()
        return self.sales

    async def call(self, kind: str, path: str, user: str, body: bytes) -> tuple[int, bytes]:
        """POST as `user`; a 503 ("retry with the same Idempotency-Key") is retried."""
        headers = {
            "authorization": f"Bearer {auth.mint_token(user, JWT_SECRET)}",
            "idempotency-key": f"{kind}-{user}",
            "content-type": JSON_TYPE,
        }
        sales = self.sales
        begin = time.perf_counter()
        for attempt in range(SETUP_ATTEMPTS):
            try:
                async with asyncio.timeout(HTTP_TIMEOUT_S):
                    status, reply = await self.pool.send(
                        request_bytes("POST", f"{self.writer_url}{path}", headers, body)
                    )
            except (OSError, HttpError, TimeoutError) as error:
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
            status, _ = await self.call("order", "/v1/orders", user, order.encode())
            if status == 201:
                sales.orders += 1
                sales.seats += len(hold["seats"])


async def converge(
    client: httpx.AsyncClient,
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
        ready = await client.get(f"{node_url}/readyz")
        if ready.status_code != 200:
            problem = f"/readyz {ready.status_code} {ready.text}"
            await asyncio.sleep(0.1)
            continue
        problem = ""
        for position in CHECKED_SECTIONS:
            section = stack.venue.layouts[position].section_id
            path = f"/v1/events/{event_id}/sections/{section}"
            want = await client.get(f"{writer_url}{path}/snapshot")
            got = await client.get(f"{node_url}{path}/seatmap", headers=plain)
            if want.status_code != 200 or got.status_code != 200:
                problem = f"section {section}: writer {want.status_code}, node {got.status_code}"
                break
            w, g = tc.SeatMap.decode(want.content), tc.SeatMap.decode(got.content)
            if w.version != g.version or w.bitmap() != g.bitmap():
                problem = f"section {section}: writer v{w.version}, node v{g.version}"
                break
        if not problem:
            whole = await client.get(f"{node_url}/v1/events/{event_id}/seatmap", headers=plain)
            if whole.content == expected:
                return expected, time.perf_counter() - started, claimed
            problem = "the node's event map differs from the database's"
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the node did not converge in {CONVERGE_LIMIT_S:.0f} s: {problem}")


async def raw_get(url: str, headers: Mapping[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
    """One GET with this module's client, headers as they came on the wire."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        lines = [f"GET {path} HTTP/1.1", f"host: {parts.netloc}", "connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        response_headers = []
        for line in head.split("\r\n")[1:]:
            if line:
                name, _, value = line.partition(":")
                response_headers.append((name.strip().lower(), value.strip()))
        length = int(dict(response_headers).get("content-length", "0"))
        body = await reader.readexactly(length) if length else b""
        return int(head[9:12]), response_headers, body
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def metrics_counts(text: str, route: str) -> dict[str, float]:
    """Requests by status on `route` from the node's Prometheus text."""
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("tessera_http_request_duration_seconds_count{") and (
            f'route="{route}"' in line
        ):
            status = re.search(r'status="(\d+)"', line)
            if status:
                counts[status.group(1)] = counts.get(status.group(1), 0) + float(line.split()[-1])
    return counts


# --- the run ---


@dataclass
class Targets:
    """What each load run hits."""

    node: str
    ceiling: str
    naive: str
    event_id: str
    etag_br: str


@dataclass
class Bench:
    args: argparse.Namespace
    stack: Stack
    generator: Generator
    cpu_groups: dict[str, list[int]]
    loads: list[Load] = field(default_factory=list)

    async def closed(self, specs: list[Spec]) -> list[Load]:
        """Each spec warmed up once, then `--rounds` rounds of `--duration` s, the specs taking
        turns within each round so that a change in the machine's other load hits all alike."""
        connections, seconds = self.args.connections, self.args.duration
        for spec in specs:
            if self.args.warmup > 0:
                await self.generator.closed(spec.url, spec.headers, connections, self.args.warmup)
        for _ in range(self.args.rounds):
            for spec in specs:
                before = cpu_seconds(self.cpu_groups)
                result = await self.generator.closed(spec.url, spec.headers, connections, seconds)
                after = cpu_seconds(self.cpu_groups)
                spec.cpu.update({k: after[k] - before[k] for k in after})
                spec.rounds.append(result)
        loads = []
        for spec in specs:
            elapsed = sum(r.elapsed_s for r in spec.rounds)
            requests = sum(r.requests for r in spec.rounds)
            failures: Counter[str] = Counter()
            for r in spec.rounds:
                failures.update(r.failures)
            used = cores(spec.cpu, elapsed)
            if self.generator.kind == "builtin":
                used["load generator"] = used.pop("bench process")
            load = Load(
                server=spec.server,
                variant=spec.variant,
                mode="closed",
                generator=self.generator.describe(connections, seconds)
                + f", {len(spec.rounds)} rounds",
                connections=connections,
                elapsed_s=elapsed,
                requests=requests,
                rate=requests / elapsed if elapsed else 0.0,
                p50_ms=statistics.median(r.latency["p50"] for r in spec.rounds),
                p90_ms=statistics.median(r.latency["p90"] for r in spec.rounds),
                p99_ms=max(r.latency["p99"] for r in spec.rounds),
                max_ms=max(r.latency["max"] for r in spec.rounds),
                failures={k: v for k, v in failures.items() if v},
                bytes_per_reply=spec.rounds[-1].bytes_per_reply,
                connections_opened=max(r.connections_opened for r in spec.rounds),
                cpu_cores=used,
                round_rates=[r.requests / r.elapsed_s if r.elapsed_s else 0 for r in spec.rounds],
            )
            print_load(load)
            self.loads.append(load)
            loads.append(load)
        return loads

    async def open(
        self, targets: list[tuple[str, str]], headers: dict[str, str], *, rate: float
    ) -> list[Load]:
        """The asyncio open-loop client at `rate` against each (server, url) of `targets` for
        `--open-loop-s` in all: `--rounds` rounds, the targets taking turns in each round."""
        seconds = self.args.open_loop_s / self.args.rounds
        runs: dict[str, list[OpenLoop]] = {server: [] for server, _ in targets}
        spent: dict[str, Counter[str]] = {server: Counter() for server, _ in targets}
        others: dict[str, list[float]] = {server: [] for server, _ in targets}
        elapsed = dict.fromkeys(runs, 0.0)
        for _ in range(self.args.rounds):
            for server, url in targets:
                gc.collect()
                gc.disable()  # no collector pauses inside the client's measurements
                try:
                    before = cpu_seconds(self.cpu_groups)
                    runner = OpenLoop(url, headers, OPEN_LOOP_CONNECTIONS_MAX)
                    elapsed[server] += await runner.run(rate, seconds, OPEN_LOOP_CONNECTIONS)
                    after = cpu_seconds(self.cpu_groups)
                finally:
                    gc.enable()
                spent[server].update({k: after[k] - before[k] for k in after})
                runs[server].append(runner)
                other = cores({k: after[k] - before[k] for k in after}, seconds)
                others[server].append(other["other processes"])
        loads = []
        for server, _ in targets:
            latencies = [x for runner in runs[server] for x in runner.latencies]
            lags = [x for runner in runs[server] for x in runner.lags]
            failures: Counter[str] = Counter()
            for runner in runs[server]:
                failures.update(runner.failures)
            used = cores(spent[server], elapsed[server])
            used["load generator"] = used.pop("bench process")
            load = Load(
                server=server,
                variant="binary",
                mode="open",
                generator=f"asyncio open loop, {rate:,.0f} req/s, {self.args.rounds} rounds of "
                f"{seconds:.1f} s",
                connections=OPEN_LOOP_CONNECTIONS,
                elapsed_s=elapsed[server],
                requests=len(latencies),
                rate=len(latencies) / elapsed[server] if elapsed[server] else 0.0,
                p50_ms=percentile_ms(latencies, 50),
                p90_ms=percentile_ms(latencies, 90),
                p99_ms=percentile_ms(latencies, 99),
                max_ms=percentile_ms(latencies, 100),
                failures=dict(failures),
                bytes_per_reply=0.0,
                offered_rate=rate,
                dispatch_lag_p99_ms=percentile_ms(lags, 99),
                connections_opened=max(runner.opened for runner in runs[server]),
                cpu_cores=used,
                round_p99_ms=[percentile_ms(runner.latencies, 99) for runner in runs[server]],
                round_other_cores=others[server],
            )
            print_load(load)
            self.loads.append(load)
            loads.append(load)
        return loads

    async def open_oha(
        self,
        oha: str,
        server: str,
        url: str,
        headers: dict[str, str],
        *,
        rate: float,
        seconds: float,
    ) -> Load:
        """The cross-check: oha at a fixed rate with its coordinated-omission correction (each
        latency from the request's scheduled time, as wrk2 does)."""
        command = [oha, "--no-tui", "-w", "--output-format", "json"]
        command += ["-c", str(OPEN_LOOP_CONNECTIONS), "-z", f"{seconds:g}s"]
        command += ["-q", f"{rate:.0f}", "--latency-correction", "-t", f"{REQUEST_TIMEOUT_S:g}s"]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        before = cpu_seconds(self.cpu_groups)
        result = parse_oha(await run_command([*command, url], seconds + REQUEST_TIMEOUT_S + 30))
        after = cpu_seconds(self.cpu_groups)
        load = Load(
            server=server,
            variant="binary",
            mode="open-oha",
            generator=f"oha -q {rate:.0f} --latency-correction -c {OPEN_LOOP_CONNECTIONS}",
            connections=OPEN_LOOP_CONNECTIONS,
            elapsed_s=result.elapsed_s,
            requests=result.requests,
            rate=result.requests / result.elapsed_s if result.elapsed_s else 0.0,
            p50_ms=result.latency["p50"],
            p90_ms=result.latency["p90"],
            p99_ms=result.latency["p99"],
            max_ms=result.latency["max"],
            failures=result.failures,
            bytes_per_reply=result.bytes_per_reply,
            offered_rate=rate,
            connections_opened=OPEN_LOOP_CONNECTIONS,
            cpu_cores=cores({k: after[k] - before[k] for k in after}, result.elapsed_s),
        )
        print_load(load)
        self.loads.append(load)
        return load


def cores(used: Mapping[str, float], elapsed: float) -> dict[str, float]:
    """CPU seconds per group as cores over `elapsed`; "other processes" is the machine's busy time
    that nothing else here accounts for: processes outside the bench (other sessions' tests),
    the kernel's own threads, hard interrupts."""
    if not elapsed:
        return {}
    shares = {name: seconds / elapsed for name, seconds in used.items() if name != "machine"}
    shares["other processes"] = max(0.0, used.get("machine", 0.0) / elapsed - sum(shares.values()))
    return shares


def print_load(load: Load) -> None:
    used = ", ".join(f"{k} {v:.2f}" for k, v in load.cpu_cores.items() if v >= 0.005)
    total = sum(load.cpu_cores.values())
    saturated = " (saturated)" if total >= 0.9 * (os.cpu_count() or 1) else ""
    offered = f" offered {load.offered_rate:,.0f}/s," if load.mode == "open" else ""
    lag = f", client send lag p99 {load.dispatch_lag_p99_ms:.2f} ms" if load.mode == "open" else ""
    size = f", {load.bytes_per_reply:,.0f} B/reply" if load.bytes_per_reply else ""
    rounds = ""
    if len(load.round_rates) > 1:
        rounds = f" (rounds {', '.join(f'{r:,.0f}' for r in load.round_rates)})"
    if load.round_p99_ms:
        pairs = zip(load.round_p99_ms, load.round_other_cores, strict=True)
        each = ", ".join(f"{p99:.1f} ms ({other:.2f})" for p99, other in pairs)
        rounds = f" (p99 of each round, with the cores used outside the bench: {each})"
    print(
        f"  {load.server:7} {load.variant:6} {load.mode:6}:{offered} {load.requests:,} answered in "
        f"{load.elapsed_s:.2f} s = {load.rate:,.0f} req/s{rounds}; p50/p90/p99/max "
        f"{load.p50_ms:.2f}/"
        f"{load.p90_ms:.2f}/{load.p99_ms:.2f}/{load.max_ms:.1f} ms; failures "
        f"{load.failures or 0}{size}{lag}\n"
        f"          cores used: {used}; total {total:.2f} of {os.cpu_count()}{saturated}; "
        "connections opened "
        f"{load.connections_opened or load.connections}",
        flush=True,
    )
    if disturbed(load):
        print(
            f"          DISTURBED: processes outside the bench used "
            f"{load.cpu_cores['other processes']:.2f} cores during this run",
            flush=True,
        )


def disturbed(load: Load) -> bool:
    return load.cpu_cores.get("other processes", 0.0) >= DISTURBED_CORES


async def start_stack(stack: Stack) -> tuple[str, ServiceProcess, ServiceProcess, str]:
    """PostgreSQL, Valkey, NATS, the writer, the event, then the node: (database URL, writer,
    node, event id)."""
    started = time.perf_counter()
    print("starting PostgreSQL, Valkey, NATS ...", flush=True)
    postgres = start_postgres(stack.workdir / "postgres")
    stack.servers.append(postgres)
    valkey = start_valkey(stack.workdir / "valkey")
    stack.servers.append(valkey)
    nats = start_nats(stack.workdir / "nats")
    stack.servers.append(nats)
    database = create_database(postgres.url, "bench_read")
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
    event_id = create_event(writer.url, stack.venue_path)
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
    args: argparse.Namespace,
    stack: Stack,
    *,
    database: str,
    writer: ServiceProcess,
    node: ServiceProcess,
    event_id: str,
) -> tuple[bytes, dict[str, Any]]:
    """Sell through the writer, wait for the node: the expected event map, and what happened."""
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as client:
        deadline = time.perf_counter() + CONVERGE_LIMIT_S
        while (await client.get(f"{node.url}/v1/events/{event_id}/seatmap")).status_code != 200:
            if time.perf_counter() > deadline:
                raise RuntimeError("the node never learnt of the event")
            await asyncio.sleep(0.05)
        resyncs_before = metric_value((await client.get(f"{node.url}/metrics")).text, "resyncs")
        target = round(stack.venue.seat_count * args.sold)
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
            client,
            stack,
            node_url=node.url,
            writer_url=writer.url,
            database_url=database,
            event_id=event_id,
        )
        node_metrics = (await client.get(f"{node.url}/metrics")).text
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


async def start_baselines(
    args: argparse.Namespace, stack: Stack, database: str, node_url: str, event_id: str
) -> tuple[ServiceProcess, ServiceProcess, dict[str, Any]]:
    """Save the node's reply for the ceiling, start the ceiling and the naive server, and check
    that both answer what the node answers."""
    seatmap = f"/v1/events/{event_id}/seatmap"
    br = {"accept-encoding": "br"}
    status, headers, body = await raw_get(f"{node_url}{seatmap}", br)
    if status != 200:
        raise RuntimeError(f"node seat map: {status}")
    _, _, expected = await raw_get(f"{node_url}{seatmap}", {"accept-encoding": "identity"})
    encoding = dict(headers).get("content-encoding", "identity")
    if (brotli.decompress(body) if encoding == "br" else body) != expected:
        raise RuntimeError("the node's br seat map does not decode to its identity map")
    constant_dir = stack.workdir / "constant"
    constant_dir.mkdir()
    (constant_dir / "body").write_bytes(body)
    app_headers = [(k, v) for k, v in headers if k in APP_HEADERS]
    (constant_dir / "headers.json").write_text(json.dumps(app_headers))
    ceiling = start_bench_server(
        stack, "ceiling", ["--serve-constant"], {ENV_CONSTANT_DIR: str(constant_dir)}
    )
    naive = start_bench_server(
        stack,
        "naive",
        ["--serve-naive"],
        {
            ENV_DATABASE: database,
            ENV_VENUE: str(stack.venue_path.resolve()),
            ENV_POOL: str(args.naive_pool),
        },
    )
    c_status, c_headers, c_body = await raw_get(f"{ceiling.url}{seatmap}", br)
    if (c_status, c_body) != (200, body) or [
        (k, v) for k, v in c_headers if k in APP_HEADERS
    ] != app_headers:
        raise RuntimeError(f"the ceiling does not answer as the node does: {c_headers}")
    n_status, n_headers, n_body = await raw_get(f"{naive.url}{seatmap}", br)
    if n_status != 200 or n_body != expected:
        raise RuntimeError(f"the naive endpoint's map differs from the node's: {n_status}")
    etag = dict(headers)["etag"]
    if dict(n_headers)["etag"] != etag.replace("-br", ""):
        raise RuntimeError(f"ETags differ: naive {dict(n_headers)['etag']}, node {etag}")
    _, json_headers, json_body = await raw_get(f"{node_url}{seatmap}?format=json", br)
    revalidated, _, _ = await raw_get(f"{node_url}{seatmap}", {**br, "if-none-match": etag})
    if revalidated != 304:
        raise RuntimeError(f"revalidation answered {revalidated}, not 304")
    info = {
        "etag_br": etag,
        "binary_identity_bytes": len(expected),
        "binary_served_bytes": len(body),
        "binary_served_encoding": encoding,
        "json_served_bytes": len(json_body),
        "json_served_encoding": dict(json_headers).get("content-encoding", "identity"),
        "naive_bytes": len(n_body),
    }
    print(
        f"served: binary {len(body):,} B ({encoding}; identity {len(expected):,} B), JSON "
        f"{len(json_body):,} B ({info['json_served_encoding']}); ceiling {ceiling.url} answers "
        f"the node's bytes and headers; naive {naive.url} answers the identical binary map "
        "(identity) with the same ETag",
        flush=True,
    )
    return ceiling, naive, info


async def setup(args: argparse.Namespace, stack: Stack) -> tuple[Targets, dict[str, Any]]:
    started = time.perf_counter()
    database, writer, node, event_id = await start_stack(stack)
    expected, info = await sell_and_converge(
        args, stack, database=database, writer=writer, node=node, event_id=event_id
    )
    ceiling, naive, served = await start_baselines(args, stack, database, node.url, event_id)
    if served["binary_identity_bytes"] != len(expected):
        raise RuntimeError("the node's map changed after it converged")
    info |= served
    info["setup_s"] = time.perf_counter() - started
    print(f"setup took {info['setup_s']:.1f} s", flush=True)
    targets = Targets(node.url, ceiling.url, naive.url, event_id, served["etag_br"])
    return targets, info


def metric_value(text: str, name: str) -> float:
    """A tessera_feed_* counter's value from the node's Prometheus text (0 when absent)."""
    found = re.search(rf"^tessera_feed_{name}_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@dataclass
class Row:
    name: str
    node: str
    ceiling: str
    naive: str
    vs_ceiling: str = ""
    vs_naive: str = ""
    target: str = ""
    met: bool | None = None


def ratio(a: float, b: float) -> str:
    return f"{a / b:,.2f}×" if b else "—"


def find(loads: list[Load], server: str, variant: str, mode: str) -> Load | None:
    return next(
        (x for x in loads if (x.server, x.variant, x.mode) == (server, variant, mode)), None
    )


def table(loads: list[Load], node_5xx: float) -> list[Row]:
    node = find(loads, "node", "binary", "closed")
    ceiling = find(loads, "ceiling", "binary", "closed")
    naive = find(loads, "naive", "binary", "closed")
    assert node is not None
    assert ceiling is not None
    assert naive is not None
    rows = [
        Row(
            "**binary seat map, closed loop: req/s**",
            f"{node.rate:,.0f}",
            f"{ceiling.rate:,.0f}",
            f"{naive.rate:,.1f}",
            ratio(node.rate, ceiling.rate),
            ratio(node.rate, naive.rate),
            f"≥ {CEILING_RATIO_MIN}× ceiling",
            node.rate >= CEILING_RATIO_MIN * ceiling.rate,
        ),
        Row(
            "binary, closed loop: p50 / p99 ms",
            f"{node.p50_ms:.2f} / {node.p99_ms:.2f}",
            f"{ceiling.p50_ms:.2f} / {ceiling.p99_ms:.2f}",
            f"{naive.p50_ms:,.0f} / {naive.p99_ms:,.0f}",
        ),
    ]
    node_open = find(loads, "node", "binary", "open")
    ceiling_open = find(loads, "ceiling", "binary", "open")
    naive_open = find(loads, "naive", "binary", "open")
    if node_open is not None:
        rows.append(
            Row(
                "**p99 at half the node's max**: asyncio open loop, "
                f"{node_open.offered_rate:,.0f} req/s (naive: half its own max); p50",
                f"{node_open.p99_ms:.2f} ms; {node_open.p50_ms:.2f}",
                f"{ceiling_open.p99_ms:.2f} ms; {ceiling_open.p50_ms:.2f}" if ceiling_open else "—",
                f"{naive_open.p99_ms:,.0f} ms at {naive_open.offered_rate:,.1f} req/s; "
                f"{naive_open.p50_ms:,.0f}"
                if naive_open
                else "—",
                target=f"≤ {HALF_RATE_P99_MS_MAX:g} ms",
                met=node_open.p99_ms <= HALF_RATE_P99_MS_MAX and node_open.failed == 0,
            )
        )
    node_oha = find(loads, "node", "binary", "open-oha")
    ceiling_oha = find(loads, "ceiling", "binary", "open-oha")
    if node_oha is not None:
        rows.append(
            Row(
                f"cross-check, same rate: `oha -q {node_oha.offered_rate:.0f} "
                "--latency-correction`: p99; p50",
                f"{node_oha.p99_ms:.2f} ms; {node_oha.p50_ms:.2f}",
                f"{ceiling_oha.p99_ms:.2f} ms; {ceiling_oha.p50_ms:.2f}" if ceiling_oha else "—",
                "—",
            )
        )
    for variant, label in (("json", "JSON (`?format=json`)"), ("304", "304 (`If-None-Match`)")):
        load = find(loads, "node", variant, "closed")
        if load is not None:
            rows.append(
                Row(
                    f"{label}, closed loop: req/s; p50 / p99 ms",
                    f"{load.rate:,.0f}; {load.p50_ms:.2f} / {load.p99_ms:.2f}",
                    "—",
                    "—",
                    ratio(load.rate, ceiling.rate),
                )
            )
    rows.append(
        Row(
            "bytes per binary reply (as the generator counts them)",
            f"{node.bytes_per_reply:,.0f}",
            f"{ceiling.bytes_per_reply:,.0f}",
            f"{naive.bytes_per_reply:,.0f}",
        )
    )
    failed = {
        server: sum(x.failed for x in loads if x.server == server)
        for server in ("node", "ceiling", "naive")
    }
    rows.append(
        Row(
            "failed requests (non-2xx/3xx, socket errors, timeouts); node's own 5xx count",
            f"{failed['node']}; {node_5xx:g}",
            str(failed["ceiling"]),
            str(failed["naive"]),
            target="0",
            met=not any(failed.values()) and node_5xx == 0,
        )
    )
    return rows


def print_table(rows: list[Row]) -> None:
    print(
        "\n| measure | node | raw Granian ceiling | naive PostgreSQL | node ÷ ceiling "
        "| node ÷ naive | target | met |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for row in rows:
        met = {True: "yes", False: "**no**", None: ""}[row.met]
        print(
            f"| {row.name} | {row.node} | {row.ceiling} | {row.naive} | {row.vs_ceiling} "
            f"| {row.vs_naive} | {row.target} | {met} |"
        )


def service(stack: Stack, name: str) -> ServiceProcess:
    found = next(s for s in stack.services if s.name == name)
    assert found.process is not None
    return found


async def bench(args: argparse.Namespace, stack: Stack) -> tuple[list[Load], dict[str, Any]]:
    targets, info = await setup(args, stack)
    generator = Generator.find(args.load_generator, stack.workdir, args.threads)
    print(
        f"load generator: {generator.kind} ({generator.version}); closed loop "
        f"{generator.describe(args.connections, args.duration)} after a {args.warmup:g} s "
        f"warm-up; open loop: the asyncio client in this process",
        flush=True,
    )
    servers = {server.name: server for server in stack.servers}
    cpu_groups = {
        name: [service(stack, name).process.pid]  # type: ignore[union-attr]
        for name in ("regional", "ceiling", "naive", "global_writer")
    }
    cpu_groups["postgres"] = [servers["postgres"].pid]
    cpu_groups["valkey+nats"] = [servers["valkey"].pid, servers["nats"].pid]
    b = Bench(args, stack, generator, cpu_groups)
    seatmap = f"/v1/events/{targets.event_id}/seatmap"
    br = {"accept-encoding": "br"}
    print(
        f"closed loop (max throughput): {args.rounds} rounds of {args.duration:g} s, the targets "
        "taking turns in each round:",
        flush=True,
    )
    revalidate = {**br, "if-none-match": targets.etag_br}
    node, _, naive, _, _ = await b.closed(
        [
            Spec("node", "binary", f"{targets.node}{seatmap}", br),
            Spec("ceiling", "binary", f"{targets.ceiling}{seatmap}", br),
            Spec("naive", "binary", f"{targets.naive}{seatmap}", br),
            Spec("node", "json", f"{targets.node}{seatmap}?format=json", br),
            Spec("node", "304", f"{targets.node}{seatmap}", revalidate),
        ]
    )
    rate = node.rate / 2
    print(f"open loop at half the node's max ({rate:,.0f} req/s):", flush=True)
    seconds = args.open_loop_s
    pair = [("node", f"{targets.node}{seatmap}"), ("ceiling", f"{targets.ceiling}{seatmap}")]
    await b.open(pair, br, rate=rate)
    oha = shutil.which("oha")
    if oha is not None and not args.no_oha_check:
        for server, base in (("node", targets.node), ("ceiling", targets.ceiling)):
            await b.open_oha(oha, server, f"{base}{seatmap}", br, rate=rate, seconds=seconds)
    if naive.rate > 0:
        await b.open([("naive", f"{targets.naive}{seatmap}")], br, rate=naive.rate / 2)
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as client:
        text = (await client.get(f"{targets.node}/metrics")).text
    info["node_statuses"] = metrics_counts(text, "/v1/events/{event_id}/seatmap")
    info["generator"] = f"{generator.kind} ({generator.version})"
    return b.loads, info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--venue", type=Path, default=ROOT / "examples/venues/stadium-70k.json")
    parser.add_argument("--sold", type=float, default=SOLD_FRACTION, help="share to sell")
    parser.add_argument(
        "--duration", type=float, default=ROUND_S, help="seconds of each closed-loop round"
    )
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="closed-loop rounds")
    parser.add_argument("--warmup", type=float, default=WARMUP_S)
    parser.add_argument("--open-loop-s", type=float, default=OPEN_LOOP_S)
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--threads", type=int, default=WRK_THREADS, help="wrk threads")
    parser.add_argument(
        "--load-generator", choices=["auto", "wrk", "oha", "builtin"], default="auto"
    )
    parser.add_argument("--naive-pool", type=int, default=NAIVE_POOL)
    parser.add_argument(
        "--no-oha-check",
        action="store_true",
        help="skip the open-loop cross-check with oha's fixed-rate mode (run when oha is on PATH)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--serve-constant", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-naive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_constant or args.serve_naive:
        serve("create_constant_app" if args.serve_constant else "create_naive_app", args.port)
        return 0
    started = time.perf_counter()
    venue = load_venue_file(args.venue)
    print(f"venue: {venue.name}: {len(venue.layouts)} sections, {venue.seat_count:,} seats")
    print(
        f"machine: {os.cpu_count()} cores shared by PostgreSQL, Valkey, NATS, the writer, the "
        f"node, the ceiling and naive servers and the load generator; load average before the "
        f"run {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="tessera-read-bench-"))
    stack = Stack(workdir, venue, args.venue)
    try:
        loads, info = asyncio.run(bench(args, stack))
    except BaseException:
        for service in stack.services:
            print(f"--- {service.name} log ({service.log_path}) ends:\n{service.log_tail(20)}")
        raise
    finally:
        stack.stop()
        problems = stack.log_problems()
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return report(args, loads, info, problems, started)


def report(
    args: argparse.Namespace,
    loads: list[Load],
    info: dict[str, Any],
    problems: dict[str, int],
    started: float,
) -> int:
    """Print the table and the verdicts (and write --json): the exit status."""
    statuses = info["node_statuses"]
    node_5xx = sum(count for status, count in statuses.items() if status.startswith("5"))
    rows = table(loads, node_5xx)
    print_table(rows)
    node = find(loads, "node", "binary", "closed")
    ceiling = find(loads, "ceiling", "binary", "closed")
    naive = find(loads, "naive", "binary", "closed")
    node_open = find(loads, "node", "binary", "open")
    assert node is not None and ceiling is not None and naive is not None  # noqa: PT018
    assert node_open is not None
    verdict = {True: "met", False: "NOT met"}
    print(
        f"\nnode {node.rate:,.0f} req/s = {ratio(node.rate, ceiling.rate)} the raw Granian ceiling "
        f"({ceiling.rate:,.0f}; target ≥ {CEILING_RATIO_MIN}×: "
        f"{verdict[node.rate >= CEILING_RATIO_MIN * ceiling.rate]}) and "
        f"{ratio(node.rate, naive.rate)} the naive PostgreSQL endpoint ({naive.rate:,.1f} req/s); "
        f"node p99 at {node_open.offered_rate:,.0f} req/s (half its max) {node_open.p99_ms:.2f} ms "
        f"(target ≤ {HALF_RATE_P99_MS_MAX:g} ms: "
        f"{verdict[node_open.p99_ms <= HALF_RATE_P99_MS_MAX]})"
    )
    noisy = [f"{x.server} {x.variant} {x.mode}" for x in loads if disturbed(x)]
    if noisy:
        print(
            f"DISTURBED runs (processes outside the bench used ≥ {DISTURBED_CORES} cores): "
            f"{', '.join(noisy)}; their numbers are not the servers' alone: run again on a quiet "
            "machine"
        )
    print(
        f"\nnode's own count of seat-map answers by status (its /metrics): "
        f"{ {k: int(v) for k, v in sorted(statuses.items())} }"
    )
    print(
        f"warnings and errors in the service logs: {sum(problems.values())}"
        + "".join(f"\n    {count} × {line}" for line, count in problems.items())
    )
    print(
        f"python {sys.version.split()[0]}, load generator {info['generator']}; binary map served "
        f"{info['binary_served_bytes']:,} B ({info['binary_served_encoding']}), JSON "
        f"{info['json_served_bytes']:,} B ({info['json_served_encoding']}); "
        f"{info['claimed_seats']:,} seats sold; whole bench {time.perf_counter() - started:.0f} s"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "loads": [
                        {
                            k: (None if isinstance(v, float) and math.isnan(v) else v)
                            for k, v in asdict(x).items()
                        }
                        for x in loads
                    ],
                    "table": [asdict(r) for r in rows],
                    "setup": info,
                    "log_problems": problems,
                },
                indent=1,
                allow_nan=False,
            )
        )
    return 0 if all(row.met is not False for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
