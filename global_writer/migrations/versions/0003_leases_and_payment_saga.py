"""Event leases in a table of their own; payments as the settler's durable queue.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05

- `event_leases` (one row per event) replaces `sections.lease_owner/lease_epoch/lease_expires_at`:
  renewing a lease rewrote every section row of the event every few seconds, while each batch
  bumps the same rows' versions, so the two conflicted (docs/adr/0004). Existing leases move over.
- `payments` gains the saga's states (`void_pending`, `voided`, `refund_pending`, `refunded`),
  `attempts`, `last_error` and `next_attempt_at`; an authorization without an order is never
  captured (only voided, or refunded if it was captured anyway). It is indexed on `order_id` (a
  capture's UPDATE by order used to read the whole table, and at SERIALIZABLE conflicted with
  every other capture) and on `provider_ref`, with a partial index on what is still to settle.

On CockroachDB each schema change runs as its own implicit transaction, as in 0001 and 0002.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from alembic import op

from global_writer.db import migrate

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES_BEFORE = "status IN ('authorized', 'captured', 'voided', 'capture_failed')"
_STATUSES = (
    "status IN ('authorized', 'captured', 'capture_failed', 'void_pending', 'voided', "
    "'refund_pending', 'refunded')"
)
_UNSETTLED = "status = 'authorized' OR status = 'void_pending' OR status = 'refund_pending'"


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
    context = op.get_context()
    op.create_table(
        "event_leases",
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("epoch >= 1", name=op.f("ck_event_leases_epoch")),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.event_id"], name=op.f("fk_event_leases_event_id_events")
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_event_leases")),
    )
    with _own_transactions():
        op.execute(
            "INSERT INTO event_leases (event_id, owner, epoch, expires_at)"
            " SELECT event_id, max(lease_owner), max(lease_epoch), max(lease_expires_at)"
            " FROM sections WHERE lease_owner IS NOT NULL GROUP BY event_id"
        )
        op.drop_column("sections", "lease_expires_at")
        op.drop_column("sections", "lease_epoch")
        op.drop_column("sections", "lease_owner")
        _payments_upgrade()
    if migrate.multi_region_for(context) is not None:
        with _own_transactions():
            for statement in migrate.table_locality_statements(
                context.dialect, regional_by_row=("event_leases",), global_tables=()
            ):
                op.execute(statement)


def _payments_upgrade() -> None:
    op.add_column(
        "payments", sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column("payments", sa.Column("last_error", sa.Text(), nullable=True))
    op.add_column(
        "payments",
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.drop_constraint(op.f("ck_payments_status"), "payments", type_="check")
    op.create_check_constraint(op.f("ck_payments_status"), "payments", _STATUSES)
    op.create_check_constraint(
        op.f("ck_payments_order"),
        "payments",
        "order_id IS NOT NULL OR status NOT IN ('authorized', 'captured', 'capture_failed')",
    )
    op.create_index(op.f("ix_payments_order_id"), "payments", ["order_id"])
    op.create_index(op.f("ix_payments_provider_ref"), "payments", ["provider_ref"])
    op.create_index(
        op.f("ix_payments_unsettled_next_attempt_at"),
        "payments",
        ["next_attempt_at"],
        postgresql_where=sa.text(_UNSETTLED),
    )


def downgrade() -> None:
    with _own_transactions():
        op.drop_index(op.f("ix_payments_unsettled_next_attempt_at"), table_name="payments")
        op.drop_index(op.f("ix_payments_provider_ref"), table_name="payments")
        op.drop_index(op.f("ix_payments_order_id"), table_name="payments")
        op.drop_constraint(op.f("ck_payments_order"), "payments", type_="check")
        op.drop_constraint(op.f("ck_payments_status"), "payments", type_="check")
        op.execute("UPDATE payments SET status = 'voided' WHERE status = 'void_pending'")
        op.execute(
            "UPDATE payments SET status = 'captured' WHERE status IN ('refund_pending', 'refunded')"
        )
        op.create_check_constraint(op.f("ck_payments_status"), "payments", _STATUSES_BEFORE)
        op.drop_column("payments", "next_attempt_at")
        op.drop_column("payments", "last_error")
        op.drop_column("payments", "attempts")
        op.add_column("sections", sa.Column("lease_owner", sa.Text(), nullable=True))
        op.add_column(
            "sections",
            sa.Column("lease_epoch", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        )
        op.add_column(
            "sections", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        op.execute(
            "UPDATE sections SET lease_owner = l.owner, lease_epoch = l.epoch,"
            " lease_expires_at = l.expires_at FROM event_leases l"
            " WHERE sections.event_id = l.event_id"
        )
        op.drop_table("event_leases")
