"""Presales: waves before the general sale, their access codes and who redeemed them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

- `event_presales` (GLOBAL on CockroachDB, like `events`: written once with the event, read by
  whichever writer opens it): one row per wave, its window, per-fan limit, sections, and the
  fans it lists (NULL when it admits by code).
- `presale_codes` (REGIONAL BY ROW, like `sections`: every admission writes it): a coded wave's
  codes by SHA-256, with how many fans each admitted; a CHECK holds `uses` to `uses_max`.
- `presale_redemptions` (REGIONAL BY ROW): which fan each code admitted, so a fan counts once.

Events created before this revision have no waves: their general sale is unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from alembic import op

from global_writer.db import migrate

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
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
        "event_presales",
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("wave_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("per_user_limit", sa.Integer(), nullable=False),
        sa.Column("section_ids", sa.ARRAY(sa.Text()), nullable=False),
        sa.Column("eligible_users", sa.ARRAY(sa.Text()), nullable=True),
        sa.CheckConstraint("starts_at < ends_at", name=op.f("ck_event_presales_window")),
        sa.CheckConstraint(
            "per_user_limit BETWEEN 1 AND 1000", name=op.f("ck_event_presales_per_user_limit")
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.event_id"], name=op.f("fk_event_presales_event_id_events")
        ),
        sa.PrimaryKeyConstraint("event_id", "wave_id", name=op.f("pk_event_presales")),
    )
    op.create_table(
        "presale_codes",
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(), nullable=False),
        sa.Column("wave_id", sa.Text(), nullable=False),
        sa.Column("uses_max", sa.Integer(), nullable=False),
        sa.Column("uses", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint("uses >= 0 AND uses <= uses_max", name=op.f("ck_presale_codes_uses")),
        sa.ForeignKeyConstraint(
            ["event_id", "wave_id"],
            ["event_presales.event_id", "event_presales.wave_id"],
            name=op.f("fk_presale_codes_event_id_event_presales"),
        ),
        sa.PrimaryKeyConstraint("event_id", "code_hash", name=op.f("pk_presale_codes")),
    )
    op.create_table(
        "presale_redemptions",
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["event_id", "code_hash"],
            ["presale_codes.event_id", "presale_codes.code_hash"],
            name=op.f("fk_presale_redemptions_event_id_presale_codes"),
        ),
        sa.PrimaryKeyConstraint(
            "event_id", "code_hash", "user_id", name=op.f("pk_presale_redemptions")
        ),
    )
    if migrate.multi_region_for(context) is not None:
        with _own_transactions():
            for statement in migrate.table_locality_statements(
                context.dialect,
                regional_by_row=("presale_codes", "presale_redemptions"),
                global_tables=("event_presales",),
            ):
                op.execute(statement)


def downgrade() -> None:
    # Dropping a table drops its indexes with it; the referring tables go first.
    with _own_transactions():
        op.drop_table("presale_redemptions")
        op.drop_table("presale_codes")
        op.drop_table("event_presales")
