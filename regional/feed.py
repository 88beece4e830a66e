"""The regional change-feed consumer (docs/architecture.md §7.1).

Bootstrap: every event's layout, every section's snapshot and every fan's record from the
region's KV stream (read by last message per subject: nats-py's `key_value()` refuses a mirrored
bucket). Then tail the region's `SEATS` stream from the start of its retention, applying a
section delta only when its version is exactly the next one: older versions are skipped, a gap
triggers a resync of that section (KV snapshot first, the writer's snapshot endpoint last).

The consumers are plain ephemeral pull consumers, recreated from the last applied stream
sequence whenever a fetch fails or the watchdog sees no progress while the stream has more;
nats-py's ordered consumers are not trusted across reconnects. A malformed message is counted
and skipped, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import msgspec
import nats
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

import tessera_core as tc
from regional.friends import FriendsIndex
from regional.metrics import RegionalMetrics
from regional.settings import Settings
from regional.sse import Broadcaster
from regional.state import Change, EventView, merge
from tessera import contracts, limits

log = logging.getLogger("regional.feed")

KV_PREFIX = f"$KV.{contracts.SEATMAP_KV_BUCKET}."


class Malformed(Exception):
    """A message that cannot be understood; counted and skipped."""


class Feed:
    def __init__(
        self,
        settings: Settings,
        friends: FriendsIndex,
        broadcaster: Broadcaster,
        metrics: RegionalMetrics,
    ) -> None:
        self.settings = settings
        self.friends = friends
        self.broadcaster = broadcaster
        self.metrics = metrics
        self.events: dict[uuid.UUID, EventView] = {}
        self.seats_seq = 0
        self.kv_seq = 0
        self.caught_up = False
        self.tasks: list[asyncio.Task[Any]] = []
        self.nc: Nats
        self.js: JetStreamContext
        self.http = httpx.AsyncClient(timeout=limits.writer_snapshot_timeout_s)

    async def start(self) -> None:
        self.nc = await nats.connect(
            self.settings.nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.25
        )
        self.js = self.nc.jetstream()
        await self.bootstrap()
        self.tasks = [
            asyncio.create_task(self.follow(self.settings.seats_stream, "seats")),
            asyncio.create_task(self.follow(self.settings.kv_stream, "kv")),
            asyncio.create_task(self.watch_mirror()),
        ]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.nc.drain()
        await self.http.aclose()

    async def watch_mirror(self) -> None:
        """Report the mirror's health. A region cut off from the hub keeps serving its last
        state (docs/architecture.md §7.1), so this is a metric for operators, not a readiness check;
        after a hub restart nats-server's own timers take 10-40 s to resume a mirror."""
        while True:
            with contextlib.suppress(Exception):
                mirror = (await self.js.stream_info(self.settings.seats_stream)).mirror
                if mirror is not None:
                    self.metrics.mirror_lag.set(mirror.lag or 0)
                    self.metrics.mirror_idle_s.set((mirror.active or 0) / 1e9)
            await asyncio.sleep(limits.mirror_check_s)

    # --- bootstrap ---

    async def bootstrap(self) -> None:
        info = await self.js.stream_info(self.settings.kv_stream, subjects_filter=f"{KV_PREFIX}>")
        self.kv_seq = info.state.last_seq
        subjects = sorted((info.state.subjects or {}).keys())
        keys = [subject[len(KV_PREFIX) :] for subject in subjects]
        for key in keys:
            if key.startswith(contracts.EVENT_INFO_PREFIX + "."):
                await self.load_event_info(key)
            elif key.startswith(contracts.USER_RECORD_PREFIX + "."):
                await self.load_user(key)
        for view in self.events.values():
            for position in range(len(view.section_ids)):
                await self.resync(view, position, needed=0)

    async def kv_get(self, key: str) -> bytes | None:
        try:
            message = await self.js.get_last_msg(self.settings.kv_stream, KV_PREFIX + key)
        except Exception:
            return None
        return message.data

    async def load_event_info(self, key: str) -> EventView | None:
        data = await self.kv_get(key)
        if data is None:
            return None
        try:
            info = contracts.event_info_decoder.decode(data)
        except (msgspec.DecodeError, ValueError):
            self.metrics.malformed.inc()
            return None
        view = self.events.get(info.event_id)
        if view is None:
            view = EventView(info)
            self.events[info.event_id] = view
        return view

    async def load_user(self, key: str) -> None:
        data = await self.kv_get(key)
        if data is not None:
            self.apply_user(data)

    def apply_user(self, data: bytes) -> None:
        try:
            self.friends.set_user(contracts.user_record_decoder.decode(data))
        except (msgspec.DecodeError, ValueError):
            self.metrics.malformed.inc()

    # --- tailing ---

    async def follow(self, stream: str, kind: str) -> None:
        """Consume `stream` for ever, re-creating the consumer from the last applied sequence."""
        handle: Callable[[list[Msg]], Awaitable[None]] = (
            self.apply_seats if kind == "seats" else self.apply_kv
        )
        while True:
            try:
                await self.consume(stream, kind, handle)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("%s consumer failed; re-creating it", stream, exc_info=True)
                self.metrics.consumer_restarts.inc()
                await asyncio.sleep(limits.feed_fetch_timeout_s)

    async def consume(
        self, stream: str, kind: str, handle: Callable[[list[Msg]], Awaitable[None]]
    ) -> None:
        start = (self.seats_seq if kind == "seats" else self.kv_seq) + 1
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=limits.feed_consumer_inactive_s,
        )
        subject = "$KV.>" if kind == "kv" else ">"
        subscription = await self.js.pull_subscribe(subject, stream=stream, config=config)
        try:
            progress = time.monotonic()
            while True:
                try:
                    messages = await subscription.fetch(
                        limits.feed_fetch_batch_max, timeout=limits.feed_fetch_timeout_s
                    )
                except (nats.errors.TimeoutError, TimeoutError):
                    # An empty fetch (nats-py raises either kind): caught up, or stuck.
                    messages = []
                if messages:
                    progress = time.monotonic()
                    await handle(messages)
                    if kind == "seats":
                        # Each message says how many the consumer has left after it: a node
                        # that keeps up with a busy feed never sees an empty fetch, and must
                        # still become ready (it once stayed unready through a whole onsale).
                        self.caught_up = messages[-1].metadata.num_pending == 0
                    continue
                if not await self.pending(subscription, kind):
                    # Caught up: the watchdog measures from here, or the first message after
                    # a quiet spell longer than the watchdog would look like a stall.
                    progress = time.monotonic()
                elif time.monotonic() - progress > limits.feed_watchdog_s:
                    raise RuntimeError(f"no progress on {stream} for {limits.feed_watchdog_s}s")
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def pending(self, subscription: JetStreamContext.PullSubscription, kind: str) -> int:
        """Messages the consumer still has to deliver: 0 is caught up, more after an empty
        fetch may be a stall. The consumer's own count decides (the stream's last sequence does
        not: messages may have been purged or aged out). A consumer the server no longer knows
        (a restart) raises here, and is re-created."""
        pending = (await subscription.consumer_info()).num_pending
        if kind == "seats":
            self.caught_up = pending == 0
        return pending or 0

    async def apply_seats(self, messages: list[Msg]) -> None:
        changed: dict[uuid.UUID, dict[int, Change | None]] = {}
        for message in messages:
            self.seats_seq = max(self.seats_seq, message.metadata.sequence.stream)
            try:
                if message.subject.startswith(contracts.ORDERS_SUBJECT_PREFIX + "."):
                    self.apply_order(message.data)
                else:
                    await self.apply_delta(message, changed)
            except Malformed as error:
                self.metrics.malformed.inc()
                log.warning("skipped a malformed message on %s: %s", message.subject, error)
        for event_id, sections in changed.items():
            self.broadcaster.publish(self.events[event_id], sections)

    async def apply_delta(
        self, message: Msg, changed: dict[uuid.UUID, dict[int, Change | None]]
    ) -> None:
        event_id, section_id, version = parse_delta_headers(message)
        view = self.events.get(event_id) or await self.load_event_info(
            contracts.event_info_key(event_id)
        )
        if view is None:
            raise Malformed(f"unknown event {event_id}")
        position = view.positions.get(section_id)
        if position is None:
            raise Malformed(f"unknown section {section_id!r}")
        current = view.maps[position].version
        if version <= current:
            self.metrics.duplicates.inc()
            return
        if version > current + 1:
            await self.resync(view, position, needed=version - 1)
            changed.setdefault(event_id, {})[position] = None
            current = view.maps[position].version
            if version != current + 1:
                return
        try:
            change = view.apply(position, message.data)
        except (ValueError, tc.VersionMismatch) as error:
            raise Malformed(str(error)) from None
        sections = changed.setdefault(event_id, {})
        if position not in sections:
            sections[position] = change
        elif sections[position] is not None:
            sections[position] = merge(sections[position], change)  # type: ignore[arg-type]
        self.observe_lag(message)

    def observe_lag(self, message: Msg) -> None:
        committed = (message.headers or {}).get(contracts.HEADER_COMMITTED_MS)
        if committed and committed.isdigit():
            self.metrics.apply_lag_s.observe(max(0.0, time.time() - int(committed) / 1000))

    def apply_order(self, data: bytes) -> None:
        try:
            order = contracts.order_event_decoder.decode(data)
        except (msgspec.DecodeError, ValueError) as error:
            raise Malformed(str(error)) from None
        self.friends.add_order(order)

    async def apply_kv(self, messages: list[Msg]) -> None:
        for message in messages:
            self.kv_seq = max(self.kv_seq, message.metadata.sequence.stream)
            key = message.subject[len(KV_PREFIX) :]
            if key.startswith(contracts.USER_RECORD_PREFIX + "."):
                self.apply_user(message.data)
            elif key.startswith(contracts.EVENT_INFO_PREFIX + "."):
                view = await self.load_event_info(key)
                if view is not None and not all(view.loaded):
                    for position in range(len(view.section_ids)):
                        await self.resync(view, position, needed=0)

    # --- resync ---

    async def resync(self, view: EventView, position: int, needed: int) -> None:
        """Bring a section to at least version `needed` from a snapshot (KV, then writer)."""
        self.metrics.resyncs.inc()
        section_id = view.section_ids[position]
        data = await self.kv_get(contracts.snapshot_key(view.event_id, section_id))
        self.install(view, position, data)
        if view.maps[position].version >= needed and view.loaded[position]:
            return
        url = f"{self.settings.writer_url}/v1/events/{view.event_id}/sections/{section_id}/snapshot"
        try:
            response = await self.http.get(url)
            if response.status_code == 200:
                self.install(view, position, response.content)
        except httpx.HTTPError:
            log.warning("writer snapshot unreachable for %s/%s", view.event_id, section_id)

    def install(self, view: EventView, position: int, data: bytes | None) -> None:
        if data is None:
            return
        try:
            seat_map = tc.SeatMap.decode(data)
        except ValueError:
            self.metrics.malformed.inc()
            return
        current = view.maps[position]
        if seat_map.seat_count != current.seat_count:
            self.metrics.malformed.inc()
            return
        if not view.loaded[position] or seat_map.version > current.version:
            view.set_map(position, seat_map)


def parse_delta_headers(message: Msg) -> tuple[uuid.UUID, str, int]:
    headers = message.headers or {}
    try:
        event_id = uuid.UUID(headers[contracts.HEADER_EVENT])
        section_id = headers[contracts.HEADER_SECTION]
        version = int(headers[contracts.HEADER_VERSION])
    except (KeyError, ValueError) as error:
        raise Malformed(f"bad delta headers: {error}") from None
    return event_id, section_id, version
