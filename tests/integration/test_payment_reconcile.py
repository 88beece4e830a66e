"""The payment saga's edges: a retry that takes over a checkout's key fences the first attempt,
and reconciliation ends what the provider holds open and the database does not account for.

- Takeover (real writer in-process, sandbox provider, real PostgreSQL, Redis and NATS): a retry
  that takes over a key left in flight ends the first attempt's chance to sell; the first
  attempt's authorization is voided, the retry's is the order's and is captured.
- Fencing: `fence` ends only its own attempt's claim, and a batch's answer is stored only under
  the attempt that holds the key.
- Reconciliation (global_writer/reconcile.py) against the sandbox and against a real
  Stripe-compatible server (localstripe): an orphan is fenced and voided, a dry run changes
  nothing, what the settler owns is left to it, a voided payment still open is voided again, a
  captured one still open is reported, an authorization Tessera did not make is never touched.
- The endpoint and `tessera payments reconcile` against a real writer process.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import psycopg
import pytest
from litestar.testing import TestClient
from payment_support import record_payment
from stripe_support import API_KEY, LocalStripe, start_localstripe
from writer_support import ROOM, WRITER_ADMIN_KEY, WRITER_JWT_SECRET, event_body

from global_writer import idempotency
from global_writer.app import create_app
from global_writer.checkout import attempt_key, parse_attempt_key
from global_writer.db import migrate
from global_writer.db.engine import create_engine
from global_writer.ops import Idem, Reply
from global_writer.payments import Authorization, PaymentProvider, SandboxProvider
from global_writer.reconcile import Reconciler, Report
from global_writer.settings import Settings
from global_writer.stripe_provider import StripeProvider
from tessera import limits
from tessera.auth import mint_token
from tessera_ops.cli import main as tessera
from tessera_ops.processes import ServiceProcess

SETTLED_WITHIN_S = 5.0


def fan(user: str, key: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {mint_token(user, WRITER_JWT_SECRET)}",
        "Idempotency-Key": key,
    }


def payments(database_url: str) -> list[tuple[str, str | None, str]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT status, order_id::text, provider_ref FROM payments ORDER BY created_at"
        ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


def key_row(database_url: str, user: str, key: str) -> tuple[str, uuid.UUID | None] | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT status, attempt FROM idempotency_keys WHERE user_id = %s AND key = %s",
            (user, key),
        ).fetchone()
    return None if row is None else (row[0], row[1])


def create_event(client: TestClient[Any]) -> str:
    response = client.post(
        "/v1/admin/events", headers={"X-Admin-Key": WRITER_ADMIN_KEY}, json=event_body(ROOM)
    )
    assert response.status_code == 201, response.text
    event_id: str = response.json()["event_id"]
    return event_id


# --- a retry that takes over a key in flight ---


def test_a_retry_that_takes_over_a_checkout_fences_the_first_attempt(
    writer_settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt is still authorizing (tok_slow, 1 s) when its retry, past the in-flight
    bound, takes the key over. The first attempt's batch must not sell: before attempts were
    fenced it did, stored its 201 under the retry's claim, and the retry, the answer the fan
    waits for, got 409 for its own hold."""
    monkeypatch.setattr(limits, "idempotency_in_flight_s_max", 0.2)
    sandbox = SandboxProvider(slow_delay_s=1.0)
    settings = msgspec.structs.replace(writer_settings, payment_slow_s=1.0)
    with TestClient(create_app(settings, payments=sandbox)) as client:
        event = create_event(client)
        held = client.post(
            f"/v1/events/{event}/holds", json={"seats": ["S:A:1"]}, headers=fan("ann", "h")
        )
        assert held.status_code == 201, held.text
        body = {"hold_id": held.json()["hold_id"], "payment_token": "tok_slow"}
        answers: dict[str, Any] = {}

        def checkout(name: str) -> None:
            answers[name] = client.post(
                f"/v1/events/{event}/orders", json=body, headers=fan("ann", "o")
            )

        first = threading.Thread(target=checkout, args=("first",))
        first.start()
        time.sleep(0.5)  # the first attempt's key is now older than the in-flight bound
        checkout("retry")
        first.join(timeout=10)
        assert answers["retry"].status_code == 201, answers["retry"].text
        assert answers["first"].status_code == 409, answers["first"].text
        order_id = answers["retry"].json()["order_id"]
        deadline = time.monotonic() + SETTLED_WITHIN_S
        while sorted(p[0] for p in payments(database_url)) != ["captured", "voided"]:
            assert time.monotonic() < deadline, payments(database_url)
            time.sleep(0.05)
        by_status = {status: (order, ref) for status, order, ref in payments(database_url)}
        assert by_status["captured"][0] == order_id
        assert by_status["voided"][0] is None
        counters = sandbox.counters
        assert (counters.authorizations, counters.captures, counters.voids) == (2, 1, 1)
        replay = client.post(f"/v1/events/{event}/orders", json=body, headers=fan("ann", "o"))
        assert replay.status_code == 201 and replay.json()["order_id"] == order_id
        assert replay.headers["idempotent-replayed"] == "true"


# --- fencing, directly ---


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def with_engine(database_url: str, work: Any) -> Any:
    engine = create_engine(database_url, pre_ping=False, implicit_isolation="read committed")
    try:
        return await work(engine)
    finally:
        await engine.dispose()


def test_a_fence_ends_only_its_own_attempts_claim(database_url: str) -> None:
    migrate.upgrade(database_url)
    first, retry = Idem("ann", "k", b"h"), Idem("ann", "k", b"h")

    async def work(engine: Any) -> None:
        assert await idempotency.claim_new(engine, [first]) == [True]
        await idempotency.fence(engine, "ann", "k", retry.attempt)  # not its claim: no effect
        assert key_row(database_url, "ann", "k") == ("in_flight", first.attempt)
        await idempotency.abandon(engine, first)
        assert key_row(database_url, "ann", "k") is None
        assert await idempotency.claim_new(engine, [retry]) == [True]
        # The fenced attempt can neither free the key nor answer for it.
        await idempotency.abandon(engine, first)
        await idempotency.finish(engine, first, Reply(201, b"{}"))
        assert key_row(database_url, "ann", "k") == ("in_flight", retry.attempt)
        await idempotency.finish(engine, retry, Reply(409, b"{}"))
        assert key_row(database_url, "ann", "k") == ("done", retry.attempt)

    run(with_engine(database_url, work))


def test_attempt_keys_name_their_claim() -> None:
    idem = Idem("ann.b-1", "key:with:colons", b"")
    assert parse_attempt_key(attempt_key(idem)) == ("ann.b-1", "key:with:colons", idem.attempt)
    for foreign in ("dashboard", "ann:key", "ann:key:nothex", ":k:" + "0" * 32, "ann::" + "0" * 32):
        assert parse_attempt_key(foreign) is None


# --- reconciliation ---


def claim(database_url: str, idem: Idem) -> None:
    async def work(engine: Any) -> None:
        assert await idempotency.claim_new(engine, [idem]) == [True]

    run(with_engine(database_url, work))


def record(database_url: str, authorization: Authorization, status: str) -> None:
    with_order = status not in ("void_pending", "voided")
    record_payment(database_url, authorization, status, with_order=with_order)


def reconcile(database_url: str, provider: PaymentProvider, *, apply: bool) -> Report:
    async def work(engine: Any) -> Report:
        # Every authorization counts, however young (the writer's endpoint refuses under 60 s).
        return await Reconciler(engine, provider).run(older_than_s=-5.0, apply=apply)

    report: Report = run(with_engine(database_url, work))
    return report


def findings(report: Report) -> dict[str, str]:
    return {item.authorization_id: item.finding for item in report.items}


async def authorize(provider: PaymentProvider, key: str, token: str = "tok_approve") -> Any:
    return await provider.authorize(
        amount_minor=4_200, currency="EUR", payment_token=token, idempotency_key=key
    )


def test_reconcile_against_the_sandbox(database_url: str) -> None:
    migrate.upgrade(database_url)
    sandbox = SandboxProvider()
    crashed = Idem("ann", "crashed", b"h")  # its writer died after authorizing
    claim(database_url, crashed)

    async def make() -> dict[str, Authorization]:
        return {
            "orphan": await authorize(sandbox, attempt_key(crashed)),
            "lost": await authorize(sandbox, attempt_key(Idem("bob", "gone", b""))),
            "foreign": await authorize(sandbox, "made-in-the-dashboard"),
            "settling": await authorize(sandbox, attempt_key(Idem("cat", "a", b""))),
            "voided": await authorize(sandbox, attempt_key(Idem("dan", "v", b""))),
            "captured": await authorize(sandbox, attempt_key(Idem("eve", "c", b""))),
        }

    made = run(make())
    record(database_url, made["settling"], "authorized")
    record(database_url, made["voided"], "voided")
    record(database_url, made["captured"], "captured")

    dry = reconcile(database_url, sandbox, apply=False)
    assert dry.open_at_provider == 6 and not dry.ok
    assert findings(dry) == {
        made["orphan"].id: "orphan",
        made["lost"].id: "orphan",
        made["foreign"].id: "foreign",
        made["settling"].id: "settling",
        made["voided"].id: "void_again",
        made["captured"].id: "mismatch",
    }
    assert sandbox.counters.voids == 0
    assert key_row(database_url, "ann", "crashed") == ("in_flight", crashed.attempt)

    applied = reconcile(database_url, sandbox, apply=True)
    assert findings(applied) == {
        made["orphan"].id: "voided_orphan",
        made["lost"].id: "voided_orphan",
        made["foreign"].id: "foreign",
        made["settling"].id: "settling",
        made["voided"].id: "voided_again",
        made["captured"].id: "mismatch",
    }
    assert not applied.ok, "a mismatch is left for an operator"
    assert sandbox.counters.voids == 3
    assert key_row(database_url, "ann", "crashed") is None, "the crashed attempt was fenced"

    again = reconcile(database_url, sandbox, apply=True)
    assert findings(again) == {
        made["foreign"].id: "foreign",
        made["settling"].id: "settling",
        made["captured"].id: "mismatch",
    }


def test_an_authorization_its_batch_recorded_is_never_voided(database_url: str) -> None:
    """The batch committed between the provider's list and the fence: the fence finds the key
    done, the second look finds the payment, and the settler keeps it."""
    migrate.upgrade(database_url)
    sandbox = SandboxProvider()
    idem = Idem("ann", "late", b"h")
    claim(database_url, idem)
    authorization = run(authorize(sandbox, attempt_key(idem)))

    class NeverVoids(SandboxProvider):
        async def list_open_authorizations(self, created_before: Any) -> Any:
            return await sandbox.list_open_authorizations(created_before)

        async def void(self, authorization: Authorization) -> None:
            raise AssertionError("voided an authorization an order holds")

    class CommitsAfterTheFirstLook(Reconciler):
        looks = 0

        async def statuses(self, refs: Any) -> dict[str, str]:
            found = await super().statuses(refs)
            if self.looks == 0:
                record(database_url, authorization, "authorized")  # the batch commits now
                with psycopg.connect(database_url, autocommit=True) as conn:
                    conn.execute("UPDATE idempotency_keys SET status = 'done'")
            self.looks += 1
            return found

    async def work(engine: Any) -> Report:
        reconciler = CommitsAfterTheFirstLook(engine, NeverVoids())
        return await reconciler.run(older_than_s=-5.0, apply=True)

    report: Report = run(with_engine(database_url, work))
    assert findings(report) == {authorization.id: "recorded_after_fence"}
    assert key_row(database_url, "ann", "late") == ("done", idem.attempt), "a done key stays"


@pytest.fixture(scope="module")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe]:
    server = start_localstripe(tmp_path_factory.mktemp("localstripe"))
    try:
        yield server
    finally:
        server.stop()


def test_reconcile_against_localstripe(database_url: str, localstripe: LocalStripe) -> None:
    migrate.upgrade(database_url)
    crashed = Idem("ann", "crashed", b"h")
    claim(database_url, crashed)

    async def make() -> tuple[Authorization, Authorization]:
        async with StripeProvider(api_key=API_KEY, api_base=localstripe.url) as provider:
            orphan = await authorize(provider, attempt_key(crashed), "pm_card_visa")
            kept = await authorize(provider, attempt_key(Idem("bob", "k", b"")), "pm_card_visa")
            return orphan, kept

    orphan, kept = run(make())
    record(database_url, kept, "authorized")

    async def work(engine: Any) -> Report:
        async with StripeProvider(api_key=API_KEY, api_base=localstripe.url) as provider:
            # localstripe's `created` is whole seconds: reach a little into the future.
            return await Reconciler(engine, provider).run(older_than_s=-5.0, apply=True)

    report: Report = run(with_engine(database_url, work))
    assert findings(report) == {orphan.id: "voided_orphan", kept.id: "settling"}
    assert key_row(database_url, "ann", "crashed") is None

    async def still_open() -> set[str]:
        async with StripeProvider(api_key=API_KEY, api_base=localstripe.url) as provider:
            listed = await provider.list_open_authorizations(report.created_before)
            return {item.authorization.id for item in listed}

    assert run(still_open()) == {kept.id}


# --- the endpoint and the command ---


def test_the_endpoint_needs_the_admin_key_and_a_grace(
    writer_settings: Settings, database_url: str
) -> None:
    sandbox = SandboxProvider()
    with TestClient(create_app(writer_settings, payments=sandbox)) as client:
        path = "/v1/admin/payments/reconcile"
        assert client.post(path, json={}).status_code == 401
        admin = {"X-Admin-Key": WRITER_ADMIN_KEY}
        assert client.post(path, json={"older_than_s": 1}, headers=admin).status_code == 422
        assert client.post(path, json={"dry": True}, headers=admin).status_code == 422
        assert client.post(path, content=b"{", headers=admin).status_code == 400
        event = create_event(client)
        held = client.post(
            f"/v1/events/{event}/holds", json={"seats": ["S:A:3"]}, headers=fan("ann", "h")
        )
        bought = client.post(
            f"/v1/events/{event}/orders",
            json={"hold_id": held.json()["hold_id"], "payment_token": "tok_approve"},
            headers=fan("ann", "o"),
        )
        assert bought.status_code == 201, bought.text
        answer = client.post(path, json={"apply": True}, headers=admin)
        assert answer.status_code == 200, answer.text
        report = answer.json()
        assert report["ok"] and report["applied"] and report["items"] == []
        assert sandbox.counters.voids == 0


def test_the_command_asks_the_writer(
    writer_process: ServiceProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TESSERA_ADMIN_KEY", WRITER_ADMIN_KEY)
    command = ["payments", "reconcile", "--writer-url", writer_process.url]
    assert tessera(command) == 0
    out = capsys.readouterr().out
    assert "0 open at the provider" in out and "(dry run)" in out and out.rstrip().endswith("OK")
    assert tessera([*command, "--apply", "--json"]) == 0
    assert '"applied": true' in capsys.readouterr().out
    assert tessera([*command, "--older-than-s", "5"]) == 2, "under the least grace: refused"
    monkeypatch.setenv("TESSERA_ADMIN_KEY", "not-the-key-" + "x" * 24)
    assert tessera(command) == 2
    assert "401" in capsys.readouterr().err
