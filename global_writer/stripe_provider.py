"""Stripe as the payment provider: PaymentIntents with manual capture, over the official SDK's
async client (aiohttp). docs/payments.md, "The Stripe provider", says what maps to what.

- `authorize` creates and confirms one PaymentIntent at once (`confirm=true`,
  `capture_method=manual`) with the client's token. The writer's idempotency key is Stripe's
  `Idempotency-Key`, so a retry replays Stripe's first answer, and is also stored in the
  intent's metadata, where reconciliation reads it back.
- `capture` and `void` capture or cancel the intent under a key derived from its id. When Stripe
  refuses (the intent already moved on, or a repeat came after Stripe forgot the key, 24 h), the
  intent's status decides: a repeat is a no-op, the forbidden transition a `PaymentError`.
- `refund` first looks for a refund already made under its key (kept in the refund's metadata),
  so a repeat refunds once even after Stripe forgot the key.
- An amount of 0 creates no PaymentIntent (Stripe refuses amounts under its minimum): it gets a
  "no charge" authorization whose capture, void and refund do nothing.

Errors become `PaymentError`s through `payment_error_from_stripe`. Their messages give Stripe's
error class, HTTP status, code and request id, never Stripe's message, which may quote the token.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Final, Literal, Self, TypeVar

import aiohttp
import msgspec
import stripe

from global_writer.payments import (
    Authorization,
    AuthorizationState,
    DeclineCode,
    FoundAuthorization,
    OpenAuthorization,
    PaymentDeclined,
    PaymentError,
    PaymentUnavailable,
    check_authorize_args,
    check_created_before,
    check_payment_token,
    check_refund_args,
)
from tessera import limits

if TYPE_CHECKING:
    from stripe.params import PaymentIntentCreateParams, RefundCreateParams

PROVIDER_NAME: Final = "stripe"
# Metadata key on PaymentIntents and Refunds holding the writer's idempotency key.
IDEMPOTENCY_KEY_METADATA: Final = "tessera_idempotency_key"
NO_CHARGE_PREFIX: Final = "stripe_no_charge_"
# Stripe answers 409 while another request with the same idempotency key is still running.
_HTTP_CONFLICT: Final = 409
_HTTP_NOT_FOUND: Final = 404
_HTTP_SERVER_ERROR: Final = 500


# The lists scanned: each item has the `id` that pages on.
_Item = TypeVar("_Item", stripe.PaymentIntent, stripe.Refund)


# --- errors ---


def describe_stripe_error(error: stripe.StripeError) -> str:
    """What identifies the failure at Stripe (the request id finds it in the dashboard), without
    Stripe's own message: that can quote the payment token."""
    parts = [f"Stripe {type(error).__name__}"]
    if error.http_status is not None:
        parts.append(f"HTTP {error.http_status}")
    if error.code:
        parts.append(f"code {error.code}")
    if error.request_id:
        parts.append(f"request {error.request_id}")
    return ", ".join(parts)


def _decline_code(error: stripe.CardError) -> DeclineCode:
    reasons = {error.code, error.error.decline_code if error.error is not None else None}
    if "insufficient_funds" in reasons:
        return "insufficient_funds"
    if "authentication_required" in reasons:
        return "authentication_required"
    # Expired, stolen, wrong CVC, processing_error…: the fan must pay another way. A retry with
    # the same key would only replay Stripe's recorded decline.
    return "card_declined"


# Stripe's codes for refusals the writer's contract names: its code, and what happened.
_REFUSALS: Final = {
    "charge_already_refunded": ("authorization_refunded", "it was already refunded in full"),
    "amount_too_large": ("refund_exceeds_capture", "more than is left to refund"),
}


def payment_error_from_stripe(error: stripe.StripeError) -> PaymentError:
    """The writer's exception for a Stripe error (docs/payments.md has the table)."""
    detail = describe_stripe_error(error)
    if isinstance(error, stripe.CardError):
        return PaymentDeclined(_decline_code(error), f"the card was declined ({detail})")
    if isinstance(error, stripe.IdempotencyError):
        return PaymentError(
            "idempotency_mismatch",
            f"the idempotency key was used with other arguments ({detail})",
        )
    status = error.http_status
    if isinstance(error, stripe.APIConnectionError | stripe.RateLimitError) or (
        isinstance(error, stripe.APIError)
        and (status is None or status == _HTTP_CONFLICT or status >= _HTTP_SERVER_ERROR)
    ):
        return PaymentUnavailable(f"Stripe did not answer usably; retry ({detail})")
    if isinstance(error, stripe.AuthenticationError | stripe.PermissionError):
        return PaymentError(
            "provider_authentication_failed",
            f"Stripe refused the API key (TESSERA_STRIPE_API_KEY) ({detail})",
        )
    code, what = _REFUSALS.get(error.code or "", ("provider_rejected_request", "Stripe refused"))
    return PaymentError(code, f"{what} ({detail})")


def _authorize_error(error: stripe.StripeError) -> PaymentError:
    """As `payment_error_from_stripe`, except that an unknown or unusable payment method is the
    client's token's fault, a decline: authorize names no other object that could be missing."""
    if isinstance(error, stripe.InvalidRequestError) and (
        error.http_status == _HTTP_NOT_FOUND
        or error.code == "resource_missing"
        or (error.param or "").startswith(("payment_method", "confirmation_token"))
    ):
        return PaymentDeclined(
            "invalid_payment_token",
            f"Stripe does not accept the payment token ({describe_stripe_error(error)})",
        )
    return payment_error_from_stripe(error)


def _is_missing(error: stripe.InvalidRequestError) -> bool:
    return error.http_status == _HTTP_NOT_FOUND or error.code == "resource_missing"


# --- webhooks ---


WebhookRefusal = Literal[
    "webhook_secret_unset",
    "webhook_too_large",
    "webhook_signature_invalid",
    "webhook_signature_stale",
    "webhook_not_an_event",
]


class WebhookVerificationError(Exception):
    """A webhook body that is not provably Stripe's, or not recent: answer 400 and ignore it.
    `code` says which check refused it (the endpoint's `reason`)."""

    def __init__(self, code: WebhookRefusal, message: str) -> None:
        self.code: WebhookRefusal = code
        super().__init__(message)


class WebhookObject(msgspec.Struct, frozen=True, kw_only=True):
    """The fields Tessera reads from the event's object (a PaymentIntent, Charge or Refund);
    Stripe's many others are ignored."""

    id: str
    object: str
    status: str | None = None
    amount: int | None = None
    currency: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    # A Charge's or Refund's PaymentIntent (an id: webhooks never expand it).
    payment_intent: str | None = None


class WebhookEventData(msgspec.Struct, frozen=True, kw_only=True):
    object: WebhookObject


class WebhookEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A Stripe event as delivered to a webhook endpoint (unknown fields are ignored: Stripe
    adds fields without a new API version)."""

    id: str
    type: str
    created_s: int = msgspec.field(name="created")
    livemode: bool = False
    data: WebhookEventData


def verify_webhook(
    payload: bytes,
    signature_header: str | None,
    secret: str,
    tolerance_s: int = limits.payment_webhook_tolerance_s,
) -> WebhookEvent:
    """The event in `payload` if its `Stripe-Signature` header proves Stripe signed exactly these
    bytes with `secret` (TESSERA_STRIPE_WEBHOOK_SECRET) less than `tolerance_s` ago; else
    `WebhookVerificationError`. Pass the raw body: re-encoded JSON no longer matches."""
    if tolerance_s <= 0:
        # The SDK skips the age check for a tolerance of 0, which would let replays through.
        raise ValueError("tolerance_s must be > 0")
    if not secret:
        raise WebhookVerificationError(
            "webhook_secret_unset", "no webhook secret is set (TESSERA_STRIPE_WEBHOOK_SECRET)"
        )
    if len(payload) > limits.payment_webhook_body_bytes_max:
        raise WebhookVerificationError(
            "webhook_too_large", "the body is larger than any Stripe event"
        )
    try:
        stripe.WebhookSignature.verify_header(payload, signature_header, secret, tolerance_s)
    except stripe.SignatureVerificationError as error:
        message = error.user_message or ""
        # The SDK checks the age only once a signature matched: this one is Stripe's, replayed.
        code: WebhookRefusal = (
            "webhook_signature_stale"
            if message.startswith("Timestamp outside the tolerance zone")
            else "webhook_signature_invalid"
        )
        raise WebhookVerificationError(code, f"signature refused: {message}") from None
    except UnicodeDecodeError:
        raise WebhookVerificationError("webhook_not_an_event", "the body is not UTF-8") from None
    try:
        return _event_decoder.decode(payload)
    except msgspec.DecodeError as error:
        raise WebhookVerificationError(
            "webhook_not_an_event", f"the signed body is not a Stripe event: {error}"
        ) from None


_event_decoder = msgspec.json.Decoder(WebhookEvent)


# --- the provider ---


def _no_charge(currency: str, idempotency_key: str) -> Authorization:
    # Derived from the key, so a retry gets the same id, as it would from Stripe.
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return Authorization(
        id=f"{NO_CHARGE_PREFIX}{digest}", provider=PROVIDER_NAME, amount_minor=0, currency=currency
    )


def _authorization_of(intent: stripe.PaymentIntent) -> Authorization:
    return Authorization(
        id=intent.id,
        provider=PROVIDER_NAME,
        amount_minor=intent.amount,
        currency=intent.currency.upper(),
    )


def _authorized(intent: stripe.PaymentIntent) -> Authorization:
    """The authorization a confirmed intent holds, or why it holds none. A decline normally comes
    as a CardError; these statuses are what is left."""
    match intent.status:
        case "requires_capture":
            return _authorization_of(intent)
        case "requires_action":
            # No money is held: the intent waits for a 3-D Secure step only the fan's client
            # could take. It stays at Stripe, harmless, and a retry replays this answer.
            raise PaymentDeclined(
                "authentication_required",
                f"the card needs authentication (PaymentIntent {intent.id})",
            )
        case "requires_payment_method":
            raise PaymentDeclined(
                "card_declined", f"the card was declined (PaymentIntent {intent.id})"
            )
    raise PaymentError(
        "unexpected_intent_state",
        f"PaymentIntent {intent.id} is {intent.status} right after its authorization",
    )


def _metadata_key(metadata: stripe.StripeObject | None) -> str | None:
    # A StripeObject is not a dict (no `.get`): test membership, then index.
    if metadata is None or IDEMPOTENCY_KEY_METADATA not in metadata:
        return None
    value = metadata[IDEMPOTENCY_KEY_METADATA]
    return value if isinstance(value, str) else None


class StripeProvider:
    """The `PaymentProvider` for Stripe. Use it from one event loop (the SDK's aiohttp session
    belongs to the loop that made the first call) and `aclose` it there at the end."""

    name: str = PROVIDER_NAME

    def __init__(
        self,
        *,
        api_key: str,
        api_base: str | None = None,
        timeout_s: float = limits.payment_provider_timeout_s,
        connect_timeout_s: float = limits.payment_provider_connect_timeout_s,
        network_retries: int = limits.payment_provider_network_retries_max,
    ) -> None:
        if not api_key:
            raise ValueError("api_key is required (TESSERA_STRIPE_API_KEY)")
        if not (timeout_s > 0 and connect_timeout_s > 0):  # also refuses NaN
            raise ValueError("timeout_s and connect_timeout_s must be > 0")
        if network_retries < 0:
            raise ValueError("network_retries must be >= 0")
        # The SDK opens its aiohttp session at the first call, inside the running loop.
        self._http = stripe.AIOHTTPClient(
            timeout=aiohttp.ClientTimeout(total=timeout_s, connect=connect_timeout_s)
        )
        client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http,
            max_network_retries=network_retries,
        )
        self._intents = client.v1.payment_intents
        self._refunds = client.v1.refunds

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]  # the SDK leaves it bare

    async def authorize(
        self, *, amount_minor: int, currency: str, payment_token: str, idempotency_key: str
    ) -> Authorization:
        check_authorize_args(
            amount_minor=amount_minor, currency=currency, idempotency_key=idempotency_key
        )
        check_payment_token(payment_token)
        if amount_minor == 0:
            return _no_charge(currency, idempotency_key)
        params: PaymentIntentCreateParams = {
            "amount": amount_minor,
            "currency": currency.lower(),
            "capture_method": "manual",
            "confirm": True,
            # Cards only: no redirect-based method, which would need a return_url to confirm.
            # (API version endive refuses the older `payment_method_types`.)
            "allowed_payment_method_types": ["card"],
            "metadata": {IDEMPOTENCY_KEY_METADATA: idempotency_key},
        }
        if payment_token.startswith("ctoken_"):
            params["confirmation_token"] = payment_token
        else:
            params["payment_method"] = payment_token  # pm_…, or a legacy card_…/src_… id
        try:
            intent = await self._intents.create_async(params, {"idempotency_key": idempotency_key})
        except stripe.StripeError as error:
            raise _authorize_error(error) from None
        return _authorized(intent)

    def _intent_id(self, authorization: Authorization) -> str | None:
        """The PaymentIntent behind an authorization; None for a no-charge one."""
        if authorization.provider != self.name:
            raise PaymentError("authorization_unknown", "Stripe did not make this authorization")
        if authorization.id.startswith(NO_CHARGE_PREFIX):
            if authorization.amount_minor != 0:
                raise PaymentError("authorization_unknown", "a no-charge id with an amount")
            return None
        return authorization.id

    async def _retrieve(self, intent_id: str) -> stripe.PaymentIntent:
        try:
            return await self._intents.retrieve_async(intent_id)
        except stripe.InvalidRequestError as error:
            if _is_missing(error):
                raise PaymentError(
                    "authorization_unknown", f"Stripe has no PaymentIntent {intent_id}"
                ) from None
            raise payment_error_from_stripe(error) from None
        except stripe.StripeError as error:
            raise payment_error_from_stripe(error) from None

    async def capture(self, authorization: Authorization) -> None:
        intent_id = self._intent_id(authorization)
        if intent_id is None:
            return
        refusal: stripe.InvalidRequestError | None = None
        try:
            intent = await self._intents.capture_async(
                intent_id, options={"idempotency_key": f"{intent_id}:capture"}
            )
        except stripe.InvalidRequestError as error:
            refusal = error
            intent = await self._retrieve(intent_id)
        except stripe.StripeError as error:
            raise payment_error_from_stripe(error) from None
        if intent.status == "succeeded":
            return
        if intent.status == "canceled":
            raise PaymentError("authorization_voided", "a voided authorization cannot be captured")
        raise self._unsettled(intent, refusal)

    async def void(self, authorization: Authorization) -> None:
        intent_id = self._intent_id(authorization)
        if intent_id is None:
            return
        refusal: stripe.InvalidRequestError | None = None
        try:
            intent = await self._intents.cancel_async(
                intent_id, options={"idempotency_key": f"{intent_id}:void"}
            )
        except stripe.InvalidRequestError as error:
            refusal = error
            intent = await self._retrieve(intent_id)
        except stripe.StripeError as error:
            raise payment_error_from_stripe(error) from None
        if intent.status == "canceled":
            return
        if intent.status == "succeeded":
            raise PaymentError(
                "authorization_captured", "a captured authorization cannot be voided"
            )
        raise self._unsettled(intent, refusal)

    @staticmethod
    def _unsettled(
        intent: stripe.PaymentIntent, refusal: stripe.InvalidRequestError | None
    ) -> PaymentError:
        if refusal is not None:
            return payment_error_from_stripe(refusal)
        return PaymentError(
            "unexpected_intent_state", f"PaymentIntent {intent.id} is {intent.status}"
        )

    async def refund(
        self, authorization: Authorization, amount_minor: int | None, idempotency_key: str
    ) -> None:
        check_refund_args(authorization, amount_minor, idempotency_key)
        intent_id = self._intent_id(authorization)
        if intent_id is None:
            return
        intent = await self._retrieve(intent_id)
        match intent.status:
            case "requires_capture":
                raise PaymentError(
                    "authorization_not_captured", "only a captured authorization is refunded"
                )
            case "canceled":
                raise PaymentError("authorization_voided", "a voided authorization took no money")
            case "succeeded":
                pass
            case _:
                raise self._unsettled(intent, None)
        if await self._refunded_under(intent_id, idempotency_key, amount_minor):
            return
        params: RefundCreateParams = {
            "payment_intent": intent_id,
            "metadata": {IDEMPOTENCY_KEY_METADATA: idempotency_key},
        }
        if amount_minor is not None:
            params["amount"] = amount_minor
        try:
            await self._refunds.create_async(params, {"idempotency_key": idempotency_key})
        except stripe.StripeError as error:
            raise payment_error_from_stripe(error) from None

    async def _refunded_under(
        self, intent_id: str, idempotency_key: str, amount_minor: int | None
    ) -> bool:
        """Whether a refund of this intent was already made under this key (and so this call is
        a repeat); a different amount under the key is a mismatch, as Stripe would say."""

        async def page(starting_after: str | None) -> stripe.ListObject[stripe.Refund]:
            if starting_after is None:
                return await self._refunds.list_async(
                    {
                        "payment_intent": intent_id,
                        "limit": limits.payment_stripe_list_page_items_max,
                    }
                )
            return await self._refunds.list_async(
                {
                    "payment_intent": intent_id,
                    "limit": limits.payment_stripe_list_page_items_max,
                    "starting_after": starting_after,
                }
            )

        async with contextlib.aclosing(_each(page)) as refunds:
            async for refund in refunds:
                if _metadata_key(refund.metadata) != idempotency_key:
                    continue
                if amount_minor is not None and refund.amount != amount_minor:
                    raise PaymentError(
                        "idempotency_mismatch", "the idempotency key refunded another amount"
                    )
                return True
        return False

    async def list_open_authorizations(self, created_before: datetime) -> list[OpenAuthorization]:
        """Intents in `requires_capture` created before `created_before`. Stripe lists newest
        first and cancels uncaptured intents after a week, so the scan stops at the first intent
        a week older than `created_before`."""
        check_created_before(created_before)
        before_s = created_before.timestamp()
        horizon_s = before_s - limits.payment_stripe_authorization_lifetime_s

        async def page(starting_after: str | None) -> stripe.ListObject[stripe.PaymentIntent]:
            limit = limits.payment_stripe_list_page_items_max
            if starting_after is None:
                return await self._intents.list_async({"limit": limit})
            return await self._intents.list_async(
                {"limit": limit, "starting_after": starting_after}
            )

        found: list[OpenAuthorization] = []
        async with contextlib.aclosing(_each(page)) as intents:
            async for intent in intents:
                if intent.created < horizon_s:
                    break
                if intent.status == "requires_capture" and intent.created < before_s:
                    found.append(
                        OpenAuthorization(
                            authorization=_authorization_of(intent),
                            created_at=datetime.fromtimestamp(intent.created, UTC),
                            idempotency_key=_metadata_key(intent.metadata),
                        )
                    )
        return found

    async def find_authorization(self, intent_id: str) -> FoundAuthorization | None:
        """The PaymentIntent as Stripe has it now (a webhook's copy may be stale or out of
        order), or None when this account has no such intent."""
        try:
            intent = await self._retrieve(intent_id)
        except PaymentError as error:
            if error.code == "authorization_unknown":
                return None
            raise
        return FoundAuthorization(
            authorization=_authorization_of(intent),
            created_at=datetime.fromtimestamp(intent.created, UTC),
            idempotency_key=_metadata_key(intent.metadata),
            state=_STATES.get(intent.status, "other"),
        )


_STATES: Final[dict[str, AuthorizationState]] = {
    "requires_capture": "open",
    "succeeded": "captured",
    "canceled": "voided",
}


async def _each(
    page: Callable[[str | None], Awaitable[stripe.ListObject[_Item]]],
) -> AsyncGenerator[_Item, None]:
    """Every item of a Stripe list, page after page, at most `payment_stripe_list_pages_max`
    pages: past that the scan refuses rather than run without bound."""
    starting_after: str | None = None
    for _ in range(limits.payment_stripe_list_pages_max):
        try:
            listed = await page(starting_after)
        except stripe.StripeError as error:
            raise payment_error_from_stripe(error) from None
        for item in listed.data:
            yield item
        if not listed.has_more or not listed.data:
            return
        starting_after = listed.data[-1].id
    raise PaymentError(
        "list_too_long", f"more than {limits.payment_stripe_list_pages_max} pages to scan"
    )
