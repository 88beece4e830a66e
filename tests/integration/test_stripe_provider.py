"""The Stripe provider against a real Stripe-compatible server: localstripe 1.15.10 (PyPI, a dev
dependency: it installs into the project's venv without conflicts). `tests/stripe_support.py`
starts it as a subprocess on a free 127.0.0.1 port, once for this module, and each test starts
from an empty account. Nothing here answers in a server's place: where localstripe cannot
produce Stripe's behaviour, the test says so and exercises the SDK's own code instead.

What localstripe 1.15.10 covers: PaymentIntents created and confirmed in one call with
`capture_method=manual`, capture, cancel, refunds (full and partial, by PaymentIntent, with
metadata) and listing them, listing PaymentIntents by page (`limit`, `starting_after`),
metadata, API-key checks (401), and webhook deliveries signed with Stripe's scheme.

What it does not, and how each part is tested instead (docs/payments.md says the same):

- `Idempotency-Key` is ignored: a repeat creates a second object, and it never answers
  `idempotency_error`. The tests check, through the launcher's record of every POST, that each
  mutating call carries the key the provider chose (the same one on a repeat). Stripe's replay
  cannot be shown here; its mismatch error is mapped from the SDK's `IdempotencyError`.
- No insufficient-funds card. `pm_card_visa_chargeDeclined` is approved (localstripe declines it
  only when attaching it to a customer). The one card that declines a charge,
  `pm_card_chargeCustomerFail`, gives `card_declined` with no `decline_code`. Decline codes are
  mapped from the SDK's `CardError`.
- `tok_…` tokens and `ctoken_…` confirmation tokens are refused (400) as a PaymentIntent's
  payment method. Only `pm_…` (and `card_…`/`src_…`) ids work.
- Lists take no `created` filter and come oldest first (Stripe: newest first), so the open-
  authorization scan's stop at Stripe's one-week horizon is never reached here.
- `allowed_payment_method_types`, which the SDK's API version needs, is unknown to it: the
  launcher accepts exactly `["card"]` (tests/stripe_support.py explains).
- Refusals differ. Capturing a captured intent and cancelling a canceled one are a bare 400 (no
  code). Capturing a canceled intent answers 200 with the status still `canceled` (Stripe: 400).
  A refund of an uncaptured intent is accepted; the provider checks the status first, so it never
  asks. The provider decides by the intent's status in every case, which both servers report.
- It never answers 5xx, 409 or 429: those are mapped from the SDK's error classes. A refused
  connection and a server that never answers are tested for real.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec
import pytest
import stripe
from stripe_support import (
    API_KEY,
    WEBHOOK_SECRET,
    LocalStripe,
    WebhookReceiver,
    sign_webhook,
    start_localstripe,
)

from global_writer.payments import (
    Authorization,
    PaymentDeclined,
    PaymentError,
    PaymentProvider,
    PaymentUnavailable,
    build_provider,
)
from global_writer.settings import Settings
from global_writer.stripe_provider import (
    IDEMPOTENCY_KEY_METADATA,
    StripeProvider,
    WebhookVerificationError,
    payment_error_from_stripe,
    verify_webhook,
)
from tessera import limits
from tessera.tickets import new_signing_ring
from tessera_ops.servers import LOCALHOST, free_port

T = TypeVar("T")
# localstripe's test cards: approves; declines the charge; asks for 3-D Secure first.
APPROVES = "pm_card_visa"
DECLINES = "pm_card_chargeCustomerFail"
NEEDS_3DS_CARD = "4000002500003155"


@pytest.fixture(scope="module")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe]:
    server = start_localstripe(tmp_path_factory.mktemp("localstripe"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(localstripe: LocalStripe) -> LocalStripe:
    localstripe.reset()
    return localstripe


def run(
    server: LocalStripe, scenario: Callable[[StripeProvider], Awaitable[T]], **options: Any
) -> T:
    """One event loop per test: the SDK's aiohttp session belongs to the loop that opened it."""

    async def main() -> T:
        async with StripeProvider(api_key=API_KEY, api_base=server.url, **options) as provider:
            return await scenario(provider)

    return asyncio.run(main())


async def authorize(
    provider: PaymentProvider,
    token: str = APPROVES,
    *,
    key: str = "user-1:key-1",
    amount_minor: int = 12_500,
    currency: str = "EUR",
) -> Authorization:
    return await provider.authorize(
        amount_minor=amount_minor, currency=currency, payment_token=token, idempotency_key=key
    )


def keys_sent(server: LocalStripe, path_end: str) -> list[str | None]:
    return [post.idempotency_key for post in server.posts() if post.path.endswith(path_end)]


# --- authorize ---


def test_an_approved_card_holds_the_amount_for_manual_capture(server: LocalStripe) -> None:
    authorization = run(server, authorize)
    assert authorization.id.startswith("pi_")
    assert (authorization.provider, authorization.amount_minor, authorization.currency) == (
        "stripe",
        12_500,
        "EUR",
    )
    intent = server.get(f"/v1/payment_intents/{authorization.id}")
    assert (intent["status"], intent["capture_method"]) == ("requires_capture", "manual")
    assert (intent["amount"], intent["currency"]) == (12_500, "eur")
    assert intent["metadata"] == {IDEMPOTENCY_KEY_METADATA: "user-1:key-1"}
    assert keys_sent(server, "/v1/payment_intents") == ["user-1:key-1"]


def test_a_declined_card_is_card_declined_without_the_token_in_the_message(
    server: LocalStripe,
) -> None:
    with pytest.raises(PaymentDeclined) as caught:
        run(server, lambda provider: authorize(provider, DECLINES))
    assert caught.value.code == "card_declined"
    assert caught.value.http_status == 402
    assert DECLINES not in str(caught.value)


def test_an_unknown_payment_method_is_an_invalid_token(server: LocalStripe) -> None:
    token = "pm_not_known_here"
    with pytest.raises(PaymentDeclined) as caught:
        run(server, lambda provider: authorize(provider, token))
    assert caught.value.code == "invalid_payment_token"
    assert token not in str(caught.value)


def test_a_card_that_needs_3ds_is_authentication_required(server: LocalStripe) -> None:
    # The fan's client (Stripe.js) turns the card into a PaymentMethod; Tessera sees only its id.
    card = {"number": NEEDS_3DS_CARD, "exp_month": "12", "exp_year": "2030", "cvc": "123"}
    method = server.post(
        "/v1/payment_methods", {"type": "card", **{f"card[{k}]": v for k, v in card.items()}}
    )
    with pytest.raises(PaymentDeclined) as caught:
        run(server, lambda provider: authorize(provider, method["id"]))
    assert caught.value.code == "authentication_required"


def test_a_malformed_token_is_declined_before_any_call(server: LocalStripe) -> None:
    with pytest.raises(PaymentDeclined) as caught:
        run(server, lambda provider: authorize(provider, "pm card visa"))
    assert caught.value.code == "invalid_payment_token"
    assert server.posts() == []


def test_a_repeated_authorize_sends_the_same_idempotency_key(server: LocalStripe) -> None:
    """Stripe replays the first answer for the same key; localstripe ignores the header, so this
    shows the half Tessera owns: the writer's key reaches Stripe, unchanged, every time."""

    async def twice(provider: StripeProvider) -> None:
        await authorize(provider, key="user-7:checkout-3")
        await authorize(provider, key="user-7:checkout-3")

    run(server, twice)
    assert keys_sent(server, "/v1/payment_intents") == ["user-7:checkout-3"] * 2


def test_a_zero_amount_makes_no_payment_intent(server: LocalStripe) -> None:
    async def free_order(provider: StripeProvider) -> tuple[Authorization, Authorization]:
        first = await authorize(provider, amount_minor=0, key="user-1:free")
        again = await authorize(provider, amount_minor=0, key="user-1:free")
        await provider.capture(first)
        await provider.refund(first, None, "refund-free")
        await provider.void(first)
        return first, again

    first, again = run(server, free_order)
    assert first == again
    assert (first.provider, first.amount_minor) == ("stripe", 0)
    assert server.posts() == []


def test_build_provider_makes_a_working_stripe_provider(server: LocalStripe) -> None:
    settings = Settings(
        database_url="postgresql://unused",
        redis_url="redis://unused",
        nats_url="nats://unused",
        admin_key="a" * 32,
        # Production refuses the HS256 development secret: fans' tokens come from a JWKS.
        jwks_url="https://id.example.com/.well-known/jwks.json",
        # ...and without that secret the writer needs real ticket keys (docs/tickets.md).
        ticket_signing_keys=new_signing_ring("test"),
        payment_provider="stripe",
        stripe_api_key=API_KEY,
        stripe_api_base=server.url,
        production=True,
    )

    async def main() -> Authorization:
        provider = build_provider(settings)
        assert isinstance(provider, StripeProvider)
        try:
            return await authorize(provider)
        finally:
            await provider.aclose()

    assert asyncio.run(main()).id.startswith("pi_")


# --- capture and void ---


def test_capture_takes_the_money_and_a_repeat_is_a_no_op(server: LocalStripe) -> None:
    async def capture_twice(provider: StripeProvider) -> Authorization:
        authorization = await authorize(provider)
        await provider.capture(authorization)
        await provider.capture(authorization)  # localstripe refuses it (400): the status decides
        return authorization

    authorization = run(server, capture_twice)
    assert server.get(f"/v1/payment_intents/{authorization.id}")["status"] == "succeeded"
    assert keys_sent(server, "/capture") == [f"{authorization.id}:capture"] * 2


def test_void_cancels_and_a_repeat_is_a_no_op(server: LocalStripe) -> None:
    async def void_twice(provider: StripeProvider) -> Authorization:
        authorization = await authorize(provider)
        await provider.void(authorization)
        await provider.void(authorization)
        return authorization

    authorization = run(server, void_twice)
    assert server.get(f"/v1/payment_intents/{authorization.id}")["status"] == "canceled"
    assert keys_sent(server, "/cancel") == [f"{authorization.id}:void"] * 2


def test_capture_after_void_is_refused(server: LocalStripe) -> None:
    async def capture_voided(provider: StripeProvider) -> None:
        authorization = await authorize(provider)
        await provider.void(authorization)
        await provider.capture(authorization)

    with pytest.raises(PaymentError) as caught:
        run(server, capture_voided)
    assert caught.value.code == "authorization_voided"


def test_void_after_capture_is_refused(server: LocalStripe) -> None:
    async def void_captured(provider: StripeProvider) -> None:
        authorization = await authorize(provider)
        await provider.capture(authorization)
        await provider.void(authorization)

    with pytest.raises(PaymentError) as caught:
        run(server, void_captured)
    assert caught.value.code == "authorization_captured"


@pytest.mark.parametrize(
    "authorization",
    [
        Authorization(id="pi_never_made", provider="stripe", amount_minor=100, currency="EUR"),
        Authorization(id="sandbox_auth_1", provider="sandbox", amount_minor=100, currency="EUR"),
    ],
    ids=["unknown-to-stripe", "another-provider"],
)
def test_an_authorization_stripe_did_not_make_is_unknown(
    server: LocalStripe, authorization: Authorization
) -> None:
    async def settle(provider: StripeProvider) -> list[str]:
        codes = []
        for operation in (provider.capture, provider.void):
            with pytest.raises(PaymentError) as caught:
                await operation(authorization)
            codes.append(caught.value.code)
        return codes

    assert run(server, settle) == ["authorization_unknown"] * 2


# --- refund ---


def refunds_of(server: LocalStripe, authorization: Authorization) -> list[tuple[int, str]]:
    listed = server.get(f"/v1/refunds?payment_intent={authorization.id}")["data"]
    return sorted((r["amount"], r["metadata"][IDEMPOTENCY_KEY_METADATA]) for r in listed)


def test_a_full_refund_is_made_once_per_key(server: LocalStripe) -> None:
    async def refund_twice(provider: StripeProvider) -> Authorization:
        authorization = await authorize(provider)
        await provider.capture(authorization)
        await provider.refund(authorization, None, "refund-order-1")
        await provider.refund(authorization, None, "refund-order-1")
        return authorization

    authorization = run(server, refund_twice)
    # localstripe would have refunded twice: the provider found its key on the first refund.
    assert refunds_of(server, authorization) == [(12_500, "refund-order-1")]
    assert keys_sent(server, "/v1/refunds") == ["refund-order-1"]


def test_partial_refunds_and_a_key_reused_for_another_amount(server: LocalStripe) -> None:
    async def refund_parts(provider: StripeProvider) -> Authorization:
        authorization = await authorize(provider)
        await provider.capture(authorization)
        await provider.refund(authorization, 2_000, "refund-a")
        await provider.refund(authorization, 3_000, "refund-b")
        with pytest.raises(PaymentError) as caught:
            await provider.refund(authorization, 2_500, "refund-a")
        assert caught.value.code == "idempotency_mismatch"
        return authorization

    authorization = run(server, refund_parts)
    assert refunds_of(server, authorization) == [(2_000, "refund-a"), (3_000, "refund-b")]


@pytest.mark.parametrize(
    ("voided", "code"), [(False, "authorization_not_captured"), (True, "authorization_voided")]
)
def test_only_a_captured_authorization_is_refunded(
    server: LocalStripe, voided: bool, code: str
) -> None:
    async def refund_uncaptured(provider: StripeProvider) -> None:
        authorization = await authorize(provider)
        if voided:
            await provider.void(authorization)
        await provider.refund(authorization, None, "refund-1")

    with pytest.raises(PaymentError) as caught:
        run(server, refund_uncaptured)
    assert caught.value.code == code
    assert keys_sent(server, "/v1/refunds") == []


def test_a_refund_beyond_the_authorized_amount_is_a_bug(server: LocalStripe) -> None:
    too_much = Authorization(id="pi_x", provider="stripe", amount_minor=100, currency="EUR")
    for amount in (0, 101, -1):

        async def refund(provider: StripeProvider, amount: int = amount) -> None:
            await provider.refund(too_much, amount, "refund-1")

        with pytest.raises(ValueError, match="amount_minor"):
            run(server, refund)
    assert server.posts() == []


# --- open authorizations ---


async def open_and_settled(provider: StripeProvider) -> list[Authorization]:
    """Two settled authorizations and three open ones (returned)."""
    captured = await authorize(provider, key="k-captured")
    await provider.capture(captured)
    voided = await authorize(provider, key="k-voided")
    await provider.void(voided)
    return [await authorize(provider, key=f"k-open-{n}", amount_minor=100 + n) for n in range(3)]


def test_open_authorizations_are_those_neither_captured_nor_voided(
    server: LocalStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "payment_stripe_list_page_items_max", 2)  # three pages

    async def scan(provider: StripeProvider) -> tuple[list[Any], list[Any]]:
        made = await open_and_settled(provider)
        later = datetime.now(UTC) + timedelta(seconds=2)
        found = await provider.list_open_authorizations(later)
        assert [entry.authorization for entry in found] == made
        early = await provider.list_open_authorizations(datetime(2020, 1, 1, tzinfo=UTC))
        return found, early

    found, early = run(server, scan)
    assert [entry.idempotency_key for entry in found] == ["k-open-0", "k-open-1", "k-open-2"]
    assert all(abs(time.time() - entry.created_at.timestamp()) < 60 for entry in found)
    assert early == []


def test_an_open_authorization_scan_is_bounded(
    server: LocalStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "payment_stripe_list_page_items_max", 2)
    monkeypatch.setattr(limits, "payment_stripe_list_pages_max", 2)

    async def scan(provider: StripeProvider) -> None:
        await open_and_settled(provider)
        await provider.list_open_authorizations(datetime.now(UTC) + timedelta(seconds=2))

    with pytest.raises(PaymentError) as caught:
        run(server, scan)
    assert caught.value.code == "list_too_long"


def test_find_authorization_reads_the_intent_as_stripe_has_it_now(server: LocalStripe) -> None:
    async def states(provider: StripeProvider) -> list[tuple[str, str | None]]:
        opened = await authorize(provider, key="user-1:open")
        captured = await authorize(provider, key="user-1:captured")
        voided = await authorize(provider, key="user-1:voided")
        await provider.capture(captured)
        await provider.void(voided)
        found: list[tuple[str, str | None]] = []
        for authorization in (opened, captured, voided):
            now = await provider.find_authorization(authorization.id)
            assert now is not None and now.authorization == authorization
            found.append((now.state, now.idempotency_key))
        assert await provider.find_authorization("pi_unknown") is None
        return found

    assert run(server, states) == [
        ("open", "user-1:open"),
        ("captured", "user-1:captured"),
        ("voided", "user-1:voided"),
    ]


def test_created_before_must_be_aware(server: LocalStripe) -> None:
    with pytest.raises(ValueError, match="aware"):
        run(server, lambda provider: provider.list_open_authorizations(datetime(2030, 1, 1)))


# --- failures of the connection, for real ---


def test_a_refused_connection_is_unavailable() -> None:
    async def main() -> None:
        base = f"http://{LOCALHOST}:{free_port()}"  # nothing listens there
        async with StripeProvider(api_key=API_KEY, api_base=base, network_retries=0) as provider:
            await authorize(provider)

    with pytest.raises(PaymentUnavailable):
        asyncio.run(main())


def test_a_server_that_never_answers_is_unavailable_after_the_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind((LOCALHOST, 0))
        silent.listen()
        base = f"http://{LOCALHOST}:{silent.getsockname()[1]}"

        async def main() -> None:
            async with StripeProvider(
                api_key=API_KEY, api_base=base, timeout_s=0.3, network_retries=0
            ) as provider:
                await authorize(provider)

        started = time.monotonic()
        with pytest.raises(PaymentUnavailable):
            asyncio.run(main())
        assert time.monotonic() - started < 5


def test_a_refused_api_key_is_a_configuration_error(localstripe: LocalStripe) -> None:
    async def main() -> None:
        secret = "bad-key-value"  # localstripe accepts only sk_… keys: 401, as Stripe would
        async with StripeProvider(api_key=secret, api_base=localstripe.url) as provider:
            await authorize(provider)

    with pytest.raises(PaymentError) as caught:
        asyncio.run(main())
    assert caught.value.code == "provider_authentication_failed"
    assert caught.value.http_status == 500
    assert "bad-key-value" not in str(caught.value)


# --- errors localstripe never sends: the SDK's own exceptions, as it raises them ---

TOKEN_IN_MESSAGE = "No such PaymentMethod: 'pm_secret_token'"


def sdk_error(kind: type[stripe.StripeError], status: int, **error: str) -> stripe.StripeError:
    body = {"error": {"message": TOKEN_IN_MESSAGE, **error}}
    headers = {"request-id": "req_tessera"}
    if kind in (stripe.CardError, stripe.InvalidRequestError):
        return kind(
            TOKEN_IN_MESSAGE,
            error.get("param"),
            error.get("code"),
            json.dumps(body),
            status,
            body,
            headers,
        )
    return kind(TOKEN_IN_MESSAGE, json.dumps(body), status, body, headers)


def card(code: str, decline_code: str | None = None) -> stripe.StripeError:
    reasons = (
        {"code": code} if decline_code is None else {"code": code, "decline_code": decline_code}
    )
    return sdk_error(stripe.CardError, 402, type="card_error", **reasons)


def refused(code: str) -> stripe.StripeError:
    return sdk_error(stripe.InvalidRequestError, 400, type="invalid_request_error", code=code)


UNAVAILABLE = (PaymentUnavailable, "payment_provider_unavailable")
MAPPINGS = [
    (card("card_declined", "insufficient_funds"), (PaymentDeclined, "insufficient_funds")),
    (card("insufficient_funds"), (PaymentDeclined, "insufficient_funds")),
    (
        card("card_declined", "authentication_required"),
        (PaymentDeclined, "authentication_required"),
    ),
    (card("expired_card"), (PaymentDeclined, "card_declined")),
    (card("processing_error"), (PaymentDeclined, "card_declined")),
    (
        sdk_error(stripe.IdempotencyError, 400, type="idempotency_error"),
        (PaymentError, "idempotency_mismatch"),
    ),
    (sdk_error(stripe.APIError, 500, type="api_error"), UNAVAILABLE),
    (sdk_error(stripe.APIError, 503, type="api_error"), UNAVAILABLE),
    (
        sdk_error(
            stripe.APIError, 409, type="invalid_request_error", code="idempotency_key_in_use"
        ),
        UNAVAILABLE,
    ),
    (
        sdk_error(stripe.RateLimitError, 429, type="invalid_request_error", code="rate_limit"),
        UNAVAILABLE,
    ),
    (
        sdk_error(stripe.PermissionError, 403, type="invalid_request_error"),
        (PaymentError, "provider_authentication_failed"),
    ),
    (refused("charge_already_refunded"), (PaymentError, "authorization_refunded")),
    (refused("amount_too_large"), (PaymentError, "refund_exceeds_capture")),
    (refused("amount_too_small"), (PaymentError, "provider_rejected_request")),
]


@pytest.mark.parametrize(
    ("error", "expected"),
    MAPPINGS,
    ids=[f"{type(e).__name__}-{e.http_status}-{e.code}-to-{code}" for e, (_, code) in MAPPINGS],
)
def test_stripe_errors_map_onto_the_writers_exceptions(
    error: stripe.StripeError, expected: tuple[type[PaymentError], str]
) -> None:
    mapped = payment_error_from_stripe(error)
    assert (type(mapped), mapped.code) == expected
    assert "pm_secret_token" not in str(mapped)
    if error.request_id:
        assert "req_tessera" in str(mapped)


# --- webhooks ---


@pytest.fixture
def receiver(server: LocalStripe) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    receiver.start()
    server.register_webhook(receiver.url, WEBHOOK_SECRET, ["payment_intent.succeeded"])
    try:
        yield receiver
    finally:
        server.register_webhook(receiver.url, WEBHOOK_SECRET, [])  # no more deliveries
        receiver.stop()


def test_a_webhook_localstripe_signed_verifies(
    server: LocalStripe, receiver: WebhookReceiver
) -> None:
    async def capture(provider: StripeProvider) -> Authorization:
        authorization = await authorize(provider, key="user-1:hooked")
        await provider.capture(authorization)
        return authorization

    authorization = run(server, capture)
    delivery = receiver.wait_for("payment_intent.succeeded", authorization.id, timeout_s=15)
    event = verify_webhook(delivery.body, delivery.signature_header, WEBHOOK_SECRET)
    assert event.type == "payment_intent.succeeded"
    assert (event.data.object.id, event.data.object.status) == (authorization.id, "succeeded")
    assert event.data.object.metadata == {IDEMPOTENCY_KEY_METADATA: "user-1:hooked"}
    assert abs(event.created_s - time.time()) < 60
    with pytest.raises(WebhookVerificationError):
        verify_webhook(delivery.body, delivery.signature_header, "whsec_another_secret")


def event_body(**changes: Any) -> bytes:
    event = {
        "id": "evt_1",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": {"id": "pi_1", "object": "payment_intent", "status": "succeeded"}},
        **changes,
    }
    return json.dumps(event).encode()


def test_a_payload_signed_by_stripes_scheme_verifies() -> None:
    body, now = event_body(), int(time.time())
    event = verify_webhook(body, sign_webhook(body, WEBHOOK_SECRET, now), WEBHOOK_SECRET)
    assert (event.id, event.type, event.data.object.id) == (
        "evt_1",
        "payment_intent.succeeded",
        "pi_1",
    )
    # The SDK's own signer agrees with the one written from Stripe's documentation.
    sdk_header = stripe.WebhookSignature.generate_signature_header(
        body.decode(), WEBHOOK_SECRET, now
    )
    assert sdk_header == sign_webhook(body, WEBHOOK_SECRET, now)


def test_a_rotated_secret_signature_among_others_verifies() -> None:
    body, now = event_body(), int(time.time())
    valid = sign_webhook(body, WEBHOOK_SECRET, now).split(",v1=")[1]
    header = f"t={now},v1={'0' * 64},v1={valid}"
    assert verify_webhook(body, header, WEBHOOK_SECRET).id == "evt_1"


def test_a_tampered_body_or_signature_is_refused() -> None:
    body, now = event_body(), int(time.time())
    header = sign_webhook(body, WEBHOOK_SECRET, now)
    tampered_body = body.replace(b'"pi_1"', b'"pi_2"')
    last = header[-1]
    tampered_header = header[:-1] + ("0" if last != "0" else "1")
    for payload, signature in ((tampered_body, header), (body, tampered_header)):
        with pytest.raises(WebhookVerificationError, match="signature") as refused:
            verify_webhook(payload, signature, WEBHOOK_SECRET)
        assert refused.value.code == "webhook_signature_invalid"


def test_a_signature_older_than_the_tolerance_is_refused() -> None:
    body = event_body()
    old = int(time.time()) - limits.payment_webhook_tolerance_s - 5
    with pytest.raises(WebhookVerificationError, match="tolerance") as refused:
        verify_webhook(body, sign_webhook(body, WEBHOOK_SECRET, old), WEBHOOK_SECRET)
    assert refused.value.code == "webhook_signature_stale"
    recent_enough = int(time.time()) - 60
    header = sign_webhook(body, WEBHOOK_SECRET, recent_enough)
    assert verify_webhook(body, header, WEBHOOK_SECRET, tolerance_s=120).id == "evt_1"


@pytest.mark.parametrize(
    "header", [None, "", "garbage", "t=notanumber,v1=abc", "v1=abc", "t=1700000000,v0=abc"]
)
def test_a_missing_or_malformed_header_is_refused(header: str | None) -> None:
    with pytest.raises(WebhookVerificationError) as refused:
        verify_webhook(event_body(), header, WEBHOOK_SECRET)
    assert refused.value.code == "webhook_signature_invalid"


def test_a_signed_body_that_is_not_an_event_is_refused() -> None:
    now = int(time.time())
    for body in (b'{"hello": 1}', b"not json", b"\xff\xfe"):
        with pytest.raises(WebhookVerificationError) as refused:
            verify_webhook(body, sign_webhook(body, WEBHOOK_SECRET, now), WEBHOOK_SECRET)
        assert refused.value.code == "webhook_not_an_event"


def test_webhook_bounds_and_configuration() -> None:
    body, now = event_body(), int(time.time())
    header = sign_webhook(body, WEBHOOK_SECRET, now)
    with pytest.raises(WebhookVerificationError, match="TESSERA_STRIPE_WEBHOOK_SECRET") as unset:
        verify_webhook(body, header, "")
    assert unset.value.code == "webhook_secret_unset"
    with pytest.raises(ValueError, match="tolerance_s"):
        verify_webhook(body, header, WEBHOOK_SECRET, tolerance_s=0)
    huge = event_body(padding="x" * limits.payment_webhook_body_bytes_max)
    with pytest.raises(WebhookVerificationError, match="larger") as too_large:
        verify_webhook(huge, sign_webhook(huge, WEBHOOK_SECRET, now), WEBHOOK_SECRET)
    assert too_large.value.code == "webhook_too_large"


def test_the_event_keeps_stripes_field_names_on_the_wire() -> None:
    body = event_body()
    event = verify_webhook(
        body, sign_webhook(body, WEBHOOK_SECRET, int(time.time())), WEBHOOK_SECRET
    )
    assert json.loads(msgspec.json.encode(event))["created"] == event.created_s
