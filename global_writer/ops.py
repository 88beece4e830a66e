"""The operations an event's actor commits, the batch that carries them, and the replies they
resolve to."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, NamedTuple

from global_writer import errors
from global_writer.tickets import IssuedTicket
from tessera.requests import current_request_id


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
    # This request's claim of the key (`idempotency_keys.attempt`): a retry that takes the key
    # over replaces it, and a batch commits a sale, or stores an answer, only under its own.
    attempt: uuid.UUID = field(default_factory=uuid.uuid4)


def _future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


@dataclass(eq=False)
class Op:
    """What every operation has: the future its request awaits, and two flags. `taken`: the actor
    took it into a batch, so its outcome is that batch's. `cancelled`: its request gave up waiting
    before that, so the actor drops it and it never runs."""

    future: asyncio.Future[Any] = field(default_factory=_future, kw_only=True)
    taken: bool = field(default=False, kw_only=True)
    cancelled: bool = field(default=False, kw_only=True)
    # The request it came from (tessera/requests.py): batch logs and outbox messages carry it.
    request_id: str = field(default_factory=current_request_id, kw_only=True)


@dataclass(eq=False)
class HoldOp(Op):
    user_id: str
    seats: list[tuple[int, int]] | None
    quantity: int = 0
    within: list[int] | None = None
    adjacent: bool = True
    idem: Idem | None = None
    # A presale wave's per-fan limit (global_writer/presales.py), below the event's; 0: none.
    seat_limit: int = 0
    hold_id: uuid.UUID = field(default_factory=uuid.uuid4)
    picked: list[tuple[int, int]] = field(default_factory=list)
    failure: errors.WriterError | None = None
    # The actor claims `idem`'s key itself, with the rest of its batch's keys, before picking
    # (`claim_key`); `claimed` says it did, so the request can free the key if it fails.
    claim_key: bool = False
    claimed: bool = False


@dataclass(eq=False)
class ReleaseOp(Op):
    hold_ids: list[uuid.UUID]
    reason: Literal["released", "expired"]
    user_id: str | None = None
    # For expiries: the earliest deadline in the batch (epoch seconds), to measure expiry lag.
    due_at: float = 0.0


@dataclass(eq=False)
class ExtendOp(Op):
    hold_id: uuid.UUID
    user_id: str
    seconds: int
    idem: Idem | None = None


@dataclass(eq=False)
class SellOp(Op):
    hold_id: uuid.UUID
    user_id: str
    amount_minor: int
    currency: str
    provider: str
    provider_ref: str
    idem: Idem | None = None
    order_id: uuid.UUID = field(default_factory=uuid.uuid4)
    payment_id: uuid.UUID = field(default_factory=uuid.uuid4)
    # One signed ticket per seat of the hold (global_writer/tickets.py), written by the sale's
    # own statement; issued before the op is queued so the batch never waits for signing.
    tickets: list[IssuedTicket] = field(default_factory=list)


@dataclass(eq=False)
class RefundOp(Op):
    """Refund confirmed orders of the event (global_writer/refunds.py): each order with its
    hold, whose seats go back on sale. Resolves to the orders actually refunded."""

    orders: list[tuple[uuid.UUID, uuid.UUID]]  # (order_id, hold_id)


AnyOp = HoldOp | ReleaseOp | ExtendOp | SellOp | RefundOp


@dataclass
class Batch:
    """One group commit's operations, by kind, in arrival order within each kind."""

    holds: list[HoldOp] = field(default_factory=list)
    releases: list[ReleaseOp] = field(default_factory=list)
    extends: list[ExtendOp] = field(default_factory=list)
    sells: list[SellOp] = field(default_factory=list)
    refunds: list[RefundOp] = field(default_factory=list)

    @classmethod
    def of(cls, ops: list[AnyOp]) -> Batch:
        batch = cls()
        for op in ops:
            match op:
                case HoldOp():
                    batch.holds.append(op)
                case ReleaseOp():
                    batch.releases.append(op)
                case ExtendOp():
                    batch.extends.append(op)
                case SellOp():
                    batch.sells.append(op)
                case RefundOp():
                    batch.refunds.append(op)
        return batch

    def ops(self) -> list[AnyOp]:
        return [*self.holds, *self.releases, *self.extends, *self.sells, *self.refunds]

    def __len__(self) -> int:
        return (
            len(self.holds)
            + len(self.releases)
            + len(self.extends)
            + len(self.sells)
            + len(self.refunds)
        )

    @property
    def changes_state(self) -> bool:
        """Whether the batch may write anything beyond its answers (every hold refused in memory,
        and nothing else, writes only the answers)."""
        return bool(
            self.releases
            or self.extends
            or self.sells
            or self.refunds
            or any(op.failure is None for op in self.holds)
        )


@dataclass
class Released:
    """What a release op did: holds released, and (for expiry) holds still active by the
    database's clock, with their deadlines, to be scheduled again."""

    hold_ids: list[uuid.UUID]
    still_active: dict[uuid.UUID, datetime]
    reply: Reply | None = None


@dataclass
class LiveHold:
    """An active hold of an event, as its writer knows it: every hold this writer committed and
    has not seen end. Checkout, extension and release read it instead of the database."""

    hold_id: uuid.UUID
    user_id: str
    seats: list[tuple[int, int]]
    expires_at: datetime
    extended: bool = False
