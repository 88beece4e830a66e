"""Server-Sent Events of seat changes: deltas coalesced per tick (~100 ms) and sent to every
client of the event; each client has a bounded queue and is dropped, never waited for, when it
falls behind. `id:` is the event's version vector, so `Last-Event-ID` resumes exactly; a client
too far behind (or after a resync) gets a `snapshot` event instead."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import msgspec

import tessera_core as tc
from regional.metrics import RegionalMetrics
from regional.state import Change, EventView, merge
from tessera import limits
from tessera.web import SEATMAP


@dataclass(eq=False)
class Client:
    event_id: uuid.UUID
    queue: asyncio.Queue[bytes] = field(
        default_factory=lambda: asyncio.Queue(limits.sse_client_queue_events_max)
    )
    dropped: bool = False


def frame(event: str, event_id: str, data: object) -> bytes:
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        event_id.encode(),
        event.encode(),
        msgspec.json.encode(data),
    )


def delta_frame(view: EventView, sections: dict[int, Change]) -> bytes:
    body = [
        {
            "section_id": view.section_ids[position],
            "version": change.version,
            "taken": view.seat_ids(position, change.taken),
            "freed": view.seat_ids(position, change.freed),
        }
        for position, change in sorted(sections.items())
    ]
    return frame("delta", view.version_id(), {"sections": body})


def snapshot_frame(view: EventView) -> bytes:
    """The whole event: the binary event map with its version vector, base64 (decode it with
    edge/static/seatmap.mjs), plus the versions in clear. Made once per version vector (kept on
    the view, dropped by its next change), whoever asks."""
    if view.snapshot is None:
        view.snapshot = encode_snapshot(view)
    return view.snapshot


def encode_snapshot(view: EventView) -> bytes:
    seatmap = tc.encode_event(view.maps, include_versions=True)
    data = {
        "versions": view.versions(),
        "sections": view.section_ids,
        "seatmap": base64.b64encode(seatmap).decode(),
        "format": SEATMAP,
    }
    return frame("snapshot", view.version_id(), data)


def catch_up(view: EventView, last_event_id: str | None) -> bytes:
    """What a (re)connecting client needs first: a delta from its versions if the history still
    has every change since, else a snapshot."""
    if last_event_id:
        try:
            theirs = [int(v) for v in last_event_id.strip().split(".")]
        except ValueError:
            theirs = []
        if len(theirs) == len(view.maps):
            sections = since(view, theirs)
            if sections is not None:
                return delta_frame(view, sections) if sections else b""
    return snapshot_frame(view)


def since(view: EventView, theirs: list[int]) -> dict[int, Change] | None:
    sections: dict[int, Change] = {}
    for position, version in enumerate(theirs):
        current = view.maps[position].version
        if version > current:
            return None
        if version == current:
            continue
        history = [c for c in view.history[position] if c.version > version]
        if not history or history[0].version != version + 1:
            return None
        merged = history[0]
        for change in history[1:]:
            merged = merge(merged, change)
        sections[position] = merged
    return sections


class Broadcaster:
    def __init__(self, metrics: RegionalMetrics) -> None:
        self.metrics = metrics
        self.clients: dict[uuid.UUID, set[Client]] = {}
        self.pending: dict[uuid.UUID, tuple[EventView, dict[int, Change | None]]] = {}
        # Kept exactly by add/remove (remove is called on every way a stream ends, and counts a
        # client once however often it is called), rather than summed over events per connect.
        self.client_count = 0

    def publish(self, view: EventView, sections: dict[int, Change | None]) -> None:
        """Called by the feed after each applied batch; sent at the next tick."""
        if view.event_id not in self.clients:
            return
        _, pending = self.pending.setdefault(view.event_id, (view, {}))
        for position, change in sections.items():
            before = pending.get(position, ...)
            if change is None or before is None:
                pending[position] = None
            elif before is ...:
                pending[position] = change
            else:
                pending[position] = merge(before, change)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(limits.sse_tick_s)
            self.flush()

    def flush(self) -> None:
        pending, self.pending = self.pending, {}
        for event_id, (view, sections) in pending.items():
            if any(change is None for change in sections.values()):
                message = snapshot_frame(view)
            else:
                message = delta_frame(view, {p: c for p, c in sections.items() if c is not None})
            for client in list(self.clients.get(event_id, ())):
                self.send(client, message)

    def send(self, client: Client, message: bytes) -> None:
        try:
            client.queue.put_nowait(message)
        except asyncio.QueueFull:
            client.dropped = True
            self.metrics.sse_dropped.inc()
            self.remove(client)
            with contextlib.suppress(asyncio.QueueEmpty):
                client.queue.get_nowait()
            client.queue.put_nowait(b"")  # wakes the stream so it ends

    def add(self, view: EventView, last_event_id: str | None) -> Client:
        client = Client(view.event_id)
        first = catch_up(view, last_event_id)
        if first:
            client.queue.put_nowait(first)
        self.clients.setdefault(view.event_id, set()).add(client)
        self.client_count += 1
        self.metrics.sse_clients.set(self.client_count)
        return client

    def remove(self, client: Client) -> None:
        clients = self.clients.get(client.event_id)
        if clients is None or client not in clients:
            return
        clients.discard(client)
        if not clients:
            del self.clients[client.event_id]
        self.client_count -= 1
        self.metrics.sse_clients.set(self.client_count)

    async def stream(self, client: Client) -> AsyncGenerator[bytes, None]:
        try:
            yield b"retry: 1000\n\n"
            while not client.dropped:
                try:
                    async with asyncio.timeout(limits.sse_heartbeat_s):
                        message = await client.queue.get()
                except TimeoutError:
                    yield b": heartbeat\n\n"
                    continue
                if not message:
                    return
                yield message
        finally:
            self.remove(client)
