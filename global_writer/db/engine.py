"""The writer's async SQLAlchemy engine: asyncpg by default, SERIALIZABLE, a bounded pool.

`create_engine("postgresql://…")` and `create_engine("cockroachdb://…")` pick the asyncpg driver
(`postgresql+asyncpg://`, `cockroachdb+asyncpg://` via sqlalchemy-cockroachdb); an explicit
`+asyncpg` or `+psycopg` driver is kept. Every transaction runs at SERIALIZABLE, CockroachDB's
default and the level PostgreSQL is held to locally, so serialization failures (and the retry
path in `global_writer.db.retry`) happen the same way everywhere (docs/architecture.md §7.2).
libpq-style TLS parameters in the URL (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`, as in
CockroachDB connection strings) are turned into asyncpg's `ssl` argument.
"""

from __future__ import annotations

import math
import ssl
from typing import Final

from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tessera import limits

__all__ = [
    "CONNECT_TIMEOUT_S_DEFAULT",
    "MAX_OVERFLOW_DEFAULT",
    "POOL_SIZE_DEFAULT",
    "POOL_TIMEOUT_S_DEFAULT",
    "async_url",
    "asyncpg_tls",
    "create_engine",
]

# Defaults sized for one writer process; the bounds they must stay within live in tessera.limits.
# The writer batches its database work (one key-claim statement for many requests, one
# transaction per group commit), so it needs few connections at once: a pool that covers its peak
# and no overflow, so a burst waits a moment for a connection instead of opening (and, on return,
# closing) new ones, each a server process and a TLS + auth handshake.
POOL_SIZE_DEFAULT: Final = limits.writer_db_connections_max
MAX_OVERFLOW_DEFAULT: Final = 0
POOL_TIMEOUT_S_DEFAULT: Final = 10.0
CONNECT_TIMEOUT_S_DEFAULT: Final = 10.0

_BACKENDS: Final = ("postgresql", "cockroachdb")
# libpq's TLS parameters: CockroachDB connection strings carry them (`sslmode=verify-full&
# sslrootcert=ca.crt`), psycopg understands them, asyncpg.connect() takes an `ssl` argument instead.
_LIBPQ_TLS_PARAMETERS: Final = ("sslmode", "sslrootcert", "sslcert", "sslkey")
_SSL_MODES: Final = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_ASYNC_DRIVERS: Final = ("asyncpg", "psycopg")
_IMPLICIT_ISOLATION_LEVELS: Final = ("read committed", "serializable")


def async_url(database_url: str | URL) -> URL:
    """The async form of a PostgreSQL or CockroachDB URL: a bare scheme gets the asyncpg driver.

    Raises ValueError for any other backend or a driver SQLAlchemy cannot run under asyncio.
    """
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend not in _BACKENDS:
        raise ValueError(
            f"unsupported database URL scheme {url.drivername!r}: use postgresql:// or cockroachdb://"
        )
    if "+" not in url.drivername:
        return url.set(drivername=f"{backend}+asyncpg")
    driver = url.get_driver_name()
    if driver not in _ASYNC_DRIVERS:
        raise ValueError(
            f"driver {driver!r} is not async: use {backend}+asyncpg:// or {backend}+psycopg://"
        )
    return url


def asyncpg_tls(url: URL) -> tuple[URL, ssl.SSLContext | str | None]:
    """`url` without libpq's TLS parameters, and what asyncpg's `ssl` argument must be instead.

    A bare `sslmode` passes through (asyncpg knows libpq's mode names). With certificate files,
    an SSLContext: `sslrootcert` is the CA to verify the server against (`verify-ca`, and
    `verify-full`, which also checks the host name; `require` with a CA verifies like
    `verify-ca`, as libpq does), `sslcert`/`sslkey` the client certificate (CockroachDB's
    certificate authentication). None if the URL has no TLS parameters.
    """
    given = {name: url.query[name] for name in _LIBPQ_TLS_PARAMETERS if name in url.query}
    if not given:
        return url, None
    for name, value in given.items():
        if not isinstance(value, str):
            raise ValueError(f"{name} is given more than once in the database URL")
    mode = str(given.get("sslmode", "prefer"))
    if mode not in _SSL_MODES:
        raise ValueError(f"sslmode must be one of {', '.join(_SSL_MODES)}, got {mode!r}")
    stripped = url.difference_update_query(_LIBPQ_TLS_PARAMETERS)
    root, cert, key = (given.get(name) for name in ("sslrootcert", "sslcert", "sslkey"))
    if mode == "disable" or (root is None and cert is None and mode != "verify-full"):
        if key is not None:
            raise ValueError("sslkey needs sslcert")
        return stripped, mode
    context = ssl.create_default_context(cafile=str(root) if root is not None else None)
    context.check_hostname = mode == "verify-full"
    if root is None and mode in ("allow", "prefer", "require"):
        context.verify_mode = ssl.CERT_NONE  # libpq: encrypt, but verify only given a CA
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key is not None else None)
    elif key is not None:
        raise ValueError("sslkey needs sslcert")
    return stripped, context


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be within [{low}, {high}], got {value}")


def create_engine(
    database_url: str,
    *,
    pool_size: int = POOL_SIZE_DEFAULT,
    max_overflow: int = MAX_OVERFLOW_DEFAULT,
    pool_timeout_s: float = POOL_TIMEOUT_S_DEFAULT,
    connect_timeout_s: float = CONNECT_TIMEOUT_S_DEFAULT,
    pre_ping: bool = True,
    implicit_isolation: str | None = None,
    echo: bool = False,
) -> AsyncEngine:
    """An AsyncEngine for `database_url` at SERIALIZABLE with a bounded pool.

    `pool_size` connections are kept; up to `max_overflow` more are opened under load; a checkout
    waits at most `pool_timeout_s` for a free one, and a new connection at most
    `connect_timeout_s` for its handshake. Each bound is checked against `tessera.limits`
    (ValueError). Connections are recycled after `limits.db_pool_recycle_s`.

    `pre_ping` tests a connection on checkout (with asyncpg: BEGIN, a query, ROLLBACK, three round
    trips), so one killed by a server restart or a load balancer's idle timeout is replaced
    instead of failing a request. Code that runs all its work through
    `global_writer.db.retry.run_transaction`, which reruns a transaction whose connection turned
    out dead before COMMIT on a fresh one, can turn it off (the writer does).

    `implicit_isolation` (`"read committed"` or `"serializable"`) is the level of a statement run
    outside any explicit transaction, on an `AUTOCOMMIT` connection: each connection's
    `default_transaction_isolation`. Explicit transactions are unaffected (SQLAlchemy begins them
    at `SERIALIZABLE`, or at the level a connection's execution options ask for). None leaves the
    server's default.
    """
    _check_range("pool_size", pool_size, 1, limits.db_pool_size_max)
    _check_range("max_overflow", max_overflow, 0, limits.db_pool_overflow_max)
    _check_range("pool_timeout_s", pool_timeout_s, 0, limits.db_pool_timeout_s_max)
    _check_range("connect_timeout_s", connect_timeout_s, 0, limits.db_connect_timeout_s_max)
    if pool_timeout_s == 0 or connect_timeout_s == 0:
        raise ValueError("pool_timeout_s and connect_timeout_s must be positive")
    if implicit_isolation not in (None, *_IMPLICIT_ISOLATION_LEVELS):
        raise ValueError(
            f"implicit_isolation must be one of {', '.join(_IMPLICIT_ISOLATION_LEVELS)},"
            f" got {implicit_isolation!r}"
        )
    url = async_url(database_url)
    connect_args: dict[str, object]
    if url.get_driver_name() == "asyncpg":
        url, tls = asyncpg_tls(url)
        connect_args = {"timeout": connect_timeout_s}
        if tls is not None:
            connect_args["ssl"] = tls
        if implicit_isolation is not None:
            connect_args["server_settings"] = {"default_transaction_isolation": implicit_isolation}
    else:
        # libpq's connect_timeout is whole seconds; round up so a fraction never means "no limit".
        connect_args = {"connect_timeout": max(1, math.ceil(connect_timeout_s))}
        if implicit_isolation is not None:
            level = implicit_isolation.replace(" ", "\\ ")
            connect_args["options"] = f"-c default_transaction_isolation={level}"
    return create_async_engine(
        url,
        isolation_level="SERIALIZABLE",
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout_s,
        pool_recycle=limits.db_pool_recycle_s,
        # The most recently used connection first: the others stay idle, and the few in use keep
        # their prepared statements warm (each connection prepares each statement once).
        pool_use_lifo=True,
        pool_pre_ping=pre_ping,
        connect_args=connect_args,
        echo=echo,
        # A failed statement's message would otherwise carry its bound values (fans' emails and
        # phone numbers, payment ids) into every log and error report.
        hide_parameters=True,
    )
