"""Redis mirror of active holds (PX = time left), for cheap "my cart" reads on any writer (the
event's owner answers from its live-hold index; another writer, or one restarted, from here).
Nothing here decides a sale: every call is best-effort with a short timeout, and a flushed or
unreachable Redis only makes reads fall back to the database."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import msgspec
from redis.asyncio import Redis

from global_writer.ops import Batch
from global_writer.replies import hold_view, live_hold_view
from global_writer.schemas import HoldView

if TYPE_CHECKING:
    from global_writer.actor import Written
    from global_writer.runtime import EventRuntime

log = logging.getLogger("global_writer.mirror")


class MirrorHold(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    user_id: str
    hold: HoldView


_decoder: Final = msgspec.json.Decoder(MirrorHold)


def hold_key(hold_id: uuid.UUID) -> str:
    return f"tessera:hold:{hold_id}"


def _ttl_ms(hold: HoldView) -> int:
    return int((hold.expires_at - datetime.now(UTC)).total_seconds() * 1000)


class HoldMirror:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.tasks: set[asyncio.Task[Any]] = set()

    def after_commit(self, runtime: EventRuntime, written: Written, batch: Batch) -> None:
        """The actor's commit hook: copy the batch's effects in the background."""
        task = asyncio.get_running_loop().create_task(self.copy(runtime, written, batch))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def copy(self, runtime: EventRuntime, written: Written, batch: Batch) -> None:
        """Copy the batch's effects to Redis in one round trip (best effort)."""
        puts = [
            (
                op.user_id,
                hold_view(
                    runtime, op.hold_id, op.picked, written.expires_at[op.hold_id], extended=False
                ),
            )
            for op in batch.holds
            if op.hold_id in written.expires_at
        ]
        live = runtime.holds
        puts += [
            (live[hold_id].user_id, live_hold_view(runtime, live[hold_id]))
            for hold_id in written.extended
            if hold_id in live
        ]
        drops = list(written.released_holds)
        drops += [sell.hold_id for sell in batch.sells if sell.order_id in written.sold]
        await self.apply(puts, drops)

    async def put(self, user_id: str, hold: HoldView) -> None:
        ttl_ms = _ttl_ms(hold)
        if ttl_ms <= 0:
            return
        try:
            await self.redis.set(
                hold_key(hold.hold_id), msgspec.json.encode(MirrorHold(user_id, hold)), px=ttl_ms
            )
        except Exception:
            log.warning("mirror put failed for hold %s", hold.hold_id, exc_info=True)

    async def apply(
        self,
        puts: list[tuple[str, HoldView]],
        drops: list[uuid.UUID],
    ) -> None:
        """A committed batch's effects in one pipeline (one round trip): new holds (user, view)
        and ended ones."""
        if not (puts or drops):
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for user_id, hold in puts:
                    ttl_ms = _ttl_ms(hold)
                    if ttl_ms > 0:
                        value = msgspec.json.encode(MirrorHold(user_id, hold))
                        pipe.set(hold_key(hold.hold_id), value, px=ttl_ms)
                if drops:
                    pipe.delete(*(hold_key(hold_id) for hold_id in drops))
                await pipe.execute()
        except Exception:
            log.warning("mirror update of %d holds failed", len(puts) + len(drops), exc_info=True)

    async def get(self, hold_id: uuid.UUID) -> tuple[str, HoldView] | None:
        try:
            raw = await self.redis.get(hold_key(hold_id))
        except Exception:
            log.warning("mirror read failed; using the database", exc_info=True)
            return None
        if raw is None:
            return None
        try:
            cached = _decoder.decode(raw)
        except msgspec.DecodeError:
            return None
        return cached.user_id, cached.hold

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except Exception:
            return False
