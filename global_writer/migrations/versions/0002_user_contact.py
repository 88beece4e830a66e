"""Fans' contact details for order confirmations: `users.email`, `users.phone`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Both nullable, so adding them rewrites nothing and old writers keep working. On CockroachDB each
schema change runs as its own implicit transaction (an autocommit block), as in 0001: only
CREATE TABLE / CREATE INDEX keep full atomicity inside a multi-statement transaction there. The
table's locality (GLOBAL) is unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
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
    with _own_transactions():
        op.add_column("users", sa.Column("email", sa.Text(), nullable=True))
        op.add_column("users", sa.Column("phone", sa.Text(), nullable=True))
        op.create_check_constraint(
            op.f("ck_users_email_length"), "users", "char_length(email) <= 254"
        )
        op.create_check_constraint(
            op.f("ck_users_phone_length"), "users", "char_length(phone) <= 16"
        )


def downgrade() -> None:
    with _own_transactions():
        op.drop_constraint(op.f("ck_users_phone_length"), "users", type_="check")
        op.drop_constraint(op.f("ck_users_email_length"), "users", type_="check")
        op.drop_column("users", "phone")
        op.drop_column("users", "email")
