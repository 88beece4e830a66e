"""`create_app()`: the edge (docs/architecture.md §5, docs/edge.md). Cached GETs and the hot writes
(holds, extend, release, orders) are answered by bare-ASGI fast paths (edge/fastpath.py,
edge/fastwrites.py); queue, admin, the fan's own records, streams, health and metrics by
Litestar. Outermost, edge/ports.py checks the CDN's origin secret and keeps /metrics and the
admin API on the internal port, when those are configured."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from litestar import Litestar, Request
from litestar.openapi import OpenAPIConfig

from edge import page
from edge.cache import MicroCache
from edge.clientip import parse_networks
from edge.controllers import admin, cached, passon, queue, reads, writes
from edge.fans import VerifiedTokens
from edge.fastpath import CachedGets
from edge.fastwrites import FastWrites
from edge.metrics import EdgeMetrics
from edge.negative import EventCheckedOrigin, NegativeCache
from edge.origins import OriginPool
from edge.passthrough import StreamProxy, WriterProxy
from edge.ports import InternalListener, PortGuard
from edge.ratelimit import RateLimiter
from edge.settings import OriginSecrets, Settings, from_env
from edge.waiting_room import WaitingRoom
from tessera import limits
from tessera.identity import Verifier
from tessera.observability import configure_logging
from tessera.requests import AccessLog
from tessera.web import exception_handlers, operations_routes


@dataclass
class Parts:
    settings: Settings
    metrics: EdgeMetrics
    redis: aioredis.Redis
    origins: OriginPool
    writer_origin: OriginPool
    seatmaps: MicroCache
    events: MicroCache
    checked_events: EventCheckedOrigin
    negative: NegativeCache
    writer: WriterProxy
    streams: StreamProxy
    limiter: RateLimiter
    room: WaitingRoom
    verifier: Verifier

    async def close(self) -> None:
        for closing in (self.origins, self.writer_origin, self.writer, self.streams):
            await closing.close()
        await self.redis.aclose()


def build(settings: Settings) -> Parts:
    metrics = EdgeMetrics()

    def count(result: str) -> None:
        metrics.origin_requests.labels(result).inc()

    redis = aioredis.from_url(
        settings.redis_url,
        socket_timeout=limits.edge_redis_timeout_s,
        socket_connect_timeout=limits.edge_redis_timeout_s,
    )
    origins = OriginPool(settings.origin_urls, on_result=count)
    writer_origin = OriginPool([settings.writer_url], on_result=count)
    checked_events = EventCheckedOrigin(origins, writer_origin)
    only_found = frozenset({200})  # 404s go to the negative cache (edge/negative.py)
    return Parts(
        settings=settings,
        metrics=metrics,
        redis=redis,
        origins=origins,
        writer_origin=writer_origin,
        seatmaps=MicroCache(
            origins,
            ttl_s=settings.cache_ttl_s,
            stale_s=settings.stale_s,
            stored_statuses=only_found,
        ),
        events=MicroCache(
            checked_events,
            ttl_s=settings.cache_ttl_s,
            stale_s=settings.stale_s,
            stored_statuses=only_found,
        ),
        checked_events=checked_events,
        negative=NegativeCache(),
        writer=WriterProxy(settings.writer_url, metrics, settings.edge_writer_credential),
        streams=StreamProxy(origins, metrics),
        limiter=RateLimiter(redis, settings.rate_limits, metrics),
        room=WaitingRoom(redis, settings, metrics),
        verifier=Verifier(settings.identity),
    )


async def readiness(request: Request[Any, Any, Any]) -> Mapping[str, object]:
    """Ready when a read node of the region is ready and Redis answers."""
    parts: Parts = request.app.state.parts
    redis_ready = False
    with contextlib.suppress(aioredis.RedisError, OSError):
        redis_ready = bool(await parts.redis.ping())
    return {"origin": await parts.origins.ready(), "redis": redis_ready}


def before_scrape(request: Request[Any, Any, Any]) -> None:
    """Counters the hot paths keep in plain integers move into the registry now."""
    parts: Parts = request.app.state.parts
    parts.metrics.cache_entries.set(len(parts.seatmaps.entries) + len(parts.events.entries))
    request.app.state.fast.flush_metrics()
    spared, parts.checked_events.spared = parts.checked_events.spared, 0
    if spared:
        parts.metrics.unknown_ids.labels("writer_spared").inc(spared)
    parts.writer.flush_metrics()


def create_app(settings: Settings | None = None) -> Any:
    settings = settings or from_env()
    configure_logging("edge")
    parts = build(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        state = app.state
        state.parts, state.settings, state.metrics = parts, settings, parts.metrics
        state.redis, state.origins, state.writer = parts.redis, parts.origins, parts.writer
        state.streams, state.limiter, state.room = parts.streams, parts.limiter, parts.room
        state.trusted = parse_networks(settings.trusted_proxies)
        state.verifier = parts.verifier
        await parts.verifier.refresh()  # the identity provider's keys before the first request
        internal = None
        if settings.internal_port is not None:  # /metrics and admin: edge/ports.py
            internal = InternalListener(served, settings.internal_host, settings.internal_port)
            await internal.start()
        keys = asyncio.create_task(parts.verifier.keep_fresh())
        try:
            yield
        finally:
            if internal is not None:
                await internal.close()
            keys.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keys
            await parts.close()

    app = Litestar(
        # Logging is tessera.observability's JSON lines: Litestar would install its own format.
        logging_config=None,
        route_handlers=[
            *queue.ROUTE_HANDLERS,
            *admin.ROUTE_HANDLERS,
            *writes.ROUTE_HANDLERS,
            *passon.ROUTE_HANDLERS,
            *reads.ROUTE_HANDLERS,
            *cached.ROUTE_HANDLERS,
            *page.ROUTE_HANDLERS,
            *operations_routes(readiness, before_scrape),
        ],
        lifespan=[lifespan],
        exception_handlers=exception_handlers(),
        request_max_body_size=limits.request_body_bytes_max,
        openapi_config=OpenAPIConfig(title="Tessera edge", version="0.1.0", path="/schema"),
    )
    trusted = parse_networks(settings.trusted_proxies)
    fast_writes = FastWrites(
        app,
        writer=parts.writer,
        limiter=parts.limiter,
        room=parts.room,
        tokens=VerifiedTokens(parts.verifier),
        trusted=trusted,
        metrics=parts.metrics,
    )
    fast = CachedGets(
        fast_writes,
        seatmaps=parts.seatmaps,
        events=parts.events,
        limiter=parts.limiter,
        trusted=trusted,
        metrics=parts.metrics,
        negative=parts.negative,
        tokens=VerifiedTokens(parts.verifier),
    )
    app.state.fast = fast
    served: Any = AccessLog(fast, "edge")
    accepted = (
        settings.origin_secrets.accepted()
        if isinstance(settings.origin_secrets, OriginSecrets)
        else ()
    )
    if accepted or settings.internal_port is not None:
        served = PortGuard(
            served,
            header=settings.origin_header,
            accepted=accepted,
            internal=settings.internal_port is not None,
        )
    return served
