"""Fans' sharing choice and friend lists: stored in the database, published to readers (as a
`users.<id>` record in the KV bucket, through the outbox) for the friends index."""

from __future__ import annotations

import uuid

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from global_writer import errors, outbox, schemas
from global_writer.db import tables as t
from global_writer.db.retry import run_transaction
from global_writer.outbox import OutboxMessage
from tessera import contracts, limits
from tessera.auth import is_user_id


async def record(conn: AsyncConnection, user_id: str) -> contracts.UserRecord:
    await conn.execute(pg_insert(t.users).values(user_id=user_id).on_conflict_do_nothing())
    share = (
        await conn.execute(sa.select(t.users.c.share_purchases).where(t.users.c.user_id == user_id))
    ).scalar_one()
    friends = (
        await conn.execute(
            sa.select(t.friendships.c.friend_id)
            .where(t.friendships.c.user_id == user_id)
            .order_by(t.friendships.c.friend_id)
        )
    ).scalars()
    return contracts.UserRecord(user_id=user_id, share_purchases=share, friends=list(friends))


async def publish_record(
    conn: AsyncConnection, user_id: str
) -> tuple[contracts.UserRecord, OutboxMessage]:
    current = await record(conn, user_id)
    message = await outbox.insert(
        conn,
        subject=contracts.kv_subject(contracts.user_record_key(user_id)),
        msg_id=f"user.{user_id}.{uuid.uuid4().hex}",
        headers={},
        payload=msgspec.json.encode(current),
    )
    return current, message


async def set_sharing(
    engine: AsyncEngine, user_id: str, share: bool
) -> tuple[contracts.UserRecord, OutboxMessage]:
    async def work(conn: AsyncConnection) -> tuple[contracts.UserRecord, OutboxMessage]:
        await conn.execute(
            pg_insert(t.users)
            .values(user_id=user_id, share_purchases=share)
            .on_conflict_do_update(index_elements=["user_id"], set_={"share_purchases": share})
        )
        return await publish_record(conn, user_id)

    return await run_transaction(engine, work)


async def set_friend(
    engine: AsyncEngine, user_id: str, friend_id: str, present: bool
) -> tuple[contracts.UserRecord, OutboxMessage]:
    if not is_user_id(friend_id) or friend_id == user_id:
        raise errors.InvalidRequest("friend id must be another fan's user id")

    async def work(conn: AsyncConnection) -> tuple[contracts.UserRecord, OutboxMessage]:
        for uid in (user_id, friend_id):
            await conn.execute(pg_insert(t.users).values(user_id=uid).on_conflict_do_nothing())
        link = (t.friendships.c.user_id == user_id) & (t.friendships.c.friend_id == friend_id)
        if present:
            count = (
                await conn.execute(
                    sa.select(sa.func.count()).where(t.friendships.c.user_id == user_id)
                )
            ).scalar_one()
            if count >= limits.friends_per_user_max:
                raise errors.LimitExceeded(f"at most {limits.friends_per_user_max} friends")
            await conn.execute(
                pg_insert(t.friendships)
                .values(user_id=user_id, friend_id=friend_id)
                .on_conflict_do_nothing()
            )
        else:
            await conn.execute(t.friendships.delete().where(link))
        return await publish_record(conn, user_id)

    return await run_transaction(engine, work)


async def get(engine: AsyncEngine, user_id: str) -> contracts.UserRecord:
    async def read(conn: AsyncConnection) -> contracts.UserRecord:
        return await record(conn, user_id)

    return await run_transaction(engine, read)


async def profile_of(conn: AsyncConnection, user_id: str) -> schemas.Profile:
    current = await record(conn, user_id)
    email, phone = (
        await conn.execute(
            sa.select(t.users.c.email, t.users.c.phone).where(t.users.c.user_id == user_id)
        )
    ).one()
    return schemas.Profile(
        user_id=current.user_id,
        share_purchases=current.share_purchases,
        friends=current.friends,
        email=email,
        phone=phone,
    )


async def profile(engine: AsyncEngine, user_id: str) -> schemas.Profile:
    async def read(conn: AsyncConnection) -> schemas.Profile:
        return await profile_of(conn, user_id)

    return await run_transaction(engine, read)


async def set_contact(
    engine: AsyncEngine, user_id: str, contact: schemas.Contact
) -> schemas.Profile:
    """Store where confirmations go. Nothing is published: contact details are not for the
    read nodes; each order's confirmation carries the ones current when it commits."""
    values = {"email": contact.email, "phone": contact.phone}

    async def work(conn: AsyncConnection) -> schemas.Profile:
        await conn.execute(
            pg_insert(t.users)
            .values(user_id=user_id, **values)
            .on_conflict_do_update(index_elements=["user_id"], set_=values)
        )
        return await profile_of(conn, user_id)

    return await run_transaction(engine, work)
