"""`create_app()`: the edge (ARCHITECTURE.md §5, docs/edge.md). Cached GETs and the hot writes
(holds, extend, release, orders) are answered by bare-ASGI fast paths (edge/fastpath.py,
edge/fastwrites.py); queue, admin, the fan's own records, streams, health and metrics by
Litestar."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aioredis
from litestar import Litestar, Request, Response, get
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig

from edge import page
from edge.cache import MicroCache
from edge.clientip import parse_networks
from edge.controllers import admin, cached, queue, reads, writes
from edge.errors import JSON, EdgeError, handle_edge_error, handle_http_exception
from edge.fans import VerifiedTokens
from edge.fastpath import CachedGets
from edge.fastwrites import FastWrites
from edge.metrics import EdgeMetrics
from edge.origins import OriginPool
from edge.passthrough import StreamProxy, WriterProxy
from edge.ratelimit import RateLimiter
from edge.settings import Settings, from_env
from edge.waiting_room import WaitingRoom
from tessera import limits
from tessera.observability import configure_logging, render


@dataclass
class Parts:
    settings: Settings
    metrics: EdgeMetrics
    redis: aioredis.Redis
    origins: OriginPool
    writer_origin: OriginPool
    seatmaps: MicroCache
    events: MicroCache
    writer: WriterProxy
    streams: StreamProxy
    limiter: RateLimiter
    room: WaitingRoom

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
    return Parts(
        settings=settings,
        metrics=metrics,
        redis=redis,
        origins=origins,
        writer_origin=writer_origin,
        seatmaps=MicroCache(origins, ttl_s=settings.cache_ttl_s, stale_s=settings.stale_s),
        events=MicroCache(writer_origin, ttl_s=settings.cache_ttl_s, stale_s=settings.stale_s),
        writer=WriterProxy(settings.writer_url, metrics),
        streams=StreamProxy(origins, metrics),
        limiter=RateLimiter(redis, settings.rate_limits, metrics),
        room=WaitingRoom(redis, settings, metrics),
    )


@get("/healthz", include_in_schema=False)
async def healthz() -> Response[bytes]:
    return Response(b'{"status":"ok"}', media_type=JSON)


@get("/readyz", include_in_schema=False)
async def readyz(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Ready when a read node of the region is ready and Redis answers."""
    parts: Parts = request.app.state.parts
    origin_ready = await parts.origins.ready()
    redis_ready = False
    with contextlib.suppress(aioredis.RedisError, OSError):
        redis_ready = bool(await parts.redis.ping())
    ready = origin_ready and redis_ready
    body = {
        "status": "ready" if ready else "not_ready",
        "origin": origin_ready,
        "redis": redis_ready,
    }
    return Response(msgspec.json.encode(body), status_code=200 if ready else 503, media_type=JSON)


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    parts: Parts = request.app.state.parts
    parts.metrics.cache_entries.set(len(parts.seatmaps.entries) + len(parts.events.entries))
    request.app.state.fast.flush_metrics()
    parts.writer.flush_metrics()
    body, content_type = render(parts.metrics.registry)
    return Response(body, media_type=content_type)


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
        try:
            yield
        finally:
            await parts.close()

    app = Litestar(
        route_handlers=[
            *queue.ROUTE_HANDLERS,
            *admin.ROUTE_HANDLERS,
            *writes.ROUTE_HANDLERS,
            *reads.ROUTE_HANDLERS,
            *cached.ROUTE_HANDLERS,
            *page.ROUTE_HANDLERS,
            healthz,
            readyz,
            metrics_endpoint,
        ],
        lifespan=[lifespan],
        exception_handlers={EdgeError: handle_edge_error, HTTPException: handle_http_exception},
        request_max_body_size=limits.request_body_bytes_max,
        openapi_config=OpenAPIConfig(title="Tessera edge", version="0.1.0", path="/schema"),
    )
    trusted = parse_networks(settings.trusted_proxies)
    fast_writes = FastWrites(
        app,
        writer=parts.writer,
        limiter=parts.limiter,
        room=parts.room,
        tokens=VerifiedTokens(settings.jwt_secret),
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
    )
    app.state.fast = fast
    return fast
