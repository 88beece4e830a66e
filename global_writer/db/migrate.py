"""Schema migrations, driven from code: no alembic.ini on disk.

`upgrade(url)` / `downgrade(url)` run the Alembic scripts in `global_writer/migrations` against a
live database with a synchronous psycopg connection (`postgresql://` → `postgresql+psycopg://`,
`cockroachdb://` → `cockroachdb+psycopg://`). `render_sql(dialect)` renders the same migrations as
a SQL script without a database (Alembic's offline mode, `alembic upgrade --sql`).

CockroachDB multi-region DDL (docs/architecture.md §7.2) is emitted only for the `cockroachdb`
dialect and only when regions are configured:

    ALTER DATABASE <db> SET PRIMARY REGION "<primary>"
    ALTER DATABASE <db> ADD REGION IF NOT EXISTS "<other>"          -- each other region
    ALTER TABLE <t> SET LOCALITY REGIONAL BY ROW                    -- tables.REGIONAL_BY_ROW
    ALTER TABLE <t> SET LOCALITY GLOBAL                             -- tables.GLOBAL_TABLES

Regions come from, in order: the `regions` / `primary_region` arguments of these functions; the
`-x regions=a,b -x primary_region=a` options of the alembic command line; the environment
variables TESSERA_DB_REGIONS (comma-separated) and TESSERA_DB_PRIMARY_REGION. The primary region
defaults to the first region listed. Every statement is idempotent, so an upgrade after a
downgrade, or onto a database whose regions were already set up, is fine. A downgrade drops the
tables but leaves the database's regions alone: they belong to the deployment, not the schema.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, get_args

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from tessera import limits

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.engine import Dialect

__all__ = [
    "ATTR_CONNECTION",
    "ATTR_DATABASE",
    "ATTR_DIALECT",
    "ATTR_MULTI_REGION",
    "DATABASE_NAME_DEFAULT",
    "MIGRATIONS_DIR",
    "PRIMARY_REGION_ENV",
    "REGIONS_ENV",
    "MultiRegion",
    "TargetDialect",
    "database_name_for",
    "database_region_statements",
    "downgrade",
    "make_config",
    "multi_region",
    "multi_region_for",
    "multi_region_from_env",
    "render_sql",
    "sync_url",
    "table_locality_statements",
    "upgrade",
]

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent.parent / "migrations"
REGIONS_ENV: Final = "TESSERA_DB_REGIONS"
PRIMARY_REGION_ENV: Final = "TESSERA_DB_PRIMARY_REGION"
# The database named in offline scripts' ALTER DATABASE statements unless told otherwise.
DATABASE_NAME_DEFAULT: Final = "tessera"

TargetDialect = Literal["postgresql", "cockroachdb"]

# Config.attributes keys through which the entry points talk to env.py and the revisions.
ATTR_MULTI_REGION: Final = "tessera.multi_region"  # MultiRegion | None, set explicitly
ATTR_DATABASE: Final = "tessera.database"  # database name for offline ALTER DATABASE
ATTR_DIALECT: Final = "tessera.dialect"  # offline rendering: which dialect to render for
ATTR_CONNECTION: Final = "connection"  # an open sync Connection to migrate (Alembic cookbook)

# Cloud region names: "us-east1", "europe-west1", "aws-us-east-1", "eastus". Quoted as identifiers
# either way; the pattern keeps operator typos (spaces, quotes, commas) from becoming DDL.
_REGION_PATTERN: Final = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]*\Z")


@dataclass(frozen=True)
class MultiRegion:
    """A CockroachDB database's regions; `regions[0]` is the primary region."""

    regions: tuple[str, ...]

    @property
    def primary_region(self) -> str:
        return self.regions[0]

    @property
    def other_regions(self) -> tuple[str, ...]:
        return self.regions[1:]


def _check_region(name: str) -> str:
    if len(name) > limits.db_region_name_chars_max or not _REGION_PATTERN.match(name):
        raise ValueError(
            f"invalid region name {name!r}: letters, digits, '.', '_' and '-',"
            f" at most {limits.db_region_name_chars_max} characters"
        )
    return name


def multi_region(regions: Sequence[str], primary_region: str | None = None) -> MultiRegion | None:
    """The region configuration for `regions` (order kept, duplicates dropped), or None if empty.

    `primary_region` defaults to the first region and is added if `regions` lacks it.
    """
    if isinstance(regions, str):
        raise TypeError("regions must be a sequence of names, not one string")
    ordered: list[str] = []
    for name in ([primary_region] if primary_region else []) + list(regions):
        if _check_region(name) not in ordered:
            ordered.append(name)
    return MultiRegion(tuple(ordered)) if ordered else None


def _split_regions(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def multi_region_from_env(environ: Mapping[str, str] | None = None) -> MultiRegion | None:
    """The region configuration from TESSERA_DB_REGIONS / TESSERA_DB_PRIMARY_REGION, if any."""
    env = os.environ if environ is None else environ
    primary = env.get(PRIMARY_REGION_ENV, "").strip() or None
    return multi_region(_split_regions(env.get(REGIONS_ENV, "")), primary)


def _x_arguments(config: Config | None) -> dict[str, str]:
    """The `-x key=value` options of the alembic command line, if it ran from one."""
    options = getattr(getattr(config, "cmd_opts", None), "x", None) or []
    pairs = (option.split("=", 1) for option in options if "=" in option)
    return {key.strip(): value.strip() for key, value in pairs}


def multi_region_for(context: MigrationContext) -> MultiRegion | None:
    """The regions a revision running in `context` must configure: None unless CockroachDB."""
    if context.dialect.name != "cockroachdb":
        return None
    config = context.config
    if config is not None and ATTR_MULTI_REGION in config.attributes:
        configured: MultiRegion | None = config.attributes[ATTR_MULTI_REGION]
        return configured
    x_args = _x_arguments(config)
    if "regions" in x_args or "primary_region" in x_args:
        return multi_region(
            _split_regions(x_args.get("regions", "")), x_args.get("primary_region") or None
        )
    return multi_region_from_env()


def database_name_for(context: MigrationContext) -> str:
    """The database that ALTER DATABASE must name: the connected one, or the configured one."""
    if not context.as_sql:
        name = context.bind.scalar(text("SELECT current_database()")) if context.bind else None
        if not isinstance(name, str):
            raise RuntimeError("could not read current_database()")
        return name
    config = context.config
    if config is not None and config.attributes.get(ATTR_DATABASE):
        return str(config.attributes[ATTR_DATABASE])
    x_database = _x_arguments(config).get("database")
    if x_database:
        return x_database
    url = config.get_main_option("sqlalchemy.url") if config is not None else None
    return (make_url(url).database if url else None) or DATABASE_NAME_DEFAULT


def database_region_statements(database: str, regions: MultiRegion, dialect: Dialect) -> list[str]:
    """SET PRIMARY REGION, then ADD REGION IF NOT EXISTS for every other region."""
    quote = dialect.identifier_preparer
    db = quote.quote(database)
    statements = [
        f"ALTER DATABASE {db} SET PRIMARY REGION {quote.quote_identifier(regions.primary_region)}"
    ]
    statements += [
        f"ALTER DATABASE {db} ADD REGION IF NOT EXISTS {quote.quote_identifier(region)}"
        for region in regions.other_regions
    ]
    return statements


def table_locality_statements(
    dialect: Dialect, *, regional_by_row: Sequence[str], global_tables: Sequence[str]
) -> list[str]:
    """SET LOCALITY REGIONAL BY ROW / GLOBAL for the given tables.

    A revision passes the tables it creates, frozen in the revision (for the schema as a whole:
    tables.REGIONAL_BY_ROW and tables.GLOBAL_TABLES), so that it still runs once later revisions
    have added tables.
    """
    quote = dialect.identifier_preparer
    return [
        f"ALTER TABLE {quote.quote(name)} SET LOCALITY REGIONAL BY ROW" for name in regional_by_row
    ] + [f"ALTER TABLE {quote.quote(name)} SET LOCALITY GLOBAL" for name in global_tables]


def sync_url(database_url: str | URL) -> URL:
    """The psycopg (sync) form of a PostgreSQL or CockroachDB URL, whatever driver it named."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend not in get_args(TargetDialect):
        raise ValueError(
            f"unsupported database URL scheme {url.drivername!r}: use postgresql:// or cockroachdb://"
        )
    return url.set(drivername=f"{backend}+psycopg")


def make_config(
    database_url: str | URL | None = None, *, stdout: io.StringIO | None = None
) -> Config:
    """An Alembic Config for the writer's migrations, built in memory."""
    config = Config(output_buffer=stdout) if stdout is not None else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # New revisions are named like the first: versions/0002_<slug>.py with `rev_id="0002"`.
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if database_url is not None:
        # ConfigParser interpolates '%': escape it so passwords with '%' survive.
        rendered = sync_url(database_url).render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def upgrade(
    database_url: str,
    revision: str = "head",
    *,
    regions: Sequence[str] | None = None,
    primary_region: str | None = None,
) -> None:
    """Migrate the database at `database_url` up to `revision` (sync; psycopg).

    Regions (CockroachDB only) come from `regions` / `primary_region` when either is given,
    else from the environment (module docstring); PostgreSQL ignores them.
    """
    config = make_config(database_url)
    if regions is not None or primary_region is not None:
        config.attributes[ATTR_MULTI_REGION] = multi_region(regions or (), primary_region)
    with migration_lock(database_url):
        command.upgrade(config, revision)


# Any constant works; it names "Tessera's schema migrations" among the database's advisory locks.
MIGRATION_LOCK_KEY = 0x7E55E7A


@contextlib.contextmanager
def migration_lock(database_url: str) -> Iterator[None]:
    """Writers that start together migrate one at a time (PostgreSQL's session advisory lock,
    held on a side connection). CockroachDB accepts but ignores advisory locks; its schema
    changes are transactional per statement, and the migration uses IF NOT EXISTS where it can."""
    url = sync_url(database_url)
    if url.get_backend_name() != "postgresql":
        yield
        return
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


def downgrade(database_url: str, revision: str = "base") -> None:
    """Migrate the database at `database_url` down to `revision` (default: drop everything)."""
    command.downgrade(make_config(database_url), revision)


def render_sql(
    dialect: TargetDialect,
    *,
    regions: Sequence[str] = (),
    primary_region: str | None = None,
    database: str = DATABASE_NAME_DEFAULT,
    revision: str = "head",
) -> str:
    """The upgrade from an empty database to `revision` as a SQL script for `dialect`.

    Only the arguments decide the regions here (the environment is not read), so a script
    renders the same everywhere. `regions` are ignored for `postgresql`. `database` is the name
    used in ALTER DATABASE.
    """
    if dialect not in get_args(TargetDialect):
        raise ValueError(f"dialect must be one of {get_args(TargetDialect)}, got {dialect!r}")
    buffer = io.StringIO()
    config = make_config(stdout=buffer)
    config.attributes[ATTR_DIALECT] = dialect
    config.attributes[ATTR_DATABASE] = database
    config.attributes[ATTR_MULTI_REGION] = multi_region(regions, primary_region)
    command.upgrade(config, revision, sql=True)
    return buffer.getvalue()
