"""The writer's connections: the database (three ways of using one server), Redis and NATS."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import nats
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from global_writer.db import migrate
from global_writer.db.engine import create_engine
from global_writer.settings import Settings
from tessera import limits
from tessera.jetstream import ensure_jetstream, load_definitions


@dataclass
class Connections:
    # SERIALIZABLE transactions: every effect that is not a batch's.
    engine: AsyncEngine
    # The event actors' own pool, so a batch never waits for a connection behind key claims,
    # reads or the relay (a busy event keeps using the same warm connection: LIFO).
    batch_engine: AsyncEngine
    # READ COMMITTED: idempotency keys are claimed by one atomic INSERT … ON CONFLICT, which needs
    # no SSI; at SERIALIZABLE, PostgreSQL's page-level predicate locks make concurrent claims of
    # *different* keys abort each other (docs/adr/0002).
    keys_engine: AsyncEngine
    # Single statements that need no transaction around them (a batch of key claims, marking
    # outbox rows sent, the settler's updates): one round trip instead of three.
    autocommit_engine: AsyncEngine
    redis: Redis
    nc: Nats
    js: JetStreamContext

    @classmethod
    async def open(cls, settings: Settings) -> Connections:
        await asyncio.to_thread(migrate.upgrade, settings.database_url)
        # No pre-ping: every database call goes through run_transaction, which reruns a
        # transaction whose pooled connection turns out dead (a server restart) on a fresh one.
        # Statements outside a transaction (autocommit) run at READ COMMITTED.
        engine = create_engine(
            settings.database_url, pre_ping=False, implicit_isolation="read committed"
        )
        batch_engine = create_engine(
            settings.database_url,
            pool_size=limits.writer_batch_connections_max,
            pre_ping=False,
            implicit_isolation="read committed",
        )
        redis = Redis.from_url(
            settings.redis_url,
            socket_timeout=limits.redis_timeout_s,
            socket_connect_timeout=limits.redis_timeout_s,
        )
        nc = await nats.connect(settings.nats_url, max_reconnect_attempts=-1)
        js = nc.jetstream()
        await ensure_jetstream(js, load_definitions(replicas=settings.jetstream_replicas))
        return cls(
            engine=engine,
            batch_engine=batch_engine,
            keys_engine=engine.execution_options(isolation_level="READ COMMITTED"),
            autocommit_engine=engine.execution_options(isolation_level="AUTOCOMMIT"),
            redis=redis,
            nc=nc,
            js=js,
        )

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.nc.drain()
        await self.redis.aclose()
        await self.batch_engine.dispose()
        await self.engine.dispose()
