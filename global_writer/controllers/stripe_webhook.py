"""`POST /v1/payments/stripe/webhook`: Stripe's news about a PaymentIntent, checked against the
ledger (docs/payments.md, "The webhook endpoint"). Registered only when the writer's provider is
Stripe (global_writer/app.py).

The body must carry a valid `Stripe-Signature` made with `TESSERA_STRIPE_WEBHOOK_SECRET` less than
`limits.payment_webhook_tolerance_s` ago, else 400 `webhook_refused` with the failed check as
`reason`. For the event types in `HANDLED`, the writer asks Stripe for the PaymentIntent as it is
now (never trusting the event's copy, which may be stale or arrive out of order) and reconciles
that one authorization through the reconciler's own code (global_writer/reconcile.py
`Reconciler.check`), so a duplicate or a late delivery changes nothing. Any other type is answered
200 and ignored. When Stripe or the database cannot be asked, 503: Stripe delivers it again.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from litestar import Controller, Request, Response, post

from global_writer import errors
from global_writer.controllers.common import writer_of
from global_writer.payments import PaymentError
from global_writer.reconcile import Finding
from global_writer.stripe_provider import (
    StripeProvider,
    WebhookEvent,
    WebhookVerificationError,
    verify_webhook,
)
from tessera.media import JSON
from tessera.openapi import Answer, Header, documented
from tessera.web import kind

WebhookRefused = kind(400, "webhook_refused", errors.WriterError)

# The events that can change what the ledger must do about a PaymentIntent.
HANDLED: Final = frozenset(
    {
        "payment_intent.amount_capturable_updated",  # authorized: an orphan, once past the grace
        "payment_intent.succeeded",  # captured: the settler's capture is due, or a mismatch
        "payment_intent.canceled",  # voided: the settler's void is done, or its capture fails
        "charge.refunded",  # refunded: the settler's refund is due, or a mismatch
    }
)


class WebhookAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """What the writer made of a delivery (Stripe keeps it with the delivery, for operators)."""

    event_id: str
    handled: bool  # false: an event type Tessera does not act on
    payment_intent: str | None = None
    finding: Finding | None = None  # the reconciler's, for a handled event
    status: str | None = None  # the database's payment status, when it has one


_encoder = msgspec.json.Encoder()
SIGNATURE: Final = Header(
    "Stripe-Signature",
    "`t=<unix s>,v1=<HMAC-SHA256 of t.body>`, made with TESSERA_STRIPE_WEBHOOK_SECRET",
    required=True,
)


def intent_of(event: WebhookEvent) -> str | None:
    """The PaymentIntent an event is about, or None."""
    found = event.data.object
    if found.object == "payment_intent":
        return found.id
    return found.payment_intent


class StripeWebhookController(Controller):
    path = "/v1/payments/stripe"
    tags = ["payments"]

    @post(
        "/webhook",
        status_code=200,
        summary="Stripe's webhook: a PaymentIntent's news, reconciled with the ledger",
        operation_class=documented(
            {200: Answer.json("Handled, or ignored (another event type)", WebhookAnswer)},
            body=WebhookEvent,
            headers=[SIGNATURE],
        ),
    )
    async def receive(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        writer = writer_of(request)
        metrics = writer.reconcile_metrics
        # The raw bytes: the signature covers them exactly. The size is checked after reading,
        # so Stripe gets the 400 rather than a reset connection.
        body = await request.body()
        try:
            event = verify_webhook(
                body,
                request.headers.get("stripe-signature"),
                writer.settings.stripe_webhook_secret,
            )
        except WebhookVerificationError as error:
            metrics.webhooks.labels("refused").inc()
            raise WebhookRefused(str(error), reason=error.code) from None
        intent_id = intent_of(event)
        provider = writer.payments
        if (
            event.type not in HANDLED
            or intent_id is None
            or not isinstance(provider, StripeProvider)
        ):
            metrics.webhooks.labels("ignored").inc()
            return answer(WebhookAnswer(event_id=event.id, handled=False))
        try:
            found_now = await provider.find_authorization(intent_id)
        except PaymentError as error:
            metrics.webhooks.labels("failed").inc()
            raise errors.Unavailable(
                f"Stripe could not be asked about {intent_id}: {error.code}",
                headers={"Retry-After": "5"},
            ) from None
        if found_now is None:  # not this account's (a test event from the dashboard)
            metrics.webhooks.labels("ignored").inc()
            return answer(WebhookAnswer(event_id=event.id, handled=False, payment_intent=intent_id))
        try:
            item = await writer.reconciler_for("webhook").check(
                found_now, older_than_s=writer.settings.reconcile_older_than_s
            )
        except Exception:
            # The database (a 503 from the writer's error handler): Stripe delivers it again.
            metrics.webhooks.labels("failed").inc()
            raise
        metrics.webhooks.labels("handled").inc()
        return answer(
            WebhookAnswer(
                event_id=event.id,
                handled=True,
                payment_intent=intent_id,
                finding=item.finding,
                status=item.status,
            )
        )


def answer(body: WebhookAnswer) -> Response[bytes]:
    return Response(_encoder.encode(body), status_code=200, media_type=JSON)
