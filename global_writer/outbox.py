"""Writing to the outbox inside a transaction (the change feed's contract, ARCHITECTURE.md §3)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from global_writer.db import tables as t


@dataclass
class OutboxMessage:
    row_id: int
    subject: str
    msg_id: str
    headers: dict[str, str]
    payload: bytes


async def insert(
    conn: AsyncConnection, *, subject: str, msg_id: str, headers: dict[str, str], payload: bytes
) -> OutboxMessage:
    """Add a message to publish once this transaction commits; `msg_id` deduplicates it."""
    row_id = (
        await conn.execute(
            t.outbox.insert()
            .values(subject=subject, msg_id=msg_id, headers=headers, payload=payload)
            .returning(t.outbox.c.id)
        )
    ).scalar_one()
    return OutboxMessage(row_id, subject, msg_id, headers, payload)
