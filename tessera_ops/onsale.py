"""`tessera onsale`: a flash-sale simulation against a running stack (docs/onsale.md).

Thousands of simulated fans (tessera_ops/crowd.py, the simulator the onsale benchmark runs too),
spread over the stack's regions, each talking to its region's edge only, as a browser would:
they arrive within the first seconds and join the event's waiting room, then poll their ticket
(at the pace its `eta_s` suggests) until admitted; then they shop (`Crowd.visit`: the seat map
through the edge, a hold with the admission token, then buy, walk away, release, or meet a
declining card), waiting for returns while the map shows nothing free.

A share of the crowd are bots that ignore the rules: they hammer the seat map and the queue
(expect 429), and write without an admission token, with a forged one or with another fan's
(expect 403); a bot write that gets through is a breach.

At the end the simulator waits (bounded) for the abandoned holds' deadlines, checks each ended
as `expired`, reads the change-feed lag from the regional nodes' metrics, and runs the audit
(`tessera_ops.audit.audit_event`): oversells, claims against holds and orders, every
region's seat maps against the writer's. The run fails (exit 1) on any oversell, audit problem,
breach, hold that outlived its deadline, or 5xx / unanswered request.

Fans tell the edge who they are with `X-Forwarded-For` (a distinct address each, as a CDN in
front of the edge would write it): the edge believes it from loopback only, which is where the
local stack's edges listen. Against a remote edge every fan shares one address and per-IP
budgets throttle the crowd.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
from rich.console import Console
from rich.live import Live

import tessera_core as tc
from tessera import limits
from tessera.http1 import Answer, HttpError, Pool, header_pairs
from tessera_ops.audit import AuditReport, audit_event
from tessera_ops.crowd import (
    Crowd,
    Fan,
    HoldAck,
    Record,
    SeenMap,
    Venue,
    Workload,
    error_code,
    seats_in_two_orders,
)
from tessera_ops.onsale_report import (
    STEPS,
    AuditSummary,
    FeedLag,
    HoldExpiry,
    OnsaleReport,
    Progress,
    QueueReport,
    StepLatency,
    histogram_quantile,
    parse_histogram,
    problems,
    progress_table,
    render_report,
)
from tessera_ops.stackfile import FanMinter, Stack, default_data_dir, fan_minter, read_stack

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
LAG_METRIC: Final = "tessera_feed_apply_lag_seconds"
# Seats per fan: most buy a pair.
QUANTITIES: Final = (1, 2, 3, 4)
QUANTITY_WEIGHTS: Final = (0.2, 0.45, 0.15, 0.2)
# How the run's time is shared: fans arrive during the first part (then the gate opens), and the
# gate admits them all within the next part; the rest is for shopping and retries.
ARRIVAL_SHARE: Final = 0.1
ADMISSION_SHARE: Final = 0.4
# Admission tokens kept for the bots to steal.
STOLEN_MAX: Final = 1_000


@dataclass(frozen=True)
class Options:
    """One run. `fans` counts every simulated client; `bots_share` of them are bots."""

    event_id: str | None = None
    fans: int = 1_000
    duration_s: float = 60.0
    bots_share: float = 0.05
    abandon_share: float = 0.15
    decline_share: float = 0.1
    release_share: float = 0.05
    # Share of fans who pick seats on the map rather than ask for the best available.
    pick_share: float = 0.5
    seed: int = 1
    gate: bool = True
    # None: every fan admitted within ADMISSION_SHARE of the duration.
    admission_rate_per_s: float | None = None
    # How long to wait after the sale for abandoned holds to reach their deadlines.
    expiry_wait_s: float = limits.onsale_expiry_wait_s_max
    converge_s: float = limits.audit_converge_s

    def check(self) -> None:
        """ValueError naming the first bad option."""
        if not 1 <= self.fans <= limits.onsale_fans_max:
            raise ValueError(f"--fans must be within 1..{limits.onsale_fans_max}")
        if not 1.0 <= self.duration_s <= limits.onsale_duration_s_max:
            raise ValueError(f"--duration-s must be within 1..{limits.onsale_duration_s_max}")
        shares = {
            "--bots-share": self.bots_share,
            "--abandon-share": self.abandon_share,
            "--decline-share": self.decline_share,
            "--release-share": self.release_share,
            "--pick-share": self.pick_share,
        }
        for name, share in shares.items():
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be within 0..1")
        if self.abandon_share + self.decline_share + self.release_share > 1.0:
            raise ValueError("--abandon-share + --decline-share + --release-share exceed 1")
        if self.admission_rate_per_s is not None and self.admission_rate_per_s <= 0:
            raise ValueError("--admission-rate must be positive")
        if self.expiry_wait_s < 0:
            raise ValueError("--expiry-wait-s must not be negative")

    def workload(self) -> Workload:
        """How this run's fans behave (tessera_ops/crowd.py)."""
        return Workload(
            quantities=QUANTITIES,
            quantity_weights=QUANTITY_WEIGHTS,
            pick_share=self.pick_share,
            abandon_share=self.abandon_share,
            decline_share=self.decline_share,
            release_share=self.release_share,
            look_s=(0.2, 1.0),
            checkout_s=(0.3, 1.5),
            retry_pause_s=(0.1, 0.5),
            hold_attempts=limits.onsale_hold_attempts_max,
            send_attempts=limits.onsale_write_attempts_max,
            wait_for_returns=True,
        )


# --- the event, as fans see it ---


class _Row(msgspec.Struct):
    row_id: str
    rank: int
    seats: list[str]


class _Section(msgspec.Struct):
    section_id: str
    rows: list[_Row]


class _EventDoc(msgspec.Struct):
    event_id: str
    hold_ttl_s: int
    per_user_limit: int
    sections: list[_Section]


@dataclass
class Layout:
    """The venue in the seat maps' terms: section order, seat ids by index, row boundaries."""

    event_id: str
    hold_ttl_s: int
    per_user_limit: int
    section_ids: list[str]
    seat_counts: list[int]
    seat_ids: list[list[str]]
    # Per section, the index of each row's first seat (ascending), and the best row rank.
    row_starts: list[list[int]]
    ranks: list[int]
    where: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, doc: _EventDoc) -> Layout:
        layout = cls(doc.event_id, doc.hold_ttl_s, doc.per_user_limit, [], [], [], [], [])
        for position, section in enumerate(doc.sections):
            ids = [seat for row in section.rows for seat in row.seats]
            starts, at = [], 0
            for row in section.rows:
                starts.append(at)
                at += len(row.seats)
            layout.section_ids.append(section.section_id)
            layout.seat_counts.append(len(ids))
            layout.seat_ids.append(ids)
            layout.row_starts.append(starts)
            layout.ranks.append(min((row.rank for row in section.rows), default=0))
            layout.where.update((seat, (position, index)) for index, seat in enumerate(ids))
        return layout

    def venue(self) -> Venue:
        return Venue(self.event_id, self.section_ids, self.seat_counts, self.ranks, self.hold_ttl_s)

    def row_bounds(self, section: int, seat: int) -> tuple[int, int]:
        """[first, end) of the row holding `seat`."""
        starts = self.row_starts[section]
        low, high = 0, len(starts) - 1
        while low < high:  # the last row start <= seat
            middle = (low + high + 1) // 2
            if starts[middle] <= seat:
                low = middle
            else:
                high = middle - 1
        end = starts[low + 1] if low + 1 < len(starts) else self.seat_counts[section]
        return starts[low], end

    def pick(self, rng: random.Random, seen: SeenMap, section: int, quantity: int) -> list[str]:
        """What a fan clicking on the map of `section` would choose: a random free seat and the
        free seats next to it in its row (then any free seats of the section, when the row has
        too few); fewer than `quantity` when the section has fewer free. Empty when none."""
        seat_map = seen.maps[section]
        free = seat_map.available_indices()
        if not free:
            return []
        start = rng.choice(free)
        first, end = self.row_bounds(section, start)
        chosen = [start]
        right, left = start + 1, start - 1
        while len(chosen) < quantity and right < end and seat_map.is_available(right):
            chosen.append(right)
            right += 1
        while len(chosen) < quantity and left >= first and seat_map.is_available(left):
            chosen.append(left)
            left -= 1
        others = [seat for seat in free if seat not in chosen]
        chosen += rng.sample(others, min(quantity - len(chosen), len(others)))
        return [self.seat_ids[section][seat] for seat in sorted(chosen)]


# --- the stack, as the simulator reaches it ---


def _pool(url: str, size: int = limits.onsale_connections_max) -> Pool:
    # Every request the simulator sends is safe to repeat (reads, writes with an
    # Idempotency-Key), so a kept-alive connection the edge closed is no failure.
    return Pool(
        url,
        connections_max=size,
        timeout_s=limits.onsale_request_timeout_s,
        body_bytes_max=limits.onsale_response_bytes_max,
        resend_stale=True,
    )


@dataclass
class Region:
    name: str
    # Reads and writes on separate connections, so that quick reads never queue behind slow
    # writes for a free connection (a browser would not share one either).
    edge: Pool
    edge_writes: Pool
    regional: Pool
    # The address every bot of this region shares (TEST-NET-3: never a real client).
    bot_ip: str

    @classmethod
    def of(cls, name: str, edge_url: str, regional_url: str, number: int) -> Region:
        return cls(
            name=name,
            edge=_pool(edge_url),
            edge_writes=_pool(edge_url, limits.onsale_write_connections_max),
            regional=_pool(regional_url),
            bot_ip=f"203.0.113.{number}",
        )

    async def close(self) -> None:
        for pool in (self.edge, self.edge_writes, self.regional):
            await pool.close()


class Room:
    """The event's waiting room, through the admin API of every region's edge (each region
    may keep its own room in its own Redis; the calls are idempotent where they share one)."""

    def __init__(self, stack: Stack, event_id: str, regions: list[Region]) -> None:
        # The edges' own admin key (a stack described before it existed used the writer's).
        key = stack.edge_admin_key or stack.admin_key
        self.headers = header_pairs({"X-Admin-Key": key, "Content-Type": "application/json"})
        self.path = f"/v1/admin/events/{event_id}/waiting-room"
        self.regions = regions
        self.rate_per_s: float | None = None

    async def call(
        self, method: str, action: str = "", body: Any = None, *, home_only: bool = False
    ) -> dict[str, Any]:
        """One admin call on every region's edge (or the home region's): the home's answer."""
        data = b"" if body is None else msgspec.json.encode(body)
        views: list[dict[str, Any]] = []
        for region in self.regions[:1] if home_only else self.regions:
            target = (self.path + action).encode()
            answer = await region.edge.request(method.encode(), target, self.headers, data)
            if answer.status != 200 and not (method == "GET" and answer.status == 404):
                raise RuntimeError(
                    f"waiting room {method} {action}: {answer.status} {answer.body!r}"
                )
            views.append(msgspec.json.decode(answer.body) if answer.status == 200 else {})
        return views[0]

    async def open(self, options: Options, fans: int) -> dict[str, Any]:
        """Switch the room on at the run's rate, frozen (closed) while the crowd arrives; returns
        the settings found before, to put back afterwards."""
        before = await self.call("GET")
        if not options.gate:
            if before.get("enabled"):
                await self.call("PUT", body={"enabled": False})
            return before
        admit_s = max(1.0, ADMISSION_SHARE * options.duration_s)
        self.rate_per_s = options.admission_rate_per_s or max(1.0, math.ceil(fans / admit_s))
        await self.call("PUT", body={"enabled": True, "rate_per_s": self.rate_per_s})
        # Closed while fans arrive: a fresh room stays a lobby (randomised at opening); a room
        # left open by an earlier run stops admitting until the whole crowd is in line.
        await self.call("POST", "/close")
        return before

    async def restore(self, before: dict[str, Any]) -> None:
        with contextlib.suppress(HttpError, RuntimeError):
            if not before:
                await self.call("PUT", body={"enabled": False})
                return
            update = {"enabled": before["enabled"], "rate_per_s": before["rate_per_s"]}
            await self.call("PUT", body=update)
            if before.get("gate") in ("open", "closed"):
                await self.call("POST", "/open" if before["gate"] == "open" else "/close")

    async def waiting(self) -> int:
        view = await self.call("GET", home_only=True)
        waiting: int = view["stats"]["waiting"]
        return waiting


# --- the fans of `tessera onsale`: a queue first, and probes of their holds ---


@dataclass
class Admissions:
    joined: int = 0
    admitted: int = 0
    waits: list[float] = field(default_factory=list)
    # (user, admission token) of some admitted fans: what the bots steal.
    tokens: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Visibility:
    """Per region: seconds from a hold's 201 to its seats shown taken; probes that gave up."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    not_seen: Counter[str] = field(default_factory=Counter)


class OnsaleCrowd(Crowd):
    """The crowd through the waiting room; a sample of its holds is probed in every region."""

    def __init__(self, layout: Layout, options: Options, regions: list[Region]) -> None:
        super().__init__(layout.venue(), options.workload(), Record(), layout.pick)
        self.layout = layout
        self.regions = regions
        self.admissions = Admissions()
        self.visibility = Visibility()
        self.probes = 0
        # Feed-lag probes run beside the fans; the run waits for them before the audit.
        self.background: set[asyncio.Task[None]] = set()

    async def arrive(self, fan: Fan, arrive_in_s: float, gated: bool) -> None:
        await asyncio.sleep(arrive_in_s)
        if not gated or await self.queue(fan):
            await self.visit(fan, self.layout.per_user_limit)

    async def join(self, fan: Fan) -> dict[str, Any] | None:
        """Join the room (again after a 429 or 5xx); the ticket, or None when refused for
        good or the sale ended first."""
        path = f"/v1/events/{self.venue.event_id}/queue".encode()
        while not self.over():
            joined, _ = await self.send(fan.reads, b"POST", path, fan.headers)
            self.record.answered("queue_join", joined, again=False, read=True)
            if joined is not None and joined.status in (200, 201):
                self.admissions.joined += 1
                ticket: dict[str, Any] = msgspec.json.decode(joined.body)
                return ticket
            if joined is not None and joined.status < 500 and joined.status != 429:
                return None  # refused (counted): a browser would show the error
            retry = joined.header(b"retry-after") if joined is not None else None
            await asyncio.sleep(float(retry or 1) * fan.rng.uniform(1.0, 1.5))
        return None

    async def queue(self, fan: Fan) -> bool:
        """Join the room and wait for admission, polling at the pace of the ETA. False when
        the sale ended first (or the ticket stopped being valid)."""
        status = await self.join(fan)
        if status is None:
            return False
        path = f"/v1/queue/{status['ticket']}".encode()
        since = time.monotonic()
        while status.get("state") != "admitted":
            eta = status.get("eta_s")
            # As a queue page does: soon when the turn is near, every few seconds otherwise
            # (pending rooms have no ETA).
            pause = 3.0 if eta is None else min(max(eta, 0.5), 10.0)
            await asyncio.sleep(pause * fan.rng.uniform(0.8, 1.2))
            if self.over():
                return False
            polled, _ = await self.send(fan.reads, b"GET", path, fan.headers)
            self.record.answered("queue_poll", polled, again=False, read=True)
            if polled is not None and polled.status == 200:
                status = msgspec.json.decode(polled.body)
            elif polled is not None and polled.status == 404:
                return False  # ticket_not_found: the room was switched off under the fan
        admissions = self.admissions
        admissions.waits.append(time.monotonic() - since)
        admissions.admitted += 1
        token = status.get("admission_token")
        if token is not None:
            fan.headers.append((b"x-admission-token", str(token).encode()))
            if len(admissions.tokens) < STOLEN_MAX:
                admissions.tokens.append((fan.user, str(token)))
        return True

    def held(self, fan: Fan, hold: HoldAck) -> None:
        if self.probes < limits.onsale_lag_probes_max:
            self.probes += 1
            task = asyncio.create_task(self.probe(hold.seats, time.monotonic()))
            self.background.add(task)
            task.add_done_callback(self.background.discard)

    async def probe(self, seats: tuple[str, ...], since: float) -> None:
        """Time until the held seats show as taken in every region's map, read from the
        regional nodes directly (the edge's cache would add its TTL) every few milliseconds."""
        where = [self.layout.where[seat] for seat in seats]
        section = where[0][0]
        section_id = self.layout.section_ids[section]
        path = f"/v1/events/{self.venue.event_id}/sections/{section_id}/seatmap".encode()
        deadline = since + limits.onsale_lag_probe_s_max
        visibility = self.visibility

        async def one(region: Region) -> None:
            while time.monotonic() < deadline:
                with contextlib.suppress(HttpError, tc.SeatMapError):
                    answer = await region.regional.request(b"GET", path)
                    seat_map = tc.SeatMap.decode(answer.body)
                    if not any(seat_map.is_available(i) for s, i in where if s == section):
                        visibility.seconds.setdefault(region.name, []).append(
                            time.monotonic() - since
                        )
                        return
                await asyncio.sleep(limits.onsale_lag_probe_interval_s)
            visibility.not_seen[region.name] += 1

        await asyncio.gather(*(one(region) for region in self.regions))

    def make_fans(self, count: int, rng: random.Random, run_id: str, mint: FanMinter) -> list[Fan]:
        """The crowd, from the seed: regions (round robin), users, addresses."""
        fans = []
        for number in range(count):
            region = self.regions[number % len(self.regions)]
            user = f"onsale-{run_id}-{number}"
            token = mint(user)
            # A distinct client address per fan: 10.x.y.z.
            ip = f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"
            headers = [
                (b"authorization", f"Bearer {token}".encode()),
                (b"x-forwarded-for", ip.encode()),
                (b"accept-encoding", b"gzip"),
            ]
            fan_rng = random.Random(rng.getrandbits(64))  # noqa: S311 (a reproducible crowd)
            # One list for reads and writes: the admission token goes with both.
            fans.append(
                Fan(user, token, headers, headers, region.edge, region.edge_writes, fan_rng)
            )
        return fans


# --- the bots ---


@dataclass
class BotTally:
    rejections: Counter[str] = field(default_factory=Counter)
    breaches: int = 0


class Bots:
    """Everything a fan must not do, from the address all bots of a region share."""

    def __init__(self, crowd: OnsaleCrowd, stack: Stack, run_id: str, gated: bool) -> None:
        self.crowd = crowd
        self.mint = fan_minter(stack)
        self.run_id = run_id
        self.gated = gated
        self.tally = BotTally()
        event = crowd.venue.event_id
        self.queue = f"/v1/events/{event}/queue".encode()
        self.seatmap = f"/v1/events/{event}/seatmap".encode()
        self.holds = f"/v1/events/{event}/holds"

    async def call(
        self,
        pool: Pool,
        method: bytes,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes = b"",
    ) -> Answer | None:
        """One request, counted as a bot's: a refusal by status and code; a 503 is load shed
        onto a client that never retries (a refusal), another 5xx or no answer an error."""
        crowd = self.crowd
        answer, _ = await crowd.send(pool, method, path, headers, body)
        record = crowd.record
        if answer is None:
            record.errors += 1
            record.error_kinds["bot no answer"] += 1
        elif answer.status >= 400:
            reason = f"{answer.status} {error_code(answer)}"
            self.tally.rejections[reason] += 1
            if answer.status >= 500 and answer.status != 503:
                record.errors += 1
                record.error_kinds[f"bot {reason}"] += 1
        return answer

    async def run(self, number: int, region: Region, start_in_s: float) -> None:
        await asyncio.sleep(start_in_s)
        user = f"onsale-{self.run_id}-bot{number}"
        token = self.mint(user)
        base = [
            (b"authorization", f"Bearer {token}".encode()),
            (b"x-forwarded-for", region.bot_ip.encode()),
        ]
        for _ in range(3):  # queue spam: the same ticket back, then 429s
            await self.call(region.edge, b"POST", self.queue, base)
        for _ in range(limits.onsale_bot_reads_max):  # scraping, no ETag: 429s
            if self.crowd.over():
                return
            await self.call(region.edge, b"GET", self.seatmap, base)
        if self.gated:  # with the room off, writing without a token is allowed
            await self.write_past_the_room(number, region, base)

    async def write_past_the_room(
        self, number: int, region: Region, base: list[tuple[bytes, bytes]]
    ) -> None:
        """Holds without an admission token, with a forged one, with a stolen one."""
        tokens = self.crowd.admissions.tokens
        stolen = tokens[number % len(tokens)][1] if tokens else None
        body = msgspec.json.encode({"best_available": {"quantity": 2}})
        for admission in (None, "adm.forged.x", stolen):
            key = f"{self.run_id}-bot{number}-{secrets.token_hex(4)}"
            headers = [*base, (b"idempotency-key", key.encode())]
            if admission is not None:
                headers.append((b"x-admission-token", admission.encode()))
            headers.append((b"content-type", b"application/json"))
            answer = await self.call(
                region.edge_writes, b"POST", self.holds.encode(), headers, body
            )
            if answer is not None and answer.status < 300:
                self.tally.breaches += 1
                hold_id = msgspec.json.decode(answer.body)["hold_id"]
                # Give the seats back so the breach does not also distort the sale.
                path = f"{self.holds}/{hold_id}".encode()
                await self.call(region.edge_writes, b"DELETE", path, headers)


# --- the run ---


@dataclass
class Measured:
    """What the run measured besides the fans' record, for the report."""

    fans: int
    bots: int
    sale_s: float
    available: tuple[int, int]
    expiry: HoldExpiry
    lag: list[FeedLag]
    audit: AuditReport


class Onsale:
    """One simulated onsale against `stack`. `progress` is live; `run()` returns the report."""

    def __init__(self, stack: Stack, options: Options) -> None:
        options.check()
        self.stack = stack
        self.options = options
        self.event_id = options.event_id or stack.event_id
        self.run_id = secrets.token_hex(3)
        self.rng = random.Random(options.seed)  # noqa: S311 (a reproducible crowd, no secret)
        self.progress = Progress()
        self.stop = asyncio.Event()
        self.writer = _pool(stack.writer_url)
        homes_first = sorted(stack.regions, key=lambda r: not r.home)
        self.regions = [
            Region.of(r.name, r.edge_url, r.regional_url, number)
            for number, r in enumerate(homes_first, 1)
        ]
        self.room = Room(stack, self.event_id, self.regions)
        self.crowd: OnsaleCrowd | None = None
        self.bots: Bots | None = None
        self.started = time.monotonic()

    async def run(self) -> OnsaleReport:
        """The whole run: set up, sell, wait for expiries, audit; the report."""
        stack, options = self.stack, self.options
        monitor: asyncio.Task[None] | None = None
        room_before: dict[str, Any] | None = None
        try:
            self.progress.phase = "setting up"
            layout = await self.load_layout()
            crowd = self.crowd = OnsaleCrowd(layout, options, self.regions)
            self.bots = Bots(crowd, stack, self.run_id, options.gate)
            lag_before = await self.read_lag_histograms()
            available_before = await self.available_seats()
            bots = round(options.fans * options.bots_share)
            room_before = await self.room.open(options, options.fans - bots)
            fans = crowd.make_fans(options.fans - bots, self.rng, self.run_id, self.bots.mint)
            self.started = time.monotonic()
            self.progress.phase = "fans arriving"
            monitor = asyncio.create_task(self.monitor())
            await self.sell(fans, bots)
            sale_s = time.monotonic() - self.started
            await asyncio.gather(*crowd.background, return_exceptions=True)
            expiry = await check_expiry(
                self.writer, crowd.record.abandoned, options.expiry_wait_s, self.progress
            )
            lag_after = await self.read_lag_histograms()
            self.progress.phase = "auditing"
            audit = await audit_event(stack, self.event_id, converge_s=options.converge_s)
            available_after = await self.available_seats()
        finally:
            if monitor is not None:
                monitor.cancel()
            if room_before is not None:
                await self.room.restore(room_before)
            await self.close()
        self.progress.phase = "done"
        measured = Measured(
            fans=len(fans),
            bots=bots,
            sale_s=sale_s,
            available=(available_before, available_after),
            expiry=expiry,
            lag=feed_lag(self.regions, crowd.visibility, lag_before, lag_after),
            audit=audit,
        )
        return self.report(measured)

    async def close(self) -> None:
        if self.crowd is not None:
            for task in self.crowd.background:
                task.cancel()
        await self.writer.close()
        for region in self.regions:
            await region.close()

    # --- setup ---

    async def load_layout(self) -> Layout:
        answer = await self.writer.request(b"GET", f"/v1/events/{self.event_id}".encode())
        if answer.status != 200:
            raise RuntimeError(f"the writer does not know event {self.event_id} ({answer.status})")
        return Layout.of(msgspec.json.decode(answer.body, type=_EventDoc))

    async def read_lag_histograms(self) -> dict[str, dict[float, float]]:
        found = {}
        for region in self.regions:
            with contextlib.suppress(HttpError):
                answer = await region.regional.request(b"GET", b"/metrics")
                found[region.name] = parse_histogram(answer.body.decode(), LAG_METRIC)
        return found

    async def available_seats(self) -> int:
        """Seats available now, from the writer's snapshots (the reference)."""
        assert self.crowd is not None
        total = 0
        for section in self.crowd.layout.section_ids:
            path = f"/v1/events/{self.event_id}/sections/{section}/snapshot"
            answer = await self.writer.request(b"GET", path.encode())
            if answer.status == 200:
                total += tc.SeatMap.decode(answer.body).available_count
        return total

    # --- the sale ---

    def end_sale(self) -> None:
        assert self.crowd is not None
        self.crowd.stop_at = min(self.crowd.stop_at, time.time())
        self.stop.set()

    async def sell(self, fans: list[Fan], bots: int) -> None:
        """Run the crowd until everyone is done, the event is sold out for good, or time is up;
        open the gate once the crowd has arrived."""
        crowd, options = self.crowd, self.options
        assert crowd is not None
        assert self.bots is not None
        crowd.stop_at = time.time() + options.duration_s
        arrival_s = ARRIVAL_SHARE * options.duration_s
        tasks = [
            asyncio.create_task(crowd.arrive(fan, fan.rng.uniform(0, arrival_s), options.gate))
            for fan in fans
        ]
        bot_window = arrival_s + ADMISSION_SHARE * options.duration_s / 2
        tasks += [
            asyncio.create_task(
                self.bots.run(
                    n, self.regions[n % len(self.regions)], self.rng.uniform(0, bot_window)
                )
            )
            for n in range(bots)
        ]
        everyone = asyncio.gather(*tasks, return_exceptions=True)
        sold_out = asyncio.create_task(self.stop.wait())
        opener = asyncio.create_task(self.open_gate(arrival_s))
        remaining = options.duration_s - (time.monotonic() - self.started)
        either: set[asyncio.Future[Any]] = {everyone, sold_out}
        await asyncio.wait(either, timeout=remaining, return_when="FIRST_COMPLETED")
        self.end_sale()
        for task in (*tasks, opener, sold_out):
            task.cancel()
        record = crowd.record
        for outcome in await everyone:
            if isinstance(outcome, Exception):  # a simulator bug: shown, and the run fails
                record.errors += 1
                record.error_kinds[f"simulator {outcome!r}"[:200]] += 1
        await asyncio.gather(opener, sold_out, return_exceptions=True)

    async def open_gate(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        self.progress.phase = "selling"
        if self.options.gate:
            await self.room.call("POST", "/open")

    async def monitor(self) -> None:
        """Keep `progress` current; every second also read the room's queue and the seats
        left, and end the sale once it is sold out for good (nothing free, no hold pending)."""
        assert self.crowd is not None
        record = self.crowd.record
        last_requests, last_at, tick, sold_out_ticks = 0, time.monotonic(), 0, 0
        while True:
            await asyncio.sleep(limits.onsale_progress_s)
            tick += 1
            self.update_progress()
            if tick % round(1 / limits.onsale_progress_s):
                continue
            now = time.monotonic()
            self.progress.requests_per_s = (record.exchanges - last_requests) / (now - last_at)
            last_requests, last_at = record.exchanges, now
            await self.poll_stack()
            sold_out = self.progress.available == 0 and not record.open_holds
            sold_out_ticks = sold_out_ticks + 1 if sold_out else 0
            if sold_out_ticks >= 2:  # twice in a row: no return is on its way
                self.end_sale()

    def update_progress(self) -> None:
        """The live numbers from the fans' record; holds past their deadline (and the reaper's
        slack) are no longer open."""
        assert self.crowd is not None
        assert self.bots is not None
        crowd, progress, wall = self.crowd, self.progress, time.time()
        record = crowd.record
        for hold_id, hold in list(record.open_holds.items()):
            if hold.expires + limits.onsale_expiry_slack_s < wall:
                del record.open_holds[hold_id]
        progress.elapsed_s = time.monotonic() - self.started
        progress.joined = crowd.admissions.joined
        progress.admitted = crowd.admissions.admitted
        progress.sold = sum(len(order.seats) for order in record.orders)
        progress.errors = record.errors
        progress.held = sum(len(h.seats) for h in record.open_holds.values() if h.expires > wall)
        progress.rejected = sum(record.rejections.values())
        progress.bot_breaches = self.bots.tally.breaches

    async def poll_stack(self) -> None:
        """The room's queue length and the seats left (the home region's node)."""
        assert self.crowd is not None
        progress, layout = self.progress, self.crowd.layout
        with contextlib.suppress(HttpError, RuntimeError, msgspec.DecodeError, KeyError):
            if self.options.gate:
                progress.waiting = await self.room.waiting()
        with contextlib.suppress(HttpError, tc.SeatMapError, ValueError):
            path = f"/v1/events/{self.event_id}/seatmap".encode()
            answer = await self.regions[0].regional.request(b"GET", path)
            _, _, maps = tc.decode_event(answer.body, layout.seat_counts)
            progress.available = sum(m.available_count for m in maps)

    # --- after the sale ---

    def report(self, measured: Measured) -> OnsaleReport:
        crowd, bots = self.crowd, self.bots
        assert crowd is not None
        assert bots is not None
        record, admissions, audit = crowd.record, crowd.admissions, measured.audit
        latencies = {**record.answer_latencies, "queue_wait": admissions.waits}
        report = OnsaleReport(
            ok=True,
            problems=[],
            event_id=self.event_id,
            fans=measured.fans,
            bots=measured.bots,
            regions=[region.name for region in self.regions],
            seed=self.options.seed,
            duration_s=round(time.monotonic() - self.started, 2),
            seats_total=sum(crowd.layout.seat_counts),
            seats_available_before=measured.available[0],
            seats_available_after=measured.available[1],
            seats_sold=sum(len(order.seats) for order in record.orders),
            orders=len(record.orders),
            sold_out=measured.available[1] == 0,
            seats_in_two_orders=seats_in_two_orders(record.orders),
            holds=len(record.holds),
            holds_released=record.released,
            checkouts_declined=record.declined,
            fans_bought=record.fans["bought"],
            requests=record.exchanges,
            requests_per_s=round(record.exchanges / max(measured.sale_s, 1e-9), 1),
            errors=record.errors,
            retried=record.resent,
            error_kinds=dict(record.error_kinds.most_common()),
            seatmap_200=record.statuses["seatmap 200"],
            seatmap_304=record.statuses["seatmap 304"],
            queue=QueueReport(
                gated=self.options.gate,
                rate_per_s=self.room.rate_per_s,
                joined=admissions.joined,
                admitted=admissions.admitted,
                never_admitted=admissions.joined - admissions.admitted,
            ),
            latency={s: StepLatency.of(latencies[s]) for s in STEPS if latencies.get(s)},
            feed_lag=measured.lag,
            rejections=dict(record.rejections.most_common()),
            bot_rejections=dict(bots.tally.rejections.most_common()),
            bot_breaches=bots.tally.breaches,
            hold_expiry=measured.expiry,
            audit=AuditSummary(
                ok=audit.ok,
                oversells=audit.oversells,
                claims=audit.claims,
                sold=audit.sold,
                violations={name: len(rows) for name, rows in audit.violations.items() if rows},
                problems=audit.details(rows_max=5),
                regions=audit.regions,
                sections=audit.sections,
                converged_s=audit.converged_s,
            ),
        )
        report.problems = problems(report)
        report.ok = not report.problems
        return report


# --- after the sale ---


async def check_expiry(
    writer: Pool, abandoned: list[tuple[HoldAck, str]], wait_s_max: float, progress: Progress
) -> HoldExpiry:
    """Wait (at most `wait_s_max`) until the abandoned holds' deadlines have passed, then ask
    the writer for each: past its deadline (and the reaper's slack) a hold must be `expired`."""
    if abandoned:
        latest = max(hold.expires for hold, _ in abandoned) + limits.onsale_expiry_slack_s
        wait_s = min(latest - time.time(), wait_s_max)
        if wait_s > 0:
            progress.phase = f"waiting {wait_s:.0f} s for abandoned holds to expire"
            await asyncio.sleep(wait_s)
    counts: Counter[str] = Counter()
    slots = asyncio.Semaphore(limits.onsale_connections_max)

    async def one(hold: HoldAck, token: str) -> None:
        async with slots:
            headers = [(b"authorization", f"Bearer {token}".encode())]
            try:
                path = f"/v1/holds/{hold.hold_id}".encode()
                answer = await writer.request(b"GET", path, headers)
                status = msgspec.json.decode(answer.body).get("status", "?")
            except (HttpError, msgspec.DecodeError):
                status = "?"
        if status == "active":
            late = time.time() > hold.expires + limits.onsale_expiry_slack_s
            status = "not_expired" if late else "within_ttl"
        counts[status] += 1

    await asyncio.gather(*(one(hold, token) for hold, token in abandoned))
    expired, within, late = counts["expired"], counts["within_ttl"], counts["not_expired"]
    return HoldExpiry(
        abandoned=len(abandoned),
        expired=expired,
        within_ttl=within,
        not_expired=late,
        other=len(abandoned) - expired - within - late,
    )


def feed_lag(
    regions: list[Region],
    visibility: Visibility,
    before: dict[str, dict[float, float]],
    after: dict[str, dict[float, float]],
) -> list[FeedLag]:
    """Per region: the node's commit-to-apply histogram over the run, and the probed holds."""
    lags = []
    for region in regions:
        start, end = before.get(region.name, {}), after.get(region.name, {})
        p50 = histogram_quantile(start, end, 0.5)
        p99 = histogram_quantile(start, end, 0.99)
        lags.append(
            FeedLag(
                region=region.name,
                applied=int(end.get(math.inf, 0.0) - start.get(math.inf, 0.0)),
                commit_to_apply_p50_ms=None if p50 is None else p50 * 1000,
                commit_to_apply_p99_ms=None if p99 is None else p99 * 1000,
                hold_visible=StepLatency.of(visibility.seconds.get(region.name, [])),
                not_seen=visibility.not_seen[region.name],
            )
        )
    return lags


async def run_onsale(
    stack: Stack, options: Options, on_start: Callable[[Onsale], None] | None = None
) -> OnsaleReport:
    """Simulate an onsale against `stack` and return the report (`on_start` gets the running
    simulation, e.g. to display its `progress`)."""
    onsale = Onsale(stack, options)
    if on_start is not None:
        on_start(onsale)
    return await onsale.run()


# --- `tessera onsale` ---


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not within 0..1")
    return value


# Numeric options: flag, Options field, type, help (the default is appended).
_NUMBERS: Final[tuple[tuple[str, str, Callable[[str], Any], str], ...]] = (
    ("--fans", "fans", int, "simulated clients, bots included"),
    ("--duration-s", "duration_s", float, "the sale's time limit"),
    ("--bots-share", "bots_share", _share, "share of bots"),
    ("--abandon-share", "abandon_share", _share, "fans who walk away from their hold"),
    ("--decline-share", "decline_share", _share, "fans whose card is declined"),
    ("--release-share", "release_share", _share, "fans who release their hold"),
    ("--pick-share", "pick_share", _share, "fans who pick seats on the map"),
    ("--seed", "seed", int, "same seed, same crowd"),
    ("--expiry-wait-s", "expiry_wait_s", float, "longest wait for abandoned holds to expire"),
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `tessera onsale` to the CLI's sub-commands (its handler is `run`)."""
    defaults = Options()
    sim = subparsers.add_parser(
        "onsale",
        help="simulate a flash sale against the running stack and report what matters",
        description="Simulated fans (and bots) join the waiting room, watch seat maps, hold, "
        "abandon, release and buy seats through their region's edge; then the audit. Exit 0 "
        "when nothing went wrong, 1 when something did, 2 on a usage error. docs/onsale.md.",
    )
    sim.add_argument("--data-dir", type=Path, help="where `tessera up` keeps stack.json")
    sim.add_argument("--event", help="event id (default: the stack's demo event)")
    for flag, name, kind, text in _NUMBERS:
        sim.add_argument(
            flag,
            dest=name,
            type=kind,
            default=getattr(defaults, name),
            help=f"{text} (default %(default)s)",
        )
    sim.add_argument(
        "--gate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="put the fans through the waiting room (default: on)",
    )
    sim.add_argument(
        "--admission-rate",
        type=float,
        help="fans admitted per second (default: all within 40%% of the duration)",
    )
    sim.add_argument("--json", action="store_true", help="print the report as JSON")
    sim.add_argument(
        "--no-live", action="store_true", help="no live table: a status line every few seconds"
    )
    sim.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """`tessera onsale`: exit 0 (all well), 1 (a problem: see the report), 2 (usage)."""
    data_dir = args.data_dir or default_data_dir()
    try:
        stack = read_stack(data_dir)
    except FileNotFoundError:
        print(
            f"tessera onsale: no stack is running in {data_dir} (start one: tessera up)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except (OSError, msgspec.DecodeError) as exc:
        print(f"tessera onsale: cannot read {data_dir}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    options = Options(
        event_id=args.event,
        gate=args.gate,
        admission_rate_per_s=args.admission_rate,
        **{name: getattr(args, name) for _, name, _, _ in _NUMBERS},
    )
    try:
        options.check()
    except ValueError as exc:
        print(f"tessera onsale: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        show: Literal["live", "lines", "quiet"] = (
            "quiet" if args.json else "lines" if args.no_live else "live"
        )
        report = asyncio.run(_run_shown(stack, options, show=show))
    except (HttpError, RuntimeError) as exc:
        print(f"tessera onsale: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(report)) + b"\n")
        sys.stdout.flush()
    else:
        render_report(report, Console())
    return EXIT_OK if report.ok else EXIT_FAILED


async def _run_shown(
    stack: Stack, options: Options, *, show: Literal["live", "lines", "quiet"]
) -> OnsaleReport:
    """The run, with a live table on a terminal (`live`), else a status line every few seconds
    on standard error (`lines`), or nothing (`quiet`: --json keeps the output machine-readable)."""
    console = Console(stderr=True)
    started: list[Onsale] = []
    if show == "live" and console.is_terminal:
        with Live(
            console=console,
            refresh_per_second=4,
            get_renderable=lambda: progress_table(started[0].progress if started else Progress()),
        ):
            return await run_onsale(stack, options, started.append)
    task = asyncio.create_task(run_onsale(stack, options, started.append))
    while not task.done():
        await asyncio.wait({task}, timeout=limits.onsale_status_line_s)
        if started and not task.done() and show != "quiet":
            p = started[0].progress
            console.print(
                f"{p.elapsed_s:5.0f} s {p.phase}: admitted {p.admitted}/{p.joined}, "
                f"sold {p.sold}, held {p.held}, {p.requests_per_s:.0f} req/s, {p.errors} errors",
                highlight=False,
            )
    return task.result()
