"""Presale waves (docs/presales.md) against a real writer on PostgreSQL, Valkey and NATS: the
waves on the event, the writer's refusals before and during a wave, codes counted exactly under
a race, and the general sale left as it was."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from writer_support import ROOM, WRITER_ADMIN_KEY, event_body

from tessera_ops.audit import audit

pytestmark = pytest.mark.anyio

NOW = datetime.now(UTC)
HOUR = timedelta(hours=1)


def at(offset: timedelta) -> str:
    return (NOW + offset).isoformat()


def wave(wave_id: str, start: timedelta, end: timedelta, **fields: Any) -> dict[str, Any]:
    return {
        "wave_id": wave_id,
        "name": f"Wave {wave_id}",
        "starts_at": at(start),
        "ends_at": at(end),
        "per_user_limit": fields.pop("per_user_limit", 4),
        "access": fields.pop("access", {"eligible_users": ["ann"]}),
        **fields,
    }


async def create(
    writer_api: Any, presales: list[dict[str, Any]], onsale: timedelta = 3 * HOUR
) -> httpx.Response:
    body = {**event_body(ROOM, onsale_at=at(onsale)), "presales": presales}
    response: httpx.Response = await writer_api.client.post(
        "/v1/admin/events", headers={"X-Admin-Key": WRITER_ADMIN_KEY}, json=body
    )
    return response


async def created(writer_api: Any, presales: list[dict[str, Any]], **kwargs: Any) -> str:
    response = await create(writer_api, presales, **kwargs)
    assert response.status_code == 201, response.text
    event_id: str = response.json()["event_id"]
    return event_id


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] == code, body
    return body


async def test_waves_are_validated_shown_without_their_codes(
    writer_api: Any, database_url: str
) -> None:
    codes = {"codes": [{"code": "FANCLUB-2026", "uses_max": 10}]}
    bad = {
        "overlapping": [wave("a", -HOUR, HOUR), wave("b", 0.5 * HOUR, 2 * HOUR)],
        "after the general sale": [wave("a", -HOUR, 4 * HOUR)],
        "empty window": [wave("a", HOUR, HOUR)],
        "limit above the event's": [wave("a", -HOUR, HOUR, per_user_limit=9)],
        "unknown section": [wave("a", -HOUR, HOUR, section_ids=["NOPE"])],
        "both accesses": [
            wave("a", -HOUR, HOUR, access={**codes, "eligible_users": ["ann"]}),
        ],
        "no access": [wave("a", -HOUR, HOUR, access={})],
        "same id twice": [wave("a", -2 * HOUR, -HOUR), wave("a", -HOUR, HOUR)],
        "no time zone": [{**wave("a", -HOUR, HOUR), "starts_at": "2026-01-01T00:00:00"}],
        "before 1970": [{**wave("a", -HOUR, HOUR), "starts_at": "0001-01-01T00:00:00+05:00"}],
        "unknown field": [{**wave("a", -HOUR, HOUR), "extra": 1}],
    }
    for name, presales in bad.items():
        response = await create(writer_api, presales)
        assert response.status_code == 422, (name, response.text)
        assert response.json()["error"]["code"] == "invalid_request", name

    event = await created(
        writer_api,
        [
            wave("club", -HOUR, HOUR, access=codes, section_ids=["C"], per_user_limit=2),
            wave("cards", HOUR, 2 * HOUR),
        ],
    )
    document = (await writer_api.client.get(f"/v1/events/{event}")).json()
    assert [w["wave_id"] for w in document["presales"]] == ["club", "cards"]
    active = document["active_presale"]
    assert active["wave_id"] == "club"
    assert active["code_required"] is True
    assert active["section_ids"] == ["C"]
    assert active["per_user_limit"] == 2
    assert document["presales"][1]["code_required"] is False
    assert "FANCLUB-2026" not in str(document)
    assert "ann" not in str(document)
    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            "SELECT code_hash, uses_max, uses FROM presale_codes WHERE event_id = %s", (event,)
        ).fetchall()
        events_row = conn.execute("SELECT * FROM events WHERE event_id = %s", (event,)).fetchone()
    digest = hashlib.sha256(uuid.UUID(event).bytes + b"FANCLUB-2026").digest()
    assert [(bytes(h), m, u) for h, m, u in stored] == [(digest, 10, 0)]
    assert "FANCLUB-2026" not in str(events_row)


async def test_a_listed_wave_admits_its_fans_to_its_sections_within_its_limit(
    writer_api: Any, database_url: str
) -> None:
    listed = {"eligible_users": ["ann", "bob"]}
    event = await created(
        writer_api, [wave("club", -HOUR, HOUR, access=listed, section_ids=["S"], per_user_limit=3)]
    )
    ok = await writer_api.hold(event, "ann", {"seats": ["S:A:1", "S:A:2"]}, "p1")
    assert ok.status_code == 201, ok.text
    body = refused(
        await writer_api.hold(event, "eve", {"seats": ["S:A:5"]}, "p2"), 403, "presale_not_eligible"
    )
    assert body["error"]["wave_id"] == "club"
    body = refused(
        await writer_api.hold(event, "bob", {"seats": ["C:A:1"]}, "p3"),
        403,
        "presale_section_closed",
    )
    assert body["error"]["sections"] == ["C"]
    refused(
        await writer_api.hold(
            event, "bob", {"best_available": {"quantity": 1, "sections": ["C"]}}, "p4"
        ),
        403,
        "presale_section_closed",
    )
    # Best available without sections looks only in the wave's.
    best = await writer_api.hold(event, "bob", {"best_available": {"quantity": 3}}, "p5")
    assert best.status_code == 201, best.text
    assert all(seat.startswith("S:") for seat in best.json()["seats"])
    # The wave's limit (3), below the event's (8).
    refused(
        await writer_api.hold(event, "ann", {"seats": ["S:A:3", "S:A:4"]}, "p6"),
        403,
        "limit_exceeded",
    )
    third = await writer_api.hold(event, "ann", {"seats": ["S:A:3"]}, "p7")
    assert third.status_code == 201, third.text
    report = audit(database_url)
    assert report.ok, report.summary()


async def test_codes_admit_each_fan_once_and_run_out_exactly_under_a_race(
    writer_api: Any, database_url: str
) -> None:
    access = {"codes": [{"code": "FEW-1", "uses_max": 2}, {"code": "RACE-CODE", "uses_max": 5}]}
    event = await created(writer_api, [wave("club", -HOUR, HOUR, access=access)])
    refused(
        await writer_api.hold(event, "ann", {"seats": ["S:A:1"]}, "c0"), 403, "presale_not_eligible"
    )
    refused(
        await writer_api.hold(event, "ann", {"seats": ["S:A:1"], "presale_code": "WRONG"}, "c1"),
        403,
        "presale_code_invalid",
    )
    for n, fan in enumerate(["ann", "ann", "bob"]):
        held = await writer_api.hold(
            event, fan, {"seats": [f"S:A:{n + 1}"], "presale_code": "FEW-1"}, f"c2-{n}"
        )
        assert held.status_code == 201, held.text  # ann's second hold does not use the code
    refused(
        await writer_api.hold(event, "cat", {"seats": ["S:A:9"], "presale_code": "FEW-1"}, "c3"),
        403,
        "presale_code_exhausted",
    )

    async def attempt(n: int) -> httpx.Response:
        body = {"best_available": {"quantity": 1}, "presale_code": "RACE-CODE"}
        response: httpx.Response = await writer_api.hold(event, f"racer{n}", body, f"r{n}")
        return response

    responses = await asyncio.gather(*(attempt(n) for n in range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 5 + [403] * 15, statuses
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 403} == {
        "presale_code_exhausted"
    }
    with psycopg.connect(database_url) as conn:
        uses = conn.execute(
            "SELECT uses_max, uses FROM presale_codes WHERE event_id = %s", (event,)
        ).fetchall()
        redeemed = conn.execute(
            "SELECT count(*) FROM presale_redemptions WHERE event_id = %s", (event,)
        ).fetchone()
    assert sorted(uses) == [(2, 2), (5, 5)]
    assert redeemed == (7,)
    report = audit(database_url)
    assert report.ok, report.summary()


async def test_outside_every_wave_it_is_not_on_sale_and_the_general_sale_is_open_to_all(
    writer_api: Any,
) -> None:
    upcoming = await created(writer_api, [wave("later", HOUR, 2 * HOUR)])
    body = refused(
        await writer_api.hold(upcoming, "ann", {"seats": ["S:A:1"]}, "n1"), 403, "not_on_sale"
    )
    assert body["error"]["wave_id"] == "later"
    document = (await writer_api.client.get(f"/v1/events/{upcoming}")).json()
    assert document["active_presale"] is None
    assert document["status"] == "scheduled"
    between = await created(writer_api, [wave("over", -2 * HOUR, -HOUR)])
    refused(await writer_api.hold(between, "ann", {"seats": ["S:A:1"]}, "n2"), 403, "not_on_sale")
    plain = await created(writer_api, [])
    refused(await writer_api.hold(plain, "ann", {"seats": ["S:A:1"]}, "n3"), 403, "not_on_sale")
    # On sale: the waves are over, anyone holds, a code left in the request is ignored.
    general = await created(writer_api, [wave("past", -3 * HOUR, -2 * HOUR)], onsale=-HOUR)
    held = await writer_api.hold(
        general, "eve", {"seats": ["C:A:1"], "presale_code": "ANYTHING"}, "n4"
    )
    assert held.status_code == 201, held.text
    document = (await writer_api.client.get(f"/v1/events/{general}")).json()
    assert document["status"] == "onsale"
    assert document["active_presale"] is None
    assert [w["wave_id"] for w in document["presales"]] == ["past"]
