"""Tickets: one row per seat sold, with its signed token and its scan at the door.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

`tickets` (docs/tickets.md) is written by the sale's own statement from now on; orders confirmed
before this revision have no tickets (none were issued then, and nothing here can sign them: the
signing keys live in the writer's environment, not the database). At most one `valid` ticket per
seat of an event (a partial unique index). REGIONAL BY ROW on CockroachDB, like the orders.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from alembic import op

from global_writer.db import migrate

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@contextlib.contextmanager
def _own_transactions() -> Iterator[None]:
    """On CockroachDB, run each statement as its own implicit transaction (a table's locality
    changes only once the transaction that created it has committed); elsewhere, do nothing."""
    context = op.get_context()
    if context.dialect.name == "cockroachdb":
        with context.autocommit_block():
            yield
    else:
        yield


def upgrade() -> None:
    context = op.get_context()
    op.create_table(
        "tickets",
        sa.Column("ticket_id", sa.UUID(), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("seat", sa.Text(), nullable=False),
        sa.Column("kid", sa.Text(), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scanned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scanned_gate", sa.Text(), nullable=True),
        sa.Column("scanned_by", sa.Text(), nullable=True),
        sa.Column("scan_id", sa.UUID(), nullable=True),
        sa.CheckConstraint(
            "status IN ('valid', 'refunded', 'void')", name=op.f("ck_tickets_status")
        ),
        sa.CheckConstraint(
            "(scanned_at IS NULL) = (scanned_gate IS NULL)"
            " AND (scanned_at IS NULL) = (scanned_by IS NULL)",
            name=op.f("ck_tickets_scanned"),
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.event_id"], name=op.f("fk_tickets_event_id_events")
        ),
        sa.PrimaryKeyConstraint("ticket_id", name=op.f("pk_tickets")),
    )
    op.create_index(op.f("ix_tickets_order_id"), "tickets", ["order_id"], unique=False)
    op.create_index(
        op.f("ix_tickets_valid_event_id_seat"),
        "tickets",
        ["event_id", "seat"],
        unique=True,
        postgresql_where=sa.text("status = 'valid'"),
    )
    if migrate.multi_region_for(context) is not None:
        with _own_transactions():
            for statement in migrate.table_locality_statements(
                context.dialect, regional_by_row=("tickets",), global_tables=()
            ):
                op.execute(statement)


def downgrade() -> None:
    # Dropping the table drops its indexes with it.
    with _own_transactions():
        op.drop_table("tickets")
