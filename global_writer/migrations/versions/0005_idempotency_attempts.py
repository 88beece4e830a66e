"""Each claim of an Idempotency-Key names its attempt, so a retry that takes a key over fences
the attempt it replaced.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05

`idempotency_keys.attempt` is the id of the request that claimed the key (a new one per claim).
A checkout's batch sells its hold only while its own attempt still holds the key, in flight, and
locks that row while it does; its answer is stored only under that attempt, and a key is freed
(`abandon`) only by the attempt that holds it. A retry that takes over a key left in flight
(`limits.idempotency_in_flight_s_max`) therefore either waits for the first attempt's batch and
replays its answer, or ends that attempt's chance to commit before it calls the payment provider
(docs/payments.md, the payment saga). Rows claimed before this migration have no attempt: no
batch of this version matches them, and they age out as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("idempotency_keys", sa.Column("attempt", sa.UUID(), nullable=True))


def downgrade() -> None:
    op.drop_column("idempotency_keys", "attempt")
