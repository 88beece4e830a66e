"""The operations an event's actor commits, and the replies they resolve to."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, NamedTuple

from global_writer import errors


class Reply(NamedTuple):
    """An HTTP answer decided inside a batch: stored with the idempotency key in the same
    transaction, so a replay returns exactly these bytes."""

    status: int
    body: bytes
    # Set on an answer served from the idempotency store rather than computed now.
    replayed: bool = False


# What a HoldOp with `claim_key` resolves to when its key exists already: the caller replays the
# stored answer, refuses the request (422, 409), or claims the key anew if it expired or its
# request died.
KEY_EXISTS: Final = Reply(0, b"")


@dataclass(frozen=True)
class Idem:
    user_id: str
    key: str
    # Fingerprint of method, path and body: the same key with another request is refused.
    request_hash: bytes = b""


def _future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


@dataclass(eq=False)
class HoldOp:
    user_id: str
    seats: list[tuple[int, int]] | None
    quantity: int = 0
    within: list[int] | None = None
    adjacent: bool = True
    idem: Idem | None = None
    future: asyncio.Future[Any] = field(default_factory=_future)
    hold_id: uuid.UUID = field(default_factory=uuid.uuid4)
    picked: list[tuple[int, int]] = field(default_factory=list)
    failure: errors.WriterError | None = None
    # The actor claims `idem`'s key itself, with the rest of its batch's keys, before picking
    # (`claim_key`); `claimed` says it did, so the request can free the key if it fails.
    claim_key: bool = False
    claimed: bool = False
    taken: bool = False
    cancelled: bool = False


@dataclass(eq=False)
class ReleaseOp:
    hold_ids: list[uuid.UUID]
    reason: Literal["released", "expired"]
    user_id: str | None = None
    # For expiries: the earliest deadline in the batch (epoch seconds), to measure expiry lag.
    due_at: float = 0.0
    future: asyncio.Future[Any] = field(default_factory=_future)
    taken: bool = False
    cancelled: bool = False


@dataclass(eq=False)
class SellOp:
    hold_id: uuid.UUID
    user_id: str
    amount_minor: int
    currency: str
    provider: str
    provider_ref: str
    idem: Idem | None = None
    order_id: uuid.UUID = field(default_factory=uuid.uuid4)
    future: asyncio.Future[Any] = field(default_factory=_future)
    taken: bool = False
    cancelled: bool = False


# Every op has `taken` (the actor took it into a batch: its outcome is that batch's) and
# `cancelled` (its request gave up waiting before that: the actor drops it, it never runs).
Op = HoldOp | ReleaseOp | SellOp


@dataclass
class Released:
    """What a release op did: holds released, and (for expiry) holds still active by the
    database's clock, with their deadlines, to be scheduled again."""

    hold_ids: list[uuid.UUID]
    still_active: dict[uuid.UUID, datetime]
    reply: Reply | None = None
