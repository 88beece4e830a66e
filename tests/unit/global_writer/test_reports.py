"""The sales report's CSV (global_writer/reports.py): columns, rows, and organiser text that a
spreadsheet would run as a formula."""

from __future__ import annotations

import csv
import io
import uuid

from global_writer.reports import CSV_COLUMNS, SalesReport, SectionSales, TierSales, report_csv


def report(name: str, tier_name: str) -> SalesReport:
    return SalesReport(
        event_id=uuid.UUID(int=7),
        name=name,
        status="onsale",
        currency="EUR",
        seats=30,
        sold=3,
        held=1,
        orders=2,
        revenue=7_500,
        refunded_orders=1,
        refunded_amount=2_500,
        refunds_pending=0,
        holds_outstanding=1,
        sections=[
            SectionSales(section_id="S", seats=20, sold=3, held=1),
            SectionSales(section_id="C", seats=10, sold=0, held=0),
        ],
        tiers=[TierSales(tier_id="A", name=tier_name, price=2_500, sold=3, revenue=7_500)],
    )


def test_one_row_per_section_and_tier_then_the_totals() -> None:
    rows = list(csv.DictReader(io.StringIO(report_csv(report("Night", "Stalls")))))
    assert [(row["scope"], row["id"]) for row in rows] == [
        ("section", "S"),
        ("section", "C"),
        ("tier", "A"),
        ("event", str(uuid.UUID(int=7))),
    ]
    assert tuple(rows[0]) == CSV_COLUMNS
    assert (rows[0]["sold"], rows[0]["held"], rows[0]["revenue"]) == ("3", "1", "")
    assert (rows[2]["price"], rows[2]["revenue"], rows[2]["currency"]) == ("2500", "7500", "EUR")
    total = rows[3]
    assert (total["revenue"], total["refunded_amount"], total["holds_outstanding"]) == (
        "7500",
        "2500",
        "1",
    )


def test_text_a_spreadsheet_would_run_is_quoted() -> None:
    rows = list(csv.DictReader(io.StringIO(report_csv(report("=HYPERLINK(1)", "@SUM(A1)")))))
    assert rows[2]["name"] == "'@SUM(A1)"
    assert rows[3]["name"] == "'=HYPERLINK(1)"
    plain = list(csv.DictReader(io.StringIO(report_csv(report("Night", "Stalls")))))
    assert plain[3]["name"] == "Night"
