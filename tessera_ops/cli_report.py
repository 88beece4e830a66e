"""`tessera report --event ID [--csv | --json]`: an event's sales report, asked of the writer
(`GET /v1/admin/events/{id}/report`, global_writer/reports.py): seats sold and held per section
and price tier, revenue, refunds, holds outstanding. Exit 0 with the report, 2 on a usage error
or when the writer cannot be asked (or knows no such event).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from tessera import limits
from tessera_ops.cli_payments import (
    EXIT_OK,
    EXIT_USAGE,
    WRITER_URL_ENV,
    writer_admin,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = subparsers.add_parser(
        "report",
        help="an event's sales report (per section and tier, revenue, refunds, holds)",
        description="Ask the writer for an event's sales report and print it: a table by "
        "default, or CSV or JSON. Exit 0 with the report, 2 on a usage error or when the "
        "writer cannot be asked.",
    )
    report.add_argument("--event", required=True, help="the event's id")
    shape = report.add_mutually_exclusive_group()
    shape.add_argument("--csv", action="store_true", help="print the report as CSV")
    shape.add_argument("--json", action="store_true", help="print the report as JSON")
    report.add_argument(
        "--writer-url",
        default=os.environ.get(WRITER_URL_ENV),
        help=f"the global writer (default: ${WRITER_URL_ENV}, else the running stack's)",
    )
    report.add_argument(
        "--data-dir", type=Path, help="where `tessera up` keeps stack.json (default: .tessera)"
    )
    report.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    found = writer_admin("tessera report", args.writer_url, args.data_dir)
    if found is None:
        return EXIT_USAGE
    writer_url, admin_key = found
    try:
        response = httpx.get(
            f"{writer_url.rstrip('/')}/v1/admin/events/{args.event}/report",
            params={"format": "csv" if args.csv else "json"},
            headers={"X-Admin-Key": admin_key},
            timeout=limits.report_request_timeout_s,
        )
    except httpx.HTTPError as exc:
        print(f"tessera report: {writer_url}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if response.status_code != 200:
        print(
            f"tessera report: the writer answered {response.status_code}: {response.text[:500]}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.csv:
        sys.stdout.write(response.text)
    elif args.json:
        print(json.dumps(response.json(), indent=2))
    else:
        print(table(response.json()))
    return EXIT_OK


def table(report: dict[str, Any]) -> str:
    """The report for a terminal. Amounts in minor units of the event's currency."""
    currency = report["currency"]
    lines = [
        f"{report['name']} ({report['event_id']}): {report['status']}",
        f"  seats {report['seats']}, sold {report['sold']}, held {report['held']}, "
        f"holds outstanding {report['holds_outstanding']}",
        f"  orders {report['orders']}, revenue {report['revenue']} {currency}; refunded "
        f"{report['refunded_orders']} orders, {report['refunded_amount']} {currency} "
        f"({report['refunds_pending']} still pending at the provider)",
        "  section          seats    sold    held",
    ]
    lines += [
        f"  {s['section_id']:<14} {s['seats']:>7} {s['sold']:>7} {s['held']:>7}"
        for s in report["sections"]
    ]
    lines.append("  tier             price    sold   revenue")
    lines += [
        f"  {t['tier_id']:<14} {t['price']:>7} {t['sold']:>7} {t['revenue']:>9}"
        for t in report["tiers"]
    ]
    return "\n".join(lines)
