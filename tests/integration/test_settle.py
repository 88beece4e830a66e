"""The payment saga's second half: the settler drives every recorded payment to its end.

Through a running writer (sandbox provider, real PostgreSQL, Redis and NATS): a confirmed order
is captured after its answer; a checkout whose hold ended before its batch ran is answered 409
and its authorization voided. Against a real Stripe-compatible server (localstripe,
tests/stripe_support.py) with the settler on its own: a provider that cannot be reached is
retried later, a capture the provider refuses ends `capture_failed`, and an authorization to
void that turns out captured is refunded instead.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient
from payment_support import record_payment
from stripe_support import API_KEY, LocalStripe, start_localstripe
from writer_support import ROOM, WRITER_ADMIN_KEY, WRITER_JWT_SECRET, event_body

from global_writer.app import create_app
from global_writer.db import migrate
from global_writer.db.engine import create_engine
from global_writer.payments import Authorization, SandboxProvider
from global_writer.settings import Settings
from global_writer.settle import Settler
from global_writer.stripe_provider import StripeProvider
from tessera.auth import mint_token
from tessera_ops.servers import free_port

SETTLED_WITHIN_S = 5.0
APPROVES = "pm_card_visa"


def payments(database_url: str) -> list[tuple[str, str | None, int, str | None]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT status, order_id::text, attempts, last_error FROM payments ORDER BY created_at"
        ).fetchall()
    return [(row[0], row[1], row[2], row[3]) for row in rows]


def wait_for_statuses(database_url: str, wanted: list[str]) -> None:
    deadline = time.monotonic() + SETTLED_WITHIN_S
    while [row[0] for row in payments(database_url)] != wanted:
        assert time.monotonic() < deadline, payments(database_url)
        time.sleep(0.05)


def fan(user: str, key: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {mint_token(user, WRITER_JWT_SECRET)}",
        "Idempotency-Key": key,
    }


@pytest.fixture
def sandbox() -> SandboxProvider:
    return SandboxProvider()


@pytest.fixture
def client(writer_settings: Settings, sandbox: SandboxProvider) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(writer_settings, payments=sandbox)) as client:
        yield client


def create_event(client: TestClient[Any]) -> str:
    response = client.post(
        "/v1/admin/events", headers={"X-Admin-Key": WRITER_ADMIN_KEY}, json=event_body(ROOM)
    )
    assert response.status_code == 201, response.text
    event_id: str = response.json()["event_id"]
    return event_id


def test_a_confirmed_order_is_captured_after_its_answer(
    client: TestClient[Any], sandbox: SandboxProvider, database_url: str
) -> None:
    event = create_event(client)
    held = client.post(
        f"/v1/events/{event}/holds", json={"seats": ["S:A:1"]}, headers=fan("ann", "h")
    )
    assert held.status_code == 201, held.text
    order = client.post(
        f"/v1/events/{event}/orders",
        json={"hold_id": held.json()["hold_id"], "payment_token": "tok_approve"},
        headers=fan("ann", "o"),
    )
    assert order.status_code == 201, order.text
    wait_for_statuses(database_url, ["captured"])
    assert payments(database_url)[0][1] == order.json()["order_id"]
    assert sandbox.counters.captures == 1 and sandbox.counters.voids == 0


def test_a_checkout_whose_hold_ended_in_the_database_is_voided(
    client: TestClient[Any], sandbox: SandboxProvider, database_url: str
) -> None:
    """The writer believes the hold live; the database's clock says it expired (time travel):
    the batch refuses the sale, answers 409 and records the authorization to void."""
    event = create_event(client)
    held = client.post(
        f"/v1/events/{event}/holds", json={"seats": ["S:A:2"]}, headers=fan("bob", "h")
    )
    hold_id = held.json()["hold_id"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE holds SET expires_at = now() - interval '1 second' WHERE hold_id = %s",
            (hold_id,),
        )
    refused = client.post(
        f"/v1/events/{event}/orders",
        json={"hold_id": hold_id, "payment_token": "tok_approve"},
        headers=fan("bob", "o"),
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] in ("hold_expired", "hold_not_active")
    wait_for_statuses(database_url, ["voided"])
    _, order_id, _, _ = payments(database_url)[0]
    assert order_id is None
    assert sandbox.counters.voids == 1 and sandbox.counters.captures == 0
    replay = client.post(
        f"/v1/events/{event}/orders",
        json={"hold_id": hold_id, "payment_token": "tok_approve"},
        headers=fan("bob", "o"),
    )
    assert replay.status_code == 409 and replay.headers["idempotent-replayed"] == "true"


# --- the settler on its own, against localstripe ---


@pytest.fixture(scope="module")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe]:
    server = start_localstripe(tmp_path_factory.mktemp("localstripe"))
    try:
        yield server
    finally:
        server.stop()


def payment_row(database_url: str, authorization: Authorization, status: str) -> uuid.UUID:
    return record_payment(database_url, authorization, status, with_order=status == "authorized")


def settle(database_url: str, provider: StripeProvider) -> int:
    """One settler pass, as the writer runs it (autocommit, READ COMMITTED)."""

    async def main() -> int:
        engine = create_engine(database_url, pre_ping=False, implicit_isolation="read committed")
        try:
            async with provider:
                autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
                return await Settler(autocommit, provider).settle_once()
        finally:
            await engine.dispose()

    return asyncio.run(main())


def stripe(url: str) -> StripeProvider:
    return StripeProvider(api_key=API_KEY, api_base=url)


def authorized(localstripe: LocalStripe, key: str) -> Authorization:
    async def main() -> Authorization:
        async with stripe(localstripe.url) as provider:
            return await provider.authorize(
                amount_minor=5_000, currency="EUR", payment_token=APPROVES, idempotency_key=key
            )

    return asyncio.run(main())


def test_an_unreachable_provider_is_retried_later(
    database_url: str, localstripe: LocalStripe
) -> None:
    migrate.upgrade(database_url)
    authorization = authorized(localstripe, "ann:retry")
    payment_row(database_url, authorization, "authorized")
    nowhere = f"http://127.0.0.1:{free_port()}"
    assert settle(database_url, stripe(nowhere)) == 1
    [(status, _, attempts, error)] = payments(database_url)
    assert (status, attempts) == ("authorized", 1)
    assert error is not None and error.startswith("retrying")
    assert settle(database_url, stripe(localstripe.url)) == 0, "not due again before its backoff"
    time.sleep(1.1)  # limits.settle_backoff_s_min after the first failure
    assert settle(database_url, stripe(localstripe.url)) == 1
    assert payments(database_url)[0][0] == "captured"


def test_a_refused_capture_ends_capture_failed(database_url: str, localstripe: LocalStripe) -> None:
    migrate.upgrade(database_url)
    authorization = authorized(localstripe, "ann:refused")

    async def void_at_the_provider() -> None:
        async with stripe(localstripe.url) as provider:
            await provider.void(authorization)

    asyncio.run(void_at_the_provider())
    payment_row(database_url, authorization, "authorized")
    settle(database_url, stripe(localstripe.url))
    [(status, _, attempts, error)] = payments(database_url)
    assert (status, attempts) == ("capture_failed", 1)
    assert error is not None


def test_a_void_of_a_captured_authorization_becomes_a_refund(
    database_url: str, localstripe: LocalStripe
) -> None:
    migrate.upgrade(database_url)
    authorization = authorized(localstripe, "ann:captured")

    async def capture_at_the_provider() -> None:
        async with stripe(localstripe.url) as provider:
            await provider.capture(authorization)

    asyncio.run(capture_at_the_provider())
    payment_row(database_url, authorization, "void_pending")
    settle(database_url, stripe(localstripe.url))
    assert payments(database_url)[0][0] == "refund_pending"
    settle(database_url, stripe(localstripe.url))
    assert payments(database_url)[0][0] == "refunded"
