"""The onsale simulator's pure parts: percentiles, histogram quantiles, the report's verdict, seat
picking, options, the fans' accounting and resend rules (tessera_ops/crowd.py); the audit's map
diff and its command line's usage errors."""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

import tessera_core as tc
from tessera.http1 import Answer
from tessera_ops import audit, onsale
from tessera_ops.audit import SectionDiff, diff_maps, plain_database_url
from tessera_ops.crowd import Record, SeenMap, Workload, error_code, resend
from tessera_ops.onsale import Layout, Options, _EventDoc
from tessera_ops.onsale_report import (
    AuditSummary,
    HoldExpiry,
    OnsaleReport,
    QueueReport,
    StepLatency,
    histogram_quantile,
    parse_histogram,
    percentile,
    problems,
)

# --- numbers ---


def test_percentile_is_nearest_rank() -> None:
    ordered = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(ordered, 0.5) == 50
    assert percentile(ordered, 0.99) == 99
    assert percentile(ordered, 1.0) == 100
    assert percentile(ordered, 0.0) == 1  # the smallest sample, not an interpolation
    assert percentile([7.0], 0.99) == 7
    assert percentile([1.0, 2.0, 3.0], 0.5) == 2
    assert math.isnan(percentile([], 0.5))
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        percentile(ordered, 1.5)


def test_step_latency_in_milliseconds_and_none_without_samples() -> None:
    latency = StepLatency.of([0.003, 0.001, 0.002, 0.010])
    assert latency == StepLatency(count=4, p50_ms=2.0, p99_ms=10.0, max_ms=10.0)
    empty = StepLatency.of([])
    assert empty == StepLatency(count=0, p50_ms=None, p99_ms=None, max_ms=None)
    assert msgspec.json.decode(msgspec.json.encode(empty), type=StepLatency) == empty


METRICS_BEFORE = """# HELP tessera_feed_apply_lag_seconds x
# TYPE tessera_feed_apply_lag_seconds histogram
tessera_feed_apply_lag_seconds_bucket{le="0.005"} 10.0
tessera_feed_apply_lag_seconds_bucket{le="0.01"} 10.0
tessera_feed_apply_lag_seconds_bucket{le="0.05"} 10.0
tessera_feed_apply_lag_seconds_bucket{le="+Inf"} 10.0
tessera_feed_apply_lag_seconds_count 10.0
other_metric_bucket{le="0.01"} 99.0
"""
METRICS_AFTER = """tessera_feed_apply_lag_seconds_bucket{le="0.005"} 60.0
tessera_feed_apply_lag_seconds_bucket{le="0.01"} 105.0
tessera_feed_apply_lag_seconds_bucket{le="0.05"} 109.0
tessera_feed_apply_lag_seconds_bucket{le="+Inf"} 110.0
"""


def test_histogram_buckets_are_read_and_summed_over_label_sets() -> None:
    text = (
        'lag_bucket{region="a",le="0.1"} 2\nlag_bucket{le="0.1",region="b"} 3\n'
        'lag_bucket{region="a",le="+Inf"} 4\nlag_bucket{le="+Inf",region="b"} 5\n'
        "lag_count 9\n"
    )
    assert parse_histogram(text, "lag") == {0.1: 5.0, math.inf: 9.0}
    assert parse_histogram(METRICS_BEFORE, "tessera_feed_apply_lag_seconds") == {
        0.005: 10.0,
        0.01: 10.0,
        0.05: 10.0,
        math.inf: 10.0,
    }
    assert parse_histogram("", "lag") == {}


def test_quantiles_come_from_the_difference_of_two_readings() -> None:
    before = parse_histogram(METRICS_BEFORE, "tessera_feed_apply_lag_seconds")
    after = parse_histogram(METRICS_AFTER, "tessera_feed_apply_lag_seconds")
    # 100 new observations: 50 ≤ 5 ms, 45 in (5, 10] ms, 4 in (10, 50] ms, 1 beyond.
    assert histogram_quantile(before, after, 0.5) == 0.005
    assert histogram_quantile(before, after, 0.9) == 0.01
    assert histogram_quantile(before, after, 0.99) == 0.05
    assert histogram_quantile(before, after, 1.0) == math.inf
    assert histogram_quantile(after, after, 0.5) is None  # nothing happened in between
    assert histogram_quantile({}, {}, 0.5) is None


# --- seat picking ---

DOC = {
    "event_id": "e",
    "hold_ttl_s": 30,
    "per_user_limit": 4,
    "sections": [
        {
            "section_id": "S",
            "rows": [
                {"row_id": "A", "rank": 1, "seats": [f"S:A:{n}" for n in range(1, 6)]},
                {"row_id": "B", "rank": 2, "seats": [f"S:B:{n}" for n in range(1, 6)]},
            ],
        },
        {
            "section_id": "C",
            "rows": [{"row_id": "A", "rank": 3, "seats": ["C:A:1", "C:A:2"]}],
        },
    ],
}


def layout() -> Layout:
    return Layout.of(msgspec.convert(DOC, _EventDoc))


def seat_map(count: int, taken: set[int]) -> tc.SeatMap:
    bits = sum(1 << i for i in range(count) if i not in taken)
    return tc.SeatMap(bits.to_bytes((count + 7) // 8, "little"), count)


def test_layout_maps_seat_ids_rows_and_ranks() -> None:
    venue = layout()
    assert venue.section_ids == ["S", "C"]
    assert venue.seat_counts == [10, 2]
    assert venue.row_starts == [[0, 5], [0]]
    assert venue.ranks == [1, 3]
    assert venue.where["S:B:1"] == (0, 5)
    assert venue.where["C:A:2"] == (1, 1)
    assert venue.row_bounds(0, 0) == (0, 5)
    assert venue.row_bounds(0, 4) == (0, 5)
    assert venue.row_bounds(0, 5) == (5, 10)
    assert venue.row_bounds(0, 9) == (5, 10)
    assert venue.row_bounds(1, 1) == (0, 2)


@pytest.mark.parametrize("seed", range(30))
def test_hand_picked_seats_are_free_and_side_by_side_when_a_row_allows(seed: int) -> None:
    venue = layout()
    # Row S:A has 1..2 free (3..5 taken), row S:B all free, C all taken.
    maps = [seat_map(10, {2, 3, 4}), seat_map(2, {0, 1})]
    rng = random.Random(seed)
    chosen = venue.pick(rng, SeenMap(maps), 0, 2)
    assert len(chosen) == 2
    indices = sorted(venue.where[s][1] for s in chosen)
    assert all(venue.where[s][0] == 0 for s in chosen)
    assert all(maps[0].is_available(i) for i in indices)
    assert indices[1] - indices[0] == 1  # adjacent
    assert venue.row_bounds(0, indices[0]) == venue.row_bounds(0, indices[1])  # one row


def test_picking_settles_for_what_is_left_and_nothing_when_sold_out() -> None:
    venue = layout()
    rng = random.Random(1)
    nearly = SeenMap([seat_map(10, set(range(10)) - {7}), seat_map(2, {0, 1})])
    assert venue.pick(rng, nearly, 0, 4) == ["S:B:3"]
    assert nearly.available == 1
    assert nearly.free == [1 << 7, 0]
    scattered = SeenMap([seat_map(10, set(range(10)) - {0, 9}), seat_map(2, {0, 1})])
    assert sorted(venue.pick(rng, scattered, 0, 2)) == ["S:A:1", "S:B:5"]
    sold_out = SeenMap([seat_map(10, set(range(10))), seat_map(2, {0, 1})])
    assert venue.pick(rng, sold_out, 0, 1) == []
    assert venue.pick(rng, sold_out, 1, 1) == []


# --- options, errors, the verdict ---


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (Options(fans=0), "--fans"),
        (Options(duration_s=0.5), "--duration-s"),
        (Options(bots_share=1.5), "--bots-share"),
        (Options(abandon_share=0.6, decline_share=0.5), "exceed 1"),
        (Options(admission_rate_per_s=0), "--admission-rate"),
        (Options(expiry_wait_s=-1), "--expiry-wait-s"),
    ],
)
def test_bad_options_are_named(options: Options, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        options.check()
    Options().check()  # the defaults are fine


def test_error_codes_and_reasons_are_read_from_error_bodies() -> None:
    def answer(body: bytes) -> Answer:
        return Answer(409, [], body)

    assert error_code(answer(b'{"error": {"code": "seats_unavailable", "seats": []}}')) == (
        "seats_unavailable"
    )
    declined = b'{"error": {"code": "payment_declined", "reason": "card_declined"}}'
    assert error_code(answer(declined)) == "payment_declined/card_declined"
    assert error_code(answer(b"<html>")) == "-"
    assert error_code(answer(b'{"other": 1}')) == "-"


def report(**changes: object) -> OnsaleReport:
    audit_summary = AuditSummary(
        ok=True,
        oversells=0,
        claims=0,
        sold=0,
        violations={},
        problems=[],
        regions=["eu"],
        sections=1,
        converged_s=0.0,
    )
    fields: dict[str, object] = {
        "ok": True,
        "problems": [],
        "event_id": "e",
        "fans": 1,
        "bots": 0,
        "regions": ["eu"],
        "seed": 1,
        "duration_s": 1.0,
        "seats_total": 1,
        "seats_available_before": 1,
        "seats_available_after": 0,
        "seats_sold": 1,
        "orders": 1,
        "sold_out": True,
        "seats_in_two_orders": 0,
        "holds": 1,
        "holds_released": 0,
        "checkouts_declined": 0,
        "fans_bought": 1,
        "requests": 1,
        "requests_per_s": 1.0,
        "errors": 0,
        "retried": 0,
        "error_kinds": {},
        "seatmap_200": 1,
        "seatmap_304": 0,
        "queue": QueueReport(gated=True, rate_per_s=1.0, joined=1, admitted=1, never_admitted=0),
        "latency": {},
        "feed_lag": [],
        "rejections": {},
        "bot_rejections": {},
        "bot_breaches": 0,
        "hold_expiry": HoldExpiry(abandoned=0, expired=0, within_ttl=0, not_expired=0, other=0),
        "audit": audit_summary,
    }
    fields.update(changes)
    return msgspec.convert(msgspec.to_builtins(fields), OnsaleReport)


def test_the_run_fails_on_oversells_audit_errors_breaches_and_late_expiries() -> None:
    assert problems(report()) == []
    bad_audit = AuditSummary(
        ok=False,
        oversells=2,
        claims=3,
        sold=3,
        violations={"seat_sold_twice": 2},
        problems=["seat_sold_twice: (...)"],
        regions=["eu"],
        sections=1,
        converged_s=None,
    )
    found = problems(
        report(
            audit=bad_audit,
            seats_in_two_orders=1,
            errors=3,
            error_kinds={"hold 500 internal": 3},
            bot_breaches=1,
            hold_expiry=HoldExpiry(abandoned=2, expired=1, within_ttl=0, not_expired=1, other=0),
        )
    )
    assert found == [
        "2 seats sold twice (audit)",
        "audit: seat_sold_twice: (...)",
        "1 seats confirmed in two orders",
        "3 requests failed (5xx or no answer), e.g. hold 500 internal x3",
        "1 bot writes got past the waiting room",
        "1 abandoned holds outlived their deadline",
    ]
    # Retried 503s and holds still within their TTL are not failures.
    pending = HoldExpiry(abandoned=2, expired=1, within_ttl=1, not_expired=0, other=0)
    assert problems(report(retried=5, hold_expiry=pending)) == []


# --- the audit's diff ---


def test_diff_maps_names_sections_versions_and_seats() -> None:
    writer = {"S": seat_map(10, {1}), "C": seat_map(2, set())}
    names = {"S": [f"S:A:{n}" for n in range(1, 11)], "C": ["C:A:1", "C:A:2"]}
    assert diff_maps("region eu", writer, dict(writer), names) == []
    stale = tc.SeatMap(seat_map(10, set()).bitmap(), 10, 0)
    writer["S"] = tc.SeatMap(writer["S"].bitmap(), 10, 1)
    diffs = diff_maps("region eu", writer, {"S": stale, "C": None}, names)
    assert diffs == [
        SectionDiff("region eu", "S", 1, 0, 1, ("S:A:2",)),
        SectionDiff("region eu", "C", 0, None, 0, ()),
    ]
    assert diffs[0].describe() == "region eu section S: v0, expected v1; 1 seats differ: S:A:2"
    assert diffs[1].describe() == "region eu section C: not served (expected v0)"
    # Same seats, another version: a difference too (the node missed a change and its undo).
    bumped = {"C": tc.SeatMap(writer["C"].bitmap(), 2, 5)}
    assert diff_maps("writer", {"C": writer["C"]}, bumped) == [
        SectionDiff("writer", "C", 0, 5, 0, ())
    ]
    many = diff_maps("r", {"S": seat_map(30, set())}, {"S": seat_map(30, set(range(30)))})
    assert many[0].differing == 30 and len(many[0].seats) == 20  # ids capped, count exact
    assert many[0].describe().endswith("...")


def test_database_urls_are_made_plain_for_psycopg() -> None:
    assert plain_database_url("postgresql+asyncpg://u:p@h:5432/db") == "postgresql://u:p@h:5432/db"
    assert plain_database_url("cockroachdb+psycopg://u@h:26257/db?sslmode=verify-full") == (
        "postgresql://u@h:26257/db?sslmode=verify-full"
    )
    assert plain_database_url("postgresql://h/db") == "postgresql://h/db"


# --- command lines: usage errors ---


def parse(
    register: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], *argv: str
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tessera")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def test_commands_without_a_stack_are_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TESSERA_DATABASE_URL", raising=False)
    args = parse(audit.register, "audit", "--data-dir", str(tmp_path))
    assert args.handler(args) == 2
    assert "no stack is running" in capsys.readouterr().err
    args = parse(onsale.register, "onsale", "--data-dir", str(tmp_path))
    assert args.handler(args) == 2
    assert "no stack is running" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(onsale.register, "onsale", "--bots-share", "2")


# --- the fans: roles, resends, what is counted ---


def test_roles_follow_the_shares_in_order() -> None:
    workload = Workload(
        quantities=(1,),
        quantity_weights=(1.0,),
        pick_share=0.5,
        abandon_share=0.15,
        decline_share=0.1,
        release_share=0.05,
    )
    assert [workload.role(d) for d in (0.0, 0.149, 0.15, 0.249, 0.25, 0.299, 0.3, 0.99)] == [
        "abandoner",
        "abandoner",
        "decliner",
        "decliner",
        "releaser",
        "releaser",
        "buyer",
        "buyer",
    ]


def test_what_is_sent_again() -> None:
    assert resend(None)
    for status in (429, 502, 503, 504):
        assert resend(Answer(status, [], b""))
    in_flight = b'{"error": {"code": "idempotency_key_in_flight"}}'
    assert resend(Answer(409, [], in_flight))
    assert not resend(Answer(409, [], b'{"error": {"code": "seats_unavailable"}}'))
    for status in (201, 402, 403, 500):
        assert not resend(Answer(status, [], b""))


def test_the_record_counts_resends_refusals_and_failures() -> None:
    record = Record()
    refused = Answer(503, [], b'{"error": {"code": "overloaded"}}', elapsed_s=0.01)
    record.exchange(refused, 0.02, slow_s=5.0)
    record.answered("hold", refused, again=True)
    bare = Answer(429, [(b"retry-after", b"1")], b"")
    record.exchange(bare, 6.0, slow_s=5.0)
    record.answered("hold", bare, again=False)
    record.exchange(None, 0.5, slow_s=5.0)
    record.answered("order", None, again=False)
    record.answered("seatmap", None, again=False, read=True)
    assert record.exchanges == 3
    assert record.slow_exchanges == 1
    assert record.refusal_latencies == [0.02, 6.0]
    assert record.refusals_without_retry_after == 1  # the 503 had none
    assert record.statuses == {
        "hold 503 (sent again)": 1,
        "hold 429": 1,
        "order 0": 1,
        "seatmap 0": 1,
    }
    assert record.rejections == {"503 overloaded": 1, "429 -": 1}
    # A resent 503 and a failed read (looked at again later) are no failures; a write that
    # got no answer at its last send is.
    assert record.resent == 2
    assert (record.errors, dict(record.error_kinds)) == (1, {"order no answer": 1})
    assert record.answer_latencies["hold"] == [0.01, 0.0]
    assert record.examples["hold 503"].startswith('{"error"')
