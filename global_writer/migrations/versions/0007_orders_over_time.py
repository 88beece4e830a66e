"""Orders over time: refunds, and a fan's orders read page by page.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

- `orders.refunded_at`: when the order was refunded (docs/payments.md, refunds). The order's
  status already allowed `refunded`.
- `holds.status` gains `refunded`: a refunded order's hold keeps its seat list for the record,
  but its claims are gone (the seats are back on sale), so it is no longer `purchased` (the
  audit holds every purchased hold to exactly its seats claimed).
- `events.status` gains `paused` (sales paused by the organiser) and `cancelled` (every order
  refunded; global_writer/event_admin.py).
- `events.fan_cancel_window_s`: how long after buying a fan may cancel their order themselves
  (0: never, the default for every event so far).
- `ix_orders_user_id_created_at_order_id`: `GET /v1/me/orders` reads a fan's orders newest
  first, a page at a time, by keyset (created_at, order_id).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from alembic import op

from tessera import limits

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HOLD_STATUSES = "status IN ('active', 'released', 'expired', 'purchased', 'refunded')"
_HOLD_STATUSES_BEFORE = "status IN ('active', 'released', 'expired', 'purchased')"
_EVENT_STATUSES = "status IN ('scheduled', 'onsale', 'paused', 'closed', 'cancelled')"
_FAN_CANCEL_WINDOW = f"fan_cancel_window_s BETWEEN 0 AND {limits.fan_cancel_window_s_max}"
_EVENT_STATUSES_BEFORE = "status IN ('scheduled', 'onsale', 'closed')"


@contextlib.contextmanager
def _own_transactions() -> Iterator[None]:
    """On CockroachDB, run each statement as its own implicit transaction; elsewhere, do nothing."""
    context = op.get_context()
    if context.dialect.name == "cockroachdb":
        with context.autocommit_block():
            yield
    else:
        yield


def upgrade() -> None:
    with _own_transactions():
        op.add_column("orders", sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True))
        op.drop_constraint(op.f("ck_holds_status"), "holds", type_="check")
        op.create_check_constraint(op.f("ck_holds_status"), "holds", _HOLD_STATUSES)
        op.drop_constraint(op.f("ck_events_status"), "events", type_="check")
        op.create_check_constraint(op.f("ck_events_status"), "events", _EVENT_STATUSES)
        op.add_column(
            "events",
            sa.Column(
                "fan_cancel_window_s", sa.Integer(), server_default=sa.text("0"), nullable=False
            ),
        )
        op.create_check_constraint(
            op.f("ck_events_fan_cancel_window"), "events", _FAN_CANCEL_WINDOW
        )
        op.create_index(
            op.f("ix_orders_user_id_created_at_order_id"),
            "orders",
            ["user_id", "created_at", "order_id"],
        )


def downgrade() -> None:
    with _own_transactions():
        op.drop_index(op.f("ix_orders_user_id_created_at_order_id"), table_name="orders")
        op.drop_constraint(op.f("ck_events_fan_cancel_window"), "events", type_="check")
        op.drop_column("events", "fan_cancel_window_s")
        op.drop_constraint(op.f("ck_events_status"), "events", type_="check")
        # Paused sales resume on downgrade: the older writer knows no pause; a cancelled
        # event (its orders refunded) is closed.
        op.execute("UPDATE events SET status = 'onsale' WHERE status = 'paused'")
        op.execute("UPDATE events SET status = 'closed' WHERE status = 'cancelled'")
        op.create_check_constraint(op.f("ck_events_status"), "events", _EVENT_STATUSES_BEFORE)
        op.drop_constraint(op.f("ck_holds_status"), "holds", type_="check")
        # A refunded order's hold had its claims released: before this revision, it ended.
        op.execute("UPDATE holds SET status = 'released' WHERE status = 'refunded'")
        op.create_check_constraint(op.f("ck_holds_status"), "holds", _HOLD_STATUSES_BEFORE)
        op.drop_column("orders", "refunded_at")
