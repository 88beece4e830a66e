"""From the outbox to JetStream.

The live publisher sends each batch's messages right after commit, in commit order, with
`Nats-Msg-Id` so the stream drops duplicates, then marks the rows sent (one UPDATE for every
batch that was waiting). Messages on different subjects go out pipelined, one write for many;
each subject's messages are still sent one after the other, each only once the one before it was
acknowledged. The relay republishes, in id order, whatever stayed unsent (a crash between commit
and publish, NATS down). Section snapshots go to the `seatmap` KV bucket so readers bootstrap
without the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Final

import sqlalchemy as sa
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from global_writer.db import tables as t
from global_writer.db.retry import run_transaction
from global_writer.outbox import OutboxMessage
from tessera import contracts, limits
from tessera.observability import Metrics

log = logging.getLogger("global_writer.publisher")

# Subjects whose messages need no order among themselves (see `publish_all`).
UNORDERED_PREFIXES: Final = (
    f"{contracts.ORDERS_SUBJECT_PREFIX}.",
    f"{contracts.ORDER_CONFIRMED_PREFIX}.",
)
MARK_PUBLISHED: Final = (
    t.outbox.update()
    .where(t.outbox.c.id == sa.any_(sa.bindparam("row_ids", type_=pg.ARRAY(sa.BigInteger))))
    .values(published_at=sa.func.now())
)


UNPUBLISHED: Final = sa.select(sa.func.count()).where(t.outbox.c.published_at.is_(None))


class JetStreamPublisher:
    def __init__(
        self, engine: AsyncEngine, js: JetStreamContext, metrics: Metrics | None = None
    ) -> None:
        self.engine = engine
        self.js = js
        self.metrics = metrics or Metrics()
        self.queue: asyncio.Queue[tuple[list[OutboxMessage], dict[str, bytes]]] = asyncio.Queue(
            limits.publish_queue_messages_max
        )
        self._kv: KeyValue | None = None
        self.published = 0
        self.unmarked: list[int] = []
        self.marker: asyncio.Task[None] | None = None

    def enqueue(self, messages: list[OutboxMessage], snapshots: dict[str, bytes]) -> None:
        try:
            self.queue.put_nowait((messages, snapshots))
        except asyncio.QueueFull:
            # The rows are committed; the relay will send them.
            log.warning("publish queue full; %d messages left to the relay", len(messages))

    async def kv(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self.js.key_value(contracts.SEATMAP_KV_BUCKET)
        return self._kv

    async def run(self) -> None:
        while True:
            messages, snapshots = await self.queue.get()
            # Batches committed while the last ones were being sent go out together, in commit
            # order; a later snapshot of a section replaces an earlier one.
            messages, snapshots = list(messages), dict(snapshots)
            while not self.queue.empty() and len(messages) < limits.relay_batch_rows_max:
                more, more_snapshots = self.queue.get_nowait()
                messages += more
                snapshots.update(more_snapshots)
            sent = await publish_all(self.js, messages)
            self.published += len(sent)
            self.mark_later(sent)
            await self.put_snapshots(snapshots)

    def mark_later(self, row_ids: list[int]) -> None:
        """Marking rows sent is bookkeeping for the relay; it must never hold up the next
        publish (a SERIALIZABLE retry with backoff once delayed the feed by ~300 ms), so one
        background task marks whatever has accumulated, one UPDATE at a time."""
        self.unmarked.extend(row_ids)
        if self.unmarked and (self.marker is None or self.marker.done()):
            self.marker = asyncio.get_running_loop().create_task(self.mark_all())

    async def mark_all(self) -> None:
        while self.unmarked:
            row_ids, self.unmarked = self.unmarked, []
            await mark_published(self.engine, row_ids)

    async def put_snapshots(self, snapshots: dict[str, bytes]) -> None:
        if not snapshots:
            return
        try:
            kv = await self.kv()
            for key, value in snapshots.items():
                await kv.put(key, value)
        except Exception:
            log.exception("snapshot put failed; the next one will carry the state")

    async def count_unpublished(self) -> None:
        """The outbox backlog, for `tessera_outbox_unpublished` (its alarm: docs/operations.md);
        the partial index on unpublished rows makes it cheap."""

        async def read(conn: AsyncConnection) -> int:
            return int((await conn.execute(UNPUBLISHED)).scalar_one())

        self.metrics.outbox_unpublished.set(await run_transaction(self.engine, read))

    async def relay(self) -> None:
        """Republish committed messages the live path did not mark sent."""
        while True:
            try:
                await relay_once(self.engine, self.js, limits.relay_age_s_min)
                await self.count_unpublished()
            except Exception:
                log.exception("relay pass failed")
            await asyncio.sleep(limits.relay_interval_s)


async def publish_all(js: JetStreamContext, messages: Sequence[OutboxMessage]) -> list[int]:
    """Publish in order, the row ids of the messages the stream acknowledged.

    Messages go out in waves: a wave holds the next unsent message of each subject, sent
    pipelined (one socket write) and acknowledged before the next wave starts. After a wave with
    a failure nothing more is sent, so no message ever overtakes an earlier one of its subject (a
    later version of a section never precedes an earlier one in the stream, a KV key's older
    value never lands after its newer one); the relay resumes from the first unsent row. Order
    events are the exception: each is about its own order, in any order, so all of them go in
    the first wave (a batch's tens of orders share their event's subject, and one wave each put
    a round trip per order between a commit and the next batch's deltas)."""
    sent: list[int] = []
    remaining = list(messages)
    while remaining:
        wave: list[OutboxMessage] = []
        later: list[OutboxMessage] = []
        subjects: set[str] = set()
        for message in remaining:
            if message.subject.startswith(UNORDERED_PREFIXES):
                wave.append(message)
            elif message.subject in subjects:
                later.append(message)
            else:
                subjects.add(message.subject)
                wave.append(message)
        acks = await asyncio.gather(
            *(
                js.publish(m.subject, m.payload, headers={**m.headers, "Nats-Msg-Id": m.msg_id})
                for m in wave
            ),
            return_exceptions=True,
        )
        failed = False
        for message, ack in zip(wave, acks, strict=True):
            if isinstance(ack, BaseException):
                log.warning("publish of %s failed; left to the relay", message.msg_id, exc_info=ack)
                failed = True
            else:
                sent.append(message.row_id)
        if failed:
            break
        remaining = later
    return sent


async def mark_published(engine: AsyncEngine, row_ids: list[int]) -> None:
    if not row_ids:
        return

    async def write(conn: AsyncConnection) -> None:
        await conn.execute(MARK_PUBLISHED, {"row_ids": row_ids})

    try:
        await run_transaction(engine, write)
    except Exception:
        # Harmless: the relay republishes them and the stream drops the duplicates.
        log.warning("could not mark %d outbox rows sent", len(row_ids), exc_info=True)


async def relay_once(engine: AsyncEngine, js: JetStreamContext, age_s: float) -> int:
    async def read(conn: AsyncConnection) -> Sequence[sa.Row[Any]]:
        return (
            await conn.execute(
                sa.select(
                    t.outbox.c.id,
                    t.outbox.c.subject,
                    t.outbox.c.msg_id,
                    t.outbox.c.headers,
                    t.outbox.c.payload,
                )
                .where(
                    t.outbox.c.published_at.is_(None),
                    t.outbox.c.created_at <= sa.func.now() - t.interval_s(age_s),
                )
                .order_by(t.outbox.c.id)
                .limit(limits.relay_batch_rows_max)
            )
        ).all()

    rows = await run_transaction(engine, read)
    messages = [OutboxMessage(r.id, r.subject, r.msg_id, dict(r.headers), r.payload) for r in rows]
    sent = await publish_all(js, messages)
    await mark_published(engine, sent)
    if sent:
        log.info("relay published %d outbox messages", len(sent))
    return len(sent)
