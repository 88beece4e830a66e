"""The Stripe webhook endpoint and the writer's scheduled reconcile, against real servers:
localstripe (a Stripe-compatible API that also delivers signed webhooks), PostgreSQL, Redis and
NATS, with the writer in-process or as a real process.

- The route exists only when Stripe is the provider; a body that is not signed with the endpoint's
  secret, too old, oversize or not an event is 400 `webhook_refused` with the failed check as
  `reason`; an event type Tessera does not act on is 200 and ignored.
- End to end: localstripe delivers `payment_intent.succeeded` to a writer process, which finds the
  payment its settler still owes (backing off) and makes it due: captured at once.
- Events localstripe never sends (`payment_intent.canceled`, `amount_capturable_updated`,
  `charge.refunded`) are signed here with the SDK's own scheme (`stripe.WebhookSignature`); the
  writer always reads the intent back from localstripe, so duplicates and out-of-order
  deliveries change nothing.
- The schedule: an authorization made at the provider without an order (a writer that crashed
  after authorizing) is voided by the writer itself within its bound; with Stripe, one writer
  scans per round (a lease in Redis); with the sandbox, each writer its own.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
import redis.asyncio as aioredis
import stripe
from litestar.testing import TestClient
from payment_support import record_payment
from stripe_support import API_KEY, WEBHOOK_SECRET, LocalStripe, start_localstripe
from writer_support import writer_env

from global_writer import idempotency
from global_writer.app import create_app
from global_writer.checkout import attempt_key
from global_writer.db import migrate
from global_writer.db.engine import create_engine
from global_writer.metrics import ReconcileMetrics
from global_writer.ops import Idem
from global_writer.payments import Authorization, SandboxProvider
from global_writer.reconcile import LEASE_KEY, AutoReconciler, Reconciler
from global_writer.settings import Settings
from global_writer.stripe_provider import StripeProvider
from tessera import limits
from tessera.observability import Metrics
from tessera_ops.processes import start_writer

PATH = "/v1/payments/stripe/webhook"
# localstripe delivers about 1 s after the change; the settler then acts within a pass.
DELIVERED_WITHIN_S = 15.0


@pytest.fixture(scope="module")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe]:
    server = start_localstripe(tmp_path_factory.mktemp("localstripe"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stripe_server(localstripe: LocalStripe) -> LocalStripe:
    localstripe.reset()
    return localstripe


def stripe_settings(
    settings: Settings, server: LocalStripe, secret: str = WEBHOOK_SECRET, **more: Any
) -> Settings:
    return msgspec.structs.replace(
        settings,
        payment_provider="stripe",
        stripe_api_key=API_KEY,
        stripe_api_base=server.url,
        stripe_webhook_secret=secret,
        **more,
    )


def signed(event: dict[str, Any], *, age_s: int = 0, secret: str = WEBHOOK_SECRET) -> Any:
    """The body and headers of a delivery, signed with the Stripe SDK's own scheme."""
    body = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(
        body, secret, timestamp=int(time.time()) - age_s
    )
    return body.encode(), {"Stripe-Signature": header, "Content-Type": "application/json"}


def event_about(kind: str, intent_id: str, **fields: Any) -> dict[str, Any]:
    if kind.startswith("charge."):
        obj = {"id": f"ch_{uuid.uuid4().hex[:12]}", "object": "charge", "payment_intent": intent_id}
    else:
        obj = {"id": intent_id, "object": "payment_intent", "status": "requires_capture"}
    return {
        "id": f"evt_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "type": kind,
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": {**obj, **fields}},
    }


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def authorize(server: LocalStripe, key: str) -> Authorization:
    async def work() -> Authorization:
        async with StripeProvider(api_key=API_KEY, api_base=server.url) as provider:
            return await provider.authorize(
                amount_minor=4_200,
                currency="EUR",
                payment_token="pm_card_visa",
                idempotency_key=key,
            )

    authorization: Authorization = run(work())
    return authorization


def claim(database_url: str, idem: Idem) -> None:
    async def work() -> None:
        engine = create_engine(database_url, pre_ping=False, implicit_isolation="read committed")
        try:
            assert await idempotency.claim_new(engine, [idem]) == [True]
        finally:
            await engine.dispose()

    run(work())


def record(
    database_url: str, authorization: Authorization, status: str, *, due_in_s: float = 3_600
) -> None:
    """A payment whose next settler attempt is `due_in_s` away (a settler backing off)."""
    with_order = status not in ("void_pending", "voided")
    record_payment(database_url, authorization, status, with_order=with_order, due_in_s=due_in_s)


def status_of(database_url: str, authorization: Authorization) -> str | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT status FROM payments WHERE provider_ref = %s", (authorization.id,)
        ).fetchone()
    return None if row is None else str(row[0])


def wait_for(what: Any, within_s: float, why: str) -> None:
    deadline = time.monotonic() + within_s
    while not what():
        assert time.monotonic() < deadline, why
        time.sleep(0.1)


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(
            f'{key}="{value}"' in line for key, value in labels.items()
        ):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{{{wanted}}} in the metrics")


# --- the route and its refusals ---


def test_the_route_exists_only_with_stripe(writer_settings: Settings) -> None:
    with TestClient(create_app(writer_settings, payments=SandboxProvider())) as client:
        body, headers = signed(event_about("payment_intent.succeeded", "pi_x"))
        assert client.post(PATH, content=body, headers=headers).status_code == 404


def test_refusals_are_400_with_the_failed_check(
    writer_settings: Settings, stripe_server: LocalStripe
) -> None:
    settings = stripe_settings(writer_settings, stripe_server)
    with TestClient(create_app(settings)) as client:

        def refused(body: bytes, headers: dict[str, str]) -> str:
            answer = client.post(PATH, content=body, headers=headers)
            assert answer.status_code == 400, answer.text
            error = answer.json()["error"]
            assert error["code"] == "webhook_refused"
            reason: str = error["reason"]
            return reason

        body, headers = signed(event_about("payment_intent.succeeded", "pi_x"))
        assert refused(body + b" ", headers) == "webhook_signature_invalid"
        assert refused(body, {}) == "webhook_signature_invalid"
        _, other = signed(event_about("payment_intent.succeeded", "pi_x"), secret="whsec_other")
        assert refused(body, other) == "webhook_signature_invalid"
        stale_body, stale = signed(
            event_about("payment_intent.succeeded", "pi_x"),
            age_s=limits.payment_webhook_tolerance_s + 10,
        )
        assert refused(stale_body, stale) == "webhook_signature_stale"
        huge = {**event_about("payment_intent.succeeded", "pi_x"), "pad": "x" * (1 << 20)}
        assert refused(*signed(huge)) == "webhook_too_large"
        assert refused(*signed({"id": "evt_1"})) == "webhook_not_an_event"
        ignored = client.post(PATH, content=body.replace(b"succeeded", b"created"), headers={})
        assert ignored.status_code == 400, "the type is read only from a verified body"
        other_type = client.post(PATH, **_post(signed(event_about("customer.created", "x"))))
        assert other_type.status_code == 200, other_type.text
        assert other_type.json()["handled"] is False
        metrics = client.get("/metrics").text
        assert metric(metrics, "tessera_stripe_webhooks_total", result="refused") == 7
        assert metric(metrics, "tessera_stripe_webhooks_total", result="ignored") == 1


def _post(signed_event: Any) -> dict[str, Any]:
    body, headers = signed_event
    return {"content": body, "headers": headers}


def test_without_a_secret_every_delivery_is_refused(
    writer_settings: Settings, stripe_server: LocalStripe
) -> None:
    settings = stripe_settings(writer_settings, stripe_server, secret="")
    with TestClient(create_app(settings)) as client:
        answer = client.post(PATH, **_post(signed(event_about("payment_intent.succeeded", "x"))))
        assert answer.status_code == 400
        assert answer.json()["error"]["reason"] == "webhook_secret_unset"


# --- acting on events ---


def test_localstripe_delivers_a_capture_and_the_settler_records_it_at_once(
    writer_settings: Settings, stripe_server: LocalStripe, tmp_path: Path
) -> None:
    """A payment the settler owes (`authorized`, its next attempt an hour away: it backed off
    while Stripe was unreachable) is captured at Stripe meanwhile (its capture went through
    before the error). localstripe's real delivery of `payment_intent.succeeded` to the writer
    makes the payment due, and the settler records it captured at once."""
    authorization = authorize(stripe_server, attempt_key(Idem("ann", "paid", b"")))
    database_url = writer_settings.database_url
    migrate.upgrade(database_url)
    record(database_url, authorization, "authorized")
    settings = stripe_settings(writer_settings, stripe_server)
    writer = start_writer(tmp_path / "writer", writer_env(settings))
    try:
        stripe_server.register_webhook(
            f"{writer.url}{PATH}", WEBHOOK_SECRET, ["payment_intent.succeeded"]
        )
        stripe_server.post(f"/v1/payment_intents/{authorization.id}/capture", {})
        wait_for(
            lambda: status_of(database_url, authorization) == "captured",
            DELIVERED_WITHIN_S,
            f"not captured; writer log:\n{writer.log_tail()}",
        )
        metrics = httpx.get(f"{writer.url}/metrics", timeout=5).text
        assert metric(metrics, "tessera_stripe_webhooks_total", result="handled") >= 1
        assert (
            metric(
                metrics,
                "tessera_payments_reconciled_total",
                source="webhook",
                finding="woke_settler",
            )
            >= 1
        )
    finally:
        stripe_server.register_webhook(f"{writer.url}{PATH}", WEBHOOK_SECRET, [])
        writer.stop()


def test_events_localstripe_never_sends_duplicates_and_late_ones(
    writer_settings: Settings, stripe_server: LocalStripe
) -> None:
    """`payment_intent.canceled` (localstripe sends none): the void the settler owes is recorded
    at once. The same event again, and an `amount_capturable_updated` that arrives after it,
    change nothing: the writer reads the intent's state now, not the event's copy."""
    voided = authorize(stripe_server, attempt_key(Idem("ann", "lost", b"")))
    refunded = authorize(stripe_server, attempt_key(Idem("bob", "refund", b"")))
    database_url = writer_settings.database_url
    migrate.upgrade(database_url)
    record(database_url, voided, "void_pending")
    record(database_url, refunded, "refund_pending")
    stripe_server.post(f"/v1/payment_intents/{voided.id}/cancel", {})
    stripe_server.post(f"/v1/payment_intents/{refunded.id}/capture", {})
    settings = stripe_settings(writer_settings, stripe_server)
    with TestClient(create_app(settings)) as client:

        def deliver(kind: str, intent_id: str) -> dict[str, Any]:
            answer = client.post(PATH, **_post(signed(event_about(kind, intent_id))))
            assert answer.status_code == 200, answer.text
            found: dict[str, Any] = answer.json()
            return found

        first = deliver("payment_intent.canceled", voided.id)
        assert (first["handled"], first["finding"]) == (True, "woke_settler")
        wait_for(lambda: status_of(database_url, voided) == "voided", 5, "void not recorded")
        again = deliver("payment_intent.canceled", voided.id)
        assert (again["finding"], again["status"]) == ("in_step", "voided")
        late = deliver("payment_intent.amount_capturable_updated", voided.id)
        assert (late["finding"], late["status"]) == ("in_step", "voided")
        assert status_of(database_url, voided) == "voided"

        refund = deliver("charge.refunded", refunded.id)
        assert (refund["payment_intent"], refund["finding"]) == (refunded.id, "woke_settler")
        wait_for(lambda: status_of(database_url, refunded) == "refunded", 5, "refund not made")
        refunds = stripe_server.get(f"/v1/refunds?payment_intent={refunded.id}")["data"]
        assert len(refunds) == 1, "refunded once"
        assert deliver("charge.refunded", refunded.id)["finding"] == "in_step"

        unknown = deliver("payment_intent.succeeded", "pi_not_this_accounts")
        assert unknown["handled"] is False


def test_a_young_orphan_is_left_to_the_schedule_and_an_old_one_is_voided(
    writer_settings: Settings, stripe_server: LocalStripe
) -> None:
    """An authorization no order holds, as a webhook names it: inside the grace a checkout may
    still commit it, so it is left alone; past the grace (the reconciler's same code, asked
    with no grace) its attempt is fenced and it is voided. Captured at the provider with no
    payment recorded is a mismatch for an operator."""
    database_url = writer_settings.database_url
    migrate.upgrade(database_url)
    crashed = Idem("ann", "crashed", b"h")
    claim(database_url, crashed)
    orphan = authorize(stripe_server, attempt_key(crashed))
    taken = authorize(stripe_server, attempt_key(Idem("bob", "taken", b"")))
    stripe_server.post(f"/v1/payment_intents/{taken.id}/capture", {})
    settings = stripe_settings(writer_settings, stripe_server)
    with TestClient(create_app(settings)) as client:
        answer = client.post(
            PATH,
            **_post(signed(event_about("payment_intent.amount_capturable_updated", orphan.id))),
        )
        assert answer.json()["finding"] == "young"
        assert stripe_server.get(f"/v1/payment_intents/{orphan.id}")["status"] == "requires_capture"

    async def check(ids: list[str]) -> list[str]:
        engine = create_engine(database_url, pre_ping=False, implicit_isolation="read committed")
        try:
            async with StripeProvider(api_key=API_KEY, api_base=stripe_server.url) as provider:
                reconciler = Reconciler(engine, provider, source="webhook")
                findings: list[str] = []
                for intent_id in ids:
                    found_now = await provider.find_authorization(intent_id)
                    assert found_now is not None
                    item = await reconciler.check(found_now, older_than_s=-5.0)
                    findings.append(item.finding)
                return findings
        finally:
            await engine.dispose()

    assert run(check([orphan.id, taken.id])) == ["voided_orphan", "mismatch"]
    assert stripe_server.get(f"/v1/payment_intents/{orphan.id}")["status"] == "canceled"
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM idempotency_keys").fetchone() == (0,), "fenced"


# --- the schedule ---


def test_the_writer_voids_an_orphaned_authorization_by_itself(
    writer_settings: Settings, stripe_server: LocalStripe
) -> None:
    """A writer crashed after the provider authorized and before its batch committed: only
    Stripe knows the authorization. The writer's schedule (every 1 s here, grace 30 s, the
    least allowed) fences the attempt and voids it within grace + two intervals."""
    database_url = writer_settings.database_url
    settings = stripe_settings(
        writer_settings,
        stripe_server,
        reconcile_interval_s=1.0,
        reconcile_older_than_s=limits.reconcile_auto_older_than_s_min,
    )
    with TestClient(create_app(settings)) as client:
        crashed = Idem("ann", "crashed", b"h")
        claim(database_url, crashed)
        orphan = authorize(stripe_server, attempt_key(crashed))
        kept = authorize(stripe_server, attempt_key(Idem("bob", "kept", b"")))
        record(database_url, kept, "authorized")
        bound_s = settings.reconcile_older_than_s + 2 * settings.reconcile_interval_s + 5
        wait_for(
            lambda: stripe_server.get(f"/v1/payment_intents/{orphan.id}")["status"] == "canceled",
            bound_s,
            f"the orphan was not voided within {bound_s} s",
        )
        metrics = client.get("/metrics").text
        voided = metric(
            metrics,
            "tessera_payments_reconciled_total",
            source="scheduled",
            finding="voided_orphan",
        )
        assert voided == 1
        assert metric(metrics, "tessera_reconcile_rounds_total", result="ran") >= 1
    assert stripe_server.get(f"/v1/payment_intents/{kept.id}")["status"] != "canceled"


def test_one_writer_scans_per_round_with_stripe_and_each_its_own_with_the_sandbox(
    database_url: str, redis_url: str, stripe_server: LocalStripe
) -> None:
    migrate.upgrade(database_url)

    async def work() -> list[bool]:
        engine = create_engine(database_url, pre_ping=False, implicit_isolation="read committed")
        redis = aioredis.from_url(redis_url)
        await redis.delete(LEASE_KEY)
        metrics = ReconcileMetrics(Metrics().registry)
        try:
            async with StripeProvider(api_key=API_KEY, api_base=stripe_server.url) as provider:
                writers = [
                    AutoReconciler(
                        Reconciler(engine, provider, metrics, "scheduled"),
                        redis,
                        owner,
                        interval_s=30.0,
                        older_than_s=60.0,
                    )
                    for owner in ("writer-a", "writer-b")
                ]
                ran = [await w.round() is not None for w in writers]
                ran.append(await writers[0].round() is not None)  # its own lease: renewed
                await redis.delete(LEASE_KEY)  # its holder died and the lease lapsed
                ran.append(await writers[1].round() is not None)
                sandboxes = [
                    AutoReconciler(Reconciler(engine, SandboxProvider()), redis, owner)
                    for owner in ("writer-a", "writer-c")
                ]
                ran += [await w.round() is not None for w in sandboxes]
                return ran
        finally:
            await redis.delete(LEASE_KEY)
            await redis.aclose()
            await engine.dispose()

    assert run(work()) == [True, False, True, True, True, True]
