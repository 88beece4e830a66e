"""The edge: cached seat-map GETs per second beside the raw-Granian ceiling, and a flash crowd of
polling fans against the micro-cache, on the 70,000-seat stadium, in one run.

    .venv/bin/python bench/edge_bench.py [--rounds 3] [--duration 4] [--connections 64]
                                         [--fans 3000] [--crowd-s 30] [--keep] [--json OUT]

Setup (bench/stack.py, as bench/read_path.py does it). Starts its own PostgreSQL, Valkey and NATS,
the global writer and a regional read node, creates the stadium event and sells 10% of it through
the writer (64 fans, best-available holds of 8-10 seats, each bought); waits until the node serves
exactly the database's map. Then the edges (`python -m edge`, tessera_ops.processes.start_edge,
one Granian worker each), all in front of that node, with a reads budget that never refuses this
load (one client address, 10^6/s):

- **edge**: the reads budget counted in-process (`"store": "local"`, the default for reads); its
  origin is a recording proxy (below). For the flash crowd, `--crowd-edges` such edges.
- **edge-redis**: the same with the reads budget in Redis (`"store": "redis"`): one GCRA script
  round trip to Valkey per read.
- **ceiling**: bench/loadgen.py's constant ASGI app under Granian (one worker), answering every
  request with exactly the bytes and headers the edge answers a cache hit with (X-Cache and Age
  included; Granian's own `date`, `server` and `connection` aside): the most a Python ASGI app
  serves here.

1. Cache-hit throughput, closed loop, max throughput: `GET /v1/events/{e}/seatmap` with
   `Accept-Encoding: br` (wrk, else oha, else loadgen's asyncio client; 64 connections), after a
   2 s warm-up per target, in 3 rounds of 4 s in which edge, ceiling, edge-redis and the node
   (answered directly, for reference) take turns. req/s = answers over all rounds. The edges'
   /metrics cache outcomes show that the answers were hits (one MISS per TTL).
2. Connection capacity: 1,100 connections each send one request to one edge process; how many
   are answered within 3 s (Granian's default backpressure, backlog 1,024 / 1 worker, caps the
   connections one worker holds; the rest wait in the accept queue).
3. Flash crowd: `--fans` polling fans (3,000) for `--crowd-s` (30 s), spread over `--crowd-edges`
   edge processes (default: enough that each holds at most 1,000 connections, under the cap
   above) and run from `--client-processes` processes (2). Each fan owns one keep-alive
   connection (loadgen's raw asyncio client), polls one key about once a second (period 1 s
   ± 20%, first poll at a random point of the first second) and sends `If-None-Match` with the
   last ETag it got. Keys: the event map (binary and `?format=json`) and three section maps, all
   `Accept-Encoding: br`, fans dealt round-robin. Meanwhile the bench holds `--holds-per-s` (4)
   single seats directly on the writer, in turn in the three sections, so every key's ETag
   changes about once a second. Each edge's origin is its own recording proxy (`--serve-proxy`,
   a process that forwards bytes to the node and logs every request line with the time), which
   gives the origin requests per key and the most for one key in any TTL window; the edges'
   `tessera_edge_origin_requests_total` and the node's request counts by route cross-check the
   totals.

Targets (the edge issue's): cache-hit req/s ≥ 0.6 times the ceiling's; in the flash crowd ≥ 99% of
answers are hits (X-Cache HIT, 304s included, over every request sent) and no key is fetched from
the origin more than once per TTL by one edge process; no 5xx. Prints each run, a markdown table
and exits 1 if a target is missed; `--json OUT` also writes the results. Everything shares the
machine's cores (2 on the project's machines): each run prints the cores each process used and
what processes outside the bench (other sessions) used, from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import multiprocessing
import os
import random
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from loadgen import (
    DISTURBED_CORES,
    Generator,
    Load,
    Spec,
    add_closed_loop_args,
    closed_rounds,
    cores,
    cpu_seconds,
    disturbed,
    percentile_ms,
    pool,
    print_table,
    ratio,
    raw_get,
    start_ceiling,
    start_script_server,
    write_json,
)
from stack import (
    ADMIN_KEY,
    HTTP_TIMEOUT_S,
    JSON_TYPE,
    JWT_SECRET,
    Stack,
    add_stack_args,
    metrics_counts,
    print_machine,
    run_in_stack,
    start_sold_stack,
)

from tessera import auth
from tessera.http1 import Connection, HttpError, fetch, request_bytes
from tessera_ops.processes import ServiceProcess, start_edge

SOLD_FRACTION: Final = 0.1
ADMISSION_SECRET: Final = "bench-edge-secret-" + "e" * 32  # a throwaway local secret
# A reads budget one client address never exhausts here (the largest the settings accept).
OPEN_READS: Final = {"ip": {"per_s": 1_000_000, "burst": 1_000_000}}
# The edge's TTL when TESSERA_CACHE_TTL_S is unset: the node's max-age (regional/fastpath.py).
ORIGIN_MAX_AGE_S: Final = 1.0
# The closed loop takes loadgen's defaults (3 rounds of 4 s, 64 connections, wrk -t2).
# Connection capacity probe.
PROBE_CONNECTIONS: Final = 1_100
PROBE_WAIT_S: Final = 3.0
# Flash crowd.
FANS: Final = 3_000
CROWD_S: Final = 30.0
POLL_S: Final = 1.0
POLL_JITTER: Final = 0.2
FANS_PER_EDGE_MAX: Final = 1_000  # under Granian's 1,024 connections per worker
CLIENT_PROCESSES: Final = 2
HOLDS_PER_S: Final = 4.0
CROWD_SECTIONS: Final = (0, 49, 99)  # positions in venue order
FAN_TIMEOUT_S: Final = 5.0
SLOW_S: Final = 0.05  # answers slower than this are counted by outcome, status and key
SECTION_PATH: Final = re.compile(r"/sections/([^/]+)/seatmap")
CONNECT_CONCURRENCY: Final = 200
# Targets (the edge issue's).
CEILING_RATIO_MIN: Final = 0.6
HIT_RATIO_MIN: Final = 0.99
ORIGIN_PER_KEY_PER_TTL_MAX: Final = 1
# Headers Granian adds (the rest come from the application; `connection: close` answers the
# probe's own `connection: close`), and the request id, which is new on every request.
SERVER_HEADERS: Final = frozenset({"date", "server", "connection", "x-request-id"})
SEATMAP_ROUTES: Final = (
    "/v1/events/{event_id}/seatmap",
    "/v1/events/{event_id}/sections/{section_id}/seatmap",
)


# --- the recording proxy between an edge and its origin (its own process) ---


async def proxy(port: int, target: str, record: Path) -> None:
    """Forward every connection to `target`; log `time<TAB>request line<TAB>accept-encoding` of
    each request head (the edge's origin requests are GETs without bodies)."""
    parts = urlsplit(target)
    log = record.open("a", buffering=1)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65_536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = b""
        with contextlib.suppress(OSError):
            while data := await reader.read(65_536):
                now = time.monotonic()
                buffer += data
                while (end := buffer.find(b"\r\n\r\n")) >= 0:
                    head, buffer = buffer[:end], buffer[end + 4 :]
                    line = head.split(b"\r\n", 1)[0].decode("latin-1")
                    encoding = request_header(head, b"accept-encoding").decode("latin-1")
                    log.write(f"{now:.6f}\t{line}\t{encoding}\n")
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        origin_reader, origin_writer = await asyncio.open_connection(parts.hostname, parts.port)
        await asyncio.gather(upstream(reader, origin_writer), pipe(origin_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def request_header(head: bytes, name: bytes) -> bytes:
    """The value of header `name` (lower case) in a request head, or nothing."""
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return b""


@dataclass
class OriginRequest:
    at: float
    path: str
    encoding: str


def read_records(record: Path) -> list[OriginRequest]:
    found = []
    for line in record.read_text().splitlines():
        at, request, encoding = line.split("\t")
        found.append(OriginRequest(float(at), request.split(" ")[1], encoding))
    return found


# --- the flash crowd's fans (in client processes) ---


@dataclass
class CrowdStats:
    """What one client process saw; merged over processes by `merge`."""

    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    cache: Counter[str] = field(default_factory=Counter)  # X-Cache of each answer
    hits: int = 0  # answers with X-Cache HIT (304s included)
    not_modified: int = 0
    per_key: Counter[str] = field(default_factory=Counter)  # requests by "edge path"
    misses: Counter[str] = field(default_factory=Counter)  # MISS answers by "edge path"
    connects: int = 0
    connect_failures: Counter[str] = field(default_factory=Counter)
    slow: Counter[str] = field(default_factory=Counter)  # answers over SLOW_S, by kind
    latencies: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)  # how late each poll left (client delay)
    elapsed_s: float = 0.0

    def plain(self) -> dict[str, Any]:
        """The fields as plain values (`asdict` would rebuild each Counter from its items)."""
        return {
            f.name: dict(v) if isinstance(v, Counter) else v
            for f in fields(self)
            for v in (getattr(self, f.name),)
        }


def merge(parts: Sequence[CrowdStats]) -> CrowdStats:
    total = CrowdStats()
    for part in parts:
        total.requests += part.requests
        total.hits += part.hits
        total.not_modified += part.not_modified
        total.connects += part.connects
        for name in ("statuses", "cache", "per_key", "misses", "connect_failures", "slow"):
            getattr(total, name).update(getattr(part, name))
        total.latencies += part.latencies
        total.lags += part.lags
        total.elapsed_s = max(total.elapsed_s, part.elapsed_s)
    return total


class Fan:
    """One polling fan: its own keep-alive connection to one edge, one key, its last ETag."""

    def __init__(self, edge: str, path: str, stats: CrowdStats, rng: random.Random) -> None:
        self.edge, self.path, self.stats, self.rng = edge, path, stats, rng
        parts = urlsplit(edge)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.plain = request_bytes("GET", f"{edge}{path}", {"accept-encoding": "br"})
        self.key = f"{edge} {path}"
        section = SECTION_PATH.search(path)
        self.label = (
            f"section {section.group(1)}"
            if section
            else "event " + ("json" if path.endswith("format=json") else "binary")
        )
        self.etag: bytes | None = None
        self.connection: Connection | None = None

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        self.stats.connects += 1
        try:
            async with asyncio.timeout(FAN_TIMEOUT_S):
                _, self.connection = await loop.create_connection(Connection, self.host, self.port)
        except (OSError, TimeoutError) as error:
            self.stats.connect_failures[type(error).__name__] += 1
            self.connection = None

    async def poll(self) -> None:
        stats = self.stats
        stats.requests += 1
        stats.per_key[self.key] += 1
        if self.connection is None or not self.connection.usable:
            await self.connect()
            if self.connection is None:
                stats.statuses["connect failed"] += 1
                return
        data = self.plain
        if self.etag is not None:
            data = data[:-2] + b"if-none-match: " + self.etag + b"\r\n\r\n"
        sent = time.monotonic()
        try:
            async with asyncio.timeout(FAN_TIMEOUT_S):
                answer = await self.connection.exchange(data)
        except (HttpError, TimeoutError) as error:
            stats.statuses[type(error).__name__] += 1
            self.connection.fail()
            self.connection = None
            return
        latency = time.monotonic() - sent
        status = answer.status
        stats.latencies.append(latency)
        stats.statuses[str(status)] += 1
        outcome = (answer.header(b"x-cache") or b"none").decode("latin-1")
        if latency > SLOW_S:
            stats.slow[f"{outcome} {status} {self.label}"] += 1
        stats.cache[outcome] += 1
        if outcome == "HIT":
            stats.hits += 1
        elif outcome == "MISS":
            stats.misses[self.key] += 1
        if status == 304:
            stats.not_modified += 1
        self.etag = answer.header(b"etag") or self.etag

    async def run(self, start: float, end: float) -> None:
        scheduled = start + self.rng.random() * POLL_S
        while scheduled < end:
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.stats.lags.append(time.monotonic() - scheduled)
            await self.poll()
            scheduled += POLL_S * self.rng.uniform(1 - POLL_JITTER, 1 + POLL_JITTER)
        if self.connection is not None:
            self.connection.fail()


async def crowd_client(
    assignments: list[tuple[str, str]], seconds: float, seed: int, channel: Any
) -> CrowdStats:
    """Connect every fan, report ready, wait for the start time, poll until it is over."""
    stats = CrowdStats()
    rng = random.Random(seed)
    fans = [Fan(edge, path, stats, rng) for edge, path in assignments]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect(fan: Fan) -> None:
        async with gate:
            await fan.connect()

    await asyncio.gather(*(connect(fan) for fan in fans))
    channel.send(("ready", stats.connects - sum(stats.connect_failures.values())))
    start = channel.recv()
    end = start + seconds
    await asyncio.gather(*(fan.run(start, end) for fan in fans))
    stats.elapsed_s = time.monotonic() - start
    return stats


def crowd_process(
    assignments: list[tuple[str, str]], seconds: float, seed: int, channel: Any
) -> None:
    """A client process of the flash crowd (multiprocessing target): its stats go back as a dict."""
    import gc  # noqa: PLC0415

    gc.freeze()
    stats = asyncio.run(crowd_client(assignments, seconds, seed, channel))
    channel.send(("done", stats.plain()))
    channel.recv()  # "exit": the driver has read this process's CPU time


def stats_from(data: dict[str, Any]) -> CrowdStats:
    counters = ("statuses", "cache", "per_key", "misses", "connect_failures", "slow")
    values: dict[str, Any] = {k: Counter(v) if k in counters else v for k, v in data.items()}
    return CrowdStats(**values)


# --- the flash crowd's driver (this process) ---


@dataclass
class Crowd:
    """The flash crowd's configuration: fans dealt round-robin over keys, then over edges."""

    edges: list[str]
    keys: list[str]  # paths
    fans: int
    seconds: float
    processes: int

    def assignments(self) -> list[list[tuple[str, str]]]:
        """Per client process, its fans' (edge, path)."""
        fans = [
            (self.edges[(n // len(self.keys)) % len(self.edges)], self.keys[n % len(self.keys)])
            for n in range(self.fans)
        ]
        return [fans[p :: self.processes] for p in range(self.processes)]


async def run_crowd(
    crowd: Crowd, groups: dict[str, list[int]], during: Any
) -> tuple[CrowdStats, float, dict[str, float]]:
    """Spawn the client processes, start them together once every fan is connected, await
    `during(start, end)` meanwhile (the background writes): the merged stats, the start time
    (time.monotonic) and the cores each group of `groups`, the client processes and the rest of
    the machine used meanwhile."""
    context = multiprocessing.get_context("spawn")
    channels, processes = [], []
    for index, assignments in enumerate(crowd.assignments()):
        mine, theirs = context.Pipe()
        process = context.Process(
            target=crowd_process, args=(assignments, crowd.seconds, 1_000 + index, theirs)
        )
        process.start()
        channels.append(mine)
        processes.append(process)
    try:
        connected = [(await asyncio.to_thread(channel.recv))[1] for channel in channels]
        print(f"  {sum(connected):,} of {crowd.fans:,} fans connected", flush=True)
        groups = {**groups, "crowd clients": [p.pid or 0 for p in processes]}
        before, began = cpu_seconds(groups), time.monotonic()
        start = began + 0.2
        writes = asyncio.create_task(during(start, start + crowd.seconds))
        for channel in channels:
            channel.send(start)
        parts = [stats_from((await asyncio.to_thread(c.recv))[1]) for c in channels]
        await writes
        after, elapsed = cpu_seconds(groups), time.monotonic() - began
        for channel in channels:
            channel.send("exit")
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    return merge(parts), start, cores({k: after[k] - before[k] for k in after}, elapsed)


async def background_holds(
    writer_url: str, event_id: str, seats: list[list[str]], rate: float, end: float
) -> Counter[str]:
    """Single-seat holds on the writer at `rate`/s until `end`, in turn in each list of `seats`
    (random seats: a taken one is a 409, which changes nothing): the statuses."""
    writes = pool(writer_url)
    statuses: Counter[str] = Counter()
    rng = random.Random(7)
    url = f"{writer_url}/v1/events/{event_id}/holds"

    async def hold(user: str, seat: str) -> None:
        headers = {
            "authorization": f"Bearer {auth.mint_token(user, JWT_SECRET)}",
            "idempotency-key": uuid.uuid4().hex,
            "content-type": JSON_TYPE,
        }
        body = json.dumps({"seats": [seat]}).encode()
        try:
            async with asyncio.timeout(HTTP_TIMEOUT_S):
                status = (await writes.send(request_bytes("POST", url, headers, body))).status
        except (HttpError, TimeoutError) as error:
            statuses[type(error).__name__] += 1
        else:
            statuses[str(status)] += 1

    tasks = []
    sent = 0
    next_at = time.monotonic()
    while next_at < end:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        choices = seats[sent % len(seats)]
        tasks.append(asyncio.create_task(hold(f"crowd-{sent:05d}", rng.choice(choices))))
        sent += 1
        next_at += 1 / rate
    await asyncio.gather(*tasks)
    await writes.close()
    return statuses


def prometheus(text: str, metric: str) -> dict[str, float]:
    """Values of `metric` in Prometheus text, by label set ("" without labels)."""
    found: dict[str, float] = {}
    pattern = re.compile(rf"^{re.escape(metric)}(\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    for match in pattern.finditer(text):
        found[match.group(1) or ""] = float(match.group(2))
    return found


async def metrics_text(url: str) -> str:
    answer = await fetch(url, timeout_s=HTTP_TIMEOUT_S)
    return answer.body.decode()


async def snapshot(edges: list[ServiceProcess], node: str) -> dict[str, Any]:
    """The counters the crowd is checked against: each edge's origin requests and cache
    outcomes, and the node's seat-map answers by route."""
    texts = [await metrics_text(f"{edge.url}/metrics") for edge in edges]
    node_text = await metrics_text(f"{node}/metrics")
    return {
        "origin": [
            sum(prometheus(t, "tessera_edge_origin_requests_total").values()) for t in texts
        ],
        "cache": [prometheus(t, "tessera_edge_cache_requests_total") for t in texts],
        "node": {r: sum(metrics_counts(node_text, r).values()) for r in SEATMAP_ROUTES},
    }


@dataclass
class KeyOrigin:
    """Origin requests of one key (edge, path, encoding) during the crowd, from its proxy."""

    edge: int
    path: str
    encoding: str
    count: int
    max_in_ttl: int  # the most in any window of one TTL
    min_gap_ms: float  # the shortest time between two of them


def origin_per_key(
    records: list[list[OriginRequest]], start: float, end: float, ttl: float
) -> list[KeyOrigin]:
    keys: dict[tuple[int, str, str], list[float]] = {}
    for edge, requests in enumerate(records):
        for request in requests:
            if start <= request.at < end and "/seatmap" in request.path:
                keys.setdefault((edge, request.path, request.encoding), []).append(request.at)
    found = []
    for (edge, path, encoding), times in sorted(keys.items()):
        times.sort()
        most, first = 0, 0
        for last, at in enumerate(times):
            while at - times[first] >= ttl:
                first += 1
            most = max(most, last - first + 1)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        gap = min(gaps) * 1000 if gaps else math.nan
        found.append(KeyOrigin(edge, path, encoding, len(times), most, gap))
    return found


# --- setup ---


@dataclass
class Edges:
    crowd: list[ServiceProcess]  # the first is "edge" of the closed loop
    redis: ServiceProcess
    records: list[Path]  # each crowd edge's proxy log


def edge_env(origin: str, writer: str, redis: str, store: str, ttl: float | None) -> dict[str, str]:
    env = {
        "TESSERA_ORIGIN_URLS": origin,
        "TESSERA_WRITER_URL": writer,
        "TESSERA_REDIS_URL": redis,
        "TESSERA_JWT_SECRET": JWT_SECRET,
        "TESSERA_ADMIN_KEY": ADMIN_KEY,
        "TESSERA_ADMISSION_SECRET": ADMISSION_SECRET,
        "TESSERA_RATE_LIMITS": json.dumps({"budgets": {"reads": {**OPEN_READS, "store": store}}}),
    }
    if ttl is not None:
        env["TESSERA_CACHE_TTL_S"] = str(ttl)
    return env


def start_edges(
    args: argparse.Namespace, stack: Stack, node: str, writer: str, count: int
) -> Edges:
    """`count` edges with local read budgets, each behind its recording proxy to the node, and
    one with its read budget in Redis, straight to the node."""
    redis = stack.server("valkey").url
    crowd, records = [], []
    for index in range(count):
        record = stack.workdir / f"origin-{index}.log"
        record.touch()
        proxy_service = start_script_server(
            stack.workdir,
            f"proxy-{index}",
            Path(__file__),
            ["--serve-proxy", "--target", node, "--record", str(record)],
            {},
        )
        stack.services.append(proxy_service)
        env = edge_env(proxy_service.url, writer, redis, "local", args.cache_ttl)
        edge = start_edge(stack.workdir / f"edge-{index}", env)
        edge.name = f"edge-{index}"
        stack.services.append(edge)
        crowd.append(edge)
        records.append(record)
    edge_redis = start_edge(
        stack.workdir / "edge-redis", edge_env(node, writer, redis, "redis", args.cache_ttl)
    )
    edge_redis.name = "edge-redis"
    stack.services.append(edge_redis)
    return Edges(crowd, edge_redis, records)


async def hit_answer(edge: str, path: str) -> tuple[list[tuple[str, str]], bytes]:
    """The edge's answer to a cached GET of `path` (br) that is a hit, and a check that it
    answers 304 to its ETag."""
    br = {"accept-encoding": "br"}
    for _ in range(50):
        status, headers, body = await raw_get(f"{edge}{path}", br)
        if status == 200 and dict(headers).get("x-cache") == "HIT":
            break
        await asyncio.sleep(0.02)
    else:
        raise RuntimeError(f"{edge}{path}: no cache hit ({status}, {headers})")
    etag = dict(headers)["etag"]
    revalidated, _, _ = await raw_get(f"{edge}{path}", {**br, "if-none-match": etag})
    if revalidated != 304:
        raise RuntimeError(f"{edge}{path}: If-None-Match answered {revalidated}, not 304")
    return [(k, v) for k, v in headers if k not in SERVER_HEADERS], body


@dataclass
class Setup:
    event_id: str
    writer: str
    node: str
    edges: Edges
    ceiling: str
    info: dict[str, Any]


async def setup(args: argparse.Namespace, stack: Stack) -> Setup:
    started = time.perf_counter()
    sold = await start_sold_stack(stack, args.sold, name="edge")
    writer, node, event_id, info = sold.writer, sold.node, sold.event_id, sold.info
    count = args.crowd_edges or math.ceil(args.fans / FANS_PER_EDGE_MAX)
    edges = start_edges(args, stack, node.url, writer.url, count)
    seatmap = f"/v1/events/{event_id}/seatmap"
    headers, body = await hit_answer(edges.crowd[0].url, seatmap)
    redis_headers, redis_body = await hit_answer(edges.redis.url, seatmap)
    if (redis_body, [h for h in redis_headers if h[0] != "age"]) != (
        body,
        [h for h in headers if h[0] != "age"],
    ):
        raise RuntimeError("the two edges answer differently")
    br = {"accept-encoding": "br"}
    ceiling = await start_ceiling(
        stack.workdir, "ceiling", body, headers, path=seatmap, request_headers=br
    )
    stack.services.append(ceiling)
    info |= {
        "edges": [e.url for e in edges.crowd],
        "edge_redis": edges.redis.url,
        "hit_headers": headers,
        "hit_bytes": len(body),
        "identity_bytes": len(sold.expected),
        "setup_s": time.perf_counter() - started,
    }
    print(
        f"{count} edge(s) with local read budgets ({', '.join(info['edges'])}), each behind a "
        f"recording proxy to the node; edge-redis {edges.redis.url}; a hit answers {len(body):,} B "
        f"with {headers}; ceiling {ceiling.url} answers the same; setup took "
        f"{info['setup_s']:.1f} s",
        flush=True,
    )
    return Setup(event_id, writer.url, node.url, edges, ceiling.url, info)


# --- the runs ---


async def hit_throughput(
    args: argparse.Namespace, stack: Stack, s: Setup, generator: Generator
) -> tuple[list[Load], dict[str, Any]]:
    """Closed loop: edge, ceiling, edge-redis and the node in turns; the edges' cache outcomes."""
    seatmap = f"/v1/events/{s.event_id}/seatmap"
    br = {"accept-encoding": "br"}
    edges = [s.edges.crowd[0], s.edges.redis]
    before = await snapshot(edges, s.node)
    print(
        f"cache hits, closed loop (max throughput): {args.rounds} rounds of {args.duration:g} s, "
        "the targets taking turns in each round:",
        flush=True,
    )
    groups = stack.cpu_groups(("edge-0", "edge-redis", "ceiling", "regional", "global_writer"))
    loads = await closed_rounds(
        generator,
        [
            Spec("edge", "hit", f"{s.edges.crowd[0].url}{seatmap}", br),
            Spec("ceiling", "hit", f"{s.ceiling}{seatmap}", br),
            Spec("edge-redis", "hit", f"{s.edges.redis.url}{seatmap}", br),
            Spec("node", "direct", f"{s.node}{seatmap}", br),
        ],
        groups,
        connections=args.connections,
        seconds=args.duration,
        rounds=args.rounds,
        warmup=args.warmup,
    )
    after = await snapshot(edges, s.node)
    outcomes = {}
    for index, name in enumerate(("edge", "edge-redis")):
        counts = Counter(after["cache"][index])
        counts.subtract(before["cache"][index])
        outcomes[name] = {
            re.sub(r'\{outcome="(\w+)"\}', r"\1", k): int(v) for k, v in counts.items() if v
        }
    print(f"  cache outcomes during the closed loop (the edges' /metrics): {outcomes}", flush=True)
    return loads, outcomes


async def connection_probe(url: str, count: int, wait_s: float) -> int:
    """How many of `count` connections, each sending one GET at once, are answered in `wait_s`."""
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    data = request_bytes("GET", url, {"accept-encoding": "br"})
    opened: list[Connection] = []

    async def one() -> bool:
        with contextlib.suppress(OSError, HttpError, TimeoutError):
            async with asyncio.timeout(wait_s):
                _, connection = await loop.create_connection(Connection, host, port)
                opened.append(connection)
                return (await connection.exchange(data)).status == 200
        return False

    answered = sum(await asyncio.gather(*(one() for _ in range(count))))
    for connection in opened:
        connection.fail()
    await asyncio.sleep(0.5)  # let the edge see them close
    return answered


@dataclass
class CrowdResult:
    fans: int
    edges: int
    client_processes: int
    seconds: float
    ttl_s: float
    stats: CrowdStats
    holds: dict[str, int]
    keys: list[KeyOrigin]
    edge_origin_requests: float  # the edges' own count (tessera_edge_origin_requests_total)
    node_requests: dict[str, float]  # the node's seat-map answers by route
    cpu_cores: dict[str, float]

    @property
    def hit_ratio(self) -> float:
        return self.stats.hits / self.stats.requests if self.stats.requests else 0.0

    @property
    def origin_requests(self) -> int:
        return sum(k.count for k in self.keys)

    @property
    def max_in_ttl(self) -> int:
        return max((k.max_in_ttl for k in self.keys), default=0)

    @property
    def server_errors(self) -> int:
        return sum(v for k, v in self.stats.statuses.items() if k.startswith("5"))

    @property
    def failures(self) -> int:
        """Requests without an HTTP answer (connect failures, timeouts, dropped connections)."""
        return sum(v for k, v in self.stats.statuses.items() if not k.isdigit())


async def flash_crowd(args: argparse.Namespace, stack: Stack, s: Setup) -> CrowdResult:
    venue = stack.venue
    sections = [venue.layouts[p] for p in CROWD_SECTIONS]
    keys = [f"/v1/events/{s.event_id}/seatmap", f"/v1/events/{s.event_id}/seatmap?format=json"]
    keys += [f"/v1/events/{s.event_id}/sections/{x.section_id}/seatmap" for x in sections]
    edges = s.edges.crowd
    crowd = Crowd([e.url for e in edges], keys, args.fans, args.crowd_s, args.client_processes)
    seats = [[x.seat_id(i) for i in range(x.seat_count)] for x in sections]
    print(
        f"flash crowd: {args.fans:,} fans polling ~1/s for {args.crowd_s:g} s, {len(keys)} keys, "
        f"{len(edges)} edge(s), {args.client_processes} client process(es); "
        f"{args.holds_per_s:g} holds/s on the writer meanwhile ...",
        flush=True,
    )
    before = await snapshot(edges, s.node)
    groups = stack.cpu_groups(
        [e.name for e in edges] + [f"proxy-{i}" for i in range(len(edges))] + ["regional"]
    )
    holds: Counter[str] = Counter()

    async def writes(_start: float, end: float) -> None:
        holds.update(await background_holds(s.writer, s.event_id, seats, args.holds_per_s, end))

    stats, start, used = await run_crowd(crowd, groups, writes)
    after = await snapshot(edges, s.node)
    await asyncio.sleep(0.2)  # the proxies' last lines
    records = [read_records(path) for path in s.edges.records]
    ttl = args.cache_ttl or ORIGIN_MAX_AGE_S
    return CrowdResult(
        fans=args.fans,
        edges=len(edges),
        client_processes=args.client_processes,
        seconds=args.crowd_s,
        ttl_s=ttl,
        stats=stats,
        holds=dict(holds),
        # Every origin request from the start until the last fan's last answer.
        keys=origin_per_key(records, start, start + stats.elapsed_s, ttl),
        edge_origin_requests=sum(after["origin"]) - sum(before["origin"]),
        node_requests={r: after["node"][r] - before["node"][r] for r in SEATMAP_ROUTES},
        cpu_cores=used,
    )


def print_crowd(r: CrowdResult) -> None:
    st = r.stats
    used = ", ".join(f"{k} {v:.2f}" for k, v in r.cpu_cores.items() if v >= 0.005)
    print(
        f"  {st.requests:,} requests in {st.elapsed_s:.1f} s = {st.requests / st.elapsed_s:,.0f}/s "
        f"(offered ~{r.fans / POLL_S:,.0f}/s); statuses {dict(sorted(st.statuses.items()))}; "
        f"X-Cache {dict(st.cache)}; hit ratio {r.hit_ratio:.2%}; 304s {st.not_modified:,}; "
        f"latency p50/p99/max {percentile_ms(st.latencies, 50):.2f}/"
        f"{percentile_ms(st.latencies, 99):.2f}/{percentile_ms(st.latencies, 100):.1f} ms; "
        f"client poll lag p99 {percentile_ms(st.lags, 99):.1f} ms; connects {st.connects:,} "
        f"(failed {dict(st.connect_failures) or 0})\n"
        f"  origin requests (proxies): {r.origin_requests:,} for {len(r.keys)} keys "
        f"(edge × path × encoding); the edges' own count {r.edge_origin_requests:g}; the node's "
        f"seat-map answers {sum(r.node_requests.values()):g}; MISS answers at the fans "
        f"{sum(st.misses.values()):,}\n"
        f"  holds on the writer: {r.holds}; answers over {SLOW_S * 1000:.0f} ms by X-Cache, "
        f"status and key: {dict(st.slow)}\n"
        f"  cores used: {used}; total {sum(r.cpu_cores.values()):.2f} of {os.cpu_count()}",
        flush=True,
    )
    for key in r.keys:
        print(
            f"    edge-{key.edge} {key.path} ({key.encoding}): {key.count} origin requests "
            f"= {key.count / r.stats.elapsed_s:.2f}/s; most in one TTL window {key.max_in_ttl}; "
            f"shortest gap {key.min_gap_ms:,.0f} ms",
            flush=True,
        )
    if r.cpu_cores.get("other processes", 0.0) >= DISTURBED_CORES:
        print(
            f"  DISTURBED: processes outside the bench used "
            f"{r.cpu_cores['other processes']:.2f} cores during the crowd",
            flush=True,
        )


@dataclass
class Row:
    name: str
    value: str
    reference: str = ""
    ratio: str = ""
    target: str = ""
    met: bool | None = None


def table(loads: list[Load], capacity: int, crowd: CrowdResult) -> list[Row]:
    by = {x.server: x for x in loads}
    edge, ceiling, redis, node = by["edge"], by["ceiling"], by["edge-redis"], by["node"]
    rows = [
        Row(
            "**cache-hit seat map, closed loop: req/s** (edge, reads budget local)",
            f"{edge.rate:,.0f}",
            f"ceiling {ceiling.rate:,.0f}",
            ratio(edge.rate, ceiling.rate),
            f"≥ {CEILING_RATIO_MIN}× ceiling",
            edge.rate >= CEILING_RATIO_MIN * ceiling.rate,
        ),
        Row(
            "same, edge with the reads budget in Redis",
            f"{redis.rate:,.0f}",
            f"ceiling {ceiling.rate:,.0f}",
            ratio(redis.rate, ceiling.rate),
        ),
        Row(
            "same, the regional node answering directly",
            f"{node.rate:,.0f}",
            f"ceiling {ceiling.rate:,.0f}",
            ratio(node.rate, ceiling.rate),
        ),
        Row(
            "closed loop p50 / p99 ms: edge; edge-redis; node",
            f"{edge.p50_ms:.2f} / {edge.p99_ms:.2f}; {redis.p50_ms:.2f} / {redis.p99_ms:.2f}; "
            f"{node.p50_ms:.2f} / {node.p99_ms:.2f}",
            f"ceiling {ceiling.p50_ms:.2f} / {ceiling.p99_ms:.2f}",
        ),
        Row(
            "failed requests, closed loop (all four)",
            str(sum(x.failed for x in loads)),
            target="0",
            met=not any(x.failed for x in loads),
        ),
        Row(
            f"connections one edge process answers at once ({PROBE_CONNECTIONS:,} tried)",
            f"{capacity:,}",
        ),
        *crowd_rows(crowd),
    ]
    return rows


def crowd_rows(r: CrowdResult) -> list[Row]:
    st = r.stats
    keys = len(r.keys) or 1
    per_key_s = r.origin_requests / keys / (st.elapsed_s or 1)
    stale = st.cache.get("STALE", 0)
    return [
        Row(
            f"flash crowd: {r.fans:,} fans, {r.seconds:g} s, {r.edges} edge(s): requests; req/s",
            f"{st.requests:,}; {st.requests / (st.elapsed_s or 1):,.0f}",
            f"offered ~{r.fans / POLL_S:,.0f}/s",
        ),
        Row(
            "**hit ratio** (X-Cache HIT, 304s included, ÷ every request)",
            f"{r.hit_ratio:.2%}",
            target=f"≥ {HIT_RATIO_MIN:.0%}",
            met=r.hit_ratio >= HIT_RATIO_MIN,
        ),
        Row("304 share", f"{st.not_modified / (st.requests or 1):.1%}"),
        Row(
            "STALE; 5xx; no answer (timeouts, connect failures)",
            f"{stale}; {r.server_errors}; {r.failures}",
            target="5xx 0",
            met=r.server_errors == 0,
        ),
        Row(
            "origin requests per key per second (key = edge × path × encoding); per TTL",
            f"{per_key_s:.2f}/s; {per_key_s * r.ttl_s:.2f} per {r.ttl_s:g} s TTL",
            f"{r.origin_requests:,} over {len(r.keys)} keys (proxies); edges' count "
            f"{r.edge_origin_requests:g}; node's {sum(r.node_requests.values()):g}",
        ),
        Row(
            "**most origin requests for one key in any TTL window**; shortest gap",
            f"{r.max_in_ttl}; {min((k.min_gap_ms for k in r.keys), default=math.nan):,.0f} ms",
            target=f"≤ {ORIGIN_PER_KEY_PER_TTL_MAX} per edge process",
            met=r.max_in_ttl <= ORIGIN_PER_KEY_PER_TTL_MAX and bool(r.keys),
        ),
        Row(
            "fan latency p50 / p99 ms; client poll lag p99",
            f"{percentile_ms(st.latencies, 50):.2f} / {percentile_ms(st.latencies, 99):.2f}; "
            f"{percentile_ms(st.lags, 99):.1f} ms",
        ),
    ]


# --- main ---


@dataclass
class Results:
    loads: list[Load]
    outcomes: dict[str, Any]
    capacity: int
    crowd: CrowdResult
    info: dict[str, Any]


async def bench(args: argparse.Namespace, stack: Stack) -> Results:
    s = await setup(args, stack)
    generator = Generator.find(args.load_generator, stack.workdir, args.threads)
    print(
        f"load generator: {generator.kind} ({generator.version}); closed loop "
        f"{generator.describe(args.connections, args.duration)} after a {args.warmup:g} s "
        "warm-up; flash crowd: loadgen's raw asyncio client in client processes",
        flush=True,
    )
    loads, outcomes = await hit_throughput(args, stack, s, generator)
    url = f"{s.edges.crowd[0].url}/v1/events/{s.event_id}/seatmap"
    capacity = await connection_probe(url, PROBE_CONNECTIONS, PROBE_WAIT_S)
    print(
        f"connection capacity: {capacity:,} of {PROBE_CONNECTIONS:,} connections to one edge "
        f"process answered within {PROBE_WAIT_S:g} s",
        flush=True,
    )
    crowd = await flash_crowd(args, stack, s)
    print_crowd(crowd)
    s.info["generator"] = f"{generator.kind} ({generator.version})"
    return Results(loads, outcomes, capacity, crowd, s.info)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_stack_args(parser, sold=SOLD_FRACTION)
    add_closed_loop_args(parser)
    parser.add_argument("--fans", type=int, default=FANS, help="flash-crowd fans")
    parser.add_argument("--crowd-s", type=float, default=CROWD_S, help="flash-crowd seconds")
    parser.add_argument(
        "--crowd-edges",
        type=int,
        default=0,
        help=f"edge processes for the crowd (default: one per {FANS_PER_EDGE_MAX:,} fans)",
    )
    parser.add_argument("--client-processes", type=int, default=CLIENT_PROCESSES)
    parser.add_argument("--holds-per-s", type=float, default=HOLDS_PER_S)
    parser.add_argument(
        "--cache-ttl", type=float, help="TESSERA_CACHE_TTL_S (default: the origin's max-age)"
    )
    parser.add_argument("--serve-proxy", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--record", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_proxy:
        asyncio.run(proxy(args.port, args.target, args.record))
        return 0
    started = time.perf_counter()
    stack = Stack.create("tessera-edge-bench-", args.venue)
    print_machine(
        stack.venue,
        "PostgreSQL, Valkey, NATS, the writer, the node, the edges, their proxies, the ceiling "
        "and the load generators",
    )
    results, problems = run_in_stack(stack, args.keep, lambda: bench(args, stack))
    return report(args, results, problems, started)


def report(
    args: argparse.Namespace, results: Results, problems: dict[str, int], started: float
) -> int:
    """Print the table and the verdicts (and write --json): the exit status."""
    rows = table(results.loads, results.capacity, results.crowd)
    print_table(["measure", "value", "reference", "ratio", "target", "met"], rows)
    noisy = [f"{x.server} {x.variant} {x.mode}" for x in results.loads if disturbed(x)]
    other = results.crowd.cpu_cores.get("other processes", 0.0)
    if other >= DISTURBED_CORES:
        noisy.append("flash crowd")
    if noisy:
        print(
            f"\nDISTURBED runs (processes outside the bench used ≥ {DISTURBED_CORES} cores): "
            f"{', '.join(noisy)}; their numbers are not the servers' alone"
        )
    print(
        f"\nwarnings and errors in the service logs: {sum(problems.values())}"
        + "".join(f"\n    {count} × {line}" for line, count in problems.items())
    )
    print(
        f"python {sys.version.split()[0]}, load generator {results.info['generator']}; a hit "
        f"answers {results.info['hit_bytes']:,} B; {results.info['claimed_seats']:,} seats sold "
        f"before the crowd; whole bench {time.perf_counter() - started:.0f} s"
    )
    if args.json:
        crowd = asdict(results.crowd) | {"stats": results.crowd.stats.plain()}
        for name in ("latencies", "lags"):
            values = crowd["stats"].pop(name)
            crowd["stats"][f"{name}_p50_ms"] = percentile_ms(values, 50)
            crowd["stats"][f"{name}_p99_ms"] = percentile_ms(values, 99)
        document = {
            "loads": [asdict(x) for x in results.loads],
            "closed_loop_cache_outcomes": results.outcomes,
            "connection_capacity": results.capacity,
            "crowd": crowd,
            "table": [asdict(r) for r in rows],
            "setup": results.info,
            "log_problems": problems,
        }
        write_json(args.json, document)
    return 0 if all(row.met is not False for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
