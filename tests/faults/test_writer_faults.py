"""The writer under faults, as real processes against real servers: a SIGKILL between commit and
publish, a SIGKILL between the provider's authorization and the batch's commit, a stale fencing
epoch, Redis flushed mid-sale, its database connections killed.

After every case the money ledger (tests/faults/money_ledger.py) holds: the audit's money
invariants and 0 oversells; a case with a real provider also matches every authorization at the
provider with the database.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import psycopg
import pytest
import redis.asyncio as aioredis
from litestar.testing import TestClient
from stripe_support import API_KEY, WEBHOOK_SECRET, LocalStripe, start_localstripe
from writer_support import WRITER_ADMIN_KEY, WriterApi, event_body, settings, writer_env

import tessera_core as tc
from faults.money_ledger import database_problems, ledger_problems
from global_writer import actor as actor_module
from global_writer.app import create_app
from global_writer.db.retry import run_transaction
from global_writer.settings import Settings
from tessera import limits
from tessera_ops.audit import audit
from tessera_ops.processes import ServiceProcess, start_writer

pytestmark = pytest.mark.anyio

ROOM = {
    "name": "Room",
    "sections": [{"id": "S", "name": "Stalls", "rows": [{"id": "A", "seats": 40, "rank": 1}]}],
}

# The same room with a price: a free order makes no PaymentIntent at Stripe.
PRICED_ROOM = {
    **ROOM,
    "price_tiers": [{"id": "P", "name": "Stalls", "price_minor": 4_500, "currency": "EUR"}],
    "sections": [
        {
            "id": "S",
            "name": "Stalls",
            "rows": [{"id": "A", "seats": 40, "rank": 1, "price_tier": "P"}],
        }
    ],
}


@pytest.fixture(autouse=True)
def money_ledger(database_url: str) -> Iterator[None]:
    """After every case: the audit's money invariants and no oversell. The case's writers have
    stopped by now, so a payment may still be on its way (the audit's own bound); a case that
    can wait for its settler checks with none (`ledger_problems`)."""
    yield
    problems = database_problems(database_url, settle_s=limits.audit_payment_settle_s_max)
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe]:
    server = start_localstripe(tmp_path_factory.mktemp("localstripe"))
    try:
        yield server
    finally:
        server.stop()


async def deltas_on_stream(nats_url: str, event_id: str, section: str) -> list[tuple[int, bytes]]:
    """Every section delta the stream holds, in stream order, as (version, payload)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        subscription = await js.subscribe(f"seats.{event_id}.{section}", ordered_consumer=True)
        found: list[tuple[int, bytes]] = []
        while True:
            try:
                message = await subscription.next_msg(timeout=1.0)
            except TimeoutError:
                return found
            assert message.headers is not None
            found.append((int(message.headers["Tessera-Version"]), message.data))
    finally:
        await nc.close()


def unpublished_outbox(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()
        assert row is not None
        return int(row[0])


async def create_event(url: str, venue: dict[str, Any] = ROOM, **options: Any) -> str:
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.post(
            "/v1/admin/events",
            headers={"X-Admin-Key": WRITER_ADMIN_KEY},
            json=event_body(venue, **options),
        )
        assert response.status_code == 201, response.text
        event_id: str = response.json()["event_id"]
        return event_id


async def test_sigkill_between_commit_and_publish_then_relay(
    database_url: str, redis_url: str, nats_url: str, tmp_path: Path
) -> None:
    crashing = settings(database_url, redis_url, nats_url, fault_crash_after_commit=True)
    writer = start_writer(tmp_path / "a", writer_env(crashing))
    event_id = await create_event(writer.url)
    async with httpx.AsyncClient(base_url=writer.url) as client:
        api = WriterApi(client, crashing)
        with pytest.raises(httpx.HTTPError):
            await api.hold(event_id, "ann", {"seats": ["S:A:1", "S:A:2"]}, "first")
    assert writer.process is not None
    # Granian's worker SIGKILLs itself; its parent then exits non-zero.
    assert writer.process.wait(timeout=10) != 0, "the writer must have died"
    assert unpublished_outbox(database_url) == 1, "committed, not published"
    assert await deltas_on_stream(nats_url, event_id, "S") == []

    healthy = settings(database_url, redis_url, nats_url)
    restarted = start_writer(tmp_path / "b", writer_env(healthy))
    try:
        async with httpx.AsyncClient(base_url=restarted.url) as client:
            api = WriterApi(client, healthy)
            replay = await api.hold(event_id, "ann", {"seats": ["S:A:1", "S:A:2"]}, "first")
            assert replay.status_code == 201, "the committed hold is acknowledged on retry"
            assert replay.headers["idempotent-replayed"] == "true"
            for n in range(3, 8):
                response = await api.hold(event_id, "bob", {"seats": [f"S:A:{n}"]}, f"k{n}")
                assert response.status_code == 201
            snapshot = await client.get(f"/v1/events/{event_id}/sections/S/snapshot")
        deltas = await deltas_on_stream(nats_url, event_id, "S")
        versions = [version for version, _ in deltas]
        assert versions == list(range(1, len(versions) + 1)), f"gap or duplicate: {versions}"
        rebuilt = tc.SeatMap.all_available(40)
        for _, payload in deltas:
            rebuilt.apply_delta(payload)
        assert rebuilt == tc.SeatMap.decode(snapshot.content)
        assert unpublished_outbox(database_url) == 0
        assert audit(database_url).ok
    finally:
        restarted.stop()


async def test_a_stale_fencing_epoch_cannot_commit(
    writer_process: ServiceProcess, writer_api: Any, database_url: str
) -> None:
    event_id = await writer_api.create_event(venue=ROOM)
    first = await writer_api.hold(event_id, "ann", {"seats": ["S:A:1"]}, "a")
    assert first.status_code == 201
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE event_leases SET owner = 'usurper', epoch = epoch + 1,"
            " expires_at = now() + interval '1 hour' WHERE event_id = %s",
            (event_id,),
        )
        versions_before = conn.execute(
            "SELECT section_id, version FROM sections WHERE event_id = %s", (event_id,)
        ).fetchall()
    refused = await writer_api.hold(event_id, "bob", {"seats": ["S:A:2"]}, "b")
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "unavailable"
    later = await writer_api.hold(event_id, "cid", {"seats": ["S:A:3"]}, "c")
    assert later.status_code == 503, "the writer stopped writing the event"
    with psycopg.connect(database_url) as conn:
        claims = conn.execute("SELECT seat_index FROM seat_claims ORDER BY 1").fetchall()
        versions_after = conn.execute(
            "SELECT section_id, version FROM sections WHERE event_id = %s", (event_id,)
        ).fetchall()
    assert claims == [(0,)], "only the hold made under the valid epoch exists"
    assert versions_after == versions_before
    assert audit(database_url).ok


async def test_flushall_mid_sale_loses_no_hold_and_oversells_nothing(
    writer_api: Any, database_url: str, redis_url: str
) -> None:
    event_id = await writer_api.create_event(per_user_limit=8)
    redis = aioredis.from_url(redis_url)

    async def fan(n: int) -> httpx.Response:
        if n == 100:
            await redis.flushall()
        response: httpx.Response = await writer_api.hold(
            event_id, f"fan{n}", {"best_available": {"quantity": 2}}, f"h{n}"
        )
        return response

    try:
        responses = await asyncio.gather(*(fan(n) for n in range(300)))
        await redis.flushall()
    finally:
        await redis.aclose()
    assert {r.status_code for r in responses} <= {201, 409}
    held = [r.json() for r in responses if r.status_code == 201]
    assert len(held) >= 200, "496 sellable seats, 2 per fan: most of the 300 fans win"
    seats = [seat for hold in held for seat in hold["seats"]]
    assert len(seats) == len(set(seats)), "a seat was held twice"
    for n, response in enumerate(responses):
        if response.status_code == 201:
            hold = response.json()
            fetched = await writer_api.client.get(
                f"/v1/holds/{hold['hold_id']}", headers=writer_api.headers(f"fan{n}")
            )
            assert fetched.status_code == 200, "an acknowledged hold survives FLUSHALL"
            assert fetched.json()["seats"] == hold["seats"]
    report = audit(database_url)
    assert report.ok, report.summary()
    assert report.claims == len(seats)


async def test_connections_killed_under_the_writer_are_retried_not_answered_with_errors(
    writer_api: Any, database_url: str
) -> None:
    """A server restart (or a proxy's idle timeout) kills every pooled connection; the writer
    does not test connections on checkout, so the next requests must run again on fresh ones."""
    event_id = await writer_api.create_event(venue=ROOM)
    first = await writer_api.hold(event_id, "ann", {"seats": ["S:A:1"]}, "a")
    assert first.status_code == 201
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None and row[0] >= 1, "the writer's pooled connections were killed"
    held = await writer_api.hold(event_id, "bob", {"seats": ["S:A:2"]}, "b")
    assert held.status_code == 201, held.text
    released = await writer_api.release("ann", first.json()["hold_id"])
    assert released.status_code == 204, released.text
    replay = await writer_api.hold(event_id, "bob", {"seats": ["S:A:2"]}, "b")
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert (await writer_api.client.get("/readyz")).status_code == 200
    report = audit(database_url)
    assert report.ok, report.summary()
    assert report.claims == 1


async def test_snapshot_during_a_slow_commit_is_the_committed_state(
    writer_api: Any, database_url: str
) -> None:
    """A batch's picks sit in the writer's memory, tentatively, while its transaction commits.
    A reader that resyncs from the snapshot endpoint then must get the last committed state:
    found by the onsale fault suite, where a reader installed a map with seats taken that the
    batch had not committed, under the old version, and then refused the next delta as
    malformed. The commit is held up here by a lock on the sections' rows."""
    event_id = await writer_api.create_event(venue=ROOM)
    path = f"/v1/events/{event_id}/sections/S/snapshot"
    before = tc.SeatMap.decode((await writer_api.client.get(path)).content)
    with psycopg.connect(database_url) as blocker:
        blocker.execute("SELECT 1 FROM sections WHERE event_id = %s FOR UPDATE", (event_id,))
        pending = asyncio.create_task(
            writer_api.hold(event_id, "ann", {"seats": ["S:A:1", "S:A:2"]}, "slow")
        )
        await asyncio.sleep(0.5)
        assert not pending.done(), "the batch waits for the lock"
        during = tc.SeatMap.decode((await writer_api.client.get(path)).content)
        blocker.rollback()
    held = await pending
    assert held.status_code == 201, held.text
    after = tc.SeatMap.decode((await writer_api.client.get(path)).content)
    assert during == before, "only committed seats are served"
    assert after.version == before.version + 1
    assert not after.is_available(0) and not after.is_available(1)


def test_an_ambiguous_commit_is_reloaded_not_forgotten(
    writer_settings: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection drops while COMMIT is answered: the batch committed, the writer saw an
    error (an ambiguous commit is never rerun) and rolled its memory back. The fans' retries
    replay the committed answers, and the writer must reload what the database has: else its
    map shows the held seats free under the old version (the next batch on the section fails),
    and the holds, missing from its expiry wheel, would stay held past their deadline until a
    restart."""
    armed = [True]

    async def ambiguous(engine: Any, work: Any, **options: Any) -> Any:
        result = await run_transaction(engine, work, **options)
        if armed[0]:
            armed[0] = False
            raise ConnectionResetError("connection lost while COMMIT was answered")
        return result

    with TestClient(create_app(writer_settings)) as client:
        api = WriterApi(client, writer_settings)  # type: ignore[arg-type]
        created = client.post(
            "/v1/admin/events",
            headers={"X-Admin-Key": WRITER_ADMIN_KEY},
            json=event_body(ROOM, hold_ttl_s=1),
        )
        event_id = created.json()["event_id"]
        monkeypatch.setattr(actor_module, "run_transaction", ambiguous)
        body = {"seats": ["S:A:1", "S:A:2"]}
        path = f"/v1/events/{event_id}/holds"
        failed = client.post(path, headers=api.headers("ann", "k"), json=body)
        assert failed.status_code == 503, failed.text
        replay = client.post(path, headers=api.headers("ann", "k"), json=body)
        assert replay.status_code == 201, replay.text
        assert replay.headers["idempotent-replayed"] == "true"
        snapshot = tc.SeatMap.decode(
            client.get(f"/v1/events/{event_id}/sections/S/snapshot").content
        )
        assert snapshot.version == 1 and not snapshot.is_available(0), "memory is the database's"
        hold_id = replay.json()["hold_id"]
        deadline = time.monotonic() + 3.0
        while hold_status(database_url, hold_id) == "active":
            assert time.monotonic() < deadline, "the hold was not released after its deadline"
            time.sleep(0.05)
    assert hold_status(database_url, hold_id) == "expired"
    assert audit(database_url).ok


def hold_status(database_url: str, hold_id: str) -> str:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT status FROM holds WHERE hold_id = %s", (hold_id,)).fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.slow
async def test_the_reply_timeout_never_answers_for_a_batch_still_committing(
    writer_api: Any, database_url: str
) -> None:
    """The commit stalls past the actor's reply timeout (a lock held on the sections' rows).
    A request whose batch is committing waits for that batch's outcome: answering 503 and
    freeing its key (and, for checkout, voiding the authorization) while the batch could still
    commit would leave an effect without its key, so the retry ran it again (found while writing
    docs/guarantees.md: a checkout answered 503, then 409 "already bought" for an order that had
    been confirmed with a voided payment). A request still queued behind it when the timeout
    fires is answered 503 and dropped, never run: its retry runs it once."""
    event_id = await writer_api.create_event(venue=ROOM)
    held = await writer_api.hold(event_id, "ann", {"seats": ["S:A:1"]}, "h")
    assert held.status_code == 201, held.text
    hold_id = held.json()["hold_id"]
    with psycopg.connect(database_url) as blocker:
        blocker.execute("SELECT 1 FROM sections WHERE event_id = %s FOR UPDATE", (event_id,))
        committing = asyncio.create_task(
            writer_api.hold(event_id, "bob", {"seats": ["S:A:5"]}, "b")
        )
        await asyncio.sleep(0.5)  # its batch is in flight, waiting for the lock
        queued = asyncio.create_task(writer_api.order("ann", hold_id, "tok_approve", "o"))
        await asyncio.sleep(limits.actor_reply_timeout_s + 1.0)
        assert queued.done() and (await queued).status_code == 503
        assert not committing.done(), "a batch in flight is waited for, not answered 503"
        blocker.rollback()
    assert (await committing).status_code == 201
    assert orders_of(database_url, hold_id) == [], "the op that timed out in the queue never ran"
    retry = await writer_api.order("ann", hold_id, "tok_approve", "o")
    assert retry.status_code == 201, retry.text
    assert orders_of(database_url, hold_id) == [retry.json()["order_id"]]
    again = await writer_api.order("ann", hold_id, "tok_approve", "o")
    assert again.headers["idempotent-replayed"] == "true"
    assert audit(database_url).ok


def orders_of(database_url: str, hold_id: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT order_id::text FROM orders WHERE hold_id = %s", (hold_id,)
        ).fetchall()
    return [row[0] for row in rows]


def with_stripe(writer_settings: Settings, server: LocalStripe, **more: Any) -> Settings:
    return msgspec.structs.replace(
        writer_settings,
        payment_provider="stripe",
        stripe_api_key=API_KEY,
        stripe_api_base=server.url,
        stripe_webhook_secret=WEBHOOK_SECRET,
        **more,
    )


def intent_statuses(server: LocalStripe) -> list[str]:
    return [intent["status"] for intent in server.get("/v1/payment_intents?limit=100")["data"]]


async def test_sigkill_after_authorize_before_commit_then_the_orphan_is_voided(
    writer_settings: Settings, database_url: str, localstripe: LocalStripe, tmp_path: Path
) -> None:
    """The provider (Stripe: localstripe, which outlives the writer) authorized the checkout,
    then the writer died before its batch committed (TESSERA_FAULT_CRASH_AFTER_AUTHORIZE): the
    authorization is known only to the provider. The restarted writer's scheduled reconcile
    fences the attempt and voids it within its bound; the fan's retry with the same key then
    buys the hold afresh, is captured, and the ledger holds on both sides."""
    localstripe.reset()
    crashing = with_stripe(writer_settings, localstripe, fault_crash_after_authorize=True)
    writer = start_writer(tmp_path / "a", writer_env(crashing))
    event_id = await create_event(writer.url, PRICED_ROOM)
    async with httpx.AsyncClient(base_url=writer.url, timeout=30) as client:
        api = WriterApi(client, crashing)
        held = await api.hold(event_id, "payer", {"seats": ["S:A:1", "S:A:2"]}, "h")
        assert held.status_code == 201, held.text
        hold_id = held.json()["hold_id"]
        with pytest.raises(httpx.HTTPError):
            await api.order("payer", hold_id, "pm_card_visa", "o")
    assert writer.process is not None
    assert writer.process.wait(timeout=10) != 0, "the writer must have died"
    assert intent_statuses(localstripe) == ["requires_capture"], "authorized at the provider"
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM payments").fetchone() == (0,)

    healthy = with_stripe(
        writer_settings,
        localstripe,
        reconcile_interval_s=1.0,
        reconcile_older_than_s=limits.reconcile_auto_older_than_s_min,
    )
    restarted = start_writer(tmp_path / "b", writer_env(healthy))
    try:
        bound_s = healthy.reconcile_older_than_s + 2 * healthy.reconcile_interval_s + 10
        deadline = time.monotonic() + bound_s
        while intent_statuses(localstripe) != ["canceled"]:
            assert time.monotonic() < deadline, f"not voided within {bound_s} s"
            await asyncio.sleep(0.2)
        async with httpx.AsyncClient(base_url=restarted.url, timeout=30) as client:
            api = WriterApi(client, healthy)
            api.hold_events[hold_id] = event_id
            bought = await api.order("payer", hold_id, "pm_card_visa", "o")
            assert bought.status_code == 201, bought.text
            order_id = bought.json()["order_id"]
            replay = await api.order("payer", hold_id, "pm_card_visa", "o")
            assert replay.json()["order_id"] == order_id
            metrics = (await client.get("/metrics")).text
        voided = [
            line
            for line in metrics.splitlines()
            if line.startswith("tessera_payments_reconciled_total{")
            and 'finding="voided_orphan"' in line
            and 'source="scheduled"' in line
        ]
        assert [line.rsplit(" ", 1)[1] for line in voided] == ["1.0"], voided
        problems = await asyncio.to_thread(ledger_problems, database_url, localstripe)
        assert not problems, "\n".join(problems)
        assert sorted(intent_statuses(localstripe)) == ["canceled", "succeeded"]
        assert orders_of(database_url, hold_id) == [order_id], "the acknowledged order is there"
        assert hold_status(database_url, hold_id) == "purchased"
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM seat_claims WHERE hold_id = %s AND state = 'sold'",
                (uuid.UUID(hold_id),),
            ).fetchone()
        assert row == (2,)
    finally:
        restarted.stop()
