"""`tessera onsale`: a flash-sale simulation against a running stack (docs/onsale.md).

Thousands of simulated fans (asyncio tasks), spread over the stack's regions, each talking to its
region's edge only, as a browser would:

1. arrive within the first seconds and join the event's waiting room, then poll their ticket
   (at the pace its `eta_s` suggests) until admitted;
2. look at the seat map through the edge (`If-None-Match`: unchanged maps cost a 304);
3. hold seats, best-available or hand-picked from the decoded map, with an `Idempotency-Key` and
   the admission token; seats taken meanwhile (409) mean look again and retry;
4. then buy (`tok_approve`), or walk away (the hold must expire), or release the hold, or check
   out with a declining card (402) and either give up or pay with another card.

Every 503/504/502 or 429 is retried with the same `Idempotency-Key` (the point of the key). A
share of the crowd are bots that ignore the rules: they hammer the seat map and the queue
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
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

import tessera_core as tc
from tessera import limits
from tessera.auth import mint_token
from tessera_ops.audit import AuditReport, audit_event
from tessera_ops.onsale_http import Answer, HttpError, HttpPool
from tessera_ops.onsale_report import (
    STEPS,
    AuditSummary,
    FeedLag,
    HoldExpiry,
    OnsaleReport,
    QueueReport,
    StepLatency,
    histogram_quantile,
    parse_histogram,
    render_report,
)
from tessera_ops.stackfile import Stack, default_data_dir, read_stack

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
# Answers that say "try again" (writer_unavailable, unavailable, writer_timeout).
RETRIED_STATUSES: Final = frozenset({502, 503, 504})
LAG_METRIC: Final = "tessera_feed_apply_lag_seconds"
# Sandbox payment tokens (docs/payments.md).
APPROVE: Final = "tok_approve"
DECLINES: Final = ("tok_decline", "tok_insufficient_funds")
# Seats per fan: most buy a pair.
QUANTITIES: Final = (1, 2, 3, 4)
QUANTITY_WEIGHTS: Final = (0.2, 0.45, 0.15, 0.2)
# How the run's time is shared: fans arrive during the first part (then the gate opens), and the
# gate admits them all within the next part; the rest is for shopping and retries.
ARRIVAL_SHARE: Final = 0.1
ADMISSION_SHARE: Final = 0.4

Role = Literal["buyer", "abandoner", "releaser", "decliner"]


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


def pick_seats(
    rng: random.Random, layout: Layout, maps: list[tc.SeatMap], quantity: int
) -> list[str]:
    """What a fan clicking on the map would choose: a section among the better ones that still
    has room, a random free seat there, and the free seats next to it in its row (then any free
    seats of the section, when the row has too few). Empty when nothing is free."""
    candidates = [i for i, m in enumerate(maps) if m.available_count >= quantity]
    if not candidates:
        candidates = [i for i, m in enumerate(maps) if m.available_count > 0]
        if not candidates:
            return []
        quantity = min(quantity, max(maps[i].available_count for i in candidates))
        candidates = [i for i in candidates if maps[i].available_count >= quantity]
    # Fans favour good sections: the best ranked of three random candidates.
    section = min(rng.sample(candidates, min(3, len(candidates))), key=lambda i: layout.ranks[i])
    seat_map = maps[section]
    free = seat_map.available_indices()
    start = rng.choice(free)
    first, end = layout.row_bounds(section, start)
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
    return [layout.seat_ids[section][seat] for seat in sorted(chosen)]


# --- what the run counts ---


@dataclass
class Tally:
    requests: int = 0
    errors: int = 0
    retried: int = 0
    # Errors by kind: "<step> <status> <code>" or "<step> no answer".
    error_kinds: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    bot_rejections: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})
    seatmap_200: int = 0
    seatmap_304: int = 0
    joined: int = 0
    admitted: int = 0
    holds: int = 0
    released: int = 0
    declined: int = 0
    orders: int = 0
    seats_sold: int = 0
    fans_bought: int = 0
    bot_breaches: int = 0
    # seat id -> order id, from the fans' own confirmations.
    sold: dict[str, str] = field(default_factory=dict)
    seats_in_two_orders: int = 0
    # Open holds: hold id -> (seats, deadline as epoch seconds); abandoned ones stay until then.
    open_holds: dict[str, tuple[int, float]] = field(default_factory=dict)
    # Abandoned holds to check at the end: (hold id, owner's token, deadline).
    abandoned: list[tuple[str, str, float]] = field(default_factory=list)
    # Per region: seconds from a hold's 201 to its seats shown taken; probes that timed out.
    visible: dict[str, list[float]] = field(default_factory=dict)
    not_seen: Counter[str] = field(default_factory=Counter)


@dataclass
class Progress:
    """What the live display shows (plain numbers, safe to read from rich's refresh thread)."""

    phase: str = "starting"
    elapsed_s: float = 0.0
    joined: int = 0
    admitted: int = 0
    waiting: int | None = None
    sold: int = 0
    held: int = 0
    available: int | None = None
    requests_per_s: float = 0.0
    errors: int = 0
    rejected: int = 0
    bot_breaches: int = 0


@dataclass
class _Region:
    name: str
    # Reads and writes on separate connections, so that quick reads never queue behind slow
    # writes for a free connection (a browser would not share one either).
    edge: HttpPool
    edge_writes: HttpPool
    regional: HttpPool
    # The address every bot of this region shares (TEST-NET-3: never a real client).
    bot_ip: str


@dataclass
class _Fan:
    number: int
    user: str
    token: str
    region: _Region
    ip: str
    role: Role
    hand_picks: bool
    quantity: int
    rng: random.Random
    admission: str | None = None
    etag: str | None = None
    maps: list[tc.SeatMap] | None = None

    def headers(self, **extra: str) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "X-Forwarded-For": self.ip,
            "Accept-Encoding": "gzip",
        }
        if self.admission is not None:
            headers["X-Admission-Token"] = self.admission
        headers.update(extra)
        return headers


class _ErrorBody(msgspec.Struct):
    code: str = "?"
    reason: str | None = None


class _Error(msgspec.Struct):
    error: _ErrorBody


_ERROR_DECODER: Final = msgspec.json.Decoder(_Error)


def error_code(answer: Answer) -> str:
    """`code` (or `code/reason`) of an error body; `-` when the body is not one."""
    try:
        error = _ERROR_DECODER.decode(answer.body).error
    except msgspec.DecodeError:
        return "-"
    return f"{error.code}/{error.reason}" if error.reason else error.code


def _body(answer: Answer) -> bytes:
    if answer.header("content-encoding") == "gzip":
        return zlib.decompress(answer.body, 16 + zlib.MAX_WBITS)
    return answer.body


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


class Onsale:
    """One simulated onsale against `stack`. `progress` is live; `run()` returns the report."""

    def __init__(self, stack: Stack, options: Options) -> None:
        options.check()
        self.stack = stack
        self.options = options
        self.event_id = options.event_id or stack.event_id
        self.run_id = secrets.token_hex(3)
        self.rng = random.Random(options.seed)  # noqa: S311 (a reproducible crowd, no secret)
        self.tally = Tally()
        self.progress = Progress()
        self.stop = asyncio.Event()
        self.admission_tokens: list[tuple[str, str]] = []
        self.decoded: OrderedDict[str, list[tc.SeatMap]] = OrderedDict()
        self.regions: list[_Region] = []
        self.writer = self._pool(stack.writer_url)
        self.layout: Layout | None = None
        self.rate_per_s: float | None = None
        self.started = time.monotonic()
        self.probes = 0
        # Feed-lag probes run beside the fans; the run waits for them before the audit.
        self.background: set[asyncio.Task[None]] = set()

    @staticmethod
    def _pool(url: str, size: int = limits.onsale_connections_max) -> HttpPool:
        return HttpPool(url, size=size, timeout_s=limits.onsale_request_timeout_s)

    # --- requests ---

    async def call(
        self,
        pool: HttpPool,
        step: str | None,
        method: str,
        path: str,
        headers: dict[str, str],
        *,
        body: bytes | None = None,
        will_retry: bool = False,
    ) -> Answer | None:
        """One request, counted: latency under `step` (None: a bot's, not measured), refusals
        by status and code (fans' and bots' apart). A 5xx or a missing answer is an error,
        unless `will_retry`: a 502/503/504 or no answer that the caller sends again (a write
        with the same Idempotency-Key, a poll or a look at the map) counts as retried; only a
        write's last attempt can be an error then. A bot's 503 is the system shedding load onto
        a client that never retries: counted as a refusal."""
        tally = self.tally
        tally.requests += 1
        try:
            answer = await pool.request(method, path, headers, body)
        except HttpError:
            if will_retry:
                tally.retried += 1
            else:
                tally.errors += 1
                tally.error_kinds[f"{step or 'bot'} no answer"] += 1
            return None
        if step is not None:
            tally.latencies[step].append(answer.elapsed_s)
        if answer.status >= 400:
            reason = f"{answer.status} {error_code(answer)}"
            (tally.rejections if step is not None else tally.bot_rejections)[reason] += 1
            if will_retry and answer.status in RETRIED_STATUSES:
                tally.retried += 1
            elif step is None and answer.status == 503:
                pass  # load shed onto a bot, which never retries: a refusal, not a failure
            elif answer.status >= 500:
                tally.errors += 1
                tally.error_kinds[f"{step or 'bot'} {reason}"] += 1
        return answer

    async def write(
        self, fan: _Fan, step: str, method: str, path: str, body: dict[str, Any] | None
    ) -> Answer | None:
        """A state-changing request, retried with the same Idempotency-Key after 502/503/504,
        no answer, 429 (after Retry-After) or a key still in flight."""
        key = f"{self.run_id}-{fan.number}-{secrets.token_hex(6)}"
        data = None if body is None else msgspec.json.encode(body)
        answer: Answer | None = None
        attempts = limits.onsale_write_attempts_max
        for attempt in range(attempts):
            extra = {"Idempotency-Key": key}
            if data is not None:
                extra["Content-Type"] = "application/json"
            answer = await self.call(
                fan.region.edge_writes,
                step,
                method,
                path,
                fan.headers(**extra),
                body=data,
                will_retry=attempt < attempts - 1,
            )
            if answer is None or answer.status in RETRIED_STATUSES:
                await asyncio.sleep(0.2 * 2**attempt * fan.rng.uniform(0.5, 1.5))
            elif answer.status == 429:
                await asyncio.sleep(float(answer.header("retry-after") or 1))
            elif answer.status == 409 and error_code(answer) == "idempotency_key_in_flight":
                await asyncio.sleep(0.2)
            else:
                return answer
        return answer

    # --- setup and teardown ---

    async def load_layout(self) -> Layout:
        answer = await self.writer.request("GET", f"/v1/events/{self.event_id}")
        if answer.status != 200:
            raise RuntimeError(f"the writer does not know event {self.event_id} ({answer.status})")
        return Layout.of(msgspec.json.decode(answer.body, type=_EventDoc))

    def _admin(self) -> dict[str, str]:
        return {"X-Admin-Key": self.stack.admin_key, "Content-Type": "application/json"}

    def _room_path(self, action: str = "") -> str:
        return f"/v1/admin/events/{self.event_id}/waiting-room{action}"

    async def room(
        self, method: str, action: str = "", body: Any = None, *, home_only: bool = False
    ) -> dict[str, Any]:
        """An admin call on every region's edge (each region may keep its own room in its own
        Redis; the calls are idempotent where they share one); the home region's answer."""
        data = None if body is None else msgspec.json.encode(body)
        views: list[dict[str, Any]] = []
        for region in self.regions[:1] if home_only else self.regions:
            answer = await region.edge.request(method, self._room_path(action), self._admin(), data)
            if answer.status != 200 and not (method == "GET" and answer.status == 404):
                raise RuntimeError(
                    f"waiting room {method} {action}: {answer.status} {answer.body!r}"
                )
            views.append(msgspec.json.decode(answer.body) if answer.status == 200 else {})
        return views[0]

    async def open_room(self, fans: int) -> dict[str, Any]:
        """Switch the room on at the run's rate, frozen (closed) while the crowd arrives; returns
        the settings found before, to put back afterwards."""
        before = await self.room("GET")
        if not self.options.gate:
            if before.get("enabled"):
                await self.room("PUT", body={"enabled": False})
            return before
        admit_s = max(1.0, ADMISSION_SHARE * self.options.duration_s)
        self.rate_per_s = self.options.admission_rate_per_s or max(1.0, math.ceil(fans / admit_s))
        await self.room("PUT", body={"enabled": True, "rate_per_s": self.rate_per_s})
        # Closed while fans arrive: a fresh room stays a lobby (randomised at opening); a room
        # left open by an earlier run stops admitting until the whole crowd is in line.
        await self.room("POST", "/close")
        return before

    async def restore_room(self, before: dict[str, Any]) -> None:
        with contextlib.suppress(HttpError, RuntimeError):
            if not before:
                await self.room("PUT", body={"enabled": False})
                return
            update = {"enabled": before["enabled"], "rate_per_s": before["rate_per_s"]}
            await self.room("PUT", body=update)
            if before.get("gate") in ("open", "closed"):
                await self.room("POST", "/open" if before["gate"] == "open" else "/close")

    async def read_lag_histograms(self) -> dict[str, dict[float, float]]:
        found = {}
        for region in self.regions:
            with contextlib.suppress(HttpError):
                answer = await region.regional.request("GET", "/metrics")
                found[region.name] = parse_histogram(answer.body.decode(), LAG_METRIC)
        return found

    async def available_seats(self) -> int:
        """Seats available now, from the writer's snapshots (the reference)."""
        assert self.layout is not None
        total = 0
        for section in self.layout.section_ids:
            path = f"/v1/events/{self.event_id}/sections/{section}/snapshot"
            answer = await self.writer.request("GET", path)
            if answer.status == 200:
                total += tc.SeatMap.decode(answer.body).available_count
        return total

    # --- a fan ---

    async def fan(self, fan: _Fan, arrive_in_s: float) -> None:
        await asyncio.sleep(arrive_in_s)
        if await self.queue(fan):
            await self.shop(fan)

    async def join(self, fan: _Fan) -> dict[str, Any] | None:
        """Join the room (again after a 429 or 5xx); the ticket, or None when refused for
        good or the sale ended first."""
        path = f"/v1/events/{self.event_id}/queue"
        while not self.stop.is_set():
            joined = await self.call(
                fan.region.edge, "queue_join", "POST", path, fan.headers(), will_retry=True
            )
            if joined is not None and joined.status in (200, 201):
                self.tally.joined += 1
                ticket: dict[str, Any] = msgspec.json.decode(joined.body)
                return ticket
            if joined is not None and joined.status < 500 and joined.status != 429:
                return None  # refused (counted): a browser would show the error
            retry = joined.header("retry-after") if joined is not None else None
            await asyncio.sleep(float(retry or 1) * fan.rng.uniform(1.0, 1.5))
        return None

    async def queue(self, fan: _Fan) -> bool:
        """Join the room and wait for admission, polling at the pace of the ETA. False when
        the sale ended first (or the ticket stopped being valid)."""
        status = await self.join(fan)
        if status is None:
            return False
        path = f"/v1/queue/{status['ticket']}"
        since = time.monotonic()
        while status.get("state") != "admitted":
            eta = status.get("eta_s")
            # As a queue page does: soon when the turn is near, every few seconds otherwise
            # (pending rooms have no ETA).
            pause = 3.0 if eta is None else min(max(eta, 0.5), 10.0)
            await asyncio.sleep(pause * fan.rng.uniform(0.8, 1.2))
            if self.stop.is_set():
                return False
            polled = await self.call(
                fan.region.edge, "queue_poll", "GET", path, fan.headers(), will_retry=True
            )
            if polled is not None and polled.status == 200:
                status = msgspec.json.decode(polled.body)
            elif polled is not None and polled.status == 404:
                return False  # ticket_not_found: the room was switched off under the fan
        self.tally.latencies["queue_wait"].append(time.monotonic() - since)
        self.tally.admitted += 1
        fan.admission = status.get("admission_token")
        if fan.admission is not None and len(self.admission_tokens) < 1_000:
            self.admission_tokens.append((fan.user, fan.admission))
        return True

    async def look(self, fan: _Fan) -> list[tc.SeatMap] | None:
        """The event's seat map through the fan's edge, revalidated with the last ETag."""
        assert self.layout is not None
        headers = fan.headers()
        if fan.etag is not None:
            headers["If-None-Match"] = fan.etag
        path = f"/v1/events/{self.event_id}/seatmap"
        answer = await self.call(fan.region.edge, "seatmap", "GET", path, headers, will_retry=True)
        if answer is None:
            return fan.maps
        if answer.status == 304:
            self.tally.seatmap_304 += 1
            return fan.maps
        if answer.status != 200:
            if answer.status == 429:
                await asyncio.sleep(float(answer.header("retry-after") or 1))
            return fan.maps
        self.tally.seatmap_200 += 1
        etag = answer.header("etag") or ""
        maps = self.decoded.get(etag)
        if maps is None:  # fans who got the same bytes share one decoding (CPU is scarce)
            _, _, maps = tc.decode_event(_body(answer), self.layout.seat_counts)
            self.decoded[etag] = maps
            if len(self.decoded) > 32:
                self.decoded.popitem(last=False)
        fan.etag, fan.maps = etag, maps
        return maps

    async def shop(self, fan: _Fan) -> None:
        """Look, choose, hold; again after a 409, until the fan has seats, gives up or the sale
        ends. A sold-out map makes the fan wait for returns (expired or released holds)."""
        assert self.layout is not None
        failures = 0
        while failures < limits.onsale_hold_attempts_max and not self.stop.is_set():
            maps = await self.look(fan)
            await asyncio.sleep(fan.rng.uniform(0.2, 1.0))  # looking at the map
            maps = await self.look(fan) or maps
            if maps is None:
                failures += 1
                continue
            if not any(m.available_count for m in maps):
                await asyncio.sleep(fan.rng.uniform(1.0, 2.0))
                continue
            body: dict[str, Any]
            if fan.hand_picks:
                body = {"seats": pick_seats(fan.rng, self.layout, maps, fan.quantity)}
            else:
                wanted = {"quantity": fan.quantity, "adjacent": failures < 2}
                body = {"best_available": wanted}
            path = f"/v1/events/{self.event_id}/holds"
            answer = await self.write(fan, "hold", "POST", path, body)
            if answer is not None and answer.status == 201:
                await self.after_hold(fan, msgspec.json.decode(answer.body))
                return
            if answer is not None and answer.status not in (409, 429, 502, 503, 504):
                return  # refused for good (per-fan limit, not admitted, …): counted already
            failures += 1
            await asyncio.sleep(fan.rng.uniform(0.1, 0.5))

    async def after_hold(self, fan: _Fan, hold: dict[str, Any]) -> None:
        hold_id, seats = str(hold["hold_id"]), list(hold["seats"])
        deadline = _epoch(hold["expires_at"])
        self.tally.holds += 1
        self.tally.open_holds[hold_id] = (len(seats), deadline)
        if fan.role != "releaser" and self.probes < limits.onsale_lag_probes_max:
            self.probes += 1
            task = asyncio.create_task(self.probe(seats, time.monotonic()))
            self.background.add(task)
            task.add_done_callback(self.background.discard)
        await asyncio.sleep(fan.rng.uniform(0.3, 1.5))  # filling in the checkout form
        if fan.role == "abandoner":
            self.tally.abandoned.append((hold_id, fan.token, deadline))
            return
        if fan.role == "releaser":
            path = f"/v1/events/{self.event_id}/holds/{hold_id}"
            answer = await self.write(fan, "release", "DELETE", path, None)
            if answer is not None and answer.status == 204:
                self.tally.released += 1
                self.tally.open_holds.pop(hold_id, None)
            return
        if fan.role == "decliner":
            if await self.checkout(fan, hold_id, fan.rng.choice(DECLINES)):
                return  # not declined after all: the order is counted
            if fan.rng.random() < 0.5:  # half give up: the hold must expire
                self.tally.abandoned.append((hold_id, fan.token, deadline))
                return
            await asyncio.sleep(fan.rng.uniform(0.3, 1.0))  # another card
        await self.checkout(fan, hold_id, APPROVE)

    async def checkout(self, fan: _Fan, hold_id: str, payment_token: str) -> bool:
        """Pay for the hold; True when an order came back."""
        body = {"hold_id": hold_id, "payment_token": payment_token}
        path = f"/v1/events/{self.event_id}/orders"
        answer = await self.write(fan, "checkout", "POST", path, body)
        if answer is None:
            return False
        if answer.status == 402:
            self.tally.declined += 1
            return False
        if answer.status != 201:
            return False
        order = msgspec.json.decode(answer.body)
        tally = self.tally
        tally.orders += 1
        tally.fans_bought += 1
        tally.seats_sold += len(order["seats"])
        tally.open_holds.pop(hold_id, None)
        for seat in order["seats"]:
            if tally.sold.setdefault(seat, order["order_id"]) != order["order_id"]:
                tally.seats_in_two_orders += 1
        return True

    async def probe(self, seats: list[str], since: float) -> None:
        """Time until the held seats show as taken in every region's map, read from the
        regional nodes directly (the edge's cache would add its TTL) every few milliseconds."""
        assert self.layout is not None
        where = [self.layout.where[seat] for seat in seats]
        section = where[0][0]
        path = f"/v1/events/{self.event_id}/sections/{self.layout.section_ids[section]}/seatmap"
        deadline = since + limits.onsale_lag_probe_s_max

        async def one(region: _Region) -> None:
            while time.monotonic() < deadline:
                with contextlib.suppress(HttpError, tc.SeatMapError):
                    answer = await region.regional.request("GET", path)
                    seat_map = tc.SeatMap.decode(answer.body)
                    if not any(seat_map.is_available(i) for s, i in where if s == section):
                        self.tally.visible.setdefault(region.name, []).append(
                            time.monotonic() - since
                        )
                        return
                await asyncio.sleep(limits.onsale_lag_probe_interval_s)
            self.tally.not_seen[region.name] += 1

        await asyncio.gather(*(one(region) for region in self.regions))

    # --- a bot ---

    async def bot(self, number: int, region: _Region, start_in_s: float) -> None:
        """Everything a fan must not do, from the address all bots of the region share."""
        await asyncio.sleep(start_in_s)
        user = f"onsale-{self.run_id}-bot{number}"
        token = mint_token(user, self.stack.jwt_secret)
        base = {"Authorization": f"Bearer {token}", "X-Forwarded-For": region.bot_ip}
        queue = f"/v1/events/{self.event_id}/queue"
        for _ in range(3):  # queue spam: the same ticket back, then 429s
            await self.call(region.edge, None, "POST", queue, base)
        seatmap = f"/v1/events/{self.event_id}/seatmap"
        for _ in range(limits.onsale_bot_reads_max):  # scraping, no ETag: 429s
            if self.stop.is_set():
                return
            await self.call(region.edge, None, "GET", seatmap, base)
        if not self.options.gate:
            return  # with the room off, writing without a token is allowed
        stolen = (
            self.admission_tokens[number % len(self.admission_tokens)][1]
            if self.admission_tokens
            else None
        )
        tokens = [None, "adm.forged.x", stolen]
        for admission in tokens:
            headers = {
                **base,
                "Idempotency-Key": f"{self.run_id}-bot{number}-{secrets.token_hex(4)}",
            }
            if admission is not None:
                headers["X-Admission-Token"] = admission
            body = msgspec.json.encode({"best_available": {"quantity": 2}})
            headers["Content-Type"] = "application/json"
            path = f"/v1/events/{self.event_id}/holds"
            answer = await self.call(region.edge_writes, None, "POST", path, headers, body=body)
            if answer is not None and answer.status < 300:
                self.tally.bot_breaches += 1
                hold_id = msgspec.json.decode(answer.body)["hold_id"]
                # Give the seats back so the breach does not also distort the sale.
                path = f"/v1/events/{self.event_id}/holds/{hold_id}"
                await self.call(region.edge_writes, None, "DELETE", path, headers)

    # --- the run ---

    def make_fans(self, count: int) -> list[_Fan]:
        """The crowd, from the seed: roles, regions (round robin), seat wishes, addresses."""
        assert self.layout is not None
        options, fans = self.options, []
        cap = self.layout.per_user_limit
        for number in range(count):
            draw = self.rng.random()
            role: Role = "buyer"
            if draw < options.abandon_share:
                role = "abandoner"
            elif draw < options.abandon_share + options.decline_share:
                role = "decliner"
            elif draw < options.abandon_share + options.decline_share + options.release_share:
                role = "releaser"
            user = f"onsale-{self.run_id}-{number}"
            quantity = min(cap, self.rng.choices(QUANTITIES, QUANTITY_WEIGHTS)[0])
            fans.append(
                _Fan(
                    number=number,
                    user=user,
                    token=mint_token(user, self.stack.jwt_secret),
                    region=self.regions[number % len(self.regions)],
                    # A distinct client address per fan: 10.x.y.z.
                    ip=f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}",
                    role=role,
                    hand_picks=self.rng.random() < options.pick_share,
                    quantity=quantity,
                    rng=random.Random(self.rng.getrandbits(64)),  # noqa: S311
                )
            )
        return fans

    async def monitor(self) -> None:
        """Keep `progress` current; every second also read the room's queue and the seats
        left, and end the sale once it is sold out for good (nothing free, no hold pending)."""
        home = self.regions[0]
        last_requests, last_at, tick, sold_out_ticks = 0, time.monotonic(), 0, 0
        while True:
            await asyncio.sleep(limits.onsale_progress_s)
            tick += 1
            now, wall = time.monotonic(), time.time()
            tally, progress = self.tally, self.progress
            for hold_id, (_, deadline) in list(tally.open_holds.items()):
                if deadline + limits.onsale_expiry_slack_s < wall:
                    del tally.open_holds[hold_id]
            progress.elapsed_s = now - self.started
            progress.joined, progress.admitted = tally.joined, tally.admitted
            progress.sold, progress.errors = tally.seats_sold, tally.errors
            progress.held = sum(n for n, deadline in tally.open_holds.values() if deadline > wall)
            progress.rejected = sum(tally.rejections.values())
            progress.bot_breaches = tally.bot_breaches
            if tick % round(1 / limits.onsale_progress_s):
                continue
            progress.requests_per_s = (tally.requests - last_requests) / (now - last_at)
            last_requests, last_at = tally.requests, now
            with contextlib.suppress(HttpError, RuntimeError, msgspec.DecodeError):
                if self.options.gate:
                    view = await self.room("GET", home_only=True)
                    progress.waiting = view["stats"]["waiting"]
            with contextlib.suppress(HttpError, tc.SeatMapError, ValueError):
                assert self.layout is not None
                path = f"/v1/events/{self.event_id}/seatmap"
                answer = await home.regional.request("GET", path)
                _, _, maps = tc.decode_event(answer.body, self.layout.seat_counts)
                progress.available = sum(m.available_count for m in maps)
            sold_out = progress.available == 0 and not tally.open_holds
            sold_out_ticks = sold_out_ticks + 1 if sold_out else 0
            if sold_out_ticks >= 2:  # twice in a row: no return is on its way
                self.stop.set()

    async def sell(self, fans: list[_Fan], bots: int) -> None:
        """Run the crowd until everyone is done, the event is sold out for good, or time is up;
        open the gate once the crowd has arrived."""
        options = self.options
        arrival_s = ARRIVAL_SHARE * options.duration_s
        tasks = [asyncio.create_task(self.fan(fan, fan.rng.uniform(0, arrival_s))) for fan in fans]
        bot_window = arrival_s + ADMISSION_SHARE * options.duration_s / 2
        tasks += [
            asyncio.create_task(
                self.bot(n, self.regions[n % len(self.regions)], self.rng.uniform(0, bot_window))
            )
            for n in range(bots)
        ]
        everyone = asyncio.gather(*tasks, return_exceptions=True)
        sold_out = asyncio.create_task(self.stop.wait())
        opener = asyncio.create_task(self.open_gate(arrival_s))
        remaining = options.duration_s - (time.monotonic() - self.started)
        either: set[asyncio.Future[Any]] = {everyone, sold_out}
        await asyncio.wait(either, timeout=remaining, return_when="FIRST_COMPLETED")
        self.stop.set()
        for task in (*tasks, opener, sold_out):
            task.cancel()
        for outcome in await everyone:
            if isinstance(outcome, Exception):  # a simulator bug: shown, and the run fails
                self.tally.errors += 1
                self.tally.error_kinds[f"simulator {outcome!r}"[:200]] += 1
        await asyncio.gather(opener, sold_out, return_exceptions=True)

    async def open_gate(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        self.progress.phase = "selling"
        if self.options.gate:
            await self.room("POST", "/open")

    async def check_expiry(self) -> HoldExpiry:
        """Wait (bounded) until the abandoned holds' deadlines have passed, then ask the writer
        for each: past its deadline (and the reaper's slack) a hold must be `expired`."""
        abandoned = self.tally.abandoned
        if abandoned:
            latest = max(deadline for _, _, deadline in abandoned) + limits.onsale_expiry_slack_s
            wait_s = min(latest - time.time(), self.options.expiry_wait_s)
            if wait_s > 0:
                self.progress.phase = f"waiting {wait_s:.0f} s for abandoned holds to expire"
                await asyncio.sleep(wait_s)
        counts: Counter[str] = Counter()
        slots = asyncio.Semaphore(limits.onsale_connections_max)

        async def one(hold_id: str, token: str, deadline: float) -> None:
            async with slots:
                headers = {"Authorization": f"Bearer {token}"}
                try:
                    answer = await self.writer.request("GET", f"/v1/holds/{hold_id}", headers)
                    status = msgspec.json.decode(answer.body).get("status", "?")
                except (HttpError, msgspec.DecodeError):
                    status = "?"
            if status == "active":
                late = time.time() > deadline + limits.onsale_expiry_slack_s
                status = "not_expired" if late else "within_ttl"
            counts[status] += 1

        await asyncio.gather(*(one(*hold) for hold in abandoned))
        return HoldExpiry(
            abandoned=len(abandoned),
            expired=counts["expired"],
            within_ttl=counts["within_ttl"],
            not_expired=counts["not_expired"],
            other=len(abandoned) - counts["expired"] - counts["within_ttl"] - counts["not_expired"],
        )

    async def run(self) -> OnsaleReport:
        """The whole run: set up, sell, wait for expiries, audit; the report."""
        stack, options = self.stack, self.options
        self.regions = [
            _Region(
                name=r.name,
                edge=self._pool(r.edge_url),
                edge_writes=self._pool(r.edge_url, limits.onsale_write_connections_max),
                regional=self._pool(r.regional_url),
                bot_ip=f"203.0.113.{i}",
            )
            for i, r in enumerate(sorted(stack.regions, key=lambda r: not r.home), 1)
        ]
        monitor: asyncio.Task[None] | None = None
        room_before: dict[str, Any] | None = None
        try:
            self.progress.phase = "setting up"
            self.layout = await self.load_layout()
            lag_before = await self.read_lag_histograms()
            available_before = await self.available_seats()
            bots = round(options.fans * options.bots_share)
            room_before = await self.open_room(options.fans - bots)
            fans = self.make_fans(options.fans - bots)
            self.started = time.monotonic()
            self.progress.phase = "fans arriving"
            monitor = asyncio.create_task(self.monitor())
            await self.sell(fans, bots)
            sale_s = time.monotonic() - self.started
            await asyncio.gather(*self.background, return_exceptions=True)
            expiry = await self.check_expiry()
            lag_after = await self.read_lag_histograms()
            self.progress.phase = "auditing"
            audit = await audit_event(stack, self.event_id, converge_s=options.converge_s)
            available_after = await self.available_seats()
        finally:
            if monitor is not None:
                monitor.cancel()
            if room_before is not None:
                await self.restore_room(room_before)
            await self.close()
        self.progress.phase = "done"
        return self.report(
            fans=len(fans),
            bots=bots,
            sale_s=sale_s,
            available=(available_before, available_after),
            expiry=expiry,
            lag=self.feed_lag(lag_before, lag_after),
            audit=audit,
        )

    async def close(self) -> None:
        for task in self.background:
            task.cancel()
        pools = [
            self.writer,
            *(pool for r in self.regions for pool in (r.edge, r.edge_writes, r.regional)),
        ]
        for pool in pools:
            await pool.aclose()

    def feed_lag(
        self, before: dict[str, dict[float, float]], after: dict[str, dict[float, float]]
    ) -> list[FeedLag]:
        lags = []
        for region in self.regions:
            start, end = before.get(region.name, {}), after.get(region.name, {})
            p50 = histogram_quantile(start, end, 0.5)
            p99 = histogram_quantile(start, end, 0.99)
            lags.append(
                FeedLag(
                    region=region.name,
                    applied=int(end.get(math.inf, 0.0) - start.get(math.inf, 0.0)),
                    commit_to_apply_p50_ms=None if p50 is None else p50 * 1000,
                    commit_to_apply_p99_ms=None if p99 is None else p99 * 1000,
                    hold_visible=StepLatency.of(self.tally.visible.get(region.name, [])),
                    not_seen=self.tally.not_seen[region.name],
                )
            )
        return lags

    def report(
        self,
        *,
        fans: int,
        bots: int,
        sale_s: float,
        available: tuple[int, int],
        expiry: HoldExpiry,
        lag: list[FeedLag],
        audit: AuditReport,
    ) -> OnsaleReport:
        tally, layout = self.tally, self.layout
        assert layout is not None
        summary = AuditSummary(
            ok=audit.ok,
            oversells=audit.oversells,
            claims=audit.claims,
            sold=audit.sold,
            violations={name: len(rows) for name, rows in audit.violations.items() if rows},
            problems=audit.details(rows_max=5),
            regions=audit.regions,
            sections=audit.sections,
            converged_s=audit.converged_s,
        )
        report = OnsaleReport(
            ok=True,
            problems=[],
            event_id=self.event_id,
            fans=fans,
            bots=bots,
            regions=[region.name for region in self.regions],
            seed=self.options.seed,
            duration_s=round(time.monotonic() - self.started, 2),
            seats_total=sum(layout.seat_counts),
            seats_available_before=available[0],
            seats_available_after=available[1],
            seats_sold=tally.seats_sold,
            orders=tally.orders,
            sold_out=available[1] == 0,
            seats_in_two_orders=tally.seats_in_two_orders,
            holds=tally.holds,
            holds_released=tally.released,
            checkouts_declined=tally.declined,
            fans_bought=tally.fans_bought,
            requests=tally.requests,
            requests_per_s=round(tally.requests / max(sale_s, 1e-9), 1),
            errors=tally.errors,
            retried=tally.retried,
            error_kinds=dict(tally.error_kinds.most_common()),
            seatmap_200=tally.seatmap_200,
            seatmap_304=tally.seatmap_304,
            queue=QueueReport(
                gated=self.options.gate,
                rate_per_s=self.rate_per_s,
                joined=tally.joined,
                admitted=tally.admitted,
                never_admitted=tally.joined - tally.admitted,
            ),
            latency={s: StepLatency.of(v) for s, v in tally.latencies.items() if v},
            feed_lag=lag,
            rejections=dict(tally.rejections.most_common()),
            bot_rejections=dict(tally.bot_rejections.most_common()),
            bot_breaches=tally.bot_breaches,
            hold_expiry=expiry,
            audit=summary,
        )
        report.problems = problems(report)
        report.ok = not report.problems
        return report


def problems(report: OnsaleReport) -> list[str]:
    """Everything that makes the run fail, one line each (empty: the run passed)."""
    found = []
    if report.audit.oversells:
        found.append(f"{report.audit.oversells} seats sold twice (audit)")
    if not report.audit.ok:
        found += [f"audit: {line}" for line in report.audit.problems] or ["audit failed"]
    if report.seats_in_two_orders:
        found.append(f"{report.seats_in_two_orders} seats confirmed in two orders")
    if report.errors:
        samples = ", ".join(f"{kind} x{n}" for kind, n in list(report.error_kinds.items())[:3])
        found.append(f"{report.errors} requests failed (5xx or no answer), e.g. {samples}")
    if report.bot_breaches:
        found.append(f"{report.bot_breaches} bot writes got past the waiting room")
    if report.hold_expiry.not_expired:
        found.append(f"{report.hold_expiry.not_expired} abandoned holds outlived their deadline")
    return found


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


def progress_table(progress: Progress) -> Table:
    table = Table(box=box.ROUNDED, title="tessera onsale", title_justify="left")
    columns = ("phase", "time", "queue", "admitted", "sold", "left", "held", "req/s", "errors")
    for column in columns:
        table.add_column(column, justify="left" if column == "phase" else "right")
    table.add_row(
        progress.phase,
        f"{progress.elapsed_s:.0f} s",
        "-" if progress.waiting is None else f"{progress.waiting:,}",
        f"{progress.admitted:,}/{progress.joined:,}",
        f"{progress.sold:,}",
        "-" if progress.available is None else f"{progress.available:,}",
        f"{progress.held:,}",
        f"{progress.requests_per_s:,.0f}",
        f"[red]{progress.errors}[/]" if progress.errors else "0",
    )
    return table


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
