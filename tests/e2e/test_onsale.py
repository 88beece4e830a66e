"""`tessera onsale` against real processes: a writer, two regional read nodes (one per "region";
both read the same NATS here) and an edge in front of each, selling a 50-seat room to a crowd of
150 (bots included) until it is sold out. Abandoned and declined holds must expire and be bought
by fans waiting for returns; nothing may be sold twice; every region's map must end equal to the
writer's; no bot may write past the waiting room."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import msgspec
import pytest
from edge_support import ADMISSION_SECRET, EdgeStack
from writer_support import ROOM, WRITER_ADMIN_KEY, WRITER_JWT_SECRET

from tessera_ops.onsale import Options, run_onsale
from tessera_ops.onsale_report import OnsaleReport
from tessera_ops.stackfile import Region, Stack, read_stack, write_stack

pytestmark = pytest.mark.anyio

SEATS = 50
HOLD_TTL_S = 4
# The edges' default rate budgets (docs/edge.md): fans each come from their own address (as a
# CDN would say in X-Forwarded-For), the bots of a region share one and meet the limits.
DEFAULT_LIMITS = json.dumps({"budgets": {}})


@pytest.fixture(scope="module")
def stack_file(edge_stack: EdgeStack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stack.json describing the fixture's processes, as `tessera up` would write it."""
    regions = []
    for index, (name, regional) in enumerate(zip(("eu", "us"), edge_stack.regionals, strict=True)):
        edge = edge_stack.start_edge(
            f"edge-{name}", [regional], TESSERA_RATE_LIMITS=DEFAULT_LIMITS, TESSERA_REGION=name
        )
        regions.append(
            Region(
                name=name,
                nats_url=edge_stack.nats_url,
                regional_url=regional.url,
                edge_url=edge.url,
                page_url=f"{edge.url}/",
                home=index == 0,
            )
        )
    event_id = edge_stack.create_event(ROOM, hold_ttl_s=HOLD_TTL_S, per_user_limit=4)
    edge_stack.wait_seen(event_id)
    data_dir = tmp_path_factory.mktemp("onsale-stack")
    write_stack(
        Stack(
            data_dir=str(data_dir),
            database_url=edge_stack.writer.env["TESSERA_DATABASE_URL"],
            redis_url=edge_stack.redis_url,
            writer_url=edge_stack.writer.url,
            admin_key=WRITER_ADMIN_KEY,
            jwt_secret=WRITER_JWT_SECRET,
            admission_secret=ADMISSION_SECRET,
            event_id=event_id,
            regions=regions,
            supervisor_pid=os.getpid(),
        )
    )
    return data_dir


async def test_a_crowd_sells_the_room_out_without_an_oversell(stack_file: Path) -> None:
    stack = read_stack(stack_file)
    options = Options(fans=150, duration_s=40, seed=7, bots_share=0.06)
    report = await run_onsale(stack, options)

    assert report.ok, report.problems
    assert report.problems == []
    # Sold out: every seat sold, by this run, in orders that name each seat once.
    assert report.seats_available_before == SEATS
    assert report.seats_available_after == 0
    assert report.sold_out
    assert report.seats_sold == SEATS
    assert report.seats_in_two_orders == 0
    assert report.audit.ok, report.audit.problems
    assert report.audit.oversells == 0
    assert report.audit.sold == SEATS
    assert report.audit.regions == ["eu", "us"]
    assert report.audit.sections == 2
    # The crowd went through the room, one region each way, and nothing failed.
    assert (report.fans, report.bots) == (141, 9)
    assert report.queue.gated
    assert report.queue.joined == report.fans
    # Fans still in line when the room sold out for good are never admitted: the sale ends.
    assert 0 < report.queue.admitted == report.queue.joined - report.queue.never_admitted
    assert report.errors == 0, report.error_kinds
    # Walked-away holds ended as expired (their seats then went to fans waiting for returns).
    expiry = report.hold_expiry
    assert expiry.abandoned > 0
    assert expiry.not_expired == 0
    assert expiry.expired + expiry.within_ttl + expiry.other == expiry.abandoned
    assert expiry.expired > 0
    assert report.checkouts_declined > 0
    assert (
        report.rejections.get("402 payment_declined/card_declined", 0)
        + report.rejections.get("402 payment_declined/insufficient_funds", 0)
        == report.checkouts_declined
    )
    # Bots: refused by the room and by the rate limits, never let through.
    assert report.bot_breaches == 0
    assert report.bot_rejections.get("403 admission_required", 0) > 0
    assert report.bot_rejections.get("429 rate_limited", 0) > 0
    # What was measured.
    for step in ("queue_join", "queue_wait", "seatmap", "hold", "order"):
        latency = report.latency[step]
        assert latency.count > 0, step
        assert latency.p50_ms is not None and latency.p99_ms is not None
        assert 0 < latency.p50_ms <= latency.p99_ms
    assert report.seatmap_200 > 0
    assert [lag.region for lag in report.feed_lag] == ["eu", "us"]
    for lag in report.feed_lag:
        assert lag.applied > 0
        assert lag.commit_to_apply_p99_ms is not None
        assert lag.hold_visible.count > 0
    assert report.requests > 0 and report.requests_per_s > 0


async def test_the_json_report_and_the_room_left_as_found(stack_file: Path) -> None:
    """A second run on the sold-out room: still consistent, and its report is complete JSON."""
    stack = read_stack(stack_file)
    report = await run_onsale(stack, Options(fans=20, duration_s=6, seed=3, bots_share=0.0))
    assert report.ok, report.problems
    assert report.seats_sold == 0  # nothing left to sell
    assert report.audit.ok
    data = json.loads(msgspec.json.encode(report))
    assert set(data) == set(OnsaleReport.__struct_fields__)
    for key in ("seats_sold", "audit", "latency", "feed_lag", "rejections", "hold_expiry"):
        assert key in data
    assert msgspec.json.decode(msgspec.json.encode(report), type=OnsaleReport) == report
    # The room did not exist before the runs: the simulator switched it off again.
    home = stack.region()
    room = httpx.get(
        f"{home.edge_url}/v1/admin/events/{stack.event_id}/waiting-room",
        headers={"X-Admin-Key": WRITER_ADMIN_KEY},
    )
    assert room.status_code == 200
    assert room.json()["enabled"] is False
