"""The Alembic migrations against a real PostgreSQL, and their offline rendering for both dialects.

Online: `upgrade` builds exactly the schema of `global_writer/db/tables.py` (Alembic's own
comparison, plus the CHECK constraints and partial-index predicates it does not compare), is a
no-op the second time, and `downgrade` to base leaves only the version table.

Offline: the `cockroachdb` script carries the multi-region DDL for exactly the configured tables,
in an order CockroachDB accepts; the `postgresql` script carries none. Every statement of both is
checked as SQL: each one PostgreSQL also speaks is executed on a real server, the
CockroachDB-only ones must match the grammar CockroachDB documents for them.
"""

from __future__ import annotations

import argparse
import io
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from global_writer.db import migrate, tables
from tessera_ops.cli import main

REGIONS = ["us-east1", "europe-west1", "asia-southeast1"]

# Documented as unsupported by CockroachDB ("PostgreSQL compatibility: unsupported features" and
# "SQL feature support", v25.4 docs): none of it may appear in a script meant for CockroachDB.
COCKROACH_UNSUPPORTED = {
    "CREATE DOMAIN": re.compile(r"\bCREATE\s+DOMAIN\b", re.IGNORECASE),
    "range types": re.compile(r"\b(int4|int8|num|ts|tstz|date)(multi)?range\b", re.IGNORECASE),
    "database templates": re.compile(r"\bTEMPLATE\b", re.IGNORECASE),
    "hash indexes": re.compile(r"\bUSING\s+hash\b", re.IGNORECASE),
    "XML": re.compile(r"\bXML\w*", re.IGNORECASE),
    "foreign data wrappers": re.compile(r"\b(FOREIGN\s+DATA\s+WRAPPER|CREATE\s+SERVER)\b", re.I),
    "advisory locks": re.compile(r"\bpg_(try_)?advisory", re.IGNORECASE),
    "dropping a primary key": re.compile(r"\bDROP\s+CONSTRAINT\s+pk_", re.IGNORECASE),
}

IDENT = r'(?:[a-z_][a-z0-9_]*|"(?:[^"]|"")+")'
# The synopses of CockroachDB's ALTER DATABASE ... SET PRIMARY REGION / ADD REGION and
# ALTER TABLE ... SET LOCALITY, as far as the migrations use them.
COCKROACH_ONLY_GRAMMAR = [
    re.compile(rf"ALTER DATABASE {IDENT} SET PRIMARY REGION (?:=\s*)?{IDENT}"),
    re.compile(rf"ALTER DATABASE {IDENT} ADD REGION (?:IF NOT EXISTS )?{IDENT}"),
    re.compile(rf"ALTER TABLE {IDENT} SET LOCALITY (?:REGIONAL BY ROW|GLOBAL)"),
]


# --- helpers ---


def split_statements(script: str) -> list[str]:
    """The statements of a SQL script, without comments or terminating semicolons.

    Understands '…' strings (with '' escapes), "…" identifiers, $tag$…$tag$ bodies, -- line and
    /* */ block comments, so a ';' inside any of them does not end a statement.
    """
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(script)
    dollar = re.compile(r"\$[A-Za-z_]*\$")
    while i < n:
        char = script[i]
        if script.startswith("--", i):
            end = script.find("\n", i)
            i = n if end < 0 else end
            continue
        if script.startswith("/*", i):
            end = script.find("*/", i + 2)
            assert end >= 0, "unterminated block comment"
            i = end + 2
            current.append(" ")
            continue
        if char in "'\"":
            j = i + 1
            while True:
                j = script.find(char, j)
                assert j >= 0, f"unterminated {char} quote"
                if script.startswith(char * 2, j):
                    j += 2
                    continue
                break
            current.append(script[i : j + 1])
            i = j + 1
            continue
        match = dollar.match(script, i) if char == "$" else None
        if match:
            end = script.find(match.group(), match.end())
            assert end >= 0, "unterminated dollar quote"
            current.append(script[i : end + len(match.group())])
            i = end + len(match.group())
            continue
        if char == ";":
            statements.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        i += 1
    assert "".join(current).strip() == "", "the script ends inside a statement"
    return [" ".join(statement.split()) for statement in statements if statement]


def is_cockroach_only(statement: str) -> bool:
    return any(pattern.fullmatch(statement) for pattern in COCKROACH_ONLY_GRAMMAR)


def locality_tables(statements: list[str], locality: str) -> list[str]:
    pattern = re.compile(rf"ALTER TABLE ({IDENT}) SET LOCALITY {locality}")
    return [m.group(1) for s in statements if (m := pattern.fullmatch(s))]


def schema_difference(connection: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, tables.metadata))


def check_constraints(connection: sa.Connection) -> dict[str, set[str]]:
    inspector = sa.inspect(connection)
    return {
        name: {str(ck["name"]) for ck in inspector.get_check_constraints(name)}
        for name in tables.metadata.tables
    }


def partial_index_predicates(connection: sa.Connection) -> dict[str, str]:
    rows = connection.execute(
        sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")
    )
    return {
        name: definition.split(" WHERE ", 1)[1]
        for name, definition in rows
        if " WHERE " in definition
    }


def fingerprint(connection: sa.Connection) -> list[tuple[Any, ...]]:
    """Everything the catalog says about the public schema's tables, columns and constraints."""
    query = sa.text(
        """
        SELECT 'column', table_name, column_name, data_type, is_nullable,
               coalesce(column_default, ''), is_identity
          FROM information_schema.columns WHERE table_schema = 'public'
        UNION ALL
        SELECT 'constraint', conrelid::regclass::text, conname, pg_get_constraintdef(oid), '', '', ''
          FROM pg_constraint WHERE connamespace = 'public'::regnamespace
        UNION ALL
        SELECT 'index', tablename, indexname, indexdef, '', '', ''
          FROM pg_indexes WHERE schemaname = 'public'
        ORDER BY 1, 2, 3
        """
    )
    return [tuple(row) for row in connection.execute(query)]


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(migrate.sync_url(database_url), poolclass=sa.NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def expected_check_constraints() -> dict[str, set[str]]:
    return {
        table.name: {str(c.name) for c in table.constraints if isinstance(c, sa.CheckConstraint)}
        for table in tables.metadata.tables.values()
    }


def expected_partial_indexes() -> dict[str, str]:
    return {
        str(index.name): str(index.dialect_options["postgresql"]["where"])
        for table in tables.metadata.tables.values()
        for index in table.indexes
        if index.dialect_options["postgresql"]["where"] is not None
    }


def head_revision() -> str:
    head = ScriptDirectory.from_config(migrate.make_config()).get_current_head()
    assert head is not None
    return head


def version(connection: sa.Connection) -> str | None:
    value = connection.scalar(sa.text("SELECT version_num FROM alembic_version"))
    return None if value is None else str(value)


# --- online, on a real PostgreSQL ---


def test_upgrade_builds_exactly_the_tables_py_schema(database_url: str, engine: sa.Engine) -> None:
    migrate.upgrade(database_url)
    with engine.connect() as connection:
        assert schema_difference(connection) == []
        names = set(sa.inspect(connection).get_table_names())
        assert names == {*tables.metadata.tables, "alembic_version"}
        # Alembic compares neither CHECK constraints nor index predicates: check them here.
        assert check_constraints(connection) == expected_check_constraints()
        predicates = partial_index_predicates(connection)
        expected = expected_partial_indexes()
        assert set(predicates) == set(expected)
        assert expected  # the schema has partial indexes; this test must look at them
        for name, predicate in expected.items():
            # PostgreSQL prints the predicate back with parentheses and casts: drop both.
            assert re.sub(r"[()]|::\w+", "", predicates[name]) == predicate, name
        assert version(connection) == head_revision()


def test_upgrade_twice_is_a_no_op(database_url: str, engine: sa.Engine) -> None:
    migrate.upgrade(database_url)
    with engine.connect() as connection:
        before = fingerprint(connection)
    migrate.upgrade(database_url)
    with engine.connect() as connection:
        assert fingerprint(connection) == before
        assert version(connection) == head_revision()
        assert schema_difference(connection) == []


def test_downgrade_to_base_drops_everything_and_upgrade_again_works(
    database_url: str, engine: sa.Engine
) -> None:
    migrate.upgrade(database_url)
    migrate.downgrade(database_url)
    with engine.connect() as connection:
        assert sa.inspect(connection).get_table_names() == ["alembic_version"]
        assert version(connection) is None
        # The outbox's identity sequence went with its table.
        assert connection.scalar(sa.text("SELECT count(*) FROM pg_class WHERE relkind = 'S'")) == 0
    migrate.upgrade(database_url)
    with engine.connect() as connection:
        assert schema_difference(connection) == []


def test_upgrade_on_postgresql_ignores_configured_regions(
    database_url: str, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(migrate.REGIONS_ENV, ",".join(REGIONS))
    migrate.upgrade(database_url)
    migrate.upgrade(database_url, regions=REGIONS)
    with engine.connect() as connection:
        assert schema_difference(connection) == []


# --- offline rendering ---


def test_cockroachdb_script_has_the_region_ddl_for_exactly_the_configured_tables() -> None:
    statements = split_statements(migrate.render_sql("cockroachdb", regions=REGIONS))
    assert statements[0].startswith("CREATE TABLE alembic_version")
    region_ddl = [s for s in statements if s.startswith("ALTER DATABASE")]
    assert region_ddl == [
        'ALTER DATABASE tessera SET PRIMARY REGION "us-east1"',
        'ALTER DATABASE tessera ADD REGION IF NOT EXISTS "europe-west1"',
        'ALTER DATABASE tessera ADD REGION IF NOT EXISTS "asia-southeast1"',
    ]
    assert locality_tables(statements, "REGIONAL BY ROW") == list(tables.REGIONAL_BY_ROW)
    assert locality_tables(statements, "GLOBAL") == list(tables.GLOBAL_TABLES)
    # Every table of the schema gets exactly one locality.
    assert sorted([*tables.REGIONAL_BY_ROW, *tables.GLOBAL_TABLES]) == sorted(
        tables.metadata.tables
    )
    # Regions before any table exists; each table's locality once its revision created it (a
    # later revision's indexes may come after: CockroachDB partitions them by region itself).
    creates = [i for i, s in enumerate(statements) if s.startswith("CREATE ")]
    regions_at = [i for i, s in enumerate(statements) if s.startswith("ALTER DATABASE")]
    assert max(regions_at) < min(creates[1:])
    for name in tables.metadata.tables:
        created = next(i for i, s in enumerate(statements) if s.startswith(f"CREATE TABLE {name} "))
        located = next(
            i for i, s in enumerate(statements) if s.startswith(f"ALTER TABLE {name} SET LOCALITY")
        )
        assert created < located, name
    # Non-transactional DDL on CockroachDB: no BEGIN/COMMIT around the schema changes.
    assert not any(s in {"BEGIN", "COMMIT"} for s in statements)


def test_cockroachdb_primary_region_and_database_name_are_configurable() -> None:
    statements = split_statements(
        migrate.render_sql(
            "cockroachdb", regions=REGIONS, primary_region="europe-west1", database="tickets"
        )
    )
    assert [s for s in statements if s.startswith("ALTER DATABASE")] == [
        'ALTER DATABASE tickets SET PRIMARY REGION "europe-west1"',
        'ALTER DATABASE tickets ADD REGION IF NOT EXISTS "us-east1"',
        'ALTER DATABASE tickets ADD REGION IF NOT EXISTS "asia-southeast1"',
    ]


def test_cockroachdb_script_without_regions_has_no_region_ddl() -> None:
    statements = split_statements(migrate.render_sql("cockroachdb"))
    assert not [s for s in statements if is_cockroach_only(s)]


def render_with(config: Config, buffer: io.StringIO) -> list[str]:
    config.attributes[migrate.ATTR_DIALECT] = "cockroachdb"
    command.upgrade(config, "head", sql=True)
    return [s for s in split_statements(buffer.getvalue()) if s.startswith("ALTER DATABASE")]


def test_alembic_x_options_configure_regions_and_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`alembic -x regions=… -x primary_region=… -x database=…`, overriding the environment."""
    monkeypatch.setenv(migrate.REGIONS_ENV, "ignored-region")
    buffer = io.StringIO()
    config = migrate.make_config(stdout=buffer)
    options = ["regions=us-east1,europe-west1", "primary_region=europe-west1", "database=t2"]
    config.cmd_opts = argparse.Namespace(x=options)
    assert render_with(config, buffer) == [
        'ALTER DATABASE t2 SET PRIMARY REGION "europe-west1"',
        'ALTER DATABASE t2 ADD REGION IF NOT EXISTS "us-east1"',
    ]


def test_environment_configures_regions_when_nothing_else_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(migrate.REGIONS_ENV, "asia-southeast1, us-east1")
    monkeypatch.delenv(migrate.PRIMARY_REGION_ENV, raising=False)
    buffer = io.StringIO()
    assert render_with(migrate.make_config(stdout=buffer), buffer) == [
        'ALTER DATABASE tessera SET PRIMARY REGION "asia-southeast1"',
        'ALTER DATABASE tessera ADD REGION IF NOT EXISTS "us-east1"',
    ]


def test_render_sql_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(migrate.REGIONS_ENV, "us-east1")
    assert "REGION" not in migrate.render_sql("cockroachdb")


def test_postgresql_script_has_no_multi_region_ddl() -> None:
    script = migrate.render_sql("postgresql", regions=REGIONS, primary_region="us-east1")
    for word in ("PRIMARY REGION", "ADD REGION", "LOCALITY", "REGIONAL BY ROW", "ALTER DATABASE"):
        assert word not in script
    assert " GLOBAL" not in script


@pytest.mark.parametrize("dialect", ["postgresql", "cockroachdb"])
def test_scripts_avoid_what_cockroachdb_does_not_support(dialect: migrate.TargetDialect) -> None:
    script = migrate.render_sql(dialect, regions=REGIONS)
    found = {
        feature for feature, pattern in COCKROACH_UNSUPPORTED.items() if pattern.search(script)
    }
    assert found == set()


def test_every_cockroachdb_statement_is_valid_sql(database_url: str, engine: sa.Engine) -> None:
    """CockroachDB-only statements match their documented grammar; PostgreSQL runs the rest.

    That the rest runs on PostgreSQL shows it is valid SQL and within the subset both speak, and
    that it builds the tables.py schema shows the offline script equals the online migration.
    """
    statements = split_statements(migrate.render_sql("cockroachdb", regions=REGIONS))
    cockroach_only = [s for s in statements if is_cockroach_only(s)]
    assert len(cockroach_only) == len(REGIONS) + len(tables.metadata.tables)
    leftovers = [s for s in statements if "REGION" in s or "LOCALITY" in s]
    assert leftovers == cockroach_only, "a region statement that fits no documented grammar"
    indexes = sum(len(table.indexes) for table in tables.metadata.tables.values())
    shared = [s for s in statements if not is_cockroach_only(s)]
    # Later revisions' column and constraint changes (0002: users' contact details; 0003: the
    # lease columns leave `sections`, the payment saga's columns and constraints arrive; 0005:
    # the idempotency keys' attempts; 0007: orders' refunded_at, holds' and events' statuses,
    # events' fan cancellation window).
    alters = [s for s in shared if s.startswith("ALTER TABLE")]
    assert len(alters) == 4 + 9 + 1 + 7
    # 0003 moves the sections' leases into `event_leases`; 0004 backfills `fan_seats` from the
    # live holds and confirmed orders.
    moves = [
        s for s in shared if s.startswith(("INSERT INTO event_leases", "INSERT INTO fan_seats"))
    ]
    assert len(moves) == 2
    # alembic_version, every table, every index, the alterations, the data moved, one version
    # stamp per revision.
    revisions = len(list(ScriptDirectory.from_config(migrate.make_config()).walk_revisions()))
    expected = 1 + len(tables.metadata.tables) + indexes + len(alters) + len(moves) + revisions
    assert len(shared) == expected
    with engine.begin() as connection:
        for statement in shared:
            connection.exec_driver_sql(statement)
    with engine.connect() as connection:
        assert schema_difference(connection) == []
        assert version(connection) == head_revision()


def test_postgresql_script_runs_and_builds_the_same_schema(
    database_url: str, engine: sa.Engine
) -> None:
    statements = split_statements(migrate.render_sql("postgresql"))
    assert statements[0] == "BEGIN"
    assert statements[-1] == "COMMIT"
    with engine.begin() as connection:
        for statement in statements[1:-1]:
            connection.exec_driver_sql(statement)
    with engine.connect() as connection:
        assert schema_difference(connection) == []
        assert check_constraints(connection) == expected_check_constraints()
        assert version(connection) == head_revision()


# --- configuration ---


def test_statement_splitter_respects_quotes_and_comments() -> None:
    script = """
    -- a comment; with a semicolon
    CREATE TABLE "a;b" (x TEXT DEFAULT 'it''s; fine');
    /* block; comment */ SELECT $body$ ; $body$;
    SELECT 1
    ;
    """
    assert split_statements(script) == [
        "CREATE TABLE \"a;b\" (x TEXT DEFAULT 'it''s; fine')",
        "SELECT $body$ ; $body$",
        "SELECT 1",
    ]


def test_regions_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(migrate.REGIONS_ENV, " us-east1, europe-west1 ,,us-east1")
    monkeypatch.delenv(migrate.PRIMARY_REGION_ENV, raising=False)
    assert migrate.multi_region_from_env() == migrate.MultiRegion(("us-east1", "europe-west1"))
    monkeypatch.setenv(migrate.PRIMARY_REGION_ENV, "asia-southeast1")
    config = migrate.multi_region_from_env()
    assert config is not None
    assert config.primary_region == "asia-southeast1"
    assert config.other_regions == ("us-east1", "europe-west1")
    monkeypatch.delenv(migrate.REGIONS_ENV)
    monkeypatch.delenv(migrate.PRIMARY_REGION_ENV)
    assert migrate.multi_region_from_env() is None


@pytest.mark.parametrize(
    "bad", ["", "us east1", 'us"east', "us-east1;DROP", "a" * 64, "-leading-dash", "é"]
)
def test_region_names_are_checked(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid region name"):
        migrate.multi_region([bad])


def test_render_sql_rejects_unknown_dialects() -> None:
    with pytest.raises(ValueError, match="dialect"):
        migrate.render_sql("mysql")  # type: ignore[arg-type]


def test_sync_url_uses_psycopg() -> None:
    assert migrate.sync_url("postgresql://u:p@h/db").drivername == "postgresql+psycopg"
    assert migrate.sync_url("cockroachdb://u@h:26257/db").drivername == "cockroachdb+psycopg"
    assert migrate.sync_url("postgresql+asyncpg://h/db").drivername == "postgresql+psycopg"
    with pytest.raises(ValueError, match="unsupported"):
        migrate.sync_url("mysql://h/db")


def test_concurrent_upgrades_are_serialized(database_url: str) -> None:
    """Writers starting together each run `upgrade`; the advisory lock makes that safe."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(migrate.upgrade, database_url) for _ in range(4)]:
            future.result()


def test_tessera_audit_command(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`tessera audit` exits 0 on a sound database and 1 once an invariant breaks."""
    migrate.upgrade(database_url)
    assert main(["audit", "--database-url", database_url]) == 0
    assert "audit ok: 0 claims, 0 sold, 0 oversells" in capsys.readouterr().out
    with psycopg.connect(database_url, autocommit=True) as conn:
        event = conn.execute(
            "INSERT INTO events (event_id, name, status, venue, onsale_at, hold_ttl_s,"
            " per_user_limit, home_region) VALUES (gen_random_uuid(), 'e', 'scheduled', '{}',"
            " now(), 60, 4, 'local') RETURNING event_id"
        ).fetchone()
        assert event is not None
        conn.execute(
            "INSERT INTO holds (hold_id, event_id, user_id, status, seat_count, seats, expires_at)"
            " VALUES (gen_random_uuid(), %s, 'u', 'active', 2, '{}', now())",
            (event[0],),
        )
    assert main(["audit", "--database-url", database_url]) == 1
    assert "hold_seats_not_claimed" in capsys.readouterr().out
