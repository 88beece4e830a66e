"""The writer against real PostgreSQL, Valkey and NATS: races, expiry, checkout, idempotency."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
import pytest
import redis.asyncio as aioredis

import tessera_core as tc
from tessera import contracts
from tessera_ops.audit import audit

pytestmark = pytest.mark.anyio

TEN_SEATS = [f"ORCH:A:{n}" for n in range(101, 111)]


def one_section_venue(seats: int) -> dict[str, Any]:
    return {
        "name": "Tiny room",
        "sections": [
            {"id": "ORCH", "name": "Orchestra", "rows": [{"id": "A", "seats": seats, "rank": 1}]}
        ],
    }


async def test_500_clients_race_for_the_same_10_seats(writer_api: Any, database_url: str) -> None:
    event = await writer_api.create_event(
        venue={
            **one_section_venue(10),
            "sections": [
                {
                    "id": "ORCH",
                    "name": "Orchestra",
                    "rows": [
                        {
                            "id": "A",
                            "seats": 10,
                            "rank": 1,
                            "labels": [s.split(":")[2] for s in TEN_SEATS],
                        }
                    ],
                }
            ],
        },
        per_user_limit=10,
    )

    async def attempt(n: int) -> Any:
        pair = [TEN_SEATS[n % 10], TEN_SEATS[(n * 7 + 3) % 10]]
        seats = sorted(set(pair))
        return await writer_api.hold(event, f"fan{n}", {"seats": seats}, f"race-{n}")

    responses = await asyncio.gather(*(attempt(n) for n in range(500)))
    won = [r.json()["seats"] for r in responses if r.status_code == 201]
    lost = [r for r in responses if r.status_code == 409]
    assert len(won) + len(lost) == 500, {r.status_code for r in responses}
    held = [seat for seats in won for seat in seats]
    assert len(held) == len(set(held)), "a seat was held twice"
    assert set(held) <= set(TEN_SEATS)
    report = audit(database_url)
    assert report.ok, report.summary()
    assert report.claims == len(held)


async def test_a_one_second_hold_is_released_within_two_seconds_and_streamed(
    writer_api: Any, nats_url: str
) -> None:
    event = await writer_api.create_event(venue=one_section_venue(20), hold_ttl_s=1)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    subscription = await js.subscribe(f"seats.{event}.ORCH", ordered_consumer=True)
    try:
        response = await writer_api.hold(event, "ann", {"seats": ["ORCH:A:3", "ORCH:A:4"]}, "h1")
        assert response.status_code == 201, response.text
        hold_id = response.json()["hold_id"]
        started = time.monotonic()
        seat_map = tc.SeatMap.all_available(20)
        released_at = None
        while time.monotonic() - started < 2.0 and released_at is None:
            try:
                message = await subscription.next_msg(timeout=0.25)
            except TimeoutError:
                continue
            seat_map.apply_delta(message.data)
            if seat_map.version >= 2 and seat_map.available_count == 20:
                released_at = time.monotonic() - started
        assert released_at is not None, "release not seen on the stream within 2 s"
        view = (
            await writer_api.client.get(f"/v1/holds/{hold_id}", headers=writer_api.headers("ann"))
        ).json()
        assert view["status"] == "expired"
        again = await writer_api.hold(event, "bob", {"seats": ["ORCH:A:3"]}, "h2")
        assert again.status_code == 201
    finally:
        await nc.close()


async def test_checkout_after_expiry_is_409_and_voids(writer_api: Any) -> None:
    event = await writer_api.create_event(venue=one_section_venue(5), hold_ttl_s=1)
    hold = (await writer_api.hold(event, "cat", {"best_available": {"quantity": 2}}, "h")).json()
    await asyncio.sleep(1.3)
    response = await writer_api.order("cat", hold["hold_id"], "tok_approve", "o")
    assert response.status_code == 409
    assert response.json()["error"]["code"] in {"hold_expired", "hold_not_active"}


async def test_declined_card_is_402_and_the_hold_survives(
    writer_api: Any, database_url: str
) -> None:
    event = await writer_api.create_event()
    hold = (await writer_api.hold(event, "dan", {"best_available": {"quantity": 2}}, "h")).json()
    declined = await writer_api.order("dan", hold["hold_id"], "tok_decline", "o1")
    assert declined.status_code == 402
    assert declined.json()["error"]["reason"] == "card_declined"
    poor = await writer_api.order("dan", hold["hold_id"], "tok_insufficient_funds", "o2")
    assert poor.status_code == 402
    view = await writer_api.client.get(
        f"/v1/holds/{hold['hold_id']}", headers=writer_api.headers("dan")
    )
    assert view.json()["status"] == "active"
    bought = await writer_api.order("dan", hold["hold_id"], "tok_approve", "o3")
    assert bought.status_code == 201, bought.text
    order = bought.json()
    assert order["seats"] == hold["seats"]
    assert order["amount"] > 0
    again = await writer_api.order("dan", hold["hold_id"], "tok_approve", "o4")
    assert again.status_code == 409, "a second checkout under a new key"
    fetched = await writer_api.client.get(
        f"/v1/orders/{order['order_id']}", headers=writer_api.headers("dan")
    )
    assert fetched.json() == order
    other = await writer_api.client.get(
        f"/v1/orders/{order['order_id']}", headers=writer_api.headers("eve")
    )
    assert other.status_code == 404
    assert audit(database_url).ok


async def test_network_error_keeps_the_hold_and_the_key_reusable(writer_api: Any) -> None:
    event = await writer_api.create_event()
    hold = (await writer_api.hold(event, "fay", {"best_available": {"quantity": 1}}, "h")).json()
    failed = await writer_api.order("fay", hold["hold_id"], "tok_network_error", "o")
    assert failed.status_code == 502
    assert failed.json()["error"]["code"] == "payment_provider_unavailable"
    retried = await writer_api.order("fay", hold["hold_id"], "tok_network_error", "o")
    assert retried.status_code == 502, "no effect happened: the same key runs again"


async def test_idempotency_replay_mismatch_and_in_flight(writer_api: Any) -> None:
    event = await writer_api.create_event()
    first = await writer_api.hold(event, "gus", {"best_available": {"quantity": 2}}, "same")
    replay = await writer_api.hold(event, "gus", {"best_available": {"quantity": 2}}, "same")
    assert replay.status_code == first.status_code == 201
    assert replay.content == first.content
    assert replay.headers["idempotent-replayed"] == "true"
    other_user = await writer_api.hold(event, "hal", {"best_available": {"quantity": 2}}, "same")
    assert other_user.status_code == 201, "keys are scoped per user"
    assert other_user.json()["hold_id"] != first.json()["hold_id"]
    mismatch = await writer_api.hold(event, "gus", {"best_available": {"quantity": 3}}, "same")
    assert mismatch.status_code == 422
    assert mismatch.json()["error"]["code"] == "idempotency_key_mismatch"
    hold_id = first.json()["hold_id"]
    slow = asyncio.create_task(writer_api.order("gus", hold_id, "tok_slow", "pay"))
    await asyncio.sleep(0.15)
    during = await writer_api.order("gus", hold_id, "tok_slow", "pay")
    assert during.status_code == 409
    assert during.json()["error"]["code"] == "idempotency_key_in_flight"
    done = await slow
    assert done.status_code == 201
    after = await writer_api.order("gus", hold_id, "tok_slow", "pay")
    assert after.status_code == 201
    assert after.content == done.content


async def test_per_user_cap_counts_holds_and_purchases(writer_api: Any) -> None:
    event = await writer_api.create_event(per_user_limit=4)
    first = await writer_api.hold(event, "ivy", {"best_available": {"quantity": 3}}, "a")
    assert first.status_code == 201
    await writer_api.order("ivy", first.json()["hold_id"], "tok_approve", "buy")
    over = await writer_api.hold(event, "ivy", {"best_available": {"quantity": 2}}, "b")
    assert over.status_code == 403
    assert over.json()["error"]["code"] == "limit_exceeded"
    fits = await writer_api.hold(event, "ivy", {"best_available": {"quantity": 1}}, "c")
    assert fits.status_code == 201


async def test_extend_once_release_frees_at_once_and_owners_only(writer_api: Any) -> None:
    event = await writer_api.create_event(hold_ttl_s=60)
    hold = (await writer_api.hold(event, "jo", {"seats": ["ORCH:A:105"]}, "h")).json()
    path = writer_api.hold_path(hold["hold_id"])
    extended = await writer_api.extend("jo", hold["hold_id"], "x1")
    assert extended.status_code == 200
    assert extended.json()["expires_at"] > hold["expires_at"]
    twice = await writer_api.extend("jo", hold["hold_id"], "x2")
    assert twice.status_code == 409
    assert twice.json()["error"]["code"] == "hold_already_extended"
    view = await writer_api.client.get(
        f"/v1/holds/{hold['hold_id']}", headers=writer_api.headers("kim")
    )
    assert view.status_code == 404
    assert (
        await writer_api.client.delete(path, headers=writer_api.headers("kim"))
    ).status_code == 404
    assert (
        await writer_api.client.delete(path, headers=writer_api.headers("jo"))
    ).status_code == 204
    retaken = await writer_api.hold(event, "kim", {"seats": ["ORCH:A:105"]}, "k")
    assert retaken.status_code == 201, "released seats are free at once"
    assert (
        await writer_api.client.delete(path, headers=writer_api.headers("jo"))
    ).status_code == 204


async def test_not_on_sale_yet(writer_api: Any) -> None:
    event = await writer_api.create_event(onsale_at="2999-01-01T00:00:00Z")
    early = await writer_api.hold(event, "lou", {"best_available": {"quantity": 1}}, "e")
    assert early.status_code == 403
    assert early.json()["error"]["code"] == "not_on_sale"


async def test_event_document_and_snapshot(writer_api: Any) -> None:
    event = await writer_api.create_event()
    document = (await writer_api.client.get(f"/v1/events/{event}")).json()
    seats = [s for section in document["sections"] for row in section["rows"] for s in row["seats"]]
    assert len(seats) == 500
    assert document["price_tiers"]
    await writer_api.hold(event, "max", {"seats": [seats[0]]}, "s")
    section = seats[0].split(":")[0]
    snapshot = await writer_api.client.get(f"/v1/events/{event}/sections/{section}/snapshot")
    assert snapshot.headers["content-type"] == "application/vnd.tessera.seatmap"
    seat_map = tc.SeatMap.decode(snapshot.content)
    assert seat_map.version >= 1
    assert not seat_map.is_available(0)


async def test_section_snapshots_reach_the_kv_bucket(writer_api: Any, nats_url: str) -> None:
    event = await writer_api.create_event(venue=one_section_venue(30))
    nc = await nats.connect(nats_url)
    try:
        kv = await nc.jetstream().key_value(contracts.SEATMAP_KV_BUCKET)
        deadline = time.monotonic() + 5
        entry = None
        while entry is None and time.monotonic() < deadline:
            try:
                entry = await kv.get(f"{event}.ORCH")
            except Exception:
                await asyncio.sleep(0.1)
        assert entry is not None and entry.value is not None
        assert tc.SeatMap.decode(entry.value).seat_count == 30
    finally:
        await nc.close()


async def test_metrics_and_health(writer_api: Any) -> None:
    event = await writer_api.create_event()
    await writer_api.hold(event, "ned", {"best_available": {"quantity": 2}}, "m1")
    await writer_api.hold(event, "ned", {"seats": ["NOPE:A:1"]}, "m2")
    text = (await writer_api.client.get("/metrics")).text
    assert "tessera_holds_committed_total 1.0" in text
    assert 'route="/v1/events/{event_id}/holds"' in text, "route template, not the raw path"
    assert 'status="422"' in text
    assert (await writer_api.client.get("/healthz")).json() == {"status": "ok"}
    assert (await writer_api.client.get("/readyz")).status_code == 200


async def test_redis_mirrors_live_holds(writer_api: Any, redis_url: str) -> None:
    event = await writer_api.create_event()
    first = (await writer_api.hold(event, "ola", {"best_available": {"quantity": 3}}, "a")).json()
    redis = aioredis.from_url(redis_url)
    key = f"tessera:hold:{first['hold_id']}"
    try:
        for _ in range(50):
            if await redis.exists(key):
                break
            await asyncio.sleep(0.02)
        assert await redis.pttl(key) > 0
        await writer_api.release("ola", first["hold_id"])
        for _ in range(50):
            if not await redis.exists(key):
                break
            await asyncio.sleep(0.02)
        assert await redis.exists(key) == 0
    finally:
        await redis.aclose()


async def kv_value(nats_url: str, key: str) -> bytes:
    nc = await nats.connect(nats_url)
    try:
        kv = await nc.jetstream().key_value(contracts.SEATMAP_KV_BUCKET)
        deadline = time.monotonic() + 5
        while True:
            try:
                entry = await kv.get(key)
                assert entry.value is not None
                return entry.value
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
    finally:
        await nc.close()


async def test_event_layout_and_fans_records_reach_the_kv(writer_api: Any, nats_url: str) -> None:
    event = await writer_api.create_event()
    info = contracts.event_info_decoder.decode(await kv_value(nats_url, f"events.{event}"))
    assert str(info.event_id) == event
    assert len(info.venue.sections) == 3
    me = writer_api.headers("pam")
    assert (
        await writer_api.client.put("/v1/me/sharing", headers=me, json={"share": True})
    ).status_code == 200
    added = await writer_api.client.put("/v1/me/friends/quinn", headers=me)
    assert added.json() == {"user_id": "pam", "share_purchases": True, "friends": ["quinn"]}
    assert (await writer_api.client.put("/v1/me/friends/pam", headers=me)).status_code == 422
    bad = await writer_api.client.put("/v1/me/sharing", headers=me, json={"share": "yes"})
    assert bad.status_code == 422
    deadline = time.monotonic() + 5
    record = contracts.user_record_decoder.decode(await kv_value(nats_url, "users.pam"))
    while record.friends != ["quinn"] and time.monotonic() < deadline:
        # The record is published after commit: the sharing change may still be the latest.
        await asyncio.sleep(0.05)
        record = contracts.user_record_decoder.decode(await kv_value(nats_url, "users.pam"))
    assert record.friends == ["quinn"]
    assert record.share_purchases
    removed = await writer_api.client.delete("/v1/me/friends/quinn", headers=me)
    assert removed.json()["friends"] == []
    assert (await writer_api.client.get("/v1/me", headers=me)).json()["friends"] == []
