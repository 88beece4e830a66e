"""The sandbox payment provider: every documented token, idempotency, capture and void."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from global_writer.payments import (
    Authorization,
    OpenAuthorization,
    PaymentDeclined,
    PaymentError,
    PaymentProvider,
    PaymentUnavailable,
    SandboxCounters,
    SandboxProvider,
)
from tessera import limits

FAST = 0.05  # tok_slow's delay in these tests


def authorize(
    provider: PaymentProvider,
    token: str = "tok_approve",
    *,
    key: str = "user-1:key-1",
    amount_minor: int = 12_500,
    currency: str = "EUR",
) -> Authorization:
    return asyncio.run(
        provider.authorize(
            amount_minor=amount_minor, currency=currency, payment_token=token, idempotency_key=key
        )
    )


def counters(
    authorizations: int = 0, declines: int = 0, captures: int = 0, voids: int = 0
) -> SandboxCounters:
    return SandboxCounters(authorizations, declines, captures, voids)


@pytest.fixture
def sandbox() -> SandboxProvider:
    return SandboxProvider(slow_delay_s=FAST)


# --- the tokens ---


def test_tok_approve_authorizes_the_amount(sandbox: SandboxProvider) -> None:
    provider: PaymentProvider = sandbox  # the sandbox satisfies the interface checkout uses
    authorization = authorize(provider)
    assert authorization.provider == provider.name == "sandbox"
    assert (authorization.amount_minor, authorization.currency) == (12_500, "EUR")
    assert authorization.id.startswith("sandbox_auth_")
    assert sandbox.counters == counters(authorizations=1)


def test_a_zero_amount_is_authorized(sandbox: SandboxProvider) -> None:
    assert authorize(sandbox, amount_minor=0).amount_minor == 0


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("tok_decline", "card_declined"),
        ("tok_insufficient_funds", "insufficient_funds"),
        ("tok_visa_4242_secret", "invalid_payment_token"),
        ("", "invalid_payment_token"),
        ("tok approve", "invalid_payment_token"),
        ("tok_é", "invalid_payment_token"),
        ("t" * (limits.payment_token_chars_max + 1), "invalid_payment_token"),
    ],
    ids=lambda value: value[:24],
)
def test_declines_carry_their_code(sandbox: SandboxProvider, token: str, code: str) -> None:
    with pytest.raises(PaymentDeclined) as caught:
        authorize(sandbox, token)
    assert caught.value.code == code
    assert caught.value.http_status == 402
    assert isinstance(caught.value, PaymentError)
    assert not token or token not in str(caught.value)
    assert sandbox.counters == counters(declines=1)


def test_tok_network_error_is_unavailable_and_leaves_the_key_free(sandbox: SandboxProvider) -> None:
    for _ in range(2):
        with pytest.raises(PaymentUnavailable) as caught:
            authorize(sandbox, "tok_network_error")
        assert caught.value.code == "payment_provider_unavailable"
        assert caught.value.http_status == 502
    assert sandbox.counters == counters()
    # Nothing was recorded, so the fan's retry (same key, the hold still theirs) may succeed.
    assert authorize(sandbox, "tok_approve").amount_minor == 12_500


def test_tok_slow_approves_after_the_delay(sandbox: SandboxProvider) -> None:
    started = time.monotonic()
    authorization = authorize(sandbox, "tok_slow")
    assert time.monotonic() - started >= FAST
    assert authorization.provider == "sandbox"
    assert sandbox.counters == counters(authorizations=1)


def test_the_default_slow_delay_comes_from_limits() -> None:
    assert SandboxProvider().slow_delay_s == limits.payment_sandbox_slow_delay_s == 2.0


def test_every_documented_token_is_listed() -> None:
    assert SandboxProvider.TOKENS == (
        "tok_approve",
        "tok_decline",
        "tok_insufficient_funds",
        "tok_network_error",
        "tok_slow",
    )


# --- idempotency ---


def test_the_same_key_and_arguments_return_the_same_authorization(
    sandbox: SandboxProvider,
) -> None:
    first = authorize(sandbox)
    assert authorize(sandbox) == first  # also across event loops: one asyncio.run per call
    assert sandbox.counters == counters(authorizations=1)  # charged once


@pytest.mark.parametrize(
    "change",
    [{"amount_minor": 12_501}, {"currency": "USD"}, {"token": "tok_slow"}],
    ids=["amount", "currency", "token"],
)
def test_the_same_key_with_other_arguments_is_a_mismatch(
    sandbox: SandboxProvider, change: dict[str, Any]
) -> None:
    authorize(sandbox)
    with pytest.raises(PaymentError) as caught:
        authorize(sandbox, **change)
    assert type(caught.value) is PaymentError
    assert (caught.value.code, caught.value.http_status) == ("idempotency_mismatch", 500)
    assert sandbox.counters == counters(authorizations=1)


def test_a_decline_is_replayed_for_the_same_key(sandbox: SandboxProvider) -> None:
    for _ in range(2):
        with pytest.raises(PaymentDeclined, match="declined") as caught:
            authorize(sandbox, "tok_decline")
        assert caught.value.code == "card_declined"
    assert sandbox.counters == counters(declines=1)
    with pytest.raises(PaymentError, match="different") as mismatch:
        authorize(sandbox, "tok_approve")  # a new card needs a new key
    assert mismatch.value.code == "idempotency_mismatch"


def test_different_keys_are_different_charges(sandbox: SandboxProvider) -> None:
    first = authorize(sandbox, key="user-1:a")
    second = authorize(sandbox, key="user-1:b")
    assert first.id != second.id
    assert sandbox.counters == counters(authorizations=2)


def test_a_restarted_sandbox_finishes_what_an_earlier_one_authorized() -> None:
    """State is per instance, but the settler must be able to capture or void, after a writer
    restart, what the writer's sandbox authorized before it (tests/faults: captures pending)."""
    one, two = SandboxProvider(), SandboxProvider()
    before = authorize(one)
    assert before.id != authorize(two).id
    asyncio.run(two.capture(before))
    assert two.counters.captures == 1
    asyncio.run(two.capture(before))  # a repeat is still a no-op
    assert two.counters.captures == 1
    voided = authorize(one, key="user-1:v")
    asyncio.run(two.void(voided))
    with pytest.raises(PaymentError) as caught:
        asyncio.run(two.capture(voided))
    assert caught.value.code == "authorization_voided"


def test_the_sandbox_knows_nothing_another_provider_made() -> None:
    sandbox = SandboxProvider()
    foreign = msgspec.structs.replace(authorize(SandboxProvider()), provider="stripe")
    for operation in (sandbox.capture, sandbox.void):
        with pytest.raises(PaymentError) as caught:
            asyncio.run(operation(foreign))
        assert caught.value.code == "authorization_unknown"


def test_concurrent_calls_with_one_key_charge_once(sandbox: SandboxProvider) -> None:
    async def both() -> list[Authorization]:
        calls = [
            sandbox.authorize(
                amount_minor=100, currency="GBP", payment_token="tok_slow", idempotency_key="k"
            )
            for _ in range(3)
        ]
        return await asyncio.gather(*calls)

    first, second, third = asyncio.run(both())
    assert first == second == third
    assert sandbox.counters == counters(authorizations=1)


def test_a_concurrent_decline_reaches_every_caller(sandbox: SandboxProvider) -> None:
    async def both() -> list[BaseException | Authorization]:
        calls = [
            sandbox.authorize(
                amount_minor=100, currency="GBP", payment_token="tok_decline", idempotency_key="k"
            )
            for _ in range(2)
        ]
        return await asyncio.gather(*calls, return_exceptions=True)

    outcomes = asyncio.run(both())
    assert [getattr(outcome, "code", None) for outcome in outcomes] == ["card_declined"] * 2
    assert outcomes[0] is not outcomes[1]  # each caller gets its own exception object


def test_a_cancelled_first_call_frees_the_key_and_releases_waiters(
    sandbox: SandboxProvider,
) -> None:
    async def scenario() -> BaseException | Authorization:
        args: dict[str, Any] = {
            "amount_minor": 100,
            "currency": "GBP",
            "payment_token": "tok_slow",
            "idempotency_key": "k",
        }
        first = asyncio.create_task(sandbox.authorize(**args))
        await asyncio.sleep(0)  # the first call is now sleeping inside the provider
        waiter = asyncio.create_task(sandbox.authorize(**args))
        await asyncio.sleep(0)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        (outcome,) = await asyncio.gather(waiter, return_exceptions=True)
        return outcome

    outcome = asyncio.run(scenario())
    assert isinstance(outcome, PaymentUnavailable)
    assert sandbox.counters == counters()
    assert authorize(sandbox, "tok_slow", key="k", amount_minor=100, currency="GBP")


def test_a_cancelled_waiter_does_not_disturb_the_first_call(sandbox: SandboxProvider) -> None:
    async def scenario() -> Authorization:
        def call() -> Coroutine[Any, Any, Authorization]:
            return sandbox.authorize(
                amount_minor=1, currency="JPY", payment_token="tok_slow", idempotency_key="k"
            )

        first = asyncio.create_task(call())
        await asyncio.sleep(0)
        waiter = asyncio.create_task(call())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return await first

    assert asyncio.run(scenario()).amount_minor == 1
    assert sandbox.counters == counters(authorizations=1)


def test_a_full_sandbox_is_unavailable_but_still_replays() -> None:
    sandbox = SandboxProvider(attempts_max=2)
    first = authorize(sandbox, key="a")
    authorize(sandbox, key="b")
    with pytest.raises(PaymentUnavailable, match="full"):
        authorize(sandbox, key="c")
    assert authorize(sandbox, key="a") == first


# --- capture and void ---


def test_capture_is_idempotent(sandbox: SandboxProvider) -> None:
    authorization = authorize(sandbox)
    asyncio.run(sandbox.capture(authorization))
    asyncio.run(sandbox.capture(authorization))
    assert sandbox.counters == counters(authorizations=1, captures=1)


def test_void_is_idempotent(sandbox: SandboxProvider) -> None:
    authorization = authorize(sandbox)
    asyncio.run(sandbox.void(authorization))
    asyncio.run(sandbox.void(authorization))
    assert sandbox.counters == counters(authorizations=1, voids=1)


def test_void_after_capture_fails(sandbox: SandboxProvider) -> None:
    authorization = authorize(sandbox)
    asyncio.run(sandbox.capture(authorization))
    with pytest.raises(PaymentError) as caught:
        asyncio.run(sandbox.void(authorization))
    assert caught.value.code == "authorization_captured"
    assert sandbox.counters == counters(authorizations=1, captures=1)


def test_capture_after_void_fails(sandbox: SandboxProvider) -> None:
    authorization = authorize(sandbox)
    asyncio.run(sandbox.void(authorization))
    with pytest.raises(PaymentError) as caught:
        asyncio.run(sandbox.capture(authorization))
    assert caught.value.code == "authorization_voided"
    assert sandbox.counters == counters(authorizations=1, voids=1)


def test_an_altered_authorization_is_unknown(sandbox: SandboxProvider) -> None:
    authorization = authorize(sandbox)
    altered = msgspec.structs.replace(authorization, amount_minor=authorization.amount_minor + 1)
    for operation in (sandbox.capture, sandbox.void):
        with pytest.raises(PaymentError) as caught:
            asyncio.run(operation(altered))
        assert caught.value.code == "authorization_unknown"


# --- arguments and wire form ---


@pytest.mark.parametrize(
    "change",
    [
        {"amount_minor": -1},
        {"amount_minor": limits.payment_amount_minor_max + 1},
        {"amount_minor": True},
        {"amount_minor": 1.0},
        {"currency": "eur"},
        {"currency": "EU"},
        {"currency": "EURO"},
        {"key": ""},
        {"key": "k" * (limits.payment_idempotency_key_chars_max + 1)},
    ],
    ids=repr,
)
def test_bad_arguments_from_the_writer_are_value_errors(
    sandbox: SandboxProvider, change: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match=r"amount_minor|currency|idempotency_key"):
        authorize(sandbox, **change)
    assert sandbox.counters == counters()


def test_the_largest_amount_and_key_are_accepted(sandbox: SandboxProvider) -> None:
    key = "k" * limits.payment_idempotency_key_chars_max
    amount = limits.payment_amount_minor_max
    assert authorize(sandbox, key=key, amount_minor=amount).amount_minor == amount


@pytest.mark.parametrize("delay", [-0.1, math.nan])
def test_the_slow_delay_must_be_non_negative(delay: float) -> None:
    with pytest.raises(ValueError, match="slow_delay_s"):
        SandboxProvider(slow_delay_s=delay)


def test_attempts_max_must_be_positive() -> None:
    with pytest.raises(ValueError, match="attempts_max"):
        SandboxProvider(attempts_max=0)


def test_authorization_round_trips_and_is_strict_on_the_wire(sandbox: SandboxProvider) -> None:
    authorization = authorize(sandbox)
    wire = msgspec.json.encode(authorization)
    assert msgspec.json.decode(wire, type=Authorization) == authorization
    bad = [
        b'{"id":"a","provider":"sandbox","amount_minor":1,"currency":"EUR","extra":1}',
        b'{"id":"a","provider":"sandbox","amount_minor":-1,"currency":"EUR"}',
        b'{"id":"a","provider":"sandbox","amount_minor":1,"currency":"eur"}',
        b'{"id":"","provider":"sandbox","amount_minor":1,"currency":"EUR"}',
    ]
    for document in bad:
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(document, type=Authorization)


# --- refund ---

ONE_CAPTURED_AND_REFUNDED = SandboxCounters(
    authorizations=1, declines=0, captures=1, voids=0, refunds=1
)


def refund(
    sandbox: SandboxProvider,
    authorization: Authorization,
    amount_minor: int | None = None,
    key: str = "refund-1",
) -> None:
    asyncio.run(sandbox.refund(authorization, amount_minor, key))


def captured(sandbox: SandboxProvider, **arguments: Any) -> Authorization:
    authorization = authorize(sandbox, **arguments)
    asyncio.run(sandbox.capture(authorization))
    return authorization


def test_a_captured_authorization_is_refunded_once_per_key(sandbox: SandboxProvider) -> None:
    authorization = captured(sandbox)
    refund(sandbox, authorization)
    refund(sandbox, authorization)  # the same key again: a no-op
    assert sandbox.counters == ONE_CAPTURED_AND_REFUNDED
    with pytest.raises(PaymentError) as caught:
        refund(sandbox, authorization, key="refund-2")
    assert caught.value.code == "authorization_refunded"


def test_a_refund_key_reused_for_another_amount_is_a_mismatch(sandbox: SandboxProvider) -> None:
    authorization = captured(sandbox)
    refund(sandbox, authorization, 1_000, key="refund-a")
    with pytest.raises(PaymentError) as caught:
        refund(sandbox, authorization, 2_000, key="refund-a")
    assert caught.value.code == "idempotency_mismatch"
    other = captured(sandbox, key="user-1:key-2")
    with pytest.raises(PaymentError) as caught:
        refund(sandbox, other, 1_000, key="refund-a")
    assert caught.value.code == "idempotency_mismatch"


def test_partial_refunds_add_up_to_the_captured_amount(sandbox: SandboxProvider) -> None:
    authorization = captured(sandbox, amount_minor=10_000)
    refund(sandbox, authorization, 4_000, key="refund-a")
    with pytest.raises(PaymentError) as caught:
        refund(sandbox, authorization, 6_001, key="refund-b")
    assert caught.value.code == "refund_exceeds_capture"
    refund(sandbox, authorization, None, key="refund-c")  # the 6,000 left
    assert sandbox.counters == dataclasses.replace(ONE_CAPTURED_AND_REFUNDED, refunds=2)
    with pytest.raises(PaymentError) as caught:
        refund(sandbox, authorization, 1, key="refund-d")
    assert caught.value.code == "authorization_refunded"


def test_a_refunded_authorization_stays_captured_for_capture_and_void(
    sandbox: SandboxProvider,
) -> None:
    authorization = captured(sandbox)
    refund(sandbox, authorization)
    asyncio.run(sandbox.capture(authorization))  # still a no-op
    with pytest.raises(PaymentError) as caught:
        asyncio.run(sandbox.void(authorization))
    assert caught.value.code == "authorization_captured"


def test_a_zero_amount_capture_refunds_to_nothing(sandbox: SandboxProvider) -> None:
    authorization = captured(sandbox, amount_minor=0)
    refund(sandbox, authorization)
    assert sandbox.counters.refunds == 1


@pytest.mark.parametrize(
    ("settle", "code"),
    [(None, "authorization_not_captured"), ("void", "authorization_voided")],
)
def test_only_a_captured_authorization_is_refunded(
    sandbox: SandboxProvider, settle: str | None, code: str
) -> None:
    authorization = authorize(sandbox)
    if settle == "void":
        asyncio.run(sandbox.void(authorization))
    with pytest.raises(PaymentError) as caught:
        refund(sandbox, authorization)
    assert caught.value.code == code
    assert sandbox.counters.refunds == 0


def test_an_altered_authorization_is_not_refunded(sandbox: SandboxProvider) -> None:
    authorization = captured(sandbox)
    altered = msgspec.structs.replace(authorization, amount_minor=authorization.amount_minor - 1)
    with pytest.raises(PaymentError) as caught:
        refund(sandbox, altered)
    assert caught.value.code == "authorization_unknown"


@pytest.mark.parametrize(
    "change",
    [
        {"amount_minor": 0},
        {"amount_minor": 12_501},
        {"amount_minor": True},
        {"amount_minor": 1.0},
        {"key": ""},
        {"key": "k" * (limits.payment_idempotency_key_chars_max + 1)},
    ],
    ids=repr,
)
def test_bad_refund_arguments_from_the_writer_are_value_errors(
    sandbox: SandboxProvider, change: dict[str, Any]
) -> None:
    authorization = captured(sandbox)
    with pytest.raises(ValueError, match=r"amount_minor|idempotency_key"):
        refund(sandbox, authorization, **change)
    assert sandbox.counters.refunds == 0


def test_a_full_sandbox_refuses_new_refund_keys() -> None:
    sandbox = SandboxProvider(attempts_max=2)
    authorization = captured(sandbox)
    refund(sandbox, authorization, 1, key="refund-a")
    refund(sandbox, authorization, 1, key="refund-b")
    with pytest.raises(PaymentUnavailable, match="full"):
        refund(sandbox, authorization, 1, key="refund-c")
    refund(sandbox, authorization, 1, key="refund-a")  # still replays


# --- open authorizations ---


def test_open_authorizations_are_those_neither_captured_nor_voided(
    sandbox: SandboxProvider,
) -> None:
    before = datetime.now(UTC)
    captured(sandbox, key="user-1:captured")
    voided = authorize(sandbox, key="user-1:voided")
    asyncio.run(sandbox.void(voided))
    with pytest.raises(PaymentDeclined):
        authorize(sandbox, "tok_decline", key="user-1:declined")
    still_open = [authorize(sandbox, key=f"user-1:open-{n}") for n in range(2)]
    after = datetime.now(UTC) + timedelta(microseconds=1)

    found = asyncio.run(sandbox.list_open_authorizations(after))
    assert [entry.authorization for entry in found] == still_open
    assert [entry.idempotency_key for entry in found] == ["user-1:open-0", "user-1:open-1"]
    assert all(before <= entry.created_at < after for entry in found)
    assert asyncio.run(sandbox.list_open_authorizations(before)) == []


def test_open_authorizations_need_an_aware_datetime(sandbox: SandboxProvider) -> None:
    with pytest.raises(ValueError, match="aware"):
        asyncio.run(sandbox.list_open_authorizations(datetime(2030, 1, 1)))


def test_open_authorizations_round_trip_on_the_wire(sandbox: SandboxProvider) -> None:
    authorize(sandbox)
    (entry,) = asyncio.run(sandbox.list_open_authorizations(datetime.now(UTC)))
    assert msgspec.json.decode(msgspec.json.encode(entry), type=OpenAuthorization) == entry


def test_closing_the_sandbox_releases_nothing_and_keeps_its_state(
    sandbox: SandboxProvider,
) -> None:
    authorization = authorize(sandbox)
    asyncio.run(sandbox.aclose())
    asyncio.run(sandbox.capture(authorization))
    assert sandbox.counters == counters(authorizations=1, captures=1)
