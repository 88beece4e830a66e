"""The events this writer owns: each with its runtime (memory), its actor (the only way its state
changes), its reaper (holds released when they expire) and its lease (renewed while owned).

An event is served by the writer of its home region that holds its lease (`event_leases`); a
writer that finds it leased by another keeps trying to adopt it, so it takes over within a lease
period of the owner's death. The lease names its holder's writer id and, when it advertises one,
the URL other writers forward the event's requests to (global_writer/forwarding.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import logging
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from global_writer import errors
from global_writer.actor import CommitHook, EventActor, Publisher
from global_writer.connections import Connections
from global_writer.db import tables as t
from global_writer.db.retry import run_transaction
from global_writer.ops import Released, ReleaseOp
from global_writer.runtime import EventRuntime, StaleLease, load_event, now_ms, renew_lease
from global_writer.settings import Settings
from tessera import contracts, limits
from tessera.observability import Metrics

log = logging.getLogger("global_writer.ownership")


@dataclass
class EventHandle:
    runtime: EventRuntime
    actor: EventActor
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


class OwnedEvents:
    def __init__(
        self,
        settings: Settings,
        conns: Connections,
        publisher: Publisher,
        metrics: Metrics,
        on_commit: CommitHook,
    ) -> None:
        self.settings = settings
        self.conns = conns
        self.publisher = publisher
        self.metrics = metrics
        self.on_commit = on_commit
        self.handles: dict[uuid.UUID, EventHandle] = {}
        self.tasks: list[asyncio.Task[Any]] = []
        # Events with an adoption loop running, and one lock per event being opened: an event
        # opened twice by one writer would run two actors under two epochs.
        self.adopting: set[uuid.UUID] = set()
        self.opening: dict[uuid.UUID, asyncio.Lock] = {}
        self.lease_owner = lease_owner(settings.writer_id, advertised_url(settings))

    @property
    def owner(self) -> str:
        """The name this writer's leases carry (fencing compares it, with the epoch)."""
        return self.lease_owner

    def __getitem__(self, event_id: uuid.UUID) -> EventHandle:
        return self.handles[event_id]

    def runtimes(self) -> list[EventRuntime]:
        return [handle.runtime for handle in self.handles.values() if handle.runtime.owner]

    async def open_all(self) -> None:
        """Every event of this writer's region: served now, or adopted once its lease lapses."""
        for event_id in await self.home_event_ids():
            if await self.open(event_id) is None:
                self.watch(event_id)
        self.tasks.append(asyncio.create_task(self.discover()))

    def watch(self, event_id: uuid.UUID) -> None:
        if event_id not in self.adopting:
            self.adopting.add(event_id)
            self.tasks.append(asyncio.create_task(self.adopt_later(event_id)))

    async def discover(self) -> None:
        """Watch the events created since start-up by other writers: without this, only their
        creator would ever serve them, and none would take over when it died."""
        while True:
            await asyncio.sleep(limits.lease_renew_s)
            with contextlib.suppress(Exception):
                for event_id in await self.home_event_ids():
                    if event_id not in self.handles:
                        self.watch(event_id)

    async def stop(self) -> None:
        tasks = self.tasks + [task for handle in self.handles.values() for task in handle.tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def home_event_ids(self) -> list[uuid.UUID]:
        async def read(conn: AsyncConnection) -> list[uuid.UUID]:
            rows = await conn.execute(
                sa.select(t.events.c.event_id).where(t.events.c.home_region == self.settings.region)
            )
            return list(rows.scalars())

        return await run_transaction(self.conns.engine, read)

    async def open(self, event_id: uuid.UUID) -> EventHandle | None:
        try:
            runtime = await load_event(self.conns.engine, event_id, self.owner)
        except StaleLease:
            log.warning("event %s is leased by another writer; not serving it", event_id)
            return None
        actor = EventActor(
            runtime,
            self.conns.batch_engine,
            self.publisher,
            answers_engine=self.conns.autocommit_engine,
            owner=self.owner,
            batch_window_s=self.settings.batch_window_ms / 1000,
            batch_requests_max=self.settings.batch_requests_max,
            crash_after_commit=self.settings.fault_crash_after_commit,
            crash_after_sale=self.settings.fault_crash_after_sale,
            on_commit=self.on_commit,
            metrics=self.metrics,
        )
        handle = EventHandle(runtime, actor)
        # A context of their own: an event opened by a request (an admin's POST) must not run
        # its batches forever under that request's id (tessera/requests.py).
        handle.tasks = [
            asyncio.create_task(work, context=contextvars.Context())
            for work in (actor.run(), self.reap(handle), self.keep_lease(handle))
        ]
        self.handles[event_id] = handle
        snapshots = {
            contracts.snapshot_key(event_id, section_id): runtime.seats.encode_section(p)
            for p, section_id in enumerate(runtime.section_ids)
        }
        self.publisher.enqueue([], snapshots)
        keep_out_of_gc()
        return handle

    async def adopt_later(self, event_id: uuid.UUID) -> None:
        """Another writer holds the event: try again until its lease lapses."""
        try:
            while event_id not in self.handles:
                await asyncio.sleep(limits.lease_renew_s)
                with contextlib.suppress(Exception):
                    await self.adopt(event_id)
        finally:
            self.adopting.discard(event_id)

    async def adopt(self, event_id: uuid.UUID) -> EventHandle | None:
        """Open the event unless this writer serves it already (one opening at a time)."""
        lock = self.opening.setdefault(event_id, asyncio.Lock())
        async with lock:
            handle = self.handles.get(event_id)
            if handle is not None and handle.runtime.owner:
                return handle
            return await self.open(event_id)

    async def lease(self, event_id: uuid.UUID) -> Lease | None:
        """Who holds the event's lease now, by the database's clock; None for no such event."""

        async def read(conn: AsyncConnection) -> Lease | None:
            row = (
                await conn.execute(
                    sa.select(
                        t.events.c.home_region,
                        t.event_leases.c.owner,
                        t.event_leases.c.expires_at > sa.func.now(),
                    )
                    .select_from(t.events.outerjoin(t.event_leases))
                    .where(t.events.c.event_id == event_id)
                )
            ).one_or_none()
            if row is None:
                return None
            return Lease(row[0], row[1] if row[2] else None)

        return await run_transaction(self.conns.engine, read)

    async def handle(self, event_id: uuid.UUID) -> EventHandle:
        """The event's handle; 404 for an unknown event, 503 naming the home region for an event
        this writer does not serve."""
        handle = self.handles.get(event_id)
        if handle is not None and handle.runtime.owner:
            return handle

        async def read(conn: AsyncConnection) -> str | None:
            return (
                await conn.execute(
                    sa.select(t.events.c.home_region).where(t.events.c.event_id == event_id)
                )
            ).scalar_one_or_none()

        region = await run_transaction(self.conns.engine, read)
        if region is None:
            raise errors.NotFound(f"no event {event_id}")
        # Retry-After: the lease moves within a lease period, and a forwarded request that met a
        # writer which just lost it finds the new owner on its retry.
        raise errors.Unavailable(
            f"event {event_id} is written by its home region {region!r}",
            home_region=region,
            headers={"Retry-After": "1"},
        )

    async def reap(self, handle: EventHandle) -> None:
        """Release holds within about a tick of their deadline (the wheel knows which)."""
        runtime, actor = handle.runtime, handle.actor
        while True:
            due = runtime.wheel.pop_expired(now_ms(), limits.reaper_batch_holds_max)
            if not due:
                next_ms = runtime.wheel.next_deadline_ms()
                wait_s = limits.reaper_tick_s
                if next_ms is not None:
                    wait_s = min(wait_s, max(0.0, (next_ms - now_ms()) / 1000))
                await asyncio.sleep(wait_s)
                continue
            hold_ids = [uuid.UUID(key) for key, _ in due]
            try:
                due_at = min(deadline for _, deadline in due) / 1000
                result: Released = await actor.submit(ReleaseOp(hold_ids, "expired", due_at=due_at))
            except errors.WriterError:
                for key, deadline in due:
                    runtime.wheel.schedule(key, deadline)
                await asyncio.sleep(limits.reaper_tick_s)
                continue
            for hold_id, expires_at in result.still_active.items():
                runtime.wheel.schedule(str(hold_id), int(expires_at.timestamp() * 1000) + 1)

    async def keep_lease(self, handle: EventHandle) -> None:
        """Renew the lease while the event is owned; once it is lost (here, or by a batch the
        fence refused), stop serving the event and try to adopt it again later."""
        while handle.runtime.owner:
            await asyncio.sleep(limits.lease_renew_s)
            try:
                await renew_lease(self.conns.engine, handle.runtime, self.owner)
            except StaleLease:
                handle.runtime.owner = False
                log.error("lost the lease of event %s", handle.runtime.event_id)
            except Exception:
                log.warning("lease renewal failed; will retry", exc_info=True)
        event_id = handle.runtime.event_id
        if self.handles.get(event_id) is handle:
            del self.handles[event_id]
        for task in handle.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self.watch(event_id)


@dataclass(frozen=True, slots=True)
class Lease:
    home_region: str
    owner: str | None  # the live lease's holder (`lease_owner`); None when free or expired


def lease_owner(writer_id: str, url: str) -> str:
    """The lease's `owner`: the writer id, then the URL it is reached at, if it advertises one.
    The URL rides in the same column so that fencing (owner and epoch) needs no schema change
    and the name a lease carries always matches the address it was taken under."""
    return f"{writer_id} {url}" if url else writer_id


def owner_url(owner: str) -> str | None:
    """The URL a lease's `owner` advertises, or None."""
    _, _, url = owner.rpartition(" ")
    return url if url.startswith("http://") else None


def advertised_url(settings: Settings) -> str:
    """`writer_advertise_url` with `{host}` replaced by this host's address (a container's own
    IP, unknown until it runs)."""
    url = settings.writer_advertise_url.rstrip("/")
    if "{host}" in url:
        url = url.replace("{host}", socket.gethostbyname(socket.gethostname()))
    return url


def keep_out_of_gc() -> None:
    """Move every object alive now (the app, the engines, each event's venue and runtime: a
    stadium alone is ~10^5 objects) out of the cyclic garbage collector's sight. They live as long
    as the process or their event, and the collector would otherwise walk them all in each full
    collection: pauses of 100-400 ms measured under load, every few seconds. Objects created
    later (requests, batches) are collected as before."""
    gc.collect()
    gc.freeze()
