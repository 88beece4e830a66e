"""One flash sale, three systems: Tessera through its edges, the textbook row-locking design and
the common Redis cache design, in one run, on the 70,000-seat stadium, at two crowd sizes.

    .venv/bin/python bench/onsale_vs_baselines.py [--fans 2000] [--overload-fans 5000]
        [--duration 25] [--edges 2] [--connections 0] [--systems tessera,textbook,cache]
        [--tessera-direct] [--keep] [--json OUT]

Starts its own PostgreSQL, Valkey and NATS (bench/stack.py, in a temporary directory, all stopped
at the end) and a second Valkey for the cache design; each system gets a fresh database and a
fresh event on the stadium for each crowd, and only its own processes run during its sale:

- **tessera**: the global writer, a regional read node and `--edges` edges (`python -m edge`,
  one Granian worker each) in front of it; fans talk to the edges only (dealt round-robin), with
  every rate budget `{"ip": {"per_s": 10^6, "burst": 10^6}, "store": "local"}` so that the
  bench's single address is never throttled; no waiting room. Event: hold_ttl_s HOLD_TTL_S,
  per_user_limit PER_USER_LIMIT. `--tessera-direct` (a diagnosis, not the comparison): the fans
  read from the node and write to the writer, without edges.
- **textbook** (bench/baselines/textbook.py): every request one PostgreSQL transaction with
  `SELECT … FOR UPDATE` on the seat rows (`SKIP LOCKED` for best-available), availability read
  from the database.
- **cache** (bench/baselines/cache.py): a Redis key per held seat set by one Lua script per hold
  (`SET NX PX`, all or nothing), checkout written to PostgreSQL, availability read by scanning
  Redis.

All three answer the same API (docs/api.md's shapes): `GET /v1/events/{e}/seatmap` (Tessera's
binary event map; the baselines encode theirs with `tessera_core.encode_event`, ETag +
`If-None-Match`), `POST /v1/events/{e}/holds` (`{"seats": […]}` or `{"best_available":
{"quantity": k, "sections": [s]}}`) and `POST /v1/events/{e}/orders` (`{"hold_id",
"payment_token"}`), writes with a Bearer JWT (tessera.auth.mint_token) and an Idempotency-Key.
The baselines hold seats for the same HOLD_TTL_S.

**The workload** (`WORKLOAD`, whose fields are named here in `code`; the same seeds for every
system). `--fans` concurrent fans for `--duration` seconds, arriving within the first second, each
on its own keep-alive connection to each server it talks to (as a browser is; `--connections N`
shares N per system instead); when a fan leaves, a new fan (a new user) takes its place. A fan wants
`quantities` seats (weights `quantity_weights`: pairs and fours most common) and prefers one section
drawn with Zipf skew `zipf_s` over the sections ranked by their best row (heavy contention on the
best sections), then the next two in rank, then anywhere. It reads the seat map (with
`If-None-Match` once it has one), looks at it for `look_s` seconds, then asks for a hold:
`pick_share` of fans pick adjacent seats they saw free in their section (one of the three best runs,
at random: fans collide), the rest ask for best-available there. A 409 means: read the map again and
try the next preference, at most `hold_attempts` times. With a hold the fan fills in the checkout
form for `checkout_s` seconds, then buys (`tok_approve`) or, `abandon_share` of fans, walks away
(the hold must expire). A refusal (503 or 429) is sent again with the same Idempotency-Key after its
Retry-After (at most `retry_after_s_max`, with jitter), another 5xx or a transport error after a
short pause; at most `send_attempts` sends in all. After `--duration` no fan starts a new request;
requests in flight finish. The fans are tessera_ops/crowd.py's (the simulator `tessera onsale`
runs), in this process, on the house's keep-alive HTTP/1.1 client (tessera/http1.py); they record
every answer. The sale is sized to measure capacity, not the venue: each run says what share of the
stadium it sold, and SOLD OUT past SOLD_OUT_SHARE.

**Two crowds.** `--fans` (2,000: the comparison) and `--overload-fans` (5,000: more than any
system serves on this machine, where what matters is how fast and how cleanly the excess is
refused: the share of requests answered after `slow_answer_s`, and refusals that are 503/429 with
Retry-After).

**Measures** per system and crowd: seats sold per second (seats of the orders acknowledged within
the duration ÷ the duration); servers' CPU per seat sold (the system's processes' CPU over the
whole sale, drain included, ÷ every seat sold: the figure the machine's outside load disturbs
least); hold, seat-map and order latency p50/p99 as the fan saw them (retries included); the
share of requests (every attempt) answered after `slow_answer_s`; refusals, their latency, and any
without Retry-After; feed staleness; the audit; the cores each process used.

**Feed staleness** (how old the availability a fan saw was): every acknowledged hold carries its
commit time (`expires_at` minus the TTL: the server's clock when it took the seats). For each
seat-map answer received at `t`, the map the fan then has (the body, or the one its 304 confirmed)
is checked against every acknowledged hold committed in the STALENESS_WINDOW_S before `t` and
still live at `t` (not expired, or bought): staleness = `t` minus the commit time of the earliest
such hold that the map still shows available (0 when it shows them all). Releases (expired holds
coming back) are not counted.

**The audit**, after the sale, against each system's store: Tessera's `tessera_ops.audit`
(`audit` over the database, `audit_event` across writer and node, then again once every hold of
the sale has expired and been released: the settled audit, where no commit in flight can hide a
drift); the baselines' equivalent queries (bench/baselines/*.py `ledger`). Then, the same for all
three, the acknowledgements against the store: **oversells** = seats in two acknowledged orders +
seats of two acknowledged holds whose lifetimes overlap (commit → expiry, or → forever once
bought; OVERLAP_TOLERANCE_S for clock reads inside transactions) + seats of a stored order held or
sold by someone else + the store's own double-sale queries; **lost acknowledgements** =
acknowledged orders the store does not have with exactly their seats, and acknowledged holds
still live at the audit (LIVE_MARGIN_S) whose seats are not all held by them.

**Targets** (issue 12, Tessera): at 2,000 fans, servers' CPU per seat ≤ ⅓ of the textbook
design's (the goal ⅕), seats sold per second ≥ the cache design's and ≥ twice the textbook design's,
hold and order p99 ≤ 300 ms, seat-map p99 ≤ 100 ms; at 5,000 fans, ≤ 1% of requests answered
after 5 s, every refusal a 503 or 429 with Retry-After; at both, 0 oversells, 0 lost
acknowledgements, 0 other audit violations, no 5xx but 503 and no transport errors. Prints each
run and a markdown table per crowd, exits 1 if a target is missed, `--json OUT` also writes the
results. Everything shares the machine's cores (2 here): each run prints what each process used
and what processes outside the bench used.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import psycopg
from baselines import cache, common, textbook
from baselines.common import Ledger, VenueIndex
from loadgen import (
    DISTURBED_CORES,
    cores,
    cpu_seconds,
    percentile_ms,
    print_table,
    raw_get,
    serve,
    start_script_server,
    write_json,
)
from stack import (
    ADMIN_KEY,
    JWT_SECRET,
    Stack,
    add_stack_args,
    create_event,
    print_machine,
    run_in_stack,
    start_bench_writer,
    start_servers,
)

from tessera import auth
from tessera.http1 import Pool
from tessera_ops.audit import AuditTarget, audit, audit_event
from tessera_ops.crowd import Crowd, Fan, Record, SeenMap, Venue, Workload, seats_in_two_orders
from tessera_ops.processes import ServiceProcess, start_edge, start_regional
from tessera_ops.servers import RunningServer, create_database, start_valkey

SEED: Final = 20261128
SYSTEMS: Final = ("tessera", "textbook", "cache")
FANS: Final = 2_000
# The overload variant (issue 12): more fans than any system serves; what matters is how fast
# and how cleanly the excess is refused.
OVERLOAD_FANS: Final = 5_000
# Short enough that no system sells the stadium out (each run says how much it sold): a sale
# that runs out of seats measures the venue, not the system.
DURATION_S: Final = 25.0
EDGES: Final = 2
# 0: one connection per fan to each server it talks to, as fans' browsers have; a client pool
# smaller than the crowd would queue fans in the load generator and call it server latency.
CONNECTIONS: Final = 0
HOLD_TTL_S: Final = 15
PER_USER_LIMIT: Final = 8
# The workload (module docstring): tessera_ops/crowd.py's fans, the same for every system.
WORKLOAD: Final = Workload(
    quantities=(1, 2, 3, 4, 5, 6),
    quantity_weights=(10, 40, 10, 30, 5, 5),
    pick_share=0.3,
    abandon_share=0.15,
    zipf_s=1.0,
    look_s=(0.2, 0.8),
    checkout_s=(0.3, 1.0),
    retry_pause_s=(0.05, 0.2),
    hold_attempts=4,
    # A refused or failed write is sent again with the same Idempotency-Key, this often in all;
    # after a 503 or 429 the fan waits what Retry-After says (at most this), else a moment.
    send_attempts=5,
    retry_after_s_max=5.0,
    # An answer this late is one a fan would not wait for (the overload target counts them).
    slow_answer_s=5.0,
)
# A sale that sold this share of the venue ran out of seats: its rate says little of the system.
SOLD_OUT_SHARE: Final = 0.9
REQUEST_TIMEOUT_S: Final = 30.0
PICK_RUNS: Final = 3
STALENESS_WINDOW_S: Final = 20.0
LIVE_MARGIN_S: Final = 2.0
# After the newest hold's deadline: the reaper's tick and a batch, then the settled audit.
SETTLE_MARGIN_S: Final = 2.0
OVERLAP_TOLERANCE_S: Final = 0.05
ADMISSION_SECRET: Final = "bench-edge-secret-" + "e" * 32  # a throwaway local secret
OPEN_BUDGET: Final = {"ip": {"per_s": 1_000_000, "burst": 1_000_000}, "store": "local"}
READY_LIMIT_S: Final = 60.0
# Targets (issue 12), for Tessera at FANS fans unless said otherwise.
CPU_SHARE_MAX: Final = 1 / 3  # servers' CPU per seat ÷ the textbook design's (required)
CPU_SHARE_GOAL: Final = 1 / 5  # the same, the goal
TEXTBOOK_RATIO_MIN: Final = 2.0  # seats per second ÷ the textbook design's
CACHE_RATIO_MIN: Final = 1.0  # seats per second ÷ the cache design's
WRITE_P99_MS_MAX: Final = 300.0  # hold and order p99
SEATMAP_P99_MS_MAX: Final = 100.0
SLOW_SHARE_MAX: Final = 0.01  # at OVERLOAD_FANS: answers after WORKLOAD.slow_answer_s


# --- the crowd ---


@dataclass
class Target:
    """One system as the fans see it: where they read seat maps and where they write, each list
    dealt round-robin over the fans."""

    name: str
    read_urls: list[str]
    write_urls: list[str]
    event_id: str


class Sale:
    """The flash sale against one target (see the module docstring)."""

    def __init__(self, target: Target, index: VenueIndex, connections: int, fans: int) -> None:
        self.target = target
        self.index = index
        urls = list(dict.fromkeys(target.read_urls + target.write_urls))
        per_url = max(1, connections // len(urls)) if connections else fans
        self.pools = {
            url: Pool(url, connections_max=per_url, timeout_s=REQUEST_TIMEOUT_S) for url in urls
        }
        self.record = Record(keep_maps=True)
        self.elapsed = 0.0
        layouts = index.layouts
        venue = Venue(
            event_id=target.event_id,
            section_ids=[layout.section_id for layout in layouts],
            seat_counts=list(index.seat_counts),
            ranks=[min(layout.row_ranks) for layout in layouts],
            hold_ttl_s=HOLD_TTL_S,
        )
        self.crowd = Crowd(venue, WORKLOAD, self.record, self.pick)

    @property
    def stop_at(self) -> float:
        return self.crowd.stop_at

    async def run(self, fans: int, seconds: float) -> Record:
        self.crowd.stop_at = time.time() + seconds
        await asyncio.gather(*(self.slot(n) for n in range(fans)))
        self.record.ended = time.time()
        for pool in self.pools.values():
            await pool.close()
        return self.record

    async def slot(self, number: int) -> None:
        """One place in the crowd: fan after fan until the sale is over."""
        rng = random.Random(SEED * 10_000 + number)
        target = self.target
        reads = self.pools[target.read_urls[number % len(target.read_urls)]]
        writes = self.pools[target.write_urls[number % len(target.write_urls)]]
        await asyncio.sleep(rng.random())
        for serial in itertools.count():
            if self.crowd.over():
                return
            user = f"fan-{number:05d}-{serial:03d}"
            token = auth.mint_token(user, JWT_SECRET)
            headers = [(b"authorization", f"Bearer {token}".encode())]
            await self.crowd.visit(Fan(user, token, headers, [], reads, writes, rng))

    def pick(self, rng: random.Random, seen: SeenMap, position: int, quantity: int) -> list[str]:
        """Adjacent seats the fan saw free in the section: one of its PICK_RUNS best runs, at
        random (fans collide)."""
        runs = common.find_runs(self.index, seen.free, quantity, [position], PICK_RUNS)
        if not runs:
            return []
        chosen, seats = rng.choice(runs)
        return [self.index.seat_id(chosen, i) for i in seats]


# --- after the sale: staleness and the audit ---


def staleness(record: Record, index: VenueIndex) -> list[float]:
    """Per seat-map answer (200 or 304), how old the map the fan then had was (module
    docstring): seconds since the earliest acknowledged, still live hold it does not show."""
    bought = {order.hold_id for order in record.orders}
    holds = sorted(record.holds.values(), key=lambda h: h.committed)
    commits = [h.committed for h in holds]
    located = {h.hold_id: [index.locate(seat) for seat in h.seats] for h in holds}
    by_map: dict[str, list[float]] = {}
    for read in record.reads:
        if read.map_key is not None and read.status in (200, 304):
            by_map.setdefault(read.map_key, []).append(read.received)
    ages: list[float] = []
    for key, times in by_map.items():
        free = SeenMap.decode(record.maps[key], index.seat_counts).free
        low = bisect.bisect_left(commits, min(times) - STALENESS_WINDOW_S)
        high = bisect.bisect_left(commits, max(times))
        missing = [
            (hold.committed, math.inf if hold.hold_id in bought else hold.expires)
            for hold in holds[low:high]
            if any(free[p] >> i & 1 for p, i in located[hold.hold_id])
        ]
        for at in times:
            oldest = next(
                (
                    committed
                    for committed, end in missing
                    if at - STALENESS_WINDOW_S <= committed < at and end > at
                ),
                None,
            )
            ages.append(0.0 if oldest is None else at - oldest)
    return ages


# The stores' own queries that find a seat sold or held twice (the rest: other violations).
DOUBLE_SALE_QUERIES: Final = frozenset(
    {"seat_sold_twice", "seat_in_two_holds_or_orders", "seat_in_two_orders"}
)


@dataclass
class Audit:
    oversells: dict[str, int]
    lost: dict[str, int]  # acknowledged "holds" and "orders" the store does not have
    other: dict[str, int]  # the store's other consistency checks, convergence
    live_holds_checked: int
    orders_checked: int
    notes: list[str] = field(default_factory=list)

    @property
    def oversold(self) -> int:
        return sum(self.oversells.values())

    @property
    def lost_total(self) -> int:
        return sum(self.lost.values())


def check(record: Record, ledger: Ledger, audited_at: float) -> Audit:
    """The acknowledgements against the store (module docstring: the audit)."""
    oversells = acknowledged_twice(record)
    for order_id, (_, seats) in ledger.orders.items():
        for seat in seats:
            if ledger.seats.get(seat, (None, None))[1] != order_id:
                oversells["seats of a stored order held or sold elsewhere"] += 1
    for name, count in ledger.violations.items():
        if name in DOUBLE_SALE_QUERIES:
            oversells[f"store: {name}"] += count
    bought = {order.hold_id for order in record.orders}
    lost: Counter[str] = Counter(holds=0, orders=0)
    for order in record.orders:
        stored = ledger.orders.get(order.order_id)
        if stored is None or stored[1] != frozenset(order.seats):
            lost["orders"] += 1
    live = [
        h
        for h in record.holds.values()
        if h.hold_id not in bought and h.expires > audited_at + LIVE_MARGIN_S
    ]
    examples = [
        f"audit {audited_at - record.ended:.1f} s after the last answer; newest hold expires "
        f"{max((h.expires for h in record.holds.values()), default=0) - audited_at:.1f} s "
        "after the audit"
    ]
    for hold in live:
        shown = [ledger.seats.get(seat, (None, None)) for seat in hold.seats]
        if any(holder != hold.hold_id for holder, _ in shown):
            lost["holds"] += 1
            if len(examples) < 4:
                since, until = hold.committed - audited_at, hold.expires - audited_at
                examples.append(
                    f"lost hold {hold.hold_id} {hold.seats} (committed {since:.1f} s, expiring "
                    f"{until:.1f} s from the audit): the store shows {shown}"
                )
    other = {k: v for k, v in ledger.violations.items() if k not in DOUBLE_SALE_QUERIES}
    return Audit(dict(oversells), dict(lost), other, len(live), len(record.orders), examples)


def acknowledged_twice(record: Record) -> Counter[str]:
    """Seats in two acknowledged orders, and seats of two acknowledged holds whose lifetimes
    (commit -> expiry, or forever once bought) overlap."""
    found: Counter[str] = Counter()
    twice = seats_in_two_orders(record.orders)
    if twice:
        found["seats in two acknowledged orders"] += twice
    bought = {order.hold_id for order in record.orders}
    lives: dict[str, list[tuple[float, float]]] = {}
    for hold in record.holds.values():
        end = math.inf if hold.hold_id in bought else hold.expires
        for seat in hold.seats:
            lives.setdefault(seat, []).append((hold.committed, end))
    for spans in lives.values():
        spans.sort()
        reach = -math.inf
        for begin, end in spans:
            if begin < reach - OVERLAP_TOLERANCE_S:
                found["seats of two acknowledged holds at once"] += 1
                break
            reach = max(reach, end)
    return found


def tessera_ledger(database_url: str, index: VenueIndex, event_id: str) -> Ledger:
    """Tessera's claims (seat -> hold, order) and confirmed orders for the event."""
    found = Ledger()
    with psycopg.connect(database_url) as conn:
        for section, seat, hold_id, order_id in conn.execute(
            "SELECT section_id, seat_index, hold_id::text, order_id::text FROM seat_claims "
            "WHERE event_id = %s",
            (event_id,),
        ).fetchall():
            position = index.positions[section]
            found.seats[index.seat_id(position, seat)] = (hold_id, order_id)
        for order_id, hold_id, seats in conn.execute(
            "SELECT order_id::text, hold_id::text, seats FROM orders "
            "WHERE event_id = %s AND status = 'confirmed'",
            (event_id,),
        ).fetchall():
            found.orders[order_id] = (hold_id, frozenset(seats))
    return found


# --- the three systems ---


@dataclass
class Servers:
    postgres: RunningServer
    valkey: RunningServer
    nats: RunningServer
    cache_valkey: RunningServer  # the cache design's own Redis


@dataclass
class Sold:
    """What a sale left to summarize: the record, the cores used, the audit, the setup."""

    record: Record
    cpu_cores: dict[str, float]
    seconds: float
    audit: Audit
    setup: dict[str, Any]


async def sell(
    target: Target, index: VenueIndex, args: argparse.Namespace, groups: dict[str, list[int]]
) -> tuple[Sale, dict[str, float]]:
    """Run the sale: the sale (its record, window and elapsed time, drain included) and the
    cores each group used meanwhile."""
    print(
        f"  {target.name}: {args.fans:,} fans for {args.duration:g} s, reading from "
        f"{', '.join(target.read_urls)}, writing to {', '.join(target.write_urls)} ...",
        flush=True,
    )
    sale = Sale(target, index, args.connections, args.fans)
    before, began = cpu_seconds(groups), time.monotonic()
    await sale.run(args.fans, args.duration)
    after, sale.elapsed = cpu_seconds(groups), time.monotonic() - began
    used = cores({k: after[k] - before[k] for k in after}, sale.elapsed)
    used.pop("load generator", None)  # reaped children: none here
    used["load generator"] = used.pop("bench process")
    return sale, used


def edge_env(node: str, writer: str, redis_url: str) -> dict[str, str]:
    budgets = dict.fromkeys(("reads", "queue", "holds", "orders"), OPEN_BUDGET)
    return {
        "TESSERA_ORIGIN_URLS": node,
        "TESSERA_WRITER_URL": writer,
        "TESSERA_REDIS_URL": redis_url,
        "TESSERA_JWT_SECRET": JWT_SECRET,
        "TESSERA_ADMIN_KEY": ADMIN_KEY,
        "TESSERA_ADMISSION_SECRET": ADMISSION_SECRET,
        "TESSERA_RATE_LIMITS": json.dumps({"budgets": budgets}),
    }


async def wait_serving(urls: list[str], path: str) -> None:
    """Until every server answers `path` with 200."""
    deadline = time.monotonic() + READY_LIMIT_S
    for url in urls:
        while (await raw_get(f"{url}{path}", {}))[0] != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url}{path} is not served")
            await asyncio.sleep(0.1)


async def run_tessera(
    args: argparse.Namespace, stack: Stack, servers: Servers, index: VenueIndex
) -> Sold:
    database = create_database(servers.postgres.url, "bench_onsale_tessera")
    writer = start_bench_writer(stack, database, servers.valkey, servers.nats)
    event_id = create_event(
        writer.url,
        stack.venue_path,
        name="Onsale against the baselines",
        hold_ttl_s=HOLD_TTL_S,
        per_user_limit=PER_USER_LIMIT,
    )
    node_env = {
        "TESSERA_NATS_URL": servers.nats.url,
        "TESSERA_WRITER_URL": writer.url,
        "TESSERA_JWT_SECRET": JWT_SECRET,
    }
    node = start_regional(stack.workdir / "regional", node_env)
    stack.services.append(node)
    edges = []
    for number in range(args.edges):
        edge = start_edge(
            stack.workdir / f"edge-{number}", edge_env(node.url, writer.url, servers.valkey.url)
        )
        edge.name = f"edge-{number}"
        stack.services.append(edge)
        edges.append(edge)
    await wait_serving([e.url for e in edges], f"/v1/events/{event_id}/seatmap")
    groups = {
        "writer": [pid(writer)],
        "regional": [pid(node)],
        "edges": [pid(e) for e in edges],
        "postgres": [servers.postgres.pid],
        "valkey+nats": [servers.valkey.pid, servers.nats.pid],
    }
    edge_urls = [e.url for e in edges]
    target = Target("tessera", edge_urls, edge_urls, event_id)
    if args.tessera_direct:  # diagnosis: no edges between the fans and the tiers
        target = Target("tessera", [node.url], [writer.url], event_id)
    sale, used = await sell(target, index, args, groups)
    record = sale.record
    ledger = tessera_ledger(database, index, event_id)
    audited_at = time.time()  # after the read: a hold live now was live throughout it
    report = audit(database, event_id)
    ledger.violations = {name: len(rows) for name, rows in report.violations.items()}
    across = await audit_event(AuditTarget(writer.url, {"local": node.url}, database), event_id)
    result = check(record, ledger, audited_at)
    result.other |= {"unreachable": len(across.unreachable)}
    # Right after the sale the reaper is still releasing the crowd's last holds, so maps may
    # differ by a commit in flight: reported here, judged by the settled audit below.
    if across.converged_s is not None:
        result.notes.append(f"regional node converged {across.converged_s:.2f} s after the sale")
    else:
        result.notes.append(
            f"maps still moving after the sale: {len(across.writer)} writer and "
            f"{len(across.regional)} regional sections differed at the last look"
        )
    result.notes.append(await writer_batches(writer.url))
    result.other |= await settled_audit(record, writer.url, node.url, database, event_id)
    if args.tessera_direct:
        result.notes.append("DIRECT: fans read from the regional node and wrote to the writer")
    for service in (*edges, node, writer):
        service.stop()
    setup = {
        "event_id": event_id,
        "edges": 0 if args.tessera_direct else args.edges,
        "stop_at": sale.stop_at,
        "fans": args.fans,
        "elapsed_s": sale.elapsed,
    }
    return Sold(record, used, args.duration, result, setup)


async def settled_audit(
    record: Record, writer_url: str, node_url: str, database: str, event_id: str
) -> dict[str, int]:
    """Once every hold the sale made has expired and been released (the reaper's work after the
    crowd left), the writer's memory, the database and the regional node agree exactly: no race
    with a commit in flight can hide a drift then."""
    newest = max((hold.expires for hold in record.holds.values()), default=0.0)
    await asyncio.sleep(max(0.0, newest - time.time() + SETTLE_MARGIN_S))
    report = await audit_event(AuditTarget(writer_url, {"local": node_url}, database), event_id)
    return {
        "settled: database violations": sum(len(rows) for rows in report.violations.values()),
        "settled: writer map unlike the database": len(report.writer),
        "settled: regional map unlike the writer": len(report.regional),
    }


async def writer_batches(writer_url: str) -> str:
    """The writer's group commits so far (its /metrics): how many, their mean size and commit
    time."""
    text = (await raw_get(f"{writer_url}/metrics", {}))[2].decode()
    values = {}
    for name in (
        "tessera_batch_requests_count",
        "tessera_batch_requests_sum",
        "tessera_batch_commit_duration_seconds_sum",
    ):
        found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        values[name] = float(found.group(1)) if found else math.nan
    batches = values["tessera_batch_requests_count"]
    if not batches:
        return "writer: no group commits"
    size = values["tessera_batch_requests_sum"] / batches
    commit_ms = values["tessera_batch_commit_duration_seconds_sum"] / batches * 1000
    return (
        f"writer: {batches:,.0f} group commits, {size:.1f} requests and {commit_ms:,.0f} ms of "
        "commit each on average"
    )


def pid(service: ServiceProcess) -> int:
    assert service.process is not None
    return service.process.pid


def start_baseline(stack: Stack, name: str, env: dict[str, str]) -> ServiceProcess:
    flags = [f"--serve-{name}", "--venue", str(stack.venue_path)]
    env = {
        common.ENV_SECRET: JWT_SECRET,
        common.ENV_VENUE: str(stack.venue_path.resolve()),
        common.ENV_HOLD_TTL: str(HOLD_TTL_S),
        **env,
    }
    service = start_script_server(stack.workdir, name, Path(__file__), flags, env)
    stack.services.append(service)
    return service


async def run_textbook(
    args: argparse.Namespace, stack: Stack, servers: Servers, index: VenueIndex
) -> Sold:
    database = create_database(servers.postgres.url, "bench_onsale_textbook")
    textbook.schema(database)
    event = str(uuid.uuid4())
    textbook.load_event(database, stack.venue, event)
    env = {common.ENV_DATABASE: database, common.ENV_POOL: str(args.textbook_pool)}
    app = start_baseline(stack, "textbook", env)
    groups = {"textbook": [pid(app)], "postgres": [servers.postgres.pid]}
    sale, used = await sell(Target("textbook", [app.url], [app.url], event), index, args, groups)
    record = sale.record
    ledger = textbook.ledger(database, stack.venue, event)
    audited_at = time.time()  # after the read: a hold live now was live throughout it
    app.stop()
    setup = {
        "event_id": event,
        "pool": args.textbook_pool,
        "stop_at": sale.stop_at,
        "fans": args.fans,
        "elapsed_s": sale.elapsed,
    }
    return Sold(record, used, args.duration, check(record, ledger, audited_at), setup)


async def run_cache(
    args: argparse.Namespace, stack: Stack, servers: Servers, index: VenueIndex
) -> Sold:
    database = create_database(servers.postgres.url, "bench_onsale_cache")
    cache.schema(database)
    event = str(uuid.uuid4())
    redis_url = servers.cache_valkey.url
    env = {
        common.ENV_DATABASE: database,
        common.ENV_REDIS: redis_url,
        common.ENV_POOL: str(args.cache_pool),
        common.ENV_REDIS_POOL: str(args.cache_redis_pool),
    }
    app = start_baseline(stack, "cache", env)
    groups = {
        "cache": [pid(app)],
        "postgres": [servers.postgres.pid],
        "valkey": [servers.cache_valkey.pid],
    }
    sale, used = await sell(Target("cache", [app.url], [app.url], event), index, args, groups)
    record = sale.record
    ledger = cache.ledger(database, redis_url, stack.venue, event)
    audited_at = time.time()  # after the read: a hold live now was live throughout it
    app.stop()
    setup = {
        "event_id": event,
        "pool": args.cache_pool,
        "redis_pool": args.cache_redis_pool,
        "stop_at": sale.stop_at,
        "fans": args.fans,
        "elapsed_s": sale.elapsed,
    }
    return Sold(record, used, args.duration, check(record, ledger, audited_at), setup)


RUNNERS: Final = {"tessera": run_tessera, "textbook": run_textbook, "cache": run_cache}


# --- the results ---


@dataclass
class Run:
    system: str
    crowd: int  # concurrent fans
    seconds: float
    seats_sold: int  # seats of the orders acknowledged within the sale's duration
    seats_per_s: float
    orders: int
    orders_per_s: float
    seats_sold_after: int  # seats of orders acknowledged after it (requests sent before its end)
    holds_acknowledged: int
    hold_p50_ms: float
    hold_p99_ms: float
    seatmap_p50_ms: float
    seatmap_p99_ms: float
    order_p50_ms: float
    order_p99_ms: float
    staleness_p50_ms: float
    staleness_p99_ms: float
    staleness_max_ms: float
    fresh_share: float  # answers whose map showed every acknowledged live hold
    cpu_ms_per_seat: float  # the servers' CPU over the sale (drain included) per seat sold
    reads: int
    distinct_maps: int
    statuses: dict[str, int]
    fans: dict[str, int]
    server_errors: int  # 5xx other than 503, every attempt
    transport_errors: int  # no answer (refused, reset, timed out), every attempt
    exchanges: int  # every request sent, retries included
    slow_share: float  # exchanges answered after WORKLOAD.slow_answer_s
    refusals: int  # 503 and 429 answers
    refusal_p50_ms: float
    refusal_p99_ms: float
    refusals_without_retry_after: int
    sold_share: float  # of the venue's seats, sold by the end (drain included)
    sold_out: bool
    cpu_cores: dict[str, float]
    audit: Audit
    examples: dict[str, str]
    setup: dict[str, Any]


def summarize(system: str, sold: Sold, index: VenueIndex) -> Run:
    record = sold.record
    stop_at = sold.setup["stop_at"]
    inside = [o for o in record.orders if o.acked <= stop_at]
    seats = sum(len(o.seats) for o in inside)
    ages = staleness(record, index)
    lat = record.latencies
    attempts: Counter[str] = Counter()  # every attempt, those sent again included
    for status, count in record.statuses.items():
        attempts[status.split(" ")[1]] += count
    return Run(
        system=system,
        crowd=sold.setup["fans"],
        seconds=sold.seconds,
        seats_sold=seats,
        seats_per_s=seats / sold.seconds,
        orders=len(inside),
        orders_per_s=len(inside) / sold.seconds,
        seats_sold_after=sum(len(o.seats) for o in record.orders) - seats,
        holds_acknowledged=len(record.holds),
        hold_p50_ms=percentile_ms(lat.get("hold", []), 50),
        hold_p99_ms=percentile_ms(lat.get("hold", []), 99),
        seatmap_p50_ms=percentile_ms(lat.get("seatmap", []), 50),
        seatmap_p99_ms=percentile_ms(lat.get("seatmap", []), 99),
        order_p50_ms=percentile_ms(lat.get("order", []), 50),
        order_p99_ms=percentile_ms(lat.get("order", []), 99),
        staleness_p50_ms=percentile_ms(ages, 50),
        staleness_p99_ms=percentile_ms(ages, 99),
        staleness_max_ms=percentile_ms(ages, 100),
        fresh_share=sum(1 for a in ages if a == 0) / len(ages) if ages else math.nan,
        cpu_ms_per_seat=cpu_per_seat(sold),
        reads=len(ages),
        distinct_maps=len(record.maps),
        statuses=dict(sorted(record.statuses.items())),
        fans=dict(record.fans),
        server_errors=sum(n for code, n in attempts.items() if code[0] == "5" and code != "503"),
        transport_errors=attempts["0"],
        exchanges=record.exchanges,
        slow_share=record.slow_exchanges / record.exchanges if record.exchanges else math.nan,
        refusals=len(record.refusal_latencies),
        refusal_p50_ms=percentile_ms(record.refusal_latencies, 50),
        refusal_p99_ms=percentile_ms(record.refusal_latencies, 99),
        refusals_without_retry_after=record.refusals_without_retry_after,
        sold_share=(share := sum(len(o.seats) for o in record.orders) / sum(index.seat_counts)),
        sold_out=share >= SOLD_OUT_SHARE,
        cpu_cores=sold.cpu_cores,
        audit=sold.audit,
        examples=record.examples,
        setup=sold.setup,
    )


def cpu_per_seat(sold: Sold) -> float:
    """Milliseconds of the servers' CPU (the system's processes, not the load generator or
    other processes) per seat sold, over the whole sale."""
    seats = sum(len(order.seats) for order in sold.record.orders)
    servers = sum(
        v
        for k, v in sold.cpu_cores.items()
        if k not in ("load generator", "other processes", "kernel softirq")
    )
    return servers * sold.setup["elapsed_s"] * 1000 / seats if seats else math.inf


def print_run(run: Run) -> None:
    used = ", ".join(f"{k} {v:.2f}" for k, v in run.cpu_cores.items() if v >= 0.005)
    a = run.audit
    sold_out = " SOLD OUT: the venue, not the system, set this rate" if run.sold_out else ""
    print(
        f"  {run.system} ({run.crowd:,} fans): {run.seats_sold:,} seats sold in {run.seconds:g} s"
        f" = {run.seats_per_s:,.1f} seats/s ({run.orders:,} orders = {run.orders_per_s:,.1f}/s; "
        f"{run.seats_sold_after:,} more seats in orders answered after the end); "
        f"{run.holds_acknowledged:,} holds acknowledged; {run.sold_share:.0%} of the venue "
        f"sold{sold_out}\n"
        f"    hold p50/p99 {run.hold_p50_ms:,.0f}/{run.hold_p99_ms:,.0f} ms, seat map "
        f"{run.seatmap_p50_ms:,.0f}/{run.seatmap_p99_ms:,.0f} ms, order {run.order_p50_ms:,.0f}/"
        f"{run.order_p99_ms:,.0f} ms; staleness p50/p99/max {run.staleness_p50_ms:,.0f}/"
        f"{run.staleness_p99_ms:,.0f}/{run.staleness_max_ms:,.0f} ms over {run.reads:,} map "
        f"answers ({run.fresh_share:.0%} showed every acknowledged hold; "
        f"{run.distinct_maps:,} distinct maps)\n"
        f"    {run.exchanges:,} requests sent, {run.slow_share:.2%} answered after "
        f"{WORKLOAD.slow_answer_s:g} s; {run.refusals:,} refused (503/429) in p50/p99 "
        f"{run.refusal_p50_ms:,.0f}/{run.refusal_p99_ms:,.0f} ms, "
        f"{run.refusals_without_retry_after:,} without Retry-After\n"
        f"    statuses {run.statuses}\n"
        f"    fans {run.fans}\n"
        f"    cores used: {used}; total {sum(run.cpu_cores.values()):.2f} of {os.cpu_count()}\n"
        f"    audit: oversells {a.oversells or 0}; lost acknowledgements {a.lost} "
        f"({a.live_holds_checked:,} live holds and {a.orders_checked:,} orders checked); other "
        f"{ {k: v for k, v in a.other.items() if v} or 0 }"
        + "".join(f"; {note}" for note in a.notes)
        + "".join(f"\n    {k}: {v}" for k, v in run.examples.items()),
        flush=True,
    )
    other = run.cpu_cores.get("other processes", 0.0)
    if other >= DISTURBED_CORES:
        print(f"    DISTURBED: processes outside the bench used {other:.2f} cores", flush=True)


@dataclass
class Row:
    name: str
    tessera: str
    textbook: str
    cache: str
    target: str = ""
    met: bool | None = None


def cells(runs: dict[str, Run], show: Any) -> tuple[str, str, str]:
    """The tessera, textbook and cache cells of a row ("—" for a system not run)."""
    tessera, book, cached = (show(runs[s]) if s in runs else "—" for s in SYSTEMS)
    return tessera, book, cached


def ratio_row(runs: dict[str, Run], other: str, minimum: float) -> Row:
    tessera, base = runs.get("tessera"), runs.get(other)
    value, met = "—", None
    if tessera is not None and base is not None:
        ratio = tessera.seats_per_s / base.seats_per_s if base.seats_per_s else math.inf
        value, met = f"{ratio:.2f}×", ratio >= minimum
    return Row(
        f"**Tessera ÷ {other}**, seats sold per second", value, "", "", f"≥ {minimum:g}×", met
    )


def cpu_row(runs: dict[str, Run]) -> Row:
    """Tessera's servers' CPU per seat as a share of the textbook design's."""
    tessera, book = runs.get("tessera"), runs.get("textbook")
    value, met = "—", None
    if tessera is not None and book is not None and book.cpu_ms_per_seat > 0:
        share = tessera.cpu_ms_per_seat / book.cpu_ms_per_seat
        goal = "meets" if share <= CPU_SHARE_GOAL else "misses"
        value, met = f"{share:.2f} ({goal} the ⅕ goal)", share <= CPU_SHARE_MAX
    return Row("**Tessera ÷ textbook**, CPU per seat", value, "", "", "≤ ⅓ (goal ⅕)", met)


def bound_row(runs: dict[str, Run], name: str, value: Any, bound: float, shown: str) -> Row:
    """A Tessera figure that must stay at or under `bound`; every system's figure shown."""
    t = runs.get("tessera")
    met = None if t is None else value(t) <= bound
    return Row(name, *cells(runs, lambda r: f"{value(r):,.0f}"), target=shown, met=met)


def zero_row(runs: dict[str, Run], name: str, count: Any, show: Any) -> Row:
    t = runs.get("tessera")
    met = None if t is None else count(t) == 0
    return Row(name, *cells(runs, show), target="0 (Tessera)", met=met)


def table(runs: dict[str, Run], overload: bool) -> list[Row]:
    """The comparison at one crowd size; the targets of that size are judged."""
    ms = "{:,.0f} / {:,.0f}".format
    rows = [
        Row(
            "**seats sold per second** (share of the venue sold)",
            *cells(runs, lambda r: f"{r.seats_per_s:,.1f} ({r.sold_share:.0%})"),
        ),
        Row(
            "**servers' CPU per seat sold, ms**",
            *cells(runs, lambda r: f"{r.cpu_ms_per_seat:,.2f}"),
        ),
    ]
    if not overload:
        rows += [
            cpu_row(runs),
            ratio_row(runs, "textbook", TEXTBOOK_RATIO_MIN),
            ratio_row(runs, "cache", CACHE_RATIO_MIN),
            bound_row(runs, "hold p99 ms", lambda r: r.hold_p99_ms, WRITE_P99_MS_MAX, "≤ 300"),
            bound_row(runs, "order p99 ms", lambda r: r.order_p99_ms, WRITE_P99_MS_MAX, "≤ 300"),
            bound_row(
                runs, "seat map p99 ms", lambda r: r.seatmap_p99_ms, SEATMAP_P99_MS_MAX, "≤ 100"
            ),
        ]
    rows += [
        Row("hold p50 / p99 ms", *cells(runs, lambda r: ms(r.hold_p50_ms, r.hold_p99_ms))),
        Row("order p50 / p99 ms", *cells(runs, lambda r: ms(r.order_p50_ms, r.order_p99_ms))),
        Row(
            "seat map p50 / p99 ms",
            *cells(runs, lambda r: ms(r.seatmap_p50_ms, r.seatmap_p99_ms)),
        ),
        Row(
            f"requests answered after {WORKLOAD.slow_answer_s:g} s",
            *cells(runs, lambda r: f"{r.slow_share:.2%}"),
            target=f"≤ {SLOW_SHARE_MAX:.0%}" if overload else "",
            met=(runs["tessera"].slow_share <= SLOW_SHARE_MAX)
            if overload and "tessera" in runs
            else None,
        ),
        Row(
            "refusals (503/429): count; p50 / p99 ms",
            *cells(runs, lambda r: f"{r.refusals:,}; {ms(r.refusal_p50_ms, r.refusal_p99_ms)}"),
        ),
        zero_row(
            runs,
            "refusals without Retry-After",
            lambda r: r.refusals_without_retry_after,
            lambda r: f"{r.refusals_without_retry_after:,}",
        ),
        zero_row(
            runs,
            "5xx other than 503; transport errors (every attempt)",
            lambda r: r.server_errors + r.transport_errors,
            lambda r: f"{r.server_errors:,}; {r.transport_errors:,}",
        ),
        Row(
            "orders/s; holds acknowledged; hold 409s",
            *cells(
                runs,
                lambda r: (
                    f"{r.orders_per_s:,.1f}; {r.holds_acknowledged:,}; "
                    f"{r.statuses.get('hold 409', 0):,}"
                ),
            ),
        ),
        Row(
            "feed staleness p50 / p99 (max) ms",
            *cells(
                runs,
                lambda r: (
                    f"{ms(r.staleness_p50_ms, r.staleness_p99_ms)} ({r.staleness_max_ms:,.0f})"
                ),
            ),
        ),
        zero_row(
            runs,
            "**oversells** (audit)",
            lambda r: r.audit.oversold,
            lambda r: str(r.audit.oversold),
        ),
        zero_row(
            runs,
            "**lost acknowledged holds / orders**",
            lambda r: r.audit.lost_total,
            lambda r: f"{r.audit.lost.get('holds', 0)} / {r.audit.lost.get('orders', 0)}",
        ),
        zero_row(
            runs,
            "other audit violations",
            lambda r: sum(r.audit.other.values()),
            lambda r: str(sum(r.audit.other.values())),
        ),
        Row(
            "fans: arrived / bought / abandoned / gave up",
            *cells(
                runs,
                lambda r: (
                    f"{r.fans.get('arrived', 0):,} / {r.fans.get('bought', 0):,} / "
                    f"{r.fans.get('abandoned a hold', 0):,} / {r.fans.get('gave up', 0):,}"
                ),
            ),
        ),
        Row(
            "cores: servers / load generator / other processes",
            *cells(runs, lambda r: "{:.2f} / {:.2f} / {:.2f}".format(*core_split(r))),
        ),
    ]
    return rows


def core_split(run: Run) -> tuple[float, float, float]:
    used = dict(run.cpu_cores)
    generator = used.pop("load generator", 0.0)
    other = used.pop("other processes", 0.0)
    used.pop("kernel softirq", None)
    return sum(used.values()), generator, other


# --- main ---


async def bench(args: argparse.Namespace, stack: Stack) -> list[Run]:
    """Every system at `--fans`, then every system at `--overload-fans` (unless 0)."""
    postgres, valkey, nats = start_servers(stack)
    cache_valkey = start_valkey(stack.workdir / "valkey-cache")
    stack.servers.append(cache_valkey)
    servers = Servers(postgres, valkey, nats, cache_valkey)
    index = VenueIndex(stack.venue)
    runs, w = [], WORKLOAD
    for crowd in [args.fans] + ([args.overload_fans] if args.overload_fans else []):
        sized = argparse.Namespace(**{**vars(args), "fans": crowd})
        print(
            f"workload: {crowd:,} concurrent fans for {args.duration:g} s per system; "
            f"{w.pick_share:.0%} pick seats from the map, the rest ask for best-available; "
            f"{w.abandon_share:.0%} abandon their hold (TTL {HOLD_TTL_S} s); sections by Zipf "
            f"s={w.zipf_s}; {args.connections or 'one'} client connection(s) per fan and server",
            flush=True,
        )
        for system in args.systems:
            print(f"{system}:", flush=True)
            sold = await RUNNERS[system](sized, stack, servers, index)
            run = summarize(system, sold, index)
            print_run(run)
            runs.append(run)
    return runs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_stack_args(parser)
    parser.add_argument("--fans", type=int, default=FANS, help="concurrent fans")
    parser.add_argument(
        "--overload-fans",
        type=int,
        default=OVERLOAD_FANS,
        help="the overload variant's crowd, run after the first (0: skip it)",
    )
    parser.add_argument("--duration", type=float, default=DURATION_S, help="seconds per system")
    parser.add_argument("--edges", type=int, default=EDGES, help="Tessera's edge processes")
    parser.add_argument(
        "--connections",
        type=int,
        default=CONNECTIONS,
        help="client connections per system (default 0: one per fan and server)",
    )
    parser.add_argument(
        "--systems",
        type=lambda text: [s for s in text.split(",") if s],
        default=list(SYSTEMS),
        help="which systems, in this order (default tessera,textbook,cache)",
    )
    parser.add_argument(
        "--tessera-direct",
        action="store_true",
        help="diagnosis: Tessera's fans read from the regional node and write to the writer, "
        "without edges",
    )
    parser.add_argument("--textbook-pool", type=int, default=textbook.POOL_SIZE)
    parser.add_argument("--cache-pool", type=int, default=cache.POOL_SIZE)
    parser.add_argument("--cache-redis-pool", type=int, default=cache.REDIS_POOL)
    parser.add_argument("--serve-textbook", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-cache", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [s for s in args.systems if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown systems {unknown}; choose from {', '.join(SYSTEMS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_textbook or args.serve_cache:
        module = "textbook" if args.serve_textbook else "cache"
        serve(f"baselines.{module}:create_app", args.port)
        return 0
    started = time.perf_counter()
    stack = Stack.create("tessera-onsale-bench-", args.venue)
    print_machine(
        stack.venue,
        "PostgreSQL, two Valkeys, NATS, the system under test and the load generator (one "
        "asyncio loop in this process)",
    )
    runs, problems = run_in_stack(stack, args.keep, lambda: bench(args, stack))
    tables = []
    for crowd in dict.fromkeys(run.crowd for run in runs):
        overload = crowd != args.fans
        rows = table({run.system: run for run in runs if run.crowd == crowd}, overload)
        print(f"\n{crowd:,} fans" + (" (overload)" if overload else ""))
        print_table(["measure", *SYSTEMS, "target", "met"], rows)
        tables.append((crowd, rows))
    print(
        f"\nwarnings and errors in the service logs: {sum(problems.values())}"
        + "".join(f"\n    {count} × {line}" for line, count in list(problems.items())[:20])
    )
    print(
        f"python {sys.version.split()[0]}; {args.fans:,} and {args.overload_fans:,} fans, "
        f"{args.duration:g} s per system; whole bench {time.perf_counter() - started:.0f} s"
    )
    if args.json:
        document = {
            "runs": [asdict(run) for run in runs],
            "tables": {str(crowd): [asdict(row) for row in rows] for crowd, rows in tables},
            "log_problems": problems,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        }
        write_json(args.json, document)
    return 0 if all(row.met is not False for _, rows in tables for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
