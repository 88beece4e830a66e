"""The writer as a whole: its parts, each with one job, started and stopped together.

- `conns` (connections.py): the database, Redis, NATS;
- `events` (ownership.py): the events this writer owns, each with its actor, reaper and lease;
- `flows` (flows.py, checkout.py): what each request does;
- `mirror` (mirror.py): committed holds copied to Redis, best effort;
- `publisher` (publisher.py): the outbox to JetStream, and the relay of what a crash left;
- `settler` (settle.py): every payment driven to captured, voided or refunded.
"""

from __future__ import annotations

import asyncio
from typing import Any

from global_writer.actor import Written
from global_writer.connections import Connections
from global_writer.flows import Flows
from global_writer.mirror import HoldMirror
from global_writer.ops import Batch
from global_writer.ownership import OwnedEvents, keep_out_of_gc
from global_writer.payments import PaymentProvider, build_provider
from global_writer.publisher import JetStreamPublisher, relay_once
from global_writer.runtime import EventRuntime
from global_writer.settings import Settings
from global_writer.settle import Settler
from global_writer.tokens import VerifiedTokens
from tessera.observability import Metrics


class Writer:
    def __init__(self, settings: Settings, payments: PaymentProvider | None = None) -> None:
        self.settings = settings.with_writer_id()
        self.payments = payments or build_provider(self.settings)
        self.metrics = Metrics()
        self.tokens = VerifiedTokens(self.settings.jwt_secret)
        self.tasks: list[asyncio.Task[Any]] = []
        self.ready = False
        self.conns: Connections
        self.events: OwnedEvents
        self.flows: Flows
        self.mirror: HoldMirror
        self.publisher: JetStreamPublisher
        self.settler: Settler

    @property
    def owner(self) -> str:
        return self.settings.writer_id

    async def start(self) -> None:
        self.conns = conns = await Connections.open(self.settings)
        self.mirror = HoldMirror(conns.redis)
        self.publisher = JetStreamPublisher(conns.autocommit_engine, conns.js)
        self.settler = Settler(conns.autocommit_engine, self.payments, self.metrics)
        self.events = OwnedEvents(
            self.settings, conns, self.publisher, self.metrics, self.after_commit
        )
        self.flows = Flows(
            self.settings, conns, self.events, self.publisher, self.mirror, self.payments
        )
        # Whatever a crash left unsent goes out before anything new.
        await relay_once(conns.engine, conns.js, 0)
        for work in (self.publisher.run(), self.publisher.relay(), self.settler.run()):
            self.tasks.append(asyncio.create_task(work))
        await self.events.open_all()
        keep_out_of_gc()
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        await self.events.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.payments.aclose()
        await self.conns.close()

    def after_commit(self, runtime: EventRuntime, written: Written, batch: Batch) -> None:
        self.mirror.after_commit(runtime, written, batch)
        if batch.sells:
            self.settler.notify()
