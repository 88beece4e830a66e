"""`run_transaction` against a real PostgreSQL at SERIALIZABLE: real serialization failures (write
skew, a failing COMMIT), a real deadlock, exhaustion, non-retryable errors and the backoff.

Also the engine factory the writer uses (`global_writer.db.engine`): URL mapping, isolation level
and bounds. pytest-asyncio is not used: each test drives its coroutine with `asyncio.run`.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from global_writer.db.engine import async_url, asyncpg_tls, create_engine
from global_writer.db.retry import (
    TransactionRetriesExhausted,
    backoff_cap_ms,
    is_retryable,
    run_transaction,
    sqlstate_of,
)
from tessera import limits

# Raises a genuine serialization_failure from the server, on whichever statement runs it.
RAISE_40001 = "DO $$ BEGIN RAISE EXCEPTION 'forced conflict' USING ERRCODE = '40001'; END $$"
# Long enough for the two transactions of a test to meet; a hang fails instead of blocking CI.
MEET_TIMEOUT_S = 30.0


class Sleeps:
    """An injected `sleep` that records the delays (seconds) and does not wait."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class MaxRandom(random.Random):
    """Jitter that always draws the top of the range, so delays equal their caps."""

    def uniform(self, a: float, b: float) -> float:
        return b


def run(database_url: str, scenario: Callable[[AsyncEngine], Awaitable[Any]], **kw: Any) -> Any:
    """Run `scenario(engine)` in a fresh event loop with an engine it disposes of afterwards."""

    async def main() -> Any:
        engine = create_engine(database_url, **kw)
        try:
            return await scenario(engine)
        finally:
            await engine.dispose()

    return asyncio.run(main())


async def execute(engine: AsyncEngine, *statements: str) -> None:
    async with engine.begin() as conn:
        for statement in statements:
            await conn.execute(sa.text(statement))


# --- real conflicts ---


def test_write_skew_one_transaction_retries_and_both_succeed(database_url: str) -> None:
    """The doctors on call: each may go off call if another is still on. Both read "2 on call",
    both write; SERIALIZABLE aborts one (40001), whose rerun reads "1 on call" and stays."""
    calls = {"alice": 0, "bob": 0}
    sleeps = Sleeps()

    async def scenario(engine: AsyncEngine) -> tuple[list[bool], int]:
        await execute(
            engine,
            "CREATE TABLE doctors (name TEXT PRIMARY KEY, on_call BOOLEAN NOT NULL)",
            "INSERT INTO doctors VALUES ('alice', true), ('bob', true)",
        )
        both_read = asyncio.Barrier(2)

        def go_off_call(name: str) -> Callable[[AsyncConnection], Awaitable[bool]]:
            async def work(conn: AsyncConnection) -> bool:
                calls[name] += 1
                on_call = await conn.scalar(sa.text("SELECT count(*) FROM doctors WHERE on_call"))
                if calls[name] == 1:
                    await asyncio.wait_for(both_read.wait(), MEET_TIMEOUT_S)
                if on_call is not None and on_call >= 2:
                    await conn.execute(
                        sa.text("UPDATE doctors SET on_call = false WHERE name = :name"),
                        {"name": name},
                    )
                    return True
                return False

            return work

        went_off = await asyncio.gather(
            run_transaction(engine, go_off_call("alice"), sleep=sleeps),
            run_transaction(engine, go_off_call("bob"), sleep=sleeps),
        )
        async with engine.connect() as conn:
            still_on = await conn.scalar(sa.text("SELECT count(*) FROM doctors WHERE on_call"))
        assert still_on is not None
        return list(went_off), still_on

    went_off, still_on = run(database_url, scenario)
    assert sorted(went_off) == [False, True]
    assert still_on == 1  # the invariant write skew would break
    # At least one rerun. Usually exactly one; but PostgreSQL may abort the loser at its UPDATE,
    # before the winner commits, and a rerun that starts that early conflicts once more.
    assert sum(calls.values()) >= 3
    assert len(sleeps.delays) == sum(calls.values()) - 2


def test_serialization_failure_at_commit_is_retried(database_url: str) -> None:
    """A deferred constraint trigger fails the first two COMMITs with 40001 (a sequence counts
    them: sequences ignore rollbacks); the third attempt commits, and only its row remains."""
    calls = 0
    sleeps = Sleeps()

    async def scenario(engine: AsyncEngine) -> tuple[str, int]:
        await execute(
            engine,
            "CREATE TABLE items (id BIGINT PRIMARY KEY)",
            "CREATE SEQUENCE commit_attempts",
            """
            CREATE FUNCTION fail_first_commits() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('commit_attempts') <= 2 THEN
                    RAISE EXCEPTION 'conflict found at commit' USING ERRCODE = '40001';
                END IF;
                RETURN NULL;
            END $$
            """,
            """
            CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON items
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_first_commits()
            """,
        )

        async def work(conn: AsyncConnection) -> str:
            nonlocal calls
            calls += 1
            await conn.execute(sa.text("INSERT INTO items VALUES (1)"))
            return "committed"

        result = await run_transaction(engine, work, sleep=sleeps)
        async with engine.connect() as conn:
            rows = await conn.scalar(sa.text("SELECT count(*) FROM items"))
        assert rows is not None
        return result, rows

    assert run(database_url, scenario) == ("committed", 1)
    assert calls == 3
    assert len(sleeps.delays) == 2


def test_deadlock_victim_is_retried(database_url: str) -> None:
    """Two transactions lock two rows in opposite orders: 40P01 for one, which then reruns."""
    calls = {"ab": 0, "ba": 0}
    seen: list[str | None] = []

    async def scenario(engine: AsyncEngine) -> list[int]:
        await execute(
            engine,
            "CREATE TABLE counters (name TEXT PRIMARY KEY, value INT NOT NULL)",
            "INSERT INTO counters VALUES ('a', 0), ('b', 0)",
        )
        both_locked = asyncio.Barrier(2)

        def bump(first: str, second: str) -> Callable[[AsyncConnection], Awaitable[None]]:
            async def work(conn: AsyncConnection) -> None:
                calls[first + second] += 1
                update = sa.text("UPDATE counters SET value = value + 1 WHERE name = :name")
                try:
                    # Detect the cycle quickly (superuser-only setting; the test server's admin).
                    await conn.execute(sa.text("SET LOCAL deadlock_timeout = '50ms'"))
                    await conn.execute(update, {"name": first})
                    if calls[first + second] == 1:
                        await asyncio.wait_for(both_locked.wait(), MEET_TIMEOUT_S)
                    await conn.execute(update, {"name": second})
                except DBAPIError as error:
                    seen.append(sqlstate_of(error))
                    raise

            return work

        sleeps = Sleeps()
        await asyncio.gather(
            run_transaction(engine, bump("a", "b"), sleep=sleeps),
            run_transaction(engine, bump("b", "a"), sleep=sleeps),
        )
        async with engine.connect() as conn:
            rows = await conn.execute(sa.text("SELECT value FROM counters ORDER BY name"))
            return [row.value for row in rows]

    assert run(database_url, scenario) == [2, 2]  # both transactions' effects, once each
    # The victim reruns; a rerun that starts before the survivor commits waits for its row locks
    # and may then fail once more, as a serialization failure.
    assert seen[0] == "40P01"
    assert set(seen) <= {"40P01", "40001"}
    assert sum(calls.values()) == 2 + len(seen)


# --- exhaustion, non-retryable errors ---


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_exhaustion_after_exactly_attempts_max(database_url: str, driver: str) -> None:
    calls = 0
    sleeps = Sleeps()
    url = database_url.replace("postgresql://", f"postgresql+{driver}://", 1)

    async def scenario(engine: AsyncEngine) -> None:
        async def work(conn: AsyncConnection) -> None:
            nonlocal calls
            calls += 1
            await conn.execute(sa.text(RAISE_40001))

        await run_transaction(engine, work, attempts_max=5, sleep=sleeps)

    with pytest.raises(TransactionRetriesExhausted) as raised:
        run(url, scenario)
    assert calls == 5
    assert len(sleeps.delays) == 4
    assert raised.value.attempts == 5
    assert isinstance(raised.value.__cause__, DBAPIError)
    assert raised.value.last_error is raised.value.__cause__
    assert sqlstate_of(raised.value.__cause__) == "40001"


def test_non_retryable_error_propagates_after_one_attempt(database_url: str) -> None:
    calls = 0
    sleeps = Sleeps()

    async def scenario(engine: AsyncEngine) -> int:
        await execute(
            engine, "CREATE TABLE seats (seat INT PRIMARY KEY)", "INSERT INTO seats VALUES (7)"
        )

        async def work(conn: AsyncConnection) -> None:
            nonlocal calls
            calls += 1
            await conn.execute(sa.text("INSERT INTO seats VALUES (8)"))
            await conn.execute(sa.text("INSERT INTO seats VALUES (7)"))  # unique violation

        with pytest.raises(IntegrityError) as raised:
            await run_transaction(engine, work, sleep=sleeps)
        assert sqlstate_of(raised.value) == "23505"
        async with engine.connect() as conn:
            count = await conn.scalar(sa.text("SELECT count(*) FROM seats"))
        return int(count)

    assert run(database_url, scenario) == 1  # the attempt's first insert was rolled back too
    assert calls == 1
    assert sleeps.delays == []


def test_errors_outside_the_database_propagate_at_once(database_url: str) -> None:
    calls = 0

    async def scenario(engine: AsyncEngine) -> None:
        async def work(conn: AsyncConnection) -> None:
            nonlocal calls
            calls += 1
            raise LookupError("not a database error")

        await run_transaction(engine, work)

    with pytest.raises(LookupError):
        run(database_url, scenario)
    assert calls == 1


# --- backoff ---


def test_backoff_delays_stay_within_their_caps(database_url: str) -> None:
    sleeps = Sleeps()
    attempts, base, cap = 8, 10.0, 100.0

    async def scenario(engine: AsyncEngine) -> None:
        async def work(conn: AsyncConnection) -> None:
            await conn.execute(sa.text(RAISE_40001))

        await run_transaction(
            engine,
            work,
            attempts_max=attempts,
            backoff_ms_base=base,
            backoff_ms_max=cap,
            sleep=sleeps,
            rng=random.Random(20_240_601),
        )

    with pytest.raises(TransactionRetriesExhausted):
        run(database_url, scenario)
    caps = [
        backoff_cap_ms(n, backoff_ms_base=base, backoff_ms_max=cap) for n in range(attempts - 1)
    ]
    assert caps == [10, 20, 40, 80, 100, 100, 100]
    assert caps == sorted(caps)  # caps never decrease
    assert len(sleeps.delays) == attempts - 1
    for retry, delay_s in enumerate(sleeps.delays):
        assert 0 <= delay_s * 1_000 <= min(cap, base * 2**retry)
    assert len(set(sleeps.delays)) > 1  # jittered, not constant


def test_backoff_with_the_largest_jitter_equals_the_caps(database_url: str) -> None:
    sleeps = Sleeps()

    async def scenario(engine: AsyncEngine) -> None:
        async def work(conn: AsyncConnection) -> None:
            await conn.execute(sa.text(RAISE_40001))

        await run_transaction(
            engine,
            work,
            attempts_max=6,
            backoff_ms_base=3.0,
            backoff_ms_max=20.0,
            sleep=sleeps,
            rng=MaxRandom(),
        )

    with pytest.raises(TransactionRetriesExhausted):
        run(database_url, scenario)
    assert [round(d * 1_000, 9) for d in sleeps.delays] == [3, 6, 12, 20, 20]


def test_default_sleep_and_jitter_really_wait_and_then_succeed(database_url: str) -> None:
    calls = 0

    async def scenario(engine: AsyncEngine) -> str:
        async def work(conn: AsyncConnection) -> str:
            nonlocal calls
            calls += 1
            if calls == 1:
                await conn.execute(sa.text(RAISE_40001))
            return "ok"

        return await run_transaction(engine, work, backoff_ms_base=1.0, backoff_ms_max=2.0)

    assert run(database_url, scenario) == "ok"
    assert calls == 2


def test_backoff_cap_is_bounded_for_any_retry() -> None:
    assert backoff_cap_ms(10_000, backoff_ms_base=5.0, backoff_ms_max=1_000.0) == 1_000.0
    assert backoff_cap_ms(0, backoff_ms_base=0.0, backoff_ms_max=0.0) == 0.0
    with pytest.raises(ValueError, match="retry"):
        backoff_cap_ms(-1, backoff_ms_base=5.0, backoff_ms_max=10.0)


@pytest.mark.parametrize(
    "arguments",
    [
        {"attempts_max": 0},
        {"attempts_max": limits.db_retry_attempts_max + 1},
        {"backoff_ms_max": limits.db_retry_backoff_ms_max + 1},
        {"backoff_ms_base": -1.0},
        {"backoff_ms_base": 50.0, "backoff_ms_max": 10.0},
    ],
)
def test_run_transaction_rejects_bad_arguments(
    database_url: str, arguments: dict[str, Any]
) -> None:
    calls = 0

    async def scenario(engine: AsyncEngine) -> None:
        async def work(conn: AsyncConnection) -> None:
            nonlocal calls
            calls += 1

        await run_transaction(engine, work, **arguments)

    with pytest.raises(ValueError, match="must be within"):
        run(database_url, scenario)
    assert calls == 0


# --- what counts as retryable ---


class DriverError(Exception):
    """Stands in for a driver exception: a message and SQLSTATE attributes."""

    def __init__(self, message: str, **attributes: str) -> None:
        super().__init__(message)
        for name, value in attributes.items():
            setattr(self, name, value)


def wrapped(orig: Exception) -> OperationalError:
    return OperationalError("COMMIT", {}, orig)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (DriverError("could not serialize access", sqlstate="40001"), True),
        (DriverError("deadlock detected", sqlstate="40P01"), True),
        (DriverError("could not serialize access", pgcode="40001"), True),  # psycopg2
        (wrapped(DriverError("x", sqlstate="40001")), True),
        (wrapped(DriverError("restart transaction: TransactionRetryWithProtoRefreshError")), True),
        (DriverError("restart transaction: RETRY_SERIALIZABLE"), True),
        (wrapped(DriverError("result is ambiguous", sqlstate="40003")), False),
        (wrapped(DriverError("duplicate key", sqlstate="23505")), False),
        (wrapped(DriverError("connection reset")), False),
        (ValueError("restart"), False),
    ],
)
def test_is_retryable(error: Exception, expected: bool) -> None:
    assert is_retryable(error) is expected


def test_is_retryable_follows_explicit_causes_only() -> None:
    serialization = DriverError("x", sqlstate="40001")
    caused = RuntimeError("wrapper")
    caused.__cause__ = serialization
    assert is_retryable(caused)
    # Raised while handling a 40001 but not caused by it: `work`'s own error, not retried.
    replaced = RuntimeError("work gave up")
    replaced.__context__ = serialization
    assert not is_retryable(replaced)


def test_is_retryable_with_real_driver_errors(database_url: str) -> None:
    with psycopg.connect(database_url) as conn, pytest.raises(psycopg.Error) as raised:
        conn.execute(RAISE_40001)
    assert isinstance(raised.value, psycopg.errors.SerializationFailure)
    assert is_retryable(raised.value)

    async def scenario(engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as wrapped_error:
                await conn.execute(sa.text(RAISE_40001))
            assert is_retryable(wrapped_error.value)
            assert sqlstate_of(wrapped_error.value) == "40001"
            await conn.rollback()
            with pytest.raises(DBAPIError) as other:
                await conn.execute(sa.text("SELECT 1 / 0"))
            assert not is_retryable(other.value)
            assert sqlstate_of(other.value) == "22012"

    run(database_url, scenario)


# --- the engine ---


def test_engine_runs_serializable_on_asyncpg(database_url: str) -> None:
    async def scenario(engine: AsyncEngine) -> tuple[str, str | None]:
        async with engine.connect() as conn:
            level = await conn.scalar(sa.text("SHOW transaction_isolation"))
        return engine.url.drivername, level

    assert run(database_url, scenario) == ("postgresql+asyncpg", "serializable")


def test_engine_pool_is_bounded_and_pre_pinged(database_url: str) -> None:
    async def scenario(engine: AsyncEngine) -> tuple[int, int, float, bool]:
        pool: Any = engine.pool
        return pool.size(), pool._max_overflow, pool._timeout, pool._pre_ping

    assert run(database_url, scenario, pool_size=3, max_overflow=2, pool_timeout_s=1.5) == (
        3,
        2,
        1.5,
        True,
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg"),
        ("cockroachdb://u@h:26257/db?sslmode=disable", "cockroachdb+asyncpg"),
        ("postgresql+psycopg://h/db", "postgresql+psycopg"),
        ("cockroachdb+asyncpg://h/db", "cockroachdb+asyncpg"),
    ],
)
def test_async_url(url: str, expected: str) -> None:
    mapped = async_url(url)
    assert mapped.drivername == expected
    assert mapped.password == sa.make_url(url).password
    assert mapped.database == "db"


@pytest.mark.parametrize("url", ["mysql://h/db", "sqlite://", "postgresql+psycopg2://h/db"])
def test_async_url_rejects_other_backends_and_sync_drivers(url: str) -> None:
    with pytest.raises(ValueError, match=r"unsupported|not async"):
        async_url(url)


@pytest.mark.parametrize(
    "arguments",
    [
        {"pool_size": 0},
        {"pool_size": limits.db_pool_size_max + 1},
        {"max_overflow": -1},
        {"max_overflow": limits.db_pool_overflow_max + 1},
        {"pool_timeout_s": 0},
        {"pool_timeout_s": limits.db_pool_timeout_s_max + 1},
        {"connect_timeout_s": limits.db_connect_timeout_s_max + 1},
    ],
)
def test_engine_bounds(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"pool_size|max_overflow|timeout"):
        create_engine("postgresql://h/db", **arguments)


def test_libpq_tls_parameters_become_asyncpg_ssl(database_url: str) -> None:
    """CockroachDB URLs carry libpq's `sslmode=…`; asyncpg.connect() would reject it as is."""
    url, tls = asyncpg_tls(sa.make_url("cockroachdb+asyncpg://h/db?sslmode=require&x=1"))
    assert (tls, dict(url.query)) == ("require", {"x": "1"})
    url, tls = asyncpg_tls(sa.make_url("postgresql+asyncpg://h/db"))
    assert tls is None
    _, full = asyncpg_tls(sa.make_url("cockroachdb+asyncpg://h/db?sslmode=verify-full"))
    assert isinstance(full, ssl.SSLContext)
    assert full.check_hostname
    assert full.verify_mode == ssl.CERT_REQUIRED
    for bad in ("sslmode=sometimes", "sslkey=client.key", "sslmode=require&sslmode=disable"):
        with pytest.raises(ValueError, match="ssl"):
            asyncpg_tls(sa.make_url(f"cockroachdb+asyncpg://h/db?{bad}"))

    async def scenario(engine: AsyncEngine) -> Any:
        async with engine.connect() as conn:
            return await conn.scalar(sa.text("SELECT 1"))

    plain = sa.make_url(database_url).update_query_dict({"sslmode": "disable"})
    assert run(plain.render_as_string(hide_password=False), scenario) == 1


def test_failed_statements_never_show_their_bound_values(database_url: str) -> None:
    """A fan's email bound to a failing statement must not reach the logs through the error text
    (SQLAlchemy appends every bound value to it unless told not to). A value the server or the
    driver cannot parse is still quoted by their own message: input is validated before it gets
    that far (docs/operations.md)."""
    email = "fan-private@example.com"

    async def scenario(engine: AsyncEngine) -> str:
        async with engine.connect() as conn:
            try:
                await conn.execute(sa.text("SELECT CAST(:email AS text), 1 / 0"), {"email": email})
            except DBAPIError as error:
                return str(error)
        raise AssertionError("division by zero must fail")

    message = run(database_url, scenario)
    assert "division by zero" in message
    assert "parameters hidden" in message
    assert email not in message
