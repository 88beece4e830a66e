"""Run a transaction, retrying it when the database reports a serialization failure.

At SERIALIZABLE (CockroachDB always, PostgreSQL as Tessera configures it) a transaction may be
aborted because it cannot be ordered against concurrent ones: SQLSTATE 40001, on any statement or
at COMMIT. CockroachDB reports its own retries the same way, with messages starting
"restart transaction:". A deadlock victim (40P01) is just as safe to rerun. The remedy is to run
the whole transaction again; sqlalchemy-cockroachdb's `run_transaction` does that for sync code
only, so this is the asyncio version: capped exponential backoff with full jitter between
attempts, a bounded number of attempts.

`work` may therefore run several times, and only the last run's writes commit. It must be
idempotent up to commit: no side effects outside the transaction (publishing, HTTP calls, Redis,
mutating the caller's state) until `run_transaction` has returned. Do those after, or derive them
from the committed result.

A connection that turns out dead before COMMIT was sent (a server restart or a load balancer
dropped it while it sat in the pool; SQLAlchemy reports `connection_invalidated` and discards every
connection of that age) is retried too, on a fresh connection: the server rolled the transaction
back when the connection died, so nothing of it committed. This is what lets the writer's engine
skip testing each connection on checkout (`pool_pre_ping`, three round trips with asyncpg). On an
AUTOCOMMIT connection every statement commits on its own, so there `work` must also be safe to
rerun after a statement that took effect just before its connection died.

Ambiguous commits (CockroachDB 40003 "result is ambiguous", a connection lost during COMMIT) are
not retried: the first attempt may have committed, and rerunning non-idempotent work would apply
it twice. They propagate like any other error.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tessera import limits

__all__ = [
    "ATTEMPTS_MAX_DEFAULT",
    "BACKOFF_MS_BASE_DEFAULT",
    "BACKOFF_MS_MAX_DEFAULT",
    "RETRYABLE_SQLSTATES",
    "TransactionRetriesExhausted",
    "backoff_cap_ms",
    "is_dead_connection",
    "is_retryable",
    "run_transaction",
    "sqlstate_of",
]

T = TypeVar("T")

# Defaults: caps of 5, 10, 20, … 320 ms between eight attempts, ~0.3 s of sleep expected in all.
ATTEMPTS_MAX_DEFAULT: Final = 8
BACKOFF_MS_BASE_DEFAULT: Final = 5.0
BACKOFF_MS_MAX_DEFAULT: Final = 1_000.0

# serialization_failure (PostgreSQL, and every CockroachDB transaction retry error) and
# deadlock_detected: the transaction was rolled back whole and may simply run again.
RETRYABLE_SQLSTATES: Final = frozenset({"40001", "40P01"})
# CockroachDB's retry errors all start with this; a fallback when a driver drops the SQLSTATE.
_COCKROACH_RESTART_PREFIX: Final = "restart transaction"
# Exception chains are short (SQLAlchemy error → adapter error → driver error); stop runaways.
_CHAIN_DEPTH_MAX: Final = 8

_log = logging.getLogger(__name__)


class TransactionRetriesExhausted(Exception):
    """Every allowed attempt hit a retryable error; the last one is chained as `__cause__`."""

    def __init__(self, attempts: int, last_error: BaseException) -> None:
        super().__init__(f"transaction failed with a retryable error on all {attempts} attempts")
        self.attempts = attempts
        self.last_error = last_error


def _linked_errors(error: BaseException) -> list[BaseException]:
    """`error`, then what it wraps: `.orig` (SQLAlchemy's DBAPIError) and explicit `__cause__`.

    `__context__` (an exception merely being handled when this one was raised) is not followed:
    a retryable error that `work` caught and replaced by its own error is not a reason to retry.
    """
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < _CHAIN_DEPTH_MAX and current not in chain:
        chain.append(current)
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return chain


def sqlstate_of(error: BaseException) -> str | None:
    """The SQLSTATE carried by `error` or the driver error it wraps, if any.

    Reads `sqlstate` (asyncpg, psycopg 3, SQLAlchemy's asyncpg adapter) or `pgcode` (psycopg2).
    """
    for linked in _linked_errors(error):
        for attribute in ("sqlstate", "pgcode"):
            value = getattr(linked, attribute, None)
            if isinstance(value, str) and value:
                return value
    return None


def is_retryable(error: BaseException) -> bool:
    """Whether rerunning the whole transaction may succeed: SQLSTATE 40001 or 40P01.

    Also true for CockroachDB's "restart transaction" errors when no SQLSTATE survived.
    """
    state = sqlstate_of(error)
    if state is not None:
        return state in RETRYABLE_SQLSTATES
    return any(_COCKROACH_RESTART_PREFIX in str(linked) for linked in _linked_errors(error))


def is_dead_connection(error: BaseException) -> bool:
    """Whether `error` says the connection was dead (SQLAlchemy invalidated it). Safe to retry
    only when COMMIT was not sent: `run_transaction` checks that."""
    return isinstance(error, DBAPIError) and error.connection_invalidated


def backoff_cap_ms(retry: int, *, backoff_ms_base: float, backoff_ms_max: float) -> float:
    """The longest sleep before retry `retry` (0 = the first retry): min(max, base * 2**retry)."""
    if retry < 0:
        raise ValueError(f"retry must be >= 0, got {retry}")
    # 2**64 ms is beyond any cap; clamping the exponent keeps the float finite.
    return min(backoff_ms_max, backoff_ms_base * 2.0 ** min(retry, 64))


def _check_arguments(attempts_max: int, backoff_ms_base: float, backoff_ms_max: float) -> None:
    if not 1 <= attempts_max <= limits.db_retry_attempts_max:
        raise ValueError(
            f"attempts_max must be within [1, {limits.db_retry_attempts_max}], got {attempts_max}"
        )
    if not 0 <= backoff_ms_max <= limits.db_retry_backoff_ms_max:
        raise ValueError(
            f"backoff_ms_max must be within [0, {limits.db_retry_backoff_ms_max}],"
            f" got {backoff_ms_max}"
        )
    if not 0 <= backoff_ms_base <= backoff_ms_max:
        raise ValueError(
            f"backoff_ms_base must be within [0, backoff_ms_max={backoff_ms_max}],"
            f" got {backoff_ms_base}"
        )


async def run_transaction(
    engine: AsyncEngine,
    work: Callable[[AsyncConnection], Awaitable[T]],
    *,
    attempts_max: int = ATTEMPTS_MAX_DEFAULT,
    backoff_ms_base: float = BACKOFF_MS_BASE_DEFAULT,
    backoff_ms_max: float = BACKOFF_MS_MAX_DEFAULT,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
) -> T:
    """Run `work(conn)` in one transaction and commit it, retrying on serialization failures.

    Each attempt takes a connection from `engine`, begins a transaction, awaits `work(conn)` and
    commits; its result is returned once a commit succeeds. If any step, COMMIT included, raises
    an error for which `is_retryable` holds, or any step before COMMIT finds the connection dead
    (`is_dead_connection`), the transaction is rolled back, the connection goes back to the pool
    (or is discarded), and after sleeping a uniformly random time in
    [0, min(backoff_ms_max, backoff_ms_base * 2**retry)] ms (`sleep` takes seconds, like
    `asyncio.sleep`) the next attempt starts. After `attempts_max` attempts (the first included)
    it raises `TransactionRetriesExhausted` from the last error. Any other error propagates at
    once, after the rollback.

    `work` must be idempotent up to commit (see the module docstring): it may run up to
    `attempts_max` times. `rng` draws the jitter (a fresh `random.SystemRandom` by default).
    """
    _check_arguments(attempts_max, backoff_ms_base, backoff_ms_max)
    jitter = rng if rng is not None else random.SystemRandom()
    last_error: BaseException | None = None
    for attempt in range(attempts_max):
        if attempt > 0:
            cap_ms = backoff_cap_ms(
                attempt - 1, backoff_ms_base=backoff_ms_base, backoff_ms_max=backoff_ms_max
            )
            await sleep(jitter.uniform(0.0, cap_ms) / 1_000)
        committing = False
        try:
            async with engine.connect() as conn, conn.begin():
                result = await work(conn)
                committing = True
            return result
        except Exception as error:
            if not (is_retryable(error) or (not committing and is_dead_connection(error))):
                raise
            last_error = error
            _log.debug(
                "retryable database error (SQLSTATE %s) on attempt %d of %d",
                sqlstate_of(error),
                attempt + 1,
                attempts_max,
            )
    assert last_error is not None
    raise TransactionRetriesExhausted(attempts_max, last_error) from last_error
