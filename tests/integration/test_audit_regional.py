"""The audit across the tiers (`audit_event`, `tessera audit --event`), against real processes: a
writer and a regional read node on the test's own NATS server. A region cut off from the change
feed (its NATS killed) keeps serving its last map: the audit must fail and say which section,
versions and seats differ, then pass once the feed is back (docs/architecture.md §8.5). A writer whose
map no longer matches the database fails it too."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from edge_support import wait_seen_on
from writer_support import ROOM, WRITER_JWT_SECRET, WriterApi, settings, writer_env

from tessera_ops import audit
from tessera_ops.audit import AuditTarget, SectionDiff, audit_event
from tessera_ops.processes import ServiceProcess, start_regional, start_writer
from tessera_ops.servers import RunningServer

pytestmark = pytest.mark.anyio


@dataclass
class Tiers:
    writer: ServiceProcess
    regional: ServiceProcess
    api: WriterApi
    event: str
    target: AuditTarget


@pytest.fixture
async def tiers(
    database_url: str, redis_url: str, fresh_nats: RunningServer, tmp_path: Path
) -> AsyncIterator[Tiers]:
    writer_settings = settings(database_url, redis_url, fresh_nats.url)
    writer = start_writer(tmp_path / "writer", writer_env(writer_settings))
    regional: ServiceProcess | None = None
    try:
        async with httpx.AsyncClient(base_url=writer.url, timeout=30) as client:
            api = WriterApi(client, writer_settings)
            event = await api.create_event(venue=ROOM, per_user_limit=10)
            regional = start_regional(
                tmp_path / "regional",
                {
                    "TESSERA_NATS_URL": fresh_nats.url,
                    "TESSERA_WRITER_URL": writer.url,
                    "TESSERA_JWT_SECRET": WRITER_JWT_SECRET,
                },
            )
            wait_seen_on(regional, event)
            target = AuditTarget(writer.url, {"eu": regional.url}, database_url)
            yield Tiers(writer, regional, api, event, target)
    finally:
        if regional is not None:
            regional.stop()
        writer.stop()


async def hold(tiers: Tiers, user: str, seats: list[str]) -> str:
    response = await tiers.api.hold(tiers.event, user, {"seats": seats}, f"{user}-{seats[0]}")
    assert response.status_code == 201, response.text
    hold_id: str = response.json()["hold_id"]
    return hold_id


def audit_cli(*argv: str) -> argparse.Namespace:
    """`tessera audit ARGV` as the CLI parses it (`audit.register` on a fresh parser)."""
    parser = argparse.ArgumentParser(prog="tessera")
    audit.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["audit", *argv])


def event_args(tiers: Tiers, database_url: str, converge_s: float) -> argparse.Namespace:
    return audit_cli(
        "--event",
        tiers.event,
        "--writer-url",
        tiers.writer.url,
        "--regional-url",
        f"eu={tiers.regional.url}",
        "--database-url",
        database_url,
        "--converge-s",
        str(converge_s),
    )


async def test_the_audit_passes_when_every_map_agrees(tiers: Tiers) -> None:
    ann = await hold(tiers, "ann", ["S:A:1", "S:A:2"])
    order = await tiers.api.order("ann", ann, "tok_approve", "pay")
    assert order.status_code == 201, order.text
    await hold(tiers, "bob", ["C:A:5"])
    report = await audit_event(tiers.target, tiers.event)
    assert report.ok, report.details()
    assert (report.claims, report.sold, report.oversells) == (3, 2, 0)
    assert report.regions == ["eu"]
    assert report.sections == 2
    assert report.converged_s is not None and report.converged_s < 5


async def test_a_region_cut_off_from_the_feed_fails_the_audit_until_it_heals(
    tiers: Tiers,
    fresh_nats: RunningServer,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await hold(tiers, "ann", ["S:A:1"])
    assert (await audit_event(tiers.target, tiers.event)).ok
    fresh_nats.kill()  # the region's NATS is gone: the node keeps serving what it had
    await hold(tiers, "bob", ["S:A:2", "S:A:3"])

    report = await audit_event(tiers.target, tiers.event, converge_s=1.0)
    assert not report.ok
    assert report.writer == []  # the writer and the database agree
    assert report.regional == [
        SectionDiff(
            node="region eu",
            section="S",
            expected_version=2,
            actual_version=1,
            differing=2,
            seats=("S:A:2", "S:A:3"),
        )
    ]
    assert await asyncio.to_thread(audit.main, event_args(tiers, database_url, 1.0)) == 1
    out = capsys.readouterr().out
    assert "audit FAILED" in out and "regional_map_differs" in out
    assert "region eu section S: v1, expected v2; 2 seats differ: S:A:2, S:A:3" in out

    fresh_nats.restart()  # the writer republishes what it could not send; the node catches up
    healed = await audit_event(tiers.target, tiers.event, converge_s=30.0)
    assert healed.ok, healed.details()
    assert await asyncio.to_thread(audit.main, event_args(tiers, database_url, 30.0)) == 0
    assert "audit ok" in capsys.readouterr().out


async def test_a_writer_map_unlike_the_database_fails_the_audit(
    tiers: Tiers, database_url: str
) -> None:
    await hold(tiers, "ann", ["C:A:1"])
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE sections SET version = version + 1 WHERE event_id = %s AND section_id = 'C'",
            (tiers.event,),
        )
    report = await audit_event(tiers.target, tiers.event, converge_s=0.5)
    assert not report.ok
    assert [(d.node, d.section, d.expected_version, d.actual_version) for d in report.writer] == [
        ("writer", "C", 2, 1)
    ]


async def test_an_unknown_event_or_a_dead_node_is_reported_not_raised(tiers: Tiers) -> None:
    missing = await audit_event(tiers.target, "00000000-0000-4000-8000-000000000000")
    assert not missing.ok
    assert any("does not know event" in line for line in missing.unreachable)
    tiers.regional.stop()
    dead = await audit_event(tiers.target, tiers.event, converge_s=0.5)
    assert not dead.ok
    assert dead.unreachable and tiers.regional.url in dead.unreachable[0]
