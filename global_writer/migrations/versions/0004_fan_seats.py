"""The per-fan seat limit, held by the database: `fan_seats`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

- `fan_seats` (one row per fan and event) counts the seats a fan holds or has bought, as
  `seat_claims` does, and a CHECK holds the count to `seat_limit`, the event's `per_user_limit`
  (docs/adr/0005). A CHECK reads only its own row, so the limit is copied into it; the foreign key
  on (event_id, seat_limit) to the new unique index on `events` makes the copy the event's own.
- The counts of existing claims are filled in. A database in which a fan already has more seats
  than their event allows (the limit was held only in the writer's memory before) refuses this
  upgrade: `tessera audit` names those fans (`over_per_user_limit`).

On CockroachDB each schema change and the backfill run as their own implicit transaction, as in
0001 to 0003; `fan_seats` is REGIONAL BY ROW, like the claims it counts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from alembic import op

from global_writer.db import migrate

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


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
    op.create_index(
        op.f("ix_events_event_id_per_user_limit"),
        "events",
        ["event_id", "per_user_limit"],
        unique=True,
    )
    op.create_table(
        "fan_seats",
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("seat_limit", sa.Integer(), nullable=False),
        sa.CheckConstraint("seats >= 0 AND seats <= seat_limit", name=op.f("ck_fan_seats_seats")),
        sa.ForeignKeyConstraint(
            ["event_id", "seat_limit"],
            ["events.event_id", "events.per_user_limit"],
            name=op.f("fk_fan_seats_event_id_events"),
        ),
        sa.PrimaryKeyConstraint("event_id", "user_id", name=op.f("pk_fan_seats")),
    )
    with _own_transactions():
        op.execute(
            "INSERT INTO fan_seats (event_id, user_id, seats, seat_limit)"
            " SELECT c.event_id, c.user_id, count(*), e.per_user_limit"
            " FROM seat_claims c JOIN events e ON e.event_id = c.event_id"
            " GROUP BY c.event_id, c.user_id, e.per_user_limit"
        )
    if migrate.multi_region_for(context) is not None:
        with _own_transactions():
            for statement in migrate.table_locality_statements(
                context.dialect, regional_by_row=("fan_seats",), global_tables=()
            ):
                op.execute(statement)


def downgrade() -> None:
    with _own_transactions():
        op.drop_table("fan_seats")
        op.drop_index(op.f("ix_events_event_id_per_user_limit"), table_name="events")
