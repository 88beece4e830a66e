"""`Idempotency-Key` (IETF httpapi-idempotency-key draft), scoped per user, kept 24 h.

`begin` claims the key before any effect; the effect's own transaction marks it done with the
response (so the key and the effect commit together); a replay with the same body returns that
response, with another body 422, while the first is still running 409. A request that fails
without an effect `abandon`s the key so the client may retry it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from global_writer import errors
from global_writer.db import tables as t
from global_writer.db.retry import run_transaction
from global_writer.ops import Idem, Reply
from tessera import limits

KEY_PATTERN: Final = re.compile(rf"[A-Za-z0-9._:~+/=-]{{1,{limits.idempotency_key_chars_max}}}")


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


async def begin(engine: AsyncEngine, idem: Idem, request_hash: bytes) -> Replay | None:
    """Claim the key: `None` means go ahead; a `Replay` carries the stored response."""

    async def work(conn: AsyncConnection) -> Replay | None:
        return await claim(conn, idem, request_hash)

    return await run_transaction(engine, work)


async def claim(conn: AsyncConnection, idem: Idem, request_hash: bytes) -> Replay | None:
    await conn.execute(
        t.idempotency_keys.delete().where(
            t.idempotency_keys.c.user_id == idem.user_id,
            t.idempotency_keys.c.key == idem.key,
            sa.or_(
                t.idempotency_keys.c.expires_at <= sa.func.now(),
                sa.and_(
                    t.idempotency_keys.c.status == "in_flight",
                    t.idempotency_keys.c.created_at
                    <= sa.func.now()
                    - sa.text(f"interval '{limits.idempotency_in_flight_s_max} seconds'"),
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
                expires_at=sa.func.now()
                + sa.text(f"interval '{limits.idempotency_key_ttl_s} seconds'"),
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


async def finish(engine: AsyncEngine, idem: Idem, reply: Reply) -> None:
    """Store a final answer decided outside an effect's transaction (e.g. a declined card)."""

    async def work(conn: AsyncConnection) -> None:
        await conn.execute(
            t.idempotency_keys.update()
            .where(
                t.idempotency_keys.c.user_id == idem.user_id,
                t.idempotency_keys.c.key == idem.key,
                t.idempotency_keys.c.status == "in_flight",
            )
            .values(status="done", response_status=reply.status, response_body=reply.body)
        )

    await run_transaction(engine, work)


async def abandon(engine: AsyncEngine, idem: Idem) -> None:
    """No effect happened: release the key so the same request can be retried."""

    async def work(conn: AsyncConnection) -> None:
        await conn.execute(
            t.idempotency_keys.delete().where(
                t.idempotency_keys.c.user_id == idem.user_id,
                t.idempotency_keys.c.key == idem.key,
                t.idempotency_keys.c.status == "in_flight",
            )
        )

    await run_transaction(engine, work)
