"""Deleting what the writer stores that only grows, in bounded batches, on a schedule.

- `idempotency_keys` past `expires_at` (kept `limits.idempotency_key_ttl_s`, as the API promises):
  an expired key is already a fresh key to the writer (a claim clears it first), so deleting it
  changes no answer.
- `outbox` rows published more than `limits.outbox_published_retention_s` ago: the stream
  deduplicates by message id and nothing reads a sent row back. Unpublished rows are never
  touched: the relay still owes them to the stream.

Kept, because they are records rather than working state: holds, claims, orders, payments,
`fan_seats` (at most one row per fan who held seats of an event, as `holds` has). A regional
read node prunes its own friends index (regional/friends.py).

Each statement deletes at most `limits.prune_batch_rows_max` rows in its own short transaction
(autocommit), so it holds no lock for long and no batch waits behind it; a round runs at most
`limits.prune_batches_per_round_max` statements per table, so a backlog drains over several
rounds. Every writer runs a pruner (the first round after a random part of the interval, so
writers started together do not prune together); two deleting the same rows is harmless, one
finds them gone. Each statement states its condition on the rows it deletes, not only in the
subquery that picks them: under READ COMMITTED a row changed meanwhile (a key claimed again) is
checked anew and kept.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from global_writer.db.retry import run_transaction
from global_writer.metrics import PruningMetrics
from tessera import limits

log = logging.getLogger("global_writer.pruning")

# SQL that PostgreSQL and CockroachDB both accept: neither has `DELETE … LIMIT` in common, so the
# rows are picked by a bounded subquery (by the expiry index; by the primary key for the outbox,
# whose rows are published roughly in id order).
PRUNE_STATEMENTS: Final = {
    "idempotency_keys": sa.text(
        "DELETE FROM idempotency_keys WHERE expires_at <= now()"
        " AND (user_id, key) IN ("
        " SELECT user_id, key FROM idempotency_keys WHERE expires_at <= now()"
        " ORDER BY expires_at LIMIT :rows_max)"
    ),
    "outbox": sa.text(
        "DELETE FROM outbox WHERE published_at <= now() - :retention_s * interval '1 second'"
        " AND id IN ("
        " SELECT id FROM outbox"
        " WHERE published_at <= now() - :retention_s * interval '1 second'"
        " ORDER BY id LIMIT :rows_max)"
    ),
}


class Pruner:
    def __init__(
        self,
        engine: AsyncEngine,
        metrics: PruningMetrics,
        *,
        rows_max: int = limits.prune_batch_rows_max,
        batches_max: int = limits.prune_batches_per_round_max,
        outbox_retention_s: float = limits.outbox_published_retention_s,
    ) -> None:
        # An autocommit engine: each statement is its own transaction.
        self.engine = engine
        self.metrics = metrics
        self.rows_max = rows_max
        self.batches_max = batches_max
        self.params = {"rows_max": rows_max, "retention_s": outbox_retention_s}

    async def run(self) -> None:
        await asyncio.sleep(random.SystemRandom().uniform(0, limits.prune_interval_s))
        while True:
            try:
                await self.prune_once()
            except Exception:
                log.exception("pruning failed; will retry next round")
            await asyncio.sleep(limits.prune_interval_s)

    async def prune_once(self) -> dict[str, int]:
        """One round: each table's rows that are due, in bounded statements. Returns the rows
        deleted per table."""
        deleted: dict[str, int] = {}
        for table, statement in PRUNE_STATEMENTS.items():
            deleted[table] = await self.prune_table(table, statement)
        if any(deleted.values()):
            log.info("pruned", extra={"rows": deleted})
        return deleted

    async def prune_table(self, table: str, statement: sa.TextClause) -> int:
        total = 0
        for batch in range(self.batches_max):
            if batch:
                await asyncio.sleep(limits.prune_batch_pause_s)

            async def delete(conn: AsyncConnection) -> int:
                return (await conn.execute(statement, self.params)).rowcount

            rows = await run_transaction(self.engine, delete)
            total += rows
            self.metrics.rows_pruned.labels(table=table).inc(rows)
            if rows < self.rows_max:
                break
        return total
