"""The waiting room's ticket-status call per edge process, beside its floor (a bare Redis PING
round trip from the same event loop), in one run.

    .venv/bin/python bench/queue_status.py [--calls 6000] [--tickets 200]

Starts its own Valkey (tessera_ops.servers), configures a room, joins `--tickets` fans,
opens it, then times `WaitingRoom.status(ticket)` (one HMAC check, one Lua script, the reply
decoded) one call at a time and with 64 in flight, and `PING` the same way. Prints calls per
second and the ratio status ÷ PING. docs/capacity.md uses the figure to size edges.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis

from edge.metrics import EdgeMetrics
from edge.settings import Settings
from edge.waiting_room import RoomUpdate, WaitingRoom
from tessera_ops.servers import start_valkey


async def rate(call: Callable[[int], Awaitable[object]], calls: int, in_flight: int) -> float:
    async def worker(offset: int) -> None:
        for index in range(calls // in_flight):
            await call(offset + index)

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(in_flight)))
    return calls / (time.perf_counter() - started)


async def bench(url: str, calls: int, tickets: int) -> None:
    redis = aioredis.from_url(url)
    settings = Settings(
        origin_urls=["http://127.0.0.1:1"],
        writer_url="http://127.0.0.1:1",
        redis_url=url,
        jwt_secret="j" * 32,
        admin_key="a" * 32,
        admission_secret="e" * 32,
    )
    room = WaitingRoom(redis, settings, EdgeMetrics())
    event = uuid.uuid4()
    await room.configure(event, RoomUpdate(enabled=True, rate_per_s=10.0))
    issued = [(await room.join(event, f"fan{i}"))[0].ticket for i in range(tickets)]
    await room.open(event)
    names = [ticket for ticket in issued if ticket is not None]
    print(f"{len(names)} tickets; {calls:,} calls per measurement")
    for in_flight in (1, 64):
        status = await rate(lambda i: room.status(names[i % len(names)]), calls, in_flight)
        ping = await rate(lambda _i: redis.ping(), calls, in_flight)
        print(
            f"  {in_flight:>2} in flight: status {status:,.0f}/s, PING {ping:,.0f}/s, "
            f"status ÷ PING {status / ping:.2f}×"
        )
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=6_000)
    parser.add_argument("--tickets", type=int, default=200)
    args = parser.parse_args()
    valkey = start_valkey(Path(tempfile.mkdtemp(prefix="queue-status-")))
    try:
        asyncio.run(bench(valkey.url, args.calls, args.tickets))
    finally:
        valkey.stop()


if __name__ == "__main__":
    main()
