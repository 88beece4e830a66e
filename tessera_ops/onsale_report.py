"""`tessera onsale`'s numbers: what the fans measured, the report (a msgspec struct, `--json`),
its verdict (`problems`), and how the run and the report look in a terminal (rich).

Percentiles are nearest-rank over every sample (`percentile`). The change-feed lag comes from the
regional nodes' own histogram `tessera_feed_apply_lag_seconds` (commit → applied): the simulator
reads it before and after the run and estimates quantiles from the difference of the bucket
counts (`histogram_quantile`: the upper bound of the bucket a quantile falls in, as precise as the
buckets are), and, independently, from fans' holds (`hold_visible`: from the hold's 201 to its
seats showing taken in each region's map, polled every 10 ms).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import msgspec
from rich import box
from rich.console import Console, Group
from rich.table import Table

# Steps whose latencies the report shows, in the order a fan meets them.
STEPS: Final = (
    "queue_join",
    "queue_poll",
    "queue_wait",
    "seatmap",
    "hold",
    "release",
    "order",
)


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted samples (`fraction` in 0..1): the smallest sample with
    at least that share of samples at or below it. NaN when there are none."""
    if not ordered:
        return math.nan
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction {fraction} is not within 0..1")
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class StepLatency(msgspec.Struct, frozen=True, kw_only=True):
    """Milliseconds; None without samples (JSON has no NaN)."""

    count: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    @classmethod
    def of(cls, seconds: Iterable[float]) -> StepLatency:
        ordered = sorted(seconds)
        if not ordered:
            return cls(count=0, p50_ms=None, p99_ms=None, max_ms=None)
        return cls(
            count=len(ordered),
            p50_ms=round(percentile(ordered, 0.5) * 1000, 2),
            p99_ms=round(percentile(ordered, 0.99) * 1000, 2),
            max_ms=round(ordered[-1] * 1000, 2),
        )


_BUCKET: Final = re.compile(r"^(?P<name>[a-zA-Z_:]+)_bucket\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LE: Final = re.compile(r'(?:^|,)le="(?P<le>[^"]+)"')


def parse_histogram(metrics_text: str, name: str) -> dict[float, float]:
    """A Prometheus histogram's cumulative bucket counts by upper bound (`+Inf` as math.inf),
    summed over its label sets."""
    buckets: dict[float, float] = {}
    for line in metrics_text.splitlines():
        match = _BUCKET.match(line)
        if match is None or match["name"] != name:
            continue
        le = _LE.search(match["labels"])
        if le is None:
            continue
        bound = math.inf if le["le"] == "+Inf" else float(le["le"])
        buckets[bound] = buckets.get(bound, 0.0) + float(match["value"])
    return buckets


def histogram_quantile(
    before: Mapping[float, float], after: Mapping[float, float], fraction: float
) -> float | None:
    """The upper bound of the bucket holding the `fraction` quantile of the observations made
    between two readings of a cumulative histogram (None: no observations; math.inf: beyond the
    last finite bucket)."""
    bounds = sorted(after)
    if not bounds:
        return None
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if bounds[-1] == math.inf else max(counts)
    if total <= 0:
        return None
    wanted = fraction * total
    for bound, count in zip(bounds, counts, strict=True):
        if count >= wanted:
            return bound
    return math.inf


class FeedLag(msgspec.Struct, frozen=True, kw_only=True):
    region: str
    # From the node's histogram: commit → applied, during the run (bucket upper bounds).
    applied: int
    commit_to_apply_p50_ms: float | None
    commit_to_apply_p99_ms: float | None
    # From sampled holds: the hold's 201 → its seats taken in this region's map.
    hold_visible: StepLatency
    # Sampled holds whose seats never showed as taken within the probe's patience.
    not_seen: int


class QueueReport(msgspec.Struct, frozen=True, kw_only=True):
    gated: bool
    rate_per_s: float | None
    joined: int
    admitted: int
    # Fans still waiting when the sale ended.
    never_admitted: int


class HoldExpiry(msgspec.Struct, frozen=True, kw_only=True):
    """Holds fans walked away from: each must end as `expired` once its deadline has passed."""

    abandoned: int
    expired: int
    # Still active, and rightly so: the deadline (plus the reaper's slack) is still ahead.
    within_ttl: int
    # Still active past the deadline and the slack: a broken promise.
    not_expired: int
    # Bought or released after all (a decliner who came back), or could not be read.
    other: int


class AuditSummary(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    oversells: int
    claims: int
    sold: int
    violations: dict[str, int]
    problems: list[str]
    regions: list[str]
    sections: int
    converged_s: float | None


class OnsaleReport(msgspec.Struct, kw_only=True):
    ok: bool
    # Why `ok` is False, one line each.
    problems: list[str]
    event_id: str
    fans: int
    bots: int
    regions: list[str]
    seed: int
    duration_s: float
    seats_total: int
    seats_available_before: int
    seats_available_after: int
    seats_sold: int
    orders: int
    sold_out: bool
    # Seats the fans' own orders name twice (an oversell seen from outside; must be 0).
    seats_in_two_orders: int
    holds: int
    holds_released: int
    checkouts_declined: int
    fans_bought: int
    requests: int
    requests_per_s: float
    # 5xx answers and requests that got no answer, that no retry followed: fans saw them.
    errors: int
    # 502/503/504 or unanswered attempts that were sent again with the same Idempotency-Key.
    retried: int
    # Errors by kind: "<step> <status> <code>" or "<step> no answer".
    error_kinds: dict[str, int]
    seatmap_200: int
    seatmap_304: int
    queue: QueueReport
    latency: dict[str, StepLatency]
    feed_lag: list[FeedLag]
    # Fans' refused requests by "status code" (e.g. "409 seats_unavailable").
    rejections: dict[str, int]
    bot_rejections: dict[str, int]
    # Bot writes the edge let through (a hold without a valid admission token): must be 0.
    bot_breaches: int
    hold_expiry: HoldExpiry
    audit: AuditSummary


def _ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if math.isinf(value):
        return "> max bucket"
    return f"{value:,.1f}"


def _counts_table(title: str, counts: Mapping[str, int]) -> Table:
    table = Table(title=title, box=box.SIMPLE, title_justify="left")
    table.add_column("answer")
    table.add_column("count", justify="right")
    for name, count in sorted(counts.items(), key=lambda item: -item[1]):
        table.add_row(name, f"{count:,}")
    if not counts:
        table.add_row("none", "0")
    return table


def _summary_table(report: OnsaleReport) -> Table:
    table = Table(
        title=f"onsale of event {report.event_id}", box=box.SIMPLE_HEAVY, title_justify="left"
    )
    table.add_column("")
    table.add_column("", justify="right")
    verdict = "[green]OK[/]" if report.ok else "[red]FAILED[/]"
    queue = report.queue
    rows = [
        ("result", verdict),
        ("fans / bots / regions", f"{report.fans:,} / {report.bots:,} / {len(report.regions)}"),
        ("duration", f"{report.duration_s:.1f} s"),
        ("seats sold", f"{report.seats_sold:,} in {report.orders:,} orders"),
        (
            "seats available before → after",
            f"{report.seats_available_before:,} → {report.seats_available_after:,}"
            + (" (sold out)" if report.sold_out else ""),
        ),
        ("oversells (audit)", str(report.audit.oversells)),
        ("seats in two orders (fans' view)", str(report.seats_in_two_orders)),
        ("holds / released / declined checkouts", _triple(report)),
        (
            "queue joined / admitted / never admitted",
            f"{queue.joined:,} / {queue.admitted:,} / {queue.never_admitted:,}"
            + (f" at {queue.rate_per_s:g}/s" if queue.gated and queue.rate_per_s else ""),
        ),
        ("requests", f"{report.requests:,} ({report.requests_per_s:,.0f}/s)"),
        ("seat maps 200 / 304", f"{report.seatmap_200:,} / {report.seatmap_304:,}"),
        ("errors (5xx, no answer) / retried", f"{report.errors} / {report.retried}"),
        ("bot writes let through", str(report.bot_breaches)),
        ("abandoned holds expired / pending / NOT", _expiry(report.hold_expiry)),
        ("audit", "ok" if report.audit.ok else "[red]FAILED[/]"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _triple(report: OnsaleReport) -> str:
    return f"{report.holds:,} / {report.holds_released:,} / {report.checkouts_declined:,}"


def _expiry(expiry: HoldExpiry) -> str:
    return f"{expiry.expired:,} / {expiry.within_ttl:,} / {expiry.not_expired:,}"


def _latency_table(report: OnsaleReport) -> Table:
    table = Table(title="latency (ms)", box=box.SIMPLE, title_justify="left")
    for column in ("step", "count", "p50", "p99", "max"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for step, latency in report.latency.items():
        table.add_row(
            step,
            f"{latency.count:,}",
            _ms(latency.p50_ms),
            _ms(latency.p99_ms),
            _ms(latency.max_ms),
        )
    return table


def _lag_table(report: OnsaleReport) -> Table:
    table = Table(title="change-feed lag (ms)", box=box.SIMPLE, title_justify="left")
    for column in ("region", "applied", "commit→apply p50", "p99", "hold→visible p50", "p99"):
        table.add_column(column, justify="left" if column == "region" else "right")
    for lag in report.feed_lag:
        table.add_row(
            lag.region,
            f"{lag.applied:,}",
            "≤ " + _ms(lag.commit_to_apply_p50_ms),
            "≤ " + _ms(lag.commit_to_apply_p99_ms),
            _ms(lag.hold_visible.p50_ms),
            _ms(lag.hold_visible.p99_ms),
        )
    return table


def render_report(report: OnsaleReport, console: Console) -> None:
    """The final report as tables, then each problem on its own line."""
    console.print(
        Group(
            _summary_table(report),
            _latency_table(report),
            _lag_table(report),
            _counts_table("fans' requests refused", report.rejections),
            _counts_table("bots' requests refused", report.bot_rejections),
        )
    )
    for problem in report.problems:
        console.print(f"[red]problem:[/] {problem}", highlight=False)


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


# --- the live view ---


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
