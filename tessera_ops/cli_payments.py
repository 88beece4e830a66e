"""`tessera payments reconcile`: what the payment provider holds open that the database does not
account for (docs/payments.md, reconciliation).

The writer does the work (`POST /v1/admin/payments/reconcile`, global_writer/reconcile.py): it
holds the provider's credentials, and it fences a checkout's attempt before voiding that
attempt's authorization, so nothing is voided while an order may still hold it. This command
asks it, prints the report, and exits 0 when nothing is left for an operator, 1 when something
is (a mismatch, a failure, or orphans found by a dry run), 2 on a usage error.

    tessera payments reconcile [--apply] [--older-than-s S] [--writer-url URL] [--json]

Without `--apply` it is a dry run: the report says what would be voided, nothing changes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Final

import httpx

from tessera import limits
from tessera_ops.stackfile import read_stack

ADMIN_KEY_ENV: Final = "TESSERA_ADMIN_KEY"
WRITER_URL_ENV: Final = "TESSERA_WRITER_URL"
EXIT_OK: Final = 0
EXIT_FOUND: Final = 1
EXIT_USAGE: Final = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    payments = subparsers.add_parser("payments", help="the payment saga's operator commands")
    commands = payments.add_subparsers(dest="payments_command", required=True, metavar="COMMAND")
    reconcile = commands.add_parser(
        "reconcile",
        help="void authorizations the provider holds open and no order can hold",
        description="Ask the writer to compare the payment provider's open authorizations with "
        "the database's payments. Without --apply, report only. Exit 0 when nothing is left "
        "for an operator, 1 when something is, 2 on a usage error or when the writer cannot "
        "be asked.",
    )
    reconcile.add_argument(
        "--apply", action="store_true", help="fence and void the orphans (default: report only)"
    )
    reconcile.add_argument(
        "--older-than-s",
        type=float,
        default=limits.reconcile_older_than_s,
        help="leave authorizations younger than this alone (default %(default)s, at least "
        f"{limits.reconcile_older_than_s_min})",
    )
    reconcile.add_argument(
        "--writer-url",
        default=os.environ.get(WRITER_URL_ENV),
        help=f"the global writer (default: ${WRITER_URL_ENV}, else the running stack's)",
    )
    reconcile.add_argument(
        "--data-dir", type=Path, help="where `tessera up` keeps stack.json (default: .tessera)"
    )
    reconcile.add_argument("--json", action="store_true", help="print the report as JSON")
    reconcile.set_defaults(handler=main)


def writer_admin(
    command: str, writer_url: str | None, data_dir: Path | None
) -> tuple[str, str] | None:
    """The writer's URL and admin key for an operator command: given (--writer-url and
    $TESSERA_ADMIN_KEY), else the running `tessera up`'s; None after saying what is missing."""
    admin_key = os.environ.get(ADMIN_KEY_ENV)
    if writer_url and admin_key:
        return writer_url, admin_key
    try:
        stack = read_stack(data_dir)
    except (OSError, ValueError) as exc:
        print(
            f"{command}: give --writer-url and ${ADMIN_KEY_ENV}, or run it beside"
            f" `tessera up` ({exc})",
            file=sys.stderr,
        )
        return None
    return writer_url or stack.writer_url, admin_key or stack.admin_key


def main(args: argparse.Namespace) -> int:
    found = writer_admin("tessera payments reconcile", args.writer_url, args.data_dir)
    if found is None:
        return EXIT_USAGE
    writer_url, admin_key = found
    try:
        response = httpx.post(
            f"{writer_url.rstrip('/')}/v1/admin/payments/reconcile",
            json={"older_than_s": args.older_than_s, "apply": args.apply},
            headers={"X-Admin-Key": admin_key},
            timeout=limits.reconcile_request_timeout_s,
        )
    except httpx.HTTPError as exc:
        print(f"tessera payments reconcile: {writer_url}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if response.status_code != 200:
        print(
            f"tessera payments reconcile: the writer answered {response.status_code}: "
            f"{response.text[:500]}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    report: dict[str, Any] = response.json()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(summary(report))
    return EXIT_OK if report["ok"] else EXIT_FOUND


def summary(report: dict[str, Any]) -> str:
    mode = "applied" if report["applied"] else "dry run"
    counts = ", ".join(f"{n} {finding}" for finding, n in sorted(report["counts"].items()))
    lines = [
        f"{report['open_at_provider']} open at the provider before {report['created_before']}"
        f" ({mode}): {counts or 'nothing to do'}",
    ]
    for item in report["items"]:
        if item["finding"] == "settling":
            continue
        lines.append(
            f"  {item['finding']}: {item['authorization_id']} {item['amount_minor']} "
            f"{item['currency']} made {item['created_at']}"
            + (f" ({item['detail']})" if item.get("detail") else "")
        )
    lines.append("OK" if report["ok"] else "NOT OK: see above")
    return "\n".join(lines)
