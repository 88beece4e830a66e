"""`Idempotency-Key` (IETF httpapi-idempotency-key draft), scoped per user, kept 24 h.

`KeyClaims.begin` claims the key before any effect; the effect's own transaction marks it done
with the response (`complete`, so the key and the effect commit together); a replay with the same
body returns that response, with another body 422, while the first is still running 409. A
request that fails without an effect `abandon`s the key so the client may retry it.

Claims are taken for many requests at once (`claim_new`): one `INSERT … ON CONFLICT DO NOTHING
RETURNING` of every key waiting (the database says which were new), at READ COMMITTED
(docs/adr/0002), committed on its own before any effect. Holds have theirs claimed by the event's
actor with the rest of its batch (global_writer/actor.py); other requests through `KeyClaims`.
Only a key that already exists takes the slower path (`begin_existing`): clear it if it expired
or its request died, else replay, 422 or 409.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from global_writer import errors
from global_writer.db import tables as t
from global_writer.db.retry import run_transaction
from global_writer.ops import Idem, Reply
from tessera import limits

log = logging.getLogger("global_writer.idempotency")

KEY_PATTERN: Final = re.compile(rf"[A-Za-z0-9._:~+/=-]{{1,{limits.idempotency_key_chars_max}}}")


def _array(name: str, item: Any) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=pg.ARRAY(item))


# Statements of a fixed shape whatever the number of keys (arrays, unnested server-side): compiled
# once by SQLAlchemy and prepared once per connection by the driver. Written as SQL text because
# SQLAlchemy does not cache its PostgreSQL `insert(…).on_conflict_…()` constructs (it would compile
# this one for every batch).
CLAIM_MANY: Final = sa.text(
    "INSERT INTO idempotency_keys (user_id, key, request_hash, status, attempt, expires_at)"
    " SELECT new.user_id, new.key, new.request_hash, 'in_flight', new.attempt,"
    " now() + :ttl_s * interval '1 second'"
    " FROM unnest(:user_ids, :keys, :hashes, :attempts)"
    " AS new (user_id, key, request_hash, attempt)"
    " ON CONFLICT DO NOTHING"
    " RETURNING user_id, key"
).bindparams(
    _array("user_ids", sa.Text),
    _array("keys", sa.Text),
    _array("hashes", sa.LargeBinary),
    _array("attempts", pg.UUID(as_uuid=True)),
    sa.bindparam("ttl_s", limits.idempotency_key_ttl_s, type_=sa.Integer),
)
_done = (
    sa.func.unnest(
        _array("user_ids", sa.Text),
        _array("keys", sa.Text),
        _array("statuses", sa.Integer),
        _array("bodies", sa.LargeBinary),
        _array("attempts", pg.UUID(as_uuid=True)),
    )
    .table_valued("user_id", "key", "status", "body", "attempt")
    .render_derived()
)
COMPLETE_MANY: Final = (
    t.idempotency_keys.update()
    .where(
        t.idempotency_keys.c.user_id == _done.c.user_id,
        t.idempotency_keys.c.key == _done.c.key,
        # The table's key by index whatever its statistics say (global_writer/batch_sql.py).
        t.idempotency_keys.c.user_id == sa.any_(_array("key_users", sa.Text)),
        t.idempotency_keys.c.status == "in_flight",
        # Only the attempt that holds the key answers for it: one a retry took over stores
        # nothing (and, being a checkout, sold nothing: global_writer/batch_sql.py SELL_HOLDS).
        t.idempotency_keys.c.attempt == _done.c.attempt,
    )
    .values(status="done", response_status=_done.c.status, response_body=_done.c.body)
)


@dataclass(frozen=True)
class Replay:
    reply: Reply


def parse_key(header: str | None) -> str:
    if header is None or header == "":
        raise errors.IdempotencyKeyRequired("this request needs an Idempotency-Key header")
    key = header.strip().strip('"')
    if not KEY_PATTERN.fullmatch(key):
        raise errors.InvalidRequest(
            f"Idempotency-Key must be 1-{limits.idempotency_key_chars_max} characters"
            " of A-Z a-z 0-9 . _ : ~ + / = -"
        )
    return key


def fingerprint(method: str, path: str, body: bytes) -> bytes:
    return hashlib.sha256(b"\n".join((method.encode(), path.encode(), body))).digest()


class KeyClaims:
    """Claims keys for concurrent requests together: a request's key joins the next statement,
    which starts at once when fewer than `limits.idempotency_claim_statements_max` are running
    (so an idle writer adds no wait), else when one of them finishes, with every key that
    arrived meanwhile. Both engines must run at READ COMMITTED (docs/adr/0002): `batch_engine`
    runs the one-statement claims (autocommit is best), `engine` the slow path's transactions."""

    def __init__(self, batch_engine: AsyncEngine, engine: AsyncEngine) -> None:
        self.batch_engine = batch_engine
        self.engine = engine
        self.waiting: list[tuple[Idem, asyncio.Future[bool]]] = []
        # Statements running; counted by `drain` itself, so a finishing one never hides a key.
        self.running = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def begin(self, idem: Idem) -> Replay | None:
        """Claim the key: `None` means go ahead; a `Replay` carries the stored response."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.waiting.append((idem, future))
        if self.running < limits.idempotency_claim_statements_max:
            self.running += 1
            self.spawn(self.drain())
        if await future:
            return None
        return await begin_existing(self.engine, idem)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self) -> None:
        """Claim waiting keys, a batch per statement, until none is left (`running` counts this
        coroutine until it returns, without awaiting in between)."""
        try:
            while self.waiting:
                batch = self.waiting[: limits.idempotency_claim_batch_keys_max]
                del self.waiting[: limits.idempotency_claim_batch_keys_max]
                await self.claim_batch(batch)
        finally:
            self.running -= 1

    async def claim_batch(self, batch: list[tuple[Idem, asyncio.Future[bool]]]) -> None:
        """Claim every key of `batch`; each future learns whether its key was new."""
        try:
            new = await claim_new(self.batch_engine, [idem for idem, _ in batch])
        except BaseException as error:
            # Every waiting request must hear back, whatever happened to the statement.
            log.error("claiming %d idempotency keys failed", len(batch), exc_info=error)
            for _, future in batch:
                if not future.done():
                    future.set_exception(
                        errors.Unavailable("could not record the Idempotency-Key; retry")
                    )
            if not isinstance(error, Exception):
                raise
            return
        for (idem, future), claimed in zip(batch, new, strict=True):
            if not future.cancelled():
                future.set_result(claimed)
            elif claimed:
                # The request went away while its key was being claimed: free the key.
                self.abandon_later(idem)

    def abandon_later(self, idem: Idem) -> None:
        self.spawn(abandon(self.engine, idem))


async def claim_new(engine: AsyncEngine, idems: Sequence[Idem]) -> list[bool]:
    """Insert these keys in one statement (`engine`: READ COMMITTED, autocommit is best); for
    each, whether it was new. A second request with the same key in `idems` is not: it takes the
    slow path (`claim`) and finds the first one in flight."""
    firsts: dict[tuple[str, str], Idem] = {}
    for idem in idems:
        firsts.setdefault((idem.user_id, idem.key), idem)
    params = {
        "user_ids": [idem.user_id for idem in firsts.values()],
        "keys": [idem.key for idem in firsts.values()],
        "hashes": [idem.request_hash for idem in firsts.values()],
        "attempts": [idem.attempt for idem in firsts.values()],
    }

    async def work(conn: AsyncConnection) -> set[tuple[str, str]]:
        return {(row[0], row[1]) for row in await conn.execute(CLAIM_MANY, params)}

    claimed = await run_transaction(engine, work)
    return [
        (idem.user_id, idem.key) in claimed and firsts[(idem.user_id, idem.key)] is idem
        for idem in idems
    ]


async def begin_existing(engine: AsyncEngine, idem: Idem) -> Replay | None:
    """The slow path for a key that was found to exist (`engine`: READ COMMITTED): `None` when
    it could be claimed after all (it had expired, or its request died), else the replay."""

    async def work(conn: AsyncConnection) -> Replay | None:
        return await claim(conn, idem, idem.request_hash)

    return await run_transaction(engine, work)


async def claim(conn: AsyncConnection, idem: Idem, request_hash: bytes) -> Replay | None:
    """The key of one request, when it may already exist: clear it if it expired or its request
    died without an effect, then insert it, else answer from the stored row."""
    await conn.execute(
        t.idempotency_keys.delete().where(
            t.idempotency_keys.c.user_id == idem.user_id,
            t.idempotency_keys.c.key == idem.key,
            sa.or_(
                t.idempotency_keys.c.expires_at <= sa.func.now(),
                sa.and_(
                    t.idempotency_keys.c.status == "in_flight",
                    t.idempotency_keys.c.created_at
                    <= sa.func.now() - t.interval_s(limits.idempotency_in_flight_s_max),
                ),
            ),
        )
    )
    claimed = (
        await conn.execute(
            pg_insert(t.idempotency_keys)
            .values(
                user_id=idem.user_id,
                key=idem.key,
                request_hash=request_hash,
                status="in_flight",
                attempt=idem.attempt,
                expires_at=sa.func.now() + t.interval_s(limits.idempotency_key_ttl_s),
            )
            .on_conflict_do_nothing()
            .returning(t.idempotency_keys.c.key)
        )
    ).scalar_one_or_none()
    if claimed is not None:
        return None
    row = (
        await conn.execute(
            sa.select(t.idempotency_keys).where(
                t.idempotency_keys.c.user_id == idem.user_id,
                t.idempotency_keys.c.key == idem.key,
            )
        )
    ).one()
    if row.request_hash != request_hash:
        raise errors.IdempotencyKeyMismatch(
            "this Idempotency-Key was used with a different request"
        )
    if row.status == "in_flight":
        raise errors.IdempotencyKeyInFlight("a request with this Idempotency-Key is in progress")
    return Replay(Reply(row.response_status, row.response_body or b"", replayed=True))


async def complete(conn: AsyncConnection, done: Sequence[tuple[Idem, Reply]]) -> None:
    """Mark these keys done with their final answers, in the caller's transaction (the effect's):
    one statement for any number of keys."""
    if not done:
        return
    await conn.execute(
        COMPLETE_MANY,
        {
            "user_ids": [idem.user_id for idem, _ in done],
            "key_users": sorted({idem.user_id for idem, _ in done}),
            "keys": [idem.key for idem, _ in done],
            "statuses": [reply.status for _, reply in done],
            "bodies": [reply.body for _, reply in done],
            "attempts": [idem.attempt for idem, _ in done],
        },
    )


async def finish(engine: AsyncEngine, idem: Idem, reply: Reply) -> None:
    """Store a final answer decided outside an effect's transaction (e.g. a declined card)."""

    async def work(conn: AsyncConnection) -> None:
        await complete(conn, [(idem, reply)])

    await run_transaction(engine, work)


async def abandon(engine: AsyncEngine, idem: Idem) -> None:
    """No effect happened: release the key so the same request can be retried. Only this
    attempt's claim is released (a retry that took the key over keeps it); once this returns,
    this attempt can no longer commit a sale (`fence`)."""
    await fence(engine, idem.user_id, idem.key, idem.attempt)


async def fence(engine: AsyncEngine, user_id: str, key: str, attempt: uuid.UUID) -> None:
    """End `attempt`'s claim of the key if it is still in flight: a checkout's batch sells only
    under a claim it finds in flight and locks (global_writer/batch_sql.py SELL_HOLDS), so after
    this the attempt cannot commit a sale. A batch still running holds the row's lock and this
    waits for it; a batch that committed left the key `done`, which this does not touch."""

    async def work(conn: AsyncConnection) -> None:
        await conn.execute(
            t.idempotency_keys.delete().where(
                t.idempotency_keys.c.user_id == user_id,
                t.idempotency_keys.c.key == key,
                t.idempotency_keys.c.attempt == attempt,
                t.idempotency_keys.c.status == "in_flight",
            )
        )

    await run_transaction(engine, work)
