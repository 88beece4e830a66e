"""Alembic environment for the writer's database. Entry points: `global_writer.db.migrate`.

Online, it migrates `config.attributes["connection"]` if given, else the `sqlalchemy.url` main
option through a throwaway psycopg engine. Offline (`--sql`), it renders for the dialect named in
`config.attributes["tessera.dialect"]`, else for the URL's.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from global_writer.db import migrate, tables

config = context.config


def _configure(
    *, connection: Connection | None = None, url: str | None = None, offline: bool = False
) -> None:
    context.configure(
        connection=connection,
        url=url,
        target_metadata=tables.metadata,
        # One transaction per revision, so a revision's autocommit block (CockroachDB region DDL)
        # commits only that revision's work before it.
        transaction_per_migration=True,
        compare_type=True,
        compare_server_default=True,
        literal_binds=offline,
        dialect_opts={"paramstyle": "named"} if offline else None,
    )


def run_migrations_offline() -> None:
    dialect = config.attributes.get(migrate.ATTR_DIALECT)
    if dialect is not None:
        url = f"{dialect}+psycopg://"
    else:
        main_url = config.get_main_option("sqlalchemy.url")
        if not main_url:
            raise RuntimeError("offline migrations need a dialect or a sqlalchemy.url")
        url = migrate.sync_url(main_url).render_as_string(hide_password=True)
    _configure(url=url, offline=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get(migrate.ATTR_CONNECTION)
    if connection is not None:
        _run_on(connection)
        return
    main_url = config.get_main_option("sqlalchemy.url")
    if not main_url:
        raise RuntimeError("online migrations need a sqlalchemy.url or a connection")
    engine = create_engine(migrate.sync_url(main_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as new_connection:
            _run_on(new_connection)
            new_connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
