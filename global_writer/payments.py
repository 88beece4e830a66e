"""Payment providers: the interface checkout calls, and the sandbox that is the default.

Card data never touches Tessera: the client hands its card to the provider's own SDK and sends the
writer only the provider's payment token. Checkout (docs/architecture.md §3, docs/payments.md) calls
`authorize` with an idempotency key, commits the order, then `capture`s; it `void`s the
authorization when the commit fails (for instance, the hold expired in between). The settler
`refund`s a captured payment that should have been voided; reconciliation lists the
authorizations still open at the provider.

`build_provider` picks the provider the settings name: the sandbox here, or Stripe
(`global_writer/stripe_provider.py`, imported only when selected).

Errors say what the writer answers: `PaymentDeclined` → 402 with the decline code;
`PaymentUnavailable` → 502 `payment_provider_unavailable`, the hold is kept so the fan can retry;
any other `PaymentError` is a contract violation (a bug) → 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, ClassVar, Final, Literal, Protocol, TypeAlias

import msgspec

from tessera import limits

if TYPE_CHECKING:
    from global_writer.settings import Settings

CURRENCY_PATTERN: Final = r"^[A-Z]{3}$"
# Provider tokens are opaque printable ASCII (tok_…, pm_…, nonces, encrypted-card blobs).
PAYMENT_TOKEN_PATTERN: Final = r"^[\x21-\x7e]+$"  # noqa: S105 (a pattern, not a secret)
_CURRENCY: Final = re.compile(CURRENCY_PATTERN)
_PAYMENT_TOKEN: Final = re.compile(PAYMENT_TOKEN_PATTERN)

AmountMinor: TypeAlias = Annotated[
    int, msgspec.Meta(ge=0, le=limits.payment_amount_minor_max, description="minor units")
]
Currency: TypeAlias = Annotated[str, msgspec.Meta(pattern=CURRENCY_PATTERN)]
PaymentToken: TypeAlias = Annotated[
    str,
    msgspec.Meta(
        min_length=1, max_length=limits.payment_token_chars_max, pattern=PAYMENT_TOKEN_PATTERN
    ),
]
DeclineCode: TypeAlias = Literal[
    "card_declined",
    "insufficient_funds",
    "invalid_payment_token",
    # The card issuer wants the fan to authenticate (3-D Secure), which a server-side
    # confirmation cannot do: the fan retries with a card or client flow that does not need it.
    "authentication_required",
]


class Authorization(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Money reserved on the fan's card, not yet taken. The writer stores it with the order."""

    id: Annotated[
        str, msgspec.Meta(min_length=1, max_length=limits.payment_authorization_id_chars_max)
    ]
    provider: Annotated[
        str, msgspec.Meta(min_length=1, max_length=limits.payment_provider_name_chars_max)
    ]
    amount_minor: AmountMinor
    currency: Currency


class OpenAuthorization(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """An authorization still open at the provider (neither captured nor voided), for
    reconciliation against the database's payments."""

    authorization: Authorization
    created_at: datetime
    # The writer's key it was authorized under, as the provider recorded it; None for an
    # authorization Tessera did not make (for instance, one created by hand in the dashboard).
    idempotency_key: str | None


# Where an authorization stands at the provider: still holding money (`open`), taken (`captured`,
# refunds included), released (`voided`), or anything that holds no money (`other`).
AuthorizationState: TypeAlias = Literal["open", "captured", "voided", "other"]


class FoundAuthorization(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One authorization as the provider has it now, whatever its state (a webhook names one;
    reconciliation checks it against the database)."""

    authorization: Authorization
    created_at: datetime
    idempotency_key: str | None
    state: AuthorizationState

    def as_open(self) -> OpenAuthorization:
        return OpenAuthorization(
            authorization=self.authorization,
            created_at=self.created_at,
            idempotency_key=self.idempotency_key,
        )


class PaymentError(Exception):
    """A provider call failed. `code` is machine-readable; the message never holds the token."""

    http_status: ClassVar[int] = 500  # a contract violation (mismatched keys, capture after void)

    def __init__(self, code: str, message: str | None = None) -> None:
        self.code = code
        super().__init__(message or code.replace("_", " "))


class PaymentDeclined(PaymentError):
    """The provider refused the payment: final for this token, the fan must use another."""

    http_status: ClassVar[int] = 402
    code: DeclineCode

    def __init__(self, code: DeclineCode, message: str | None = None) -> None:
        super().__init__(code, message)


class PaymentUnavailable(PaymentError):
    """The provider could not be reached or did not answer in time: the outcome is unknown, so
    the writer keeps the hold and the fan retries with the same idempotency key."""

    http_status: ClassVar[int] = 502

    def __init__(self, message: str | None = None) -> None:
        super().__init__("payment_provider_unavailable", message)


class PaymentProvider(Protocol):
    """What checkout, the settler and reconciliation need from a payment provider. Every
    mutating method is idempotent:

    - `authorize`: the same `idempotency_key` with the same amount, currency and token returns the
      same `Authorization` without charging again; with different ones, `PaymentError
      ("idempotency_mismatch")`. Raises `PaymentDeclined` or `PaymentUnavailable`.
    - `capture` / `void`: repeating one is a no-op; capturing a voided authorization, or voiding a
      captured one, raises `PaymentError`.
    - `refund`: gives back `amount_minor` (None: all that is left) of a captured authorization;
      the same key again is a no-op, with another amount `PaymentError("idempotency_mismatch")`.
      Refunding an authorization that was not captured raises `PaymentError`.
    - `list_open_authorizations`: authorizations made before `created_before` (an aware
      datetime) that are neither captured nor voided yet.
    - `aclose`: releases network resources; the provider is not used afterwards.
    """

    name: str

    async def authorize(
        self, *, amount_minor: int, currency: str, payment_token: str, idempotency_key: str
    ) -> Authorization: ...

    async def capture(self, authorization: Authorization) -> None: ...

    async def void(self, authorization: Authorization) -> None: ...

    async def refund(
        self, authorization: Authorization, amount_minor: int | None, idempotency_key: str
    ) -> None: ...

    async def list_open_authorizations(
        self, created_before: datetime
    ) -> list[OpenAuthorization]: ...

    async def aclose(self) -> None: ...


def build_provider(settings: Settings) -> PaymentProvider:
    """The provider the settings select. `Settings` already refuses the sandbox in production and
    Stripe without a key; the first is checked again here because taking no money in production
    is the one mistake that must never pass."""
    if settings.payment_provider == "stripe":
        # Imported here: it imports this module, and sandbox-only processes skip the SDK.
        from global_writer.stripe_provider import StripeProvider  # noqa: PLC0415

        return StripeProvider(
            api_key=settings.stripe_api_key, api_base=settings.stripe_api_base or None
        )
    if settings.production:
        raise ValueError("TESSERA_PAYMENT_PROVIDER: the sandbox is refused in production")
    return SandboxProvider(slow_delay_s=settings.payment_slow_s)


def check_authorize_args(*, amount_minor: int, currency: str, idempotency_key: str) -> None:
    """Checks any provider makes first. These values come from the writer, so a bad one is a bug
    (`ValueError`), never the fan's fault."""
    if type(amount_minor) is not int or not 0 <= amount_minor <= limits.payment_amount_minor_max:
        raise ValueError(f"amount_minor must be an int in 0..{limits.payment_amount_minor_max}")
    if _CURRENCY.fullmatch(currency) is None:
        raise ValueError("currency must be three upper-case letters (ISO 4217)")
    check_idempotency_key(idempotency_key)


def check_idempotency_key(idempotency_key: str) -> None:
    if not 0 < len(idempotency_key) <= limits.payment_idempotency_key_chars_max:
        raise ValueError(
            f"idempotency_key must be 1..{limits.payment_idempotency_key_chars_max} characters"
        )


def check_refund_args(
    authorization: Authorization, amount_minor: int | None, idempotency_key: str
) -> None:
    """A refund's amount and key come from the writer: a bad one is a bug (`ValueError`)."""
    if amount_minor is not None and (
        type(amount_minor) is not int or not 0 < amount_minor <= authorization.amount_minor
    ):
        raise ValueError("amount_minor must be None or an int in 1..the authorized amount")
    check_idempotency_key(idempotency_key)


def check_created_before(created_before: datetime) -> None:
    if created_before.tzinfo is None:
        raise ValueError("created_before must be an aware datetime (UTC)")


def check_payment_token(payment_token: str) -> None:
    """The token comes from the client: a malformed one is a decline (402), not a bug."""
    if (
        len(payment_token) > limits.payment_token_chars_max
        or _PAYMENT_TOKEN.fullmatch(payment_token) is None
    ):
        raise PaymentDeclined("invalid_payment_token", "the payment token is malformed")


@dataclass(frozen=True, slots=True)
class SandboxCounters:
    """What the sandbox has done, for tests: a retried authorization must not count twice."""

    authorizations: int
    declines: int
    captures: int
    voids: int
    refunds: int = 0


@dataclass(slots=True)
class _Attempt:
    fingerprint: bytes  # amount, currency and token hashed: the sandbox keeps no tokens
    outcome: asyncio.Future[Authorization]  # pending while the first call is still running


_AuthState: TypeAlias = Literal["authorized", "captured", "voided", "refunded"]
SANDBOX_AUTHORIZATION_PREFIX: Final = "sandbox_auth_"


@dataclass(slots=True)
class _Held:
    """One authorization the sandbox made, and what has happened to it since."""

    authorization: Authorization
    idempotency_key: str
    created_at: datetime
    state: _AuthState = "authorized"
    refunded_minor: int = 0


class SandboxProvider:
    """The default provider: no network, behaviour chosen by the payment token.

    | token                    | authorize                                             |
    | ------------------------ | ----------------------------------------------------- |
    | `tok_approve`            | approves                                              |
    | `tok_decline`            | `PaymentDeclined("card_declined")`                    |
    | `tok_insufficient_funds` | `PaymentDeclined("insufficient_funds")`               |
    | `tok_network_error`      | `PaymentUnavailable`                                  |
    | `tok_slow`               | approves after `slow_delay_s`                         |
    | anything else            | `PaymentDeclined("invalid_payment_token")`            |

    Outcomes are recorded per idempotency key, declines included (the same key and arguments
    get the same decline again), except `PaymentUnavailable` and malformed tokens, after which
    the key is still free. A call with a key that is still running waits for the first call's
    outcome. Refunds are recorded per idempotency key too. State (idempotency records,
    authorizations, counters) lives in this instance's memory, so it is per process and lost on
    restart: fine for tests and the local stack, never for money.
    """

    name: str = "sandbox"

    TOKENS: ClassVar[tuple[str, ...]] = (
        "tok_approve",
        "tok_decline",
        "tok_insufficient_funds",
        "tok_network_error",
        "tok_slow",
    )

    def __init__(
        self,
        *,
        slow_delay_s: float = limits.payment_sandbox_slow_delay_s,
        attempts_max: int = limits.payment_sandbox_attempts_max,
    ) -> None:
        if not slow_delay_s >= 0:  # also refuses NaN
            raise ValueError("slow_delay_s must be >= 0")
        if attempts_max < 1:
            raise ValueError("attempts_max must be >= 1")
        self.slow_delay_s = slow_delay_s
        self._attempts_max = attempts_max
        self._attempts: dict[str, _Attempt] = {}
        self._held: dict[str, _Held] = {}
        # Refund idempotency key -> (authorization id, amount asked for), to replay or refuse.
        self._refunds: dict[str, tuple[str, int | None]] = {}
        self._declines = 0
        self._captures = 0
        self._voids = 0

    @property
    def counters(self) -> SandboxCounters:
        return SandboxCounters(
            authorizations=len(self._held),
            declines=self._declines,
            captures=self._captures,
            voids=self._voids,
            refunds=len(self._refunds),
        )

    async def authorize(
        self, *, amount_minor: int, currency: str, payment_token: str, idempotency_key: str
    ) -> Authorization:
        check_authorize_args(
            amount_minor=amount_minor, currency=currency, idempotency_key=idempotency_key
        )
        try:
            # Like a provider's request validation: refused before any idempotency record.
            check_payment_token(payment_token)
        except PaymentDeclined:
            self._declines += 1
            raise
        fingerprint = hashlib.sha256(
            msgspec.json.encode([amount_minor, currency, payment_token])
        ).digest()
        attempt = self._attempts.get(idempotency_key)
        if attempt is not None:
            if attempt.fingerprint != fingerprint:
                raise PaymentError(
                    "idempotency_mismatch",
                    "the idempotency key was used with a different amount, currency or token",
                )
            return await _replay(attempt.outcome)
        if len(self._attempts) >= self._attempts_max:
            raise PaymentUnavailable("the sandbox is full; restart it")
        attempt = _Attempt(fingerprint, asyncio.get_running_loop().create_future())
        self._attempts[idempotency_key] = attempt
        try:
            authorization = await self._decide(amount_minor, currency, payment_token)
        except PaymentDeclined as exc:
            self._declines += 1
            _settle_with_error(attempt.outcome, exc)
            raise
        except BaseException as exc:
            # Unavailable or cancelled: nothing happened, so the key stays free for a retry.
            del self._attempts[idempotency_key]
            unavailable = exc if isinstance(exc, PaymentUnavailable) else PaymentUnavailable()
            _settle_with_error(attempt.outcome, unavailable)
            raise
        self._held[authorization.id] = _Held(
            authorization, idempotency_key, created_at=datetime.now(UTC)
        )
        attempt.outcome.set_result(authorization)
        return authorization

    async def _decide(self, amount_minor: int, currency: str, payment_token: str) -> Authorization:
        match payment_token:
            case "tok_approve":
                pass
            case "tok_slow":
                await asyncio.sleep(self.slow_delay_s)
            case "tok_decline":
                raise PaymentDeclined("card_declined", "the card was declined")
            case "tok_insufficient_funds":
                raise PaymentDeclined("insufficient_funds", "the card has insufficient funds")
            case "tok_network_error":
                raise PaymentUnavailable("the payment provider could not be reached")
            case _:
                raise PaymentDeclined("invalid_payment_token", "the payment token is not known")
        return Authorization(
            id=f"{SANDBOX_AUTHORIZATION_PREFIX}{uuid.uuid4().hex}",
            provider=self.name,
            amount_minor=amount_minor,
            currency=currency,
        )

    def _held_for(self, authorization: Authorization) -> _Held:
        held = self._held.get(authorization.id)
        if held is None and _made_by_a_sandbox(authorization):
            # Made by this writer's sandbox before a restart (its memory went with it): still
            # open as far as this sandbox can tell, so the settler can finish it after a crash.
            held = _Held(authorization, "", created_at=datetime.now(UTC))
            self._held[authorization.id] = held
        if held is None or held.authorization != authorization:
            raise PaymentError("authorization_unknown", "this sandbox made no such authorization")
        return held

    async def capture(self, authorization: Authorization) -> None:
        held = self._held_for(authorization)
        if held.state == "voided":
            raise PaymentError("authorization_voided", "a voided authorization cannot be captured")
        if held.state == "authorized":
            held.state = "captured"
            self._captures += 1

    async def void(self, authorization: Authorization) -> None:
        held = self._held_for(authorization)
        if held.state in ("captured", "refunded"):
            raise PaymentError(
                "authorization_captured", "a captured authorization cannot be voided"
            )
        if held.state == "authorized":
            held.state = "voided"
            self._voids += 1

    async def refund(
        self, authorization: Authorization, amount_minor: int | None, idempotency_key: str
    ) -> None:
        check_refund_args(authorization, amount_minor, idempotency_key)
        held = self._held_for(authorization)
        request = (authorization.id, amount_minor)
        recorded = self._refunds.get(idempotency_key)
        if recorded is not None:
            if recorded != request:
                raise PaymentError(
                    "idempotency_mismatch",
                    "the idempotency key was used for another refund or amount",
                )
            return
        match held.state:
            case "authorized":
                raise PaymentError(
                    "authorization_not_captured", "only a captured authorization is refunded"
                )
            case "voided":
                raise PaymentError("authorization_voided", "a voided authorization took no money")
            case "refunded":
                raise PaymentError("authorization_refunded", "it was already refunded in full")
        left = authorization.amount_minor - held.refunded_minor
        amount = left if amount_minor is None else amount_minor
        if amount > left:
            raise PaymentError("refund_exceeds_capture", f"only {left} minor units are left")
        if len(self._refunds) >= self._attempts_max:
            raise PaymentUnavailable("the sandbox is full; restart it")
        self._refunds[idempotency_key] = request
        held.refunded_minor += amount
        if held.refunded_minor == authorization.amount_minor:
            held.state = "refunded"

    async def list_open_authorizations(self, created_before: datetime) -> list[OpenAuthorization]:
        check_created_before(created_before)
        return [
            OpenAuthorization(
                authorization=held.authorization,
                created_at=held.created_at,
                idempotency_key=held.idempotency_key,
            )
            for held in self._held.values()
            if held.state == "authorized" and held.created_at < created_before
        ]

    async def aclose(self) -> None:
        """Nothing to release: the sandbox holds no connections."""


def _made_by_a_sandbox(authorization: Authorization) -> bool:
    return authorization.provider == SandboxProvider.name and authorization.id.startswith(
        SANDBOX_AUTHORIZATION_PREFIX
    )


def _settle_with_error(outcome: asyncio.Future[Authorization], error: PaymentError) -> None:
    outcome.set_exception(error)
    # Marks the exception retrieved, so asyncio does not log it when no second caller waited;
    # callers that do wait still see it.
    outcome.exception()


async def _replay(outcome: asyncio.Future[Authorization]) -> Authorization:
    """The first call's outcome, as a fresh exception each time (tracebacks must not pile up).

    `shield`: a waiter that is cancelled must not cancel the first call's outcome for the rest.
    """
    if not outcome.done():
        with contextlib.suppress(PaymentError):
            await asyncio.shield(outcome)
    error = outcome.exception()
    if isinstance(error, PaymentDeclined):
        raise PaymentDeclined(error.code, str(error))
    if isinstance(error, PaymentUnavailable):
        raise PaymentUnavailable(str(error))
    return outcome.result()
