"""The audit: what must always hold in the writer's database (ARCHITECTURE.md §8), checked by
queries. Used by the tests after every step, by the benchmarks and by `tessera audit`.

- no seat is sold twice: across all orders of an event, each seat id appears once;
- every claim belongs to a hold in the matching state (held → active, sold → purchased), and
  every active or purchased hold has exactly its seats claimed;
- no fan holds or owns more seats than the event allows.
(No seat is *claimed* twice by construction: that is `seat_claims`' primary key.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from tessera import limits

QUERIES: dict[str, str] = {
    "seat_sold_twice": """
        SELECT o.event_id, seat, count(*) FROM orders o, unnest(o.seats) AS seat
        WHERE o.status = 'confirmed' GROUP BY o.event_id, seat HAVING count(*) > 1""",
    "claim_without_matching_hold": """
        SELECT c.event_id, c.section_id, c.seat_index, c.state, h.status
        FROM seat_claims c LEFT JOIN holds h ON h.hold_id = c.hold_id
        WHERE h.hold_id IS NULL
           OR (c.state = 'held' AND h.status <> 'active')
           OR (c.state = 'sold' AND h.status <> 'purchased')""",
    "hold_seats_not_claimed": """
        SELECT h.hold_id, h.status, h.seat_count, count(c.seat_index)
        FROM holds h LEFT JOIN seat_claims c ON c.hold_id = h.hold_id
        WHERE h.status IN ('active', 'purchased')
        GROUP BY h.hold_id, h.status, h.seat_count
        HAVING count(c.seat_index) <> h.seat_count""",
    "sold_claim_without_order": """
        SELECT c.event_id, c.section_id, c.seat_index FROM seat_claims c
        LEFT JOIN orders o ON o.order_id = c.order_id
        WHERE c.state = 'sold' AND o.order_id IS NULL""",
    "over_per_user_limit": """
        SELECT c.event_id, c.user_id, count(*), e.per_user_limit
        FROM seat_claims c JOIN events e ON e.event_id = c.event_id
        GROUP BY c.event_id, c.user_id, e.per_user_limit
        HAVING count(*) > e.per_user_limit""",
}


@dataclass
class AuditReport:
    violations: dict[str, list[tuple[object, ...]]] = field(default_factory=dict)
    claims: int = 0
    sold: int = 0

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())

    @property
    def oversells(self) -> int:
        return len(self.violations.get("seat_sold_twice", []))

    def summary(self) -> str:
        if self.ok:
            return f"audit ok: {self.claims} claims, {self.sold} sold, 0 oversells"
        found = {name: len(rows) for name, rows in self.violations.items() if rows}
        return f"audit FAILED: {found}"


def audit(database_url: str) -> AuditReport:
    """Run every check against the database at `database_url` (a plain postgresql:// URL)."""
    report = AuditReport()
    with (
        psycopg.connect(database_url, connect_timeout=int(limits.server_start_timeout_s)) as conn,
        conn.cursor() as cursor,
    ):
        for name, query in QUERIES.items():
            cursor.execute(query)
            report.violations[name] = [tuple(row) for row in cursor.fetchall()]
        cursor.execute("SELECT count(*), count(*) FILTER (WHERE state = 'sold') FROM seat_claims")
        row = cursor.fetchone()
        if row is not None:
            report.claims, report.sold = int(row[0]), int(row[1])
    return report
