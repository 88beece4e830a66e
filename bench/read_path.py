"""The read path: seat-map requests per second and latency on the regional read node serving the
70,000-seat stadium half sold, beside the Python ceiling and a naive PostgreSQL endpoint, in one
run.

    .venv/bin/python bench/read_path.py [--rounds 3] [--duration 4] [--connections 64]
                                        [--load-generator auto] [--keep] [--json OUT]

Setup (bench/stack.py, shared with bench/edge_bench.py). Starts its own PostgreSQL, Valkey and
NATS (tessera_ops.servers, in a temporary directory, all stopped at the end), the global
writer and a regional read node (tessera_ops.processes), creates the stadium event, then
sells half of it through the writer:
64 concurrent fans, each asking for a best-available hold of 8-10 seats
(`POST /v1/events/{e}/holds`) and buying it (`POST /v1/events/{e}/orders`, sandbox token); a
503 is retried
with the same Idempotency-Key. The node learns every sale from the change feed only. The bench
then waits until the node is ready (`/readyz` 200), its section maps equal the writer's
`GET /v1/events/{e}/sections/{s}/snapshot` for five sections, and its whole-event map equals,
byte for byte, the map computed from the writer's database.

Three servers answer `GET /v1/events/{e}/seatmap`, each one Granian worker with the node's
settings (regional/__main__.py):

- **node**: the regional read node (its bare-ASGI fast path, regional/fastpath.py).
- **ceiling**: the raw ASGI app of bench/loadgen.py (`create_constant_app`, run as
  `loadgen.py --serve-constant --port P`) answering every request with the bytes and headers the
  node answers the same request with (its brotli variant if the node picks that), without
  looking at the request: the most a Python ASGI app serves on this machine with one Granian
  worker.
- **naive**: the Litestar app below (`create_naive_app`, `--serve-naive --port P`) computing
  availability from PostgreSQL per request: one query over the writer's `sections` and
  `seat_claims` for the event (asyncpg pool of 10, READ COMMITTED), minus the venue's blocked
  seats, encoded as the same **binary** event map the node serves (`tessera_core.encode_event`:
  identical bytes and ETag, checked). It answers uncompressed whatever `Accept-Encoding` says and
  runs in the writer's database while the writer idles: both favour it.

Load, from separate processes. `--load-generator auto` takes wrk, else oha, else the asyncio
client of bench/loadgen.py, and prints which.

1. Closed loop, max throughput: `wrk -t2 -c64 -d4s --timeout 30s` with `Accept-Encoding: br`,
   after a 2 s warm-up per target, in 3 rounds in which the targets take turns (node binary,
   ceiling, naive, node `?format=json`, node with `If-None-Match` = its ETag, i.e. 304s), so that
   a change in the machine's other load hits every target alike; req/s = answers over all rounds.
2. Open loop at half the node's closed-loop rate: loadgen's asyncio client (this process) sends
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
import gc
import os
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import brotli
from litestar import Litestar, Response, get
from loadgen import (
    DISTURBED_CORES,
    REQUEST_TIMEOUT_S,
    Generator,
    Load,
    OpenLoop,
    Spec,
    add_closed_loop_args,
    closed_rounds,
    cores,
    cpu_seconds,
    disturbed,
    parse_oha,
    percentile_ms,
    print_load,
    print_table,
    ratio,
    raw_get,
    run_command,
    serve,
    start_ceiling,
    start_script_server,
    write_json,
)
from stack import (
    HTTP_TIMEOUT_S,
    JSON_TYPE,
    NAIVE_SQL,
    Stack,
    add_stack_args,
    event_map,
    metrics_counts,
    print_machine,
    run_in_stack,
    start_sold_stack,
    unblocked_bitmaps,
)

from regional.fastpath import CACHE_CONTROL
from regional.state import SEATMAP_TYPE
from tessera.http1 import fetch
from tessera.venue import load_venue_file
from tessera_ops.processes import ServiceProcess

SOLD_FRACTION: Final = 0.5
# Load. Closed loop: loadgen's defaults (3 rounds of 4 s, 64 connections, wrk -t2).
OPEN_LOOP_S: Final = 10.0
# Open loop: connections opened before the clock starts, and at most open at once (Granian's
# default backpressure is 1,024 concurrent connections per worker; past it new ones wait).
OPEN_LOOP_CONNECTIONS: Final = 128
OPEN_LOOP_CONNECTIONS_MAX: Final = 512
# Targets (the issue's).
CEILING_RATIO_MIN: Final = 0.6
HALF_RATE_P99_MS_MAX: Final = 10.0
# Servers under test: the node's Granian settings (one worker); the naive app's asyncpg pool is
# asyncpg's default size.
NAIVE_POOL: Final = 10
ENV_DATABASE: Final = "BENCH_NAIVE_DATABASE_URL"
ENV_VENUE: Final = "BENCH_NAIVE_VENUE"
ENV_POOL: Final = "BENCH_NAIVE_POOL"
# Headers the application sets (the rest, such as `date`, come from Granian).
APP_HEADERS: Final = (
    "content-type",
    "content-length",
    "etag",
    "cache-control",
    "vary",
    "content-encoding",
)


# --- the naive endpoint: availability from PostgreSQL per request (its own process) ---


def create_naive_app() -> Litestar:
    """The naive endpoint as a Litestar app, configured by BENCH_NAIVE_* (`start_baselines`)."""
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
        loads = await closed_rounds(
            self.generator,
            specs,
            self.cpu_groups,
            connections=self.args.connections,
            seconds=self.args.duration,
            rounds=self.args.rounds,
            warmup=self.args.warmup,
        )
        self.loads += loads
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
    app_headers = [(k, v) for k, v in headers if k in APP_HEADERS]
    ceiling = await start_ceiling(
        stack.workdir, "ceiling", body, app_headers, path=seatmap, request_headers=br
    )
    stack.services.append(ceiling)
    naive = start_script_server(
        stack.workdir,
        "naive",
        Path(__file__),
        ["--serve-naive"],
        {
            ENV_DATABASE: database,
            ENV_VENUE: str(stack.venue_path.resolve()),
            ENV_POOL: str(args.naive_pool),
        },
    )
    stack.services.append(naive)
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
    sold = await start_sold_stack(stack, args.sold, name="read")
    node, event_id, info = sold.node, sold.event_id, sold.info
    ceiling, naive, served = await start_baselines(args, stack, sold.database, node.url, event_id)
    if served["binary_identity_bytes"] != len(sold.expected):
        raise RuntimeError("the node's map changed after it converged")
    info |= served
    info["setup_s"] = time.perf_counter() - started
    print(f"setup took {info['setup_s']:.1f} s", flush=True)
    targets = Targets(node.url, ceiling.url, naive.url, event_id, served["etag_br"])
    return targets, info


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


def find(loads: list[Load], server: str, variant: str, mode: str) -> Load | None:
    return next(
        (x for x in loads if (x.server, x.variant, x.mode) == (server, variant, mode)), None
    )


def open_rows(loads: list[Load]) -> list[Row]:
    """The open-loop rows: the asyncio client's, and oha's cross-check when it ran."""
    rows = []
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
    return rows


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
    rows += open_rows(loads)
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


async def bench(args: argparse.Namespace, stack: Stack) -> tuple[list[Load], dict[str, Any]]:
    targets, info = await setup(args, stack)
    generator = Generator.find(args.load_generator, stack.workdir, args.threads)
    print(
        f"load generator: {generator.kind} ({generator.version}); closed loop "
        f"{generator.describe(args.connections, args.duration)} after a {args.warmup:g} s "
        f"warm-up; open loop: the asyncio client in this process",
        flush=True,
    )
    cpu_groups = stack.cpu_groups(("regional", "ceiling", "naive", "global_writer"))
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
    text = (await fetch(f"{targets.node}/metrics", timeout_s=HTTP_TIMEOUT_S)).body.decode()
    info["node_statuses"] = metrics_counts(text, "/v1/events/{event_id}/seatmap")
    info["generator"] = f"{generator.kind} ({generator.version})"
    return b.loads, info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_stack_args(parser, sold=SOLD_FRACTION)
    add_closed_loop_args(parser)
    parser.add_argument("--open-loop-s", type=float, default=OPEN_LOOP_S)
    parser.add_argument("--naive-pool", type=int, default=NAIVE_POOL)
    parser.add_argument(
        "--no-oha-check",
        action="store_true",
        help="skip the open-loop cross-check with oha's fixed-rate mode (run when oha is on PATH)",
    )
    parser.add_argument("--serve-naive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_naive:
        serve(f"{Path(__file__).stem}:create_naive_app", args.port)
        return 0
    started = time.perf_counter()
    stack = Stack.create("tessera-read-bench-", args.venue)
    print_machine(
        stack.venue,
        "PostgreSQL, Valkey, NATS, the writer, the node, the ceiling and naive servers and the "
        "load generator",
    )
    (loads, info), problems = run_in_stack(stack, args.keep, lambda: bench(args, stack))
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
    print_table(
        [
            "measure",
            "node",
            "raw Granian ceiling",
            "naive PostgreSQL",
            "node ÷ ceiling",
            "node ÷ naive",
            "target",
            "met",
        ],
        rows,
    )
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
        document = {
            "loads": [asdict(x) for x in loads],
            "table": [asdict(r) for r in rows],
            "setup": info,
            "log_problems": problems,
        }
        write_json(args.json, document)
    return 0 if all(row.met is not False for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
