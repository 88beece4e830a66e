"""The writer as a whole: its parts, each with one job, started and stopped together.

- `conns` (connections.py): the database, Redis, NATS;
- `events` (ownership.py): the events this writer owns, each with its actor, reaper and lease;
- `flows` (flows.py, checkout.py): what each request does;
- `mirror` (mirror.py): committed holds copied to Redis, best effort;
- `publisher` (publisher.py): the outbox to JetStream, and the relay of what a crash left;
- `settler` (settle.py): every payment driven to captured, voided or refunded;
- `pruner` (pruning.py): expired idempotency keys and sent outbox rows deleted, in bounded batches;
- `reconciler` (reconcile.py): the provider's orphaned authorizations voided, on a schedule.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from global_writer.actor import Written
from global_writer.connections import Connections
from global_writer.flows import Flows
from global_writer.forwarding import Forwarding
from global_writer.metrics import ForwardingMetrics, PruningMetrics, ReconcileMetrics
from global_writer.mirror import HoldMirror
from global_writer.ops import Batch
from global_writer.ownership import OwnedEvents, keep_out_of_gc
from global_writer.payments import PaymentProvider, build_provider
from global_writer.pruning import Pruner
from global_writer.publisher import JetStreamPublisher, relay_once
from global_writer.reconcile import AutoReconciler, Reconciler
from global_writer.runtime import EventRuntime
from global_writer.settings import Settings
from global_writer.settle import Settler
from global_writer.tickets import SigningRing, staff_credentials
from tessera.identity import Verifier
from tessera.observability import Metrics


class Writer:
    def __init__(self, settings: Settings, payments: PaymentProvider | None = None) -> None:
        self.settings = settings.with_writer_id()
        self.payments = payments or build_provider(self.settings)
        self.metrics = Metrics()
        self.reconcile_metrics = ReconcileMetrics(self.metrics.registry)
        self.tokens = Verifier(self.settings.identity)
        # Tickets (global_writer/tickets.py): the signing ring and the door staff's credentials.
        self.ticket_ring = SigningRing.parse(
            self.settings.ticket_signing_keys, dev_secret=self.settings.jwt_secret
        )
        self.door_staff = staff_credentials(self.settings.door_staff_keys)
        self.tasks: list[asyncio.Task[Any]] = []
        self.ready = False
        self.conns: Connections
        self.events: OwnedEvents
        self.flows: Flows
        self.mirror: HoldMirror
        self.publisher: JetStreamPublisher
        self.settler: Settler
        self.pruner: Pruner
        self.reconciler: AutoReconciler
        self.forwarding: Forwarding

    @property
    def owner(self) -> str:
        return self.settings.writer_id

    async def start(self) -> None:
        self.conns = conns = await Connections.open(self.settings)
        self.mirror = HoldMirror(conns.redis)
        self.publisher = JetStreamPublisher(conns.autocommit_engine, conns.js, self.metrics)
        self.settler = Settler(conns.autocommit_engine, self.payments, self.metrics)
        self.pruner = Pruner(conns.autocommit_engine, PruningMetrics(self.metrics.registry))
        self.events = OwnedEvents(
            self.settings, conns, self.publisher, self.metrics, self.after_commit
        )
        self.flows = Flows(
            self.settings, conns, self.events, self.publisher, self.mirror, self.payments
        )
        self.flows.checkouts.crash_after_authorize = self.settings.fault_crash_after_authorize
        self.reconciler = AutoReconciler(
            self.reconciler_for("scheduled"),
            conns.redis,
            self.events.owner,
            interval_s=self.settings.reconcile_interval_s,
            older_than_s=self.settings.reconcile_older_than_s,
        )
        self.flows.checkouts.signer = self.ticket_ring
        self.forwarding = Forwarding(
            self.settings, self.events, ForwardingMetrics(self.metrics.registry)
        )
        # Whatever a crash left unsent goes out before anything new.
        await relay_once(conns.engine, conns.js, 0)
        await self.tokens.refresh()  # the identity provider's keys before the first request
        background = (
            self.publisher.run(),
            self.publisher.relay(),
            self.settler.run(),
            self.pruner.run(),
            self.reconciler.run(),
            self.tokens.keep_fresh(),
        )
        for work in background:
            self.tasks.append(asyncio.create_task(work))
        await self.events.open_all()
        keep_out_of_gc()
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        await self.events.stop()
        await self.forwarding.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.payments.aclose()
        await self.conns.close()

    def reconciler_for(self, source: Literal["manual", "scheduled", "webhook"]) -> Reconciler:
        """Reconciliation as `source` runs it (global_writer/reconcile.py), counted in the
        writer's metrics; a payment it makes due wakes the settler."""
        return Reconciler(
            self.conns.keys_engine,
            self.payments,
            metrics=self.reconcile_metrics,
            source=source,
            on_due=self.settler.notify,
        )

    def after_commit(self, runtime: EventRuntime, written: Written, batch: Batch) -> None:
        self.mirror.after_commit(runtime, written, batch)
        if batch.sells or batch.refunds:
            self.settler.notify()
