"""The schema, as SQLAlchemy Core tables: the source of truth for Alembic migrations and for every
query the writer runs. SQL stays within what both PostgreSQL and CockroachDB accept.

The no-oversell invariant is `seat_claims`' primary key: one row per seat that is held or sold.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

NOW = sa.text("now()")


def interval_s(seconds: float) -> sa.ColumnElement[Any]:
    """`seconds` as an SQL interval, bound as a parameter (never formatted into the text)."""
    return sa.bindparam(None, float(seconds), type_=sa.Float) * sa.text("interval '1 second'")


events = sa.Table(
    "events",
    metadata,
    sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("venue", pg.JSONB, nullable=False),
    sa.Column("onsale_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("hold_ttl_s", sa.Integer, nullable=False),
    sa.Column("per_user_limit", sa.Integer, nullable=False),
    sa.Column("home_region", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    # How long after buying a fan may cancel their order themselves (0: never; migration 0007).
    sa.Column("fan_cancel_window_s", sa.Integer, nullable=False, server_default=sa.text("0")),
    # `paused` (migration 0007): no new holds until resumed; `cancelled`: every order refunded
    # (global_writer/event_admin.py).
    sa.CheckConstraint(
        "status IN ('scheduled', 'onsale', 'paused', 'closed', 'cancelled')", name="status"
    ),
    sa.CheckConstraint("hold_ttl_s BETWEEN 1 AND 3600", name="hold_ttl"),
    sa.CheckConstraint("per_user_limit BETWEEN 1 AND 1000", name="per_user_limit"),
    sa.CheckConstraint("fan_cancel_window_s BETWEEN 0 AND 2592000", name="fan_cancel_window"),
    # What `fan_seats` refers to, so that its copy of the limit is the event's (migration 0004).
    sa.Index("ix_events_event_id_per_user_limit", "event_id", "per_user_limit", unique=True),
)

# One row per venue section of an event. `version` counts committed change batches (the change
# feed's sequence). Only the event's batches write these rows, one at a time.
sections = sa.Table(
    "sections",
    metadata,
    sa.Column(
        "event_id", pg.UUID(as_uuid=True), sa.ForeignKey("events.event_id"), primary_key=True
    ),
    sa.Column("section_id", sa.Text, primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("seat_count", sa.Integer, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    sa.UniqueConstraint("event_id", "position"),
)

# Who writes an event: `owner` under fencing `epoch` until `expires_at` (migration 0003). Every
# batch bumps its sections' versions only while this row still names its owner and epoch, so a
# stale writer's commit changes nothing. A row of its own, because renewing the lease every few
# seconds on the section rows made it conflict with the batches that bump their versions.
event_leases = sa.Table(
    "event_leases",
    metadata,
    sa.Column(
        "event_id", pg.UUID(as_uuid=True), sa.ForeignKey("events.event_id"), primary_key=True
    ),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("epoch >= 1", name="epoch"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("share_purchases", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    # Where order confirmations go (PUT /v1/me/contact, migration 0002). The API validates the
    # format; the lengths are bounded here too (an address 254, E.164 "+" and 15 digits).
    sa.Column("email", sa.Text, nullable=True),
    sa.Column("phone", sa.Text, nullable=True),
    sa.CheckConstraint("char_length(email) <= 254", name="email_length"),
    sa.CheckConstraint("char_length(phone) <= 16", name="phone_length"),
)

friendships = sa.Table(
    "friendships",
    metadata,
    sa.Column("user_id", sa.Text, sa.ForeignKey("users.user_id"), primary_key=True),
    sa.Column("friend_id", sa.Text, sa.ForeignKey("users.user_id"), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.CheckConstraint("user_id <> friend_id", name="not_self"),
)

holds = sa.Table(
    "holds",
    metadata,
    sa.Column("hold_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("event_id", pg.UUID(as_uuid=True), sa.ForeignKey("events.event_id"), nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("seat_count", sa.Integer, nullable=False),
    # Public seat ids, kept after the claims are gone so a released hold can still be shown.
    sa.Column("seats", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("extended", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    # `refunded` (migration 0007): its order was refunded and its seats went back on sale.
    sa.CheckConstraint(
        "status IN ('active', 'released', 'expired', 'purchased', 'refunded')", name="status"
    ),
    # Opening an event loads its active holds (by status); the audit and operators look for
    # overdue ones by deadline.
    sa.Index(
        "ix_holds_active_expires_at", "expires_at", postgresql_where=sa.text("status = 'active'")
    ),
    sa.Index("ix_holds_event_id_user_id", "event_id", "user_id"),
)

seat_claims = sa.Table(
    "seat_claims",
    metadata,
    sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("section_id", sa.Text, primary_key=True),
    sa.Column("seat_index", sa.Integer, primary_key=True),
    sa.Column("hold_id", pg.UUID(as_uuid=True), sa.ForeignKey("holds.hold_id"), nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("order_id", pg.UUID(as_uuid=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.CheckConstraint("state IN ('held', 'sold')", name="state"),
    sa.CheckConstraint("seat_index >= 0", name="seat_index"),
    sa.Index("ix_seat_claims_hold_id", "hold_id"),
    sa.Index("ix_seat_claims_event_id_user_id", "event_id", "user_id"),
)

# The per-fan limit, held by the database (docs/adr/0005, migration 0004): how many seats each fan
# holds or has bought of an event (the count of their `seat_claims`, held and sold alike), kept by
# the same batch statements that write the claims (global_writer/batch_sql.py). The CHECK holds the
# count to the event's limit, copied here because a CHECK reads only its own row; the foreign key
# on (event_id, seat_limit) makes the copy the event's own, whoever writes the row.
fan_seats = sa.Table(
    "fan_seats",
    metadata,
    sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("seats", sa.Integer, nullable=False),
    sa.Column("seat_limit", sa.Integer, nullable=False),
    sa.CheckConstraint("seats >= 0 AND seats <= seat_limit", name="seats"),
    sa.ForeignKeyConstraint(
        ["event_id", "seat_limit"], ["events.event_id", "events.per_user_limit"]
    ),
)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("order_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("event_id", pg.UUID(as_uuid=True), sa.ForeignKey("events.event_id"), nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("hold_id", pg.UUID(as_uuid=True), sa.ForeignKey("holds.hold_id"), nullable=False),
    sa.Column("seats", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    # When the order was refunded (migration 0007, global_writer/refunds.py).
    sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("hold_id"),
    sa.CheckConstraint("status IN ('confirmed', 'refunded')", name="status"),
    sa.Index("ix_orders_event_id_user_id", "event_id", "user_id"),
    # A fan's orders, newest first, by keyset (GET /v1/me/orders).
    sa.Index("ix_orders_user_id_created_at_order_id", "user_id", "created_at", "order_id"),
)

# One row per authorization the writer was given (docs/payments.md, the payment saga): written in
# the checkout's batch, `authorized` with its confirmed order or `void_pending` without one, then
# moved on by the settler (global_writer/settle.py), retried until it reaches `captured` or
# `voided`. This table is the settler's durable queue.
PAYMENT_STATUSES = (
    "authorized",
    "captured",
    "capture_failed",
    "void_pending",
    "voided",
    "refund_pending",
    "refunded",
)
payments = sa.Table(
    "payments",
    metadata,
    sa.Column("payment_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("hold_id", pg.UUID(as_uuid=True), sa.ForeignKey("holds.hold_id"), nullable=False),
    sa.Column("order_id", pg.UUID(as_uuid=True), nullable=True),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("provider_ref", sa.Text, nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    # Attempts the settler made, its last error (what an operator reads when one is stuck), and
    # when it tries again (backing off while the provider is down).
    sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.CheckConstraint(
        "status IN (" + ", ".join(f"'{status}'" for status in PAYMENT_STATUSES) + ")",
        name="status",
    ),
    sa.CheckConstraint(
        "order_id IS NOT NULL OR status NOT IN ('authorized', 'captured', 'capture_failed')",
        name="order",
    ),
    sa.Index("ix_payments_order_id", "order_id"),
    sa.Index("ix_payments_provider_ref", "provider_ref"),
    # The settler's queue: payments still to be captured, voided or refunded, by when they are
    # due.
    sa.Index(
        "ix_payments_unsettled_next_attempt_at",
        "next_attempt_at",
        postgresql_where=sa.text(
            "status = 'authorized' OR status = 'void_pending' OR status = 'refund_pending'"
        ),
    ),
)

# One row per seat sold (migration 0006, docs/tickets.md): written by the sale's own statement
# (global_writer/batch_sql.py SELL_HOLDS) with its signed token. `scanned_*` are set once, by the
# door's conditional UPDATE (global_writer/tickets.py); `status` leaves `valid` when the order is
# refunded or the ticket voided. At most one valid ticket per seat of an event. No foreign key to
# `orders`: the order row is written by a sibling CTE of the same statement.
TICKET_STATUSES = ("valid", "refunded", "void")
tickets = sa.Table(
    "tickets",
    metadata,
    sa.Column("ticket_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("order_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("event_id", pg.UUID(as_uuid=True), sa.ForeignKey("events.event_id"), nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("seat", sa.Text, nullable=False),
    sa.Column("kid", sa.Text, nullable=False),
    sa.Column("token", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("scanned_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("scanned_gate", sa.Text, nullable=True),
    sa.Column("scanned_by", sa.Text, nullable=True),
    # The scanner's id for its scan: its retry of the same scan is answered "admitted" again.
    sa.Column("scan_id", pg.UUID(as_uuid=True), nullable=True),
    sa.CheckConstraint(
        "status IN (" + ", ".join(f"'{status}'" for status in TICKET_STATUSES) + ")",
        name="status",
    ),
    sa.CheckConstraint(
        "(scanned_at IS NULL) = (scanned_gate IS NULL)"
        " AND (scanned_at IS NULL) = (scanned_by IS NULL)",
        name="scanned",
    ),
    sa.Index("ix_tickets_order_id", "order_id"),
    sa.Index(
        "ix_tickets_valid_event_id_seat",
        "event_id",
        "seat",
        unique=True,
        postgresql_where=sa.text("status = 'valid'"),
    ),
)

# IETF httpapi-idempotency-key: keys are scoped per user, stored with the effect's transaction,
# kept 24 h. `request_hash` is the fingerprint of method + path + body.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("request_hash", sa.LargeBinary, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    # The request that claimed the key (migration 0004): a retry that takes a key over fences
    # the attempt it replaced, whose batch then neither sells nor stores its answer.
    sa.Column("attempt", pg.UUID(as_uuid=True), nullable=True),
    sa.Column("response_status", sa.Integer, nullable=True),
    sa.Column("response_body", sa.LargeBinary, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('in_flight', 'done')", name="status"),
    sa.Index("ix_idempotency_keys_expires_at", "expires_at"),
)

# Written in the same transaction as the change it describes; published to JetStream after commit
# with `Nats-Msg-Id = msg_id` so the stream drops duplicates; `published_at` marks it sent.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("msg_id", sa.Text, nullable=False),
    sa.Column("headers", pg.JSONB, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("msg_id"),
    sa.Index("ix_outbox_unpublished", "id", postgresql_where=sa.text("published_at IS NULL")),
)

# Presale waves of an event (migration 0008, docs/presales.md, global_writer/presales.py): written
# once with the event, loaded into the writer's memory when it opens the event. A listed wave
# keeps its fans in `eligible_users`; a coded wave has rows in `presale_codes` instead.
event_presales = sa.Table(
    "event_presales",
    metadata,
    sa.Column(
        "event_id", pg.UUID(as_uuid=True), sa.ForeignKey("events.event_id"), primary_key=True
    ),
    sa.Column("wave_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("per_user_limit", sa.Integer, nullable=False),
    sa.Column("section_ids", pg.ARRAY(sa.Text), nullable=False),
    # NULL: the wave admits by code (`presale_codes`).
    sa.Column("eligible_users", pg.ARRAY(sa.Text), nullable=True),
    sa.CheckConstraint("starts_at < ends_at", name="window"),
    sa.CheckConstraint("per_user_limit BETWEEN 1 AND 1000", name="per_user_limit"),
)

# A coded wave's access codes, by SHA-256 (the codes themselves are never stored), and how many
# fans each has admitted: `uses` moves only by the conditional UPDATE that admits a fan
# (global_writer/presales.py `redeem`), and the CHECK holds it to `uses_max` whatever writes it.
presale_codes = sa.Table(
    "presale_codes",
    metadata,
    sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("code_hash", sa.LargeBinary, primary_key=True),
    sa.Column("wave_id", sa.Text, nullable=False),
    sa.Column("uses_max", sa.Integer, nullable=False),
    sa.Column("uses", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.CheckConstraint("uses >= 0 AND uses <= uses_max", name="uses"),
    sa.ForeignKeyConstraint(
        ["event_id", "wave_id"], ["event_presales.event_id", "event_presales.wave_id"]
    ),
)

# Which fans a code admitted (one row each): a fan who comes back with the same code is not
# counted again.
presale_redemptions = sa.Table(
    "presale_redemptions",
    metadata,
    sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("code_hash", sa.LargeBinary, primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.ForeignKeyConstraint(
        ["event_id", "code_hash"], ["presale_codes.event_id", "presale_codes.code_hash"]
    ),
)

# Tables whose rows belong to one region in a CockroachDB multi-region cluster (REGIONAL BY ROW),
# and the ones read everywhere and written rarely (GLOBAL). docs/architecture.md §7.2.
# `sections` is regional, not GLOBAL, although it describes the event: every committed batch bumps
# its `version`, and a write to a GLOBAL table waits out the
# cluster's clock offset before it commits, which would add that wait to every batch.
REGIONAL_BY_ROW = (
    "holds",
    "seat_claims",
    "orders",
    "payments",
    "idempotency_keys",
    "outbox",
    "sections",
    "event_leases",
    "fan_seats",
    "tickets",
    "presale_codes",
    "presale_redemptions",
)
GLOBAL_TABLES = ("events", "users", "friendships", "event_presales")
