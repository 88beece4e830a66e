"""Writing to the outbox inside a transaction: the change feed's contract (docs/architecture.md
§3.7)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from global_writer.db import tables as t


@dataclass
class OutboxMessage:
    row_id: int
    subject: str
    msg_id: str
    headers: dict[str, str]
    payload: bytes


@dataclass(frozen=True)
class Pending:
    """A message written by a transaction that has not run its INSERT yet (no row id)."""

    subject: str
    msg_id: str
    headers: dict[str, str]
    payload: bytes


# One statement of a fixed shape for any number of messages: arrays unnested server-side.
_rows = (
    sa.func.unnest(
        sa.bindparam("subjects", type_=pg.ARRAY(sa.Text)),
        sa.bindparam("msg_ids", type_=pg.ARRAY(sa.Text)),
        sa.bindparam("headers", type_=pg.ARRAY(sa.Text)),
        sa.bindparam("payloads", type_=pg.ARRAY(sa.LargeBinary)),
    )
    .table_valued("subject", "msg_id", "headers", "payload")
    .render_derived()
)
INSERT_MANY: Final = (
    t.outbox.insert()
    .from_select(
        ["subject", "msg_id", "headers", "payload"],
        sa.select(
            _rows.c.subject, _rows.c.msg_id, sa.cast(_rows.c.headers, pg.JSONB), _rows.c.payload
        ),
    )
    .returning(t.outbox.c.id, t.outbox.c.msg_id)
)


async def insert(
    conn: AsyncConnection, *, subject: str, msg_id: str, headers: dict[str, str], payload: bytes
) -> OutboxMessage:
    """Add a message to publish once this transaction commits; `msg_id` deduplicates it."""
    (message,) = await insert_many(conn, [Pending(subject, msg_id, headers, payload)])
    return message


async def insert_many(conn: AsyncConnection, pending: Sequence[Pending]) -> list[OutboxMessage]:
    """Add these messages, in this order, in one statement; they keep the order for publishing."""
    if not pending:
        return []
    rows = await conn.execute(
        INSERT_MANY,
        {
            "subjects": [m.subject for m in pending],
            "msg_ids": [m.msg_id for m in pending],
            "headers": [msgspec.json.encode(m.headers).decode() for m in pending],
            "payloads": [m.payload for m in pending],
        },
    )
    ids = {msg_id: row_id for row_id, msg_id in rows}
    return [
        OutboxMessage(ids[m.msg_id], m.subject, m.msg_id, m.headers, m.payload) for m in pending
    ]
