"""The fault suite's money ledger: after a case, every authorization ends captured with its
confirmed order, or voided (refunded) without one (docs/payments.md, the payment saga).

Two views are held to that. The database's, by `tessera audit`'s money invariants
(tessera_ops/audit.py `MONEY_QUERIES`: each confirmed order paid once for its amount, nothing
captured without an order, nothing left open, no capture that failed). And the provider's, when
it is a real one that outlives the writer (localstripe): an authorization made just before a
crash is only there, so every PaymentIntent is matched with the database's payment for it.
"""

from __future__ import annotations

import time
from typing import Any, Final

import psycopg
from stripe_support import LocalStripe

from tessera_ops.audit import audit

# The settler captures or voids within a pass of its commit (woken by it), then every second.
SETTLE_S: Final = 15.0
OWED: Final = ("authorized", "void_pending", "refund_pending")


def wait_settled(database_url: str, within_s: float = SETTLE_S) -> None:
    """Until the settler owes nothing (or `within_s` passed: the checks then say what is open)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM payments WHERE status = ANY(%s)", (list(OWED),)
            ).fetchone()
        if row is not None and row[0] == 0:
            return
        time.sleep(0.1)


def database_problems(database_url: str, *, settle_s: float) -> list[str]:
    """The audit's findings, money included, and any oversell (a seat sold twice). A database
    no writer ever migrated (the case failed before one started) holds no money to check."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT to_regclass('payments') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return []
    report = audit(database_url, settle_s=settle_s)
    return [] if report.ok and report.oversells == 0 else [report.summary(), *report.details()]


def _payments(database_url: str) -> dict[str, tuple[str, str | None]]:
    """provider_ref → (payment status, status of its order if it has one)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT p.provider_ref, p.status, o.status FROM payments p"
            " LEFT JOIN orders o ON o.order_id = p.order_id"
        ).fetchall()
    return {str(ref): (str(status), order) for ref, status, order in rows}


def _intents(server: LocalStripe) -> list[dict[str, Any]]:
    intents: list[dict[str, Any]] = []
    after = ""
    while True:
        page = server.get(f"/v1/payment_intents?limit=100{after}")
        intents += page["data"]
        if not page["has_more"] or not page["data"]:
            return intents
        after = f"&starting_after={page['data'][-1]['id']}"


def provider_problems(database_url: str, server: LocalStripe) -> list[str]:
    """Every PaymentIntent at the provider against the database's payment for it."""
    recorded = _payments(database_url)
    problems = []
    for intent in _intents(server):
        status, order = recorded.get(intent["id"], (None, None))
        where = f"{intent['id']} ({intent['status']}; database: {status}, order {order})"
        match intent["status"]:
            case "requires_capture":
                problems.append(f"{where}: still authorized at the provider")
            case "succeeded" if not (
                (status == "captured" and order == "confirmed")
                or (status == "refunded" and order is None)
            ):
                problems.append(f"{where}: money taken, not captured with an order")
            case "canceled" if status not in (None, "voided"):
                problems.append(f"{where}: voided at the provider, not in the database")
    return problems


def ledger_problems(database_url: str, server: LocalStripe | None = None) -> list[str]:
    """Once the settler is done: both views, with no payment allowed to be on its way."""
    wait_settled(database_url)
    problems = database_problems(database_url, settle_s=0)
    if server is not None:
        problems += provider_problems(database_url, server)
    return problems
