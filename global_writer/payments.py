"""Payment providers: the interface checkout calls, and the sandbox that is the default.

Card data never touches Tessera: the client hands its card to the provider's own SDK and sends the
writer only the provider's payment token. Checkout (ARCHITECTURE.md §3, docs/payments.md) calls
`authorize` with an idempotency key, commits the order, then `capture`s; it `void`s the
authorization when the commit fails (for instance, the hold expired in between).

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
from typing import Annotated, ClassVar, Final, Literal, Protocol, TypeAlias

import msgspec

from tessera import limits

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
DeclineCode: TypeAlias = Literal["card_declined", "insufficient_funds", "invalid_payment_token"]


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
    """What checkout needs from a payment provider. Every method is idempotent:

    - `authorize`: the same `idempotency_key` with the same amount, currency and token returns the
      same `Authorization` without charging again; with different ones, `PaymentError
      ("idempotency_mismatch")`. Raises `PaymentDeclined` or `PaymentUnavailable`.
    - `capture` / `void`: repeating one is a no-op; capturing a voided authorization, or voiding a
      captured one, raises `PaymentError`.
    """

    name: str

    async def authorize(
        self, *, amount_minor: int, currency: str, payment_token: str, idempotency_key: str
    ) -> Authorization: ...

    async def capture(self, authorization: Authorization) -> None: ...

    async def void(self, authorization: Authorization) -> None: ...


def check_authorize_args(*, amount_minor: int, currency: str, idempotency_key: str) -> None:
    """Checks any provider makes first. These values come from the writer, so a bad one is a bug
    (`ValueError`), never the fan's fault."""
    if type(amount_minor) is not int or not 0 <= amount_minor <= limits.payment_amount_minor_max:
        raise ValueError(f"amount_minor must be an int in 0..{limits.payment_amount_minor_max}")
    if _CURRENCY.fullmatch(currency) is None:
        raise ValueError("currency must be three upper-case letters (ISO 4217)")
    if not 0 < len(idempotency_key) <= limits.payment_idempotency_key_chars_max:
        raise ValueError(
            f"idempotency_key must be 1..{limits.payment_idempotency_key_chars_max} characters"
        )


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


@dataclass(slots=True)
class _Attempt:
    fingerprint: bytes  # amount, currency and token hashed: the sandbox keeps no tokens
    outcome: asyncio.Future[Authorization]  # pending while the first call is still running


_AuthState: TypeAlias = Literal["authorized", "captured", "voided"]


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
    outcome. State (idempotency records, authorizations, counters) lives in this instance's
    memory, so it is per process and lost on restart: fine for tests and the local stack, never
    for money.
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
        self._states: dict[str, _AuthState] = {}
        self._authorizations: dict[str, Authorization] = {}
        self._declines = 0
        self._captures = 0
        self._voids = 0

    @property
    def counters(self) -> SandboxCounters:
        return SandboxCounters(
            authorizations=len(self._authorizations),
            declines=self._declines,
            captures=self._captures,
            voids=self._voids,
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
        self._authorizations[authorization.id] = authorization
        self._states[authorization.id] = "authorized"
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
            id=f"sandbox_auth_{uuid.uuid4().hex}",
            provider=self.name,
            amount_minor=amount_minor,
            currency=currency,
        )

    def _state_of(self, authorization: Authorization) -> _AuthState:
        if self._authorizations.get(authorization.id) != authorization:
            raise PaymentError("authorization_unknown", "this sandbox made no such authorization")
        return self._states[authorization.id]

    async def capture(self, authorization: Authorization) -> None:
        state = self._state_of(authorization)
        if state == "voided":
            raise PaymentError("authorization_voided", "a voided authorization cannot be captured")
        if state == "authorized":
            self._states[authorization.id] = "captured"
            self._captures += 1

    async def void(self, authorization: Authorization) -> None:
        state = self._state_of(authorization)
        if state == "captured":
            raise PaymentError(
                "authorization_captured", "a captured authorization cannot be voided"
            )
        if state == "authorized":
            self._states[authorization.id] = "voided"
            self._voids += 1


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
