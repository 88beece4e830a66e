"""Webhooks for integrators (docs/webhooks.md): the event envelope, the endpoint configuration,
the signature, the subjects of the work queue and the replay of dead letters.

The signature is Stripe's scheme: `Tessera-Signature: t=<unix seconds>,v1=<hex>` where the hex
is HMAC-SHA256 over `f"{t}.{body}"` with the endpoint's secret. `sign` and `verify` use only the
standard library, so an integrator can copy them as they are.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import sys
import time
import urllib.parse
from datetime import datetime
from typing import Annotated, Any, Final, Literal, TextIO

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from redis.asyncio import Redis

from tessera import limits

HEADER_SIGNATURE: Final = "Tessera-Signature"
HEADER_EVENT_ID: Final = "Tessera-Event-Id"
HEADER_EVENT_TYPE: Final = "Tessera-Event-Type"
HEADER_ENDPOINT: Final = "Tessera-Webhook-Endpoint"
HEADER_WEBHOOK_ERROR: Final = "Tessera-Webhook-Error"

EventType = Literal["order.confirmed", "order.refunded", "event.sold_out"]
EVENT_TYPES: Final[tuple[EventType, ...]] = ("order.confirmed", "order.refunded", "event.sold_out")

# --- the work queue (tessera/resources/nats/jetstream/WEBHOOKS*.stream.json) ---
WEBHOOKS_STREAM: Final = "WEBHOOKS"
WEBHOOKS_DEADLETTER_STREAM: Final = "WEBHOOKS_DEADLETTER"
# An event for every subscribed endpoint: `webhooks.events.<event_id>` (Tessera's event).
EVENTS_PREFIX: Final = "webhooks.events"
# A replayed dead letter, for one endpoint only: `webhooks.replay.<endpoint_id>`.
REPLAY_PREFIX: Final = "webhooks.replay"
# What could not be delivered: `webhooks.deadletter.<endpoint_id>`.
DEADLETTER_PREFIX: Final = "webhooks.deadletter"
# Per (endpoint, event) delivery markers in Redis: `sent` / `dead`.
MARKER_PREFIX: Final = "tessera:webhook"

EndpointId = Annotated[str, msgspec.Meta(pattern=r"\A[A-Za-z0-9_-]{1,32}\Z")]
EventId = Annotated[str, msgspec.Meta(pattern=r"\A[A-Za-z0-9._:-]{1,128}\Z")]
Secret = Annotated[
    str,
    msgspec.Meta(
        min_length=limits.webhook_secret_chars_min, max_length=limits.webhook_secret_chars_max
    ),
]
Url = Annotated[str, msgspec.Meta(min_length=8, max_length=2_048, pattern=r"\Ahttps?://\S+\Z")]


class SignatureError(ValueError):
    """A webhook whose signature is missing, malformed, wrong or too old."""


class Endpoint(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One integrator's receiver: where to POST, the shared secret, which event types."""

    id: EndpointId
    url: Url
    secret: Secret
    events: Annotated[list[EventType], msgspec.Meta(min_length=1, max_length=len(EVENT_TYPES))]

    def __post_init__(self) -> None:
        # The body carries order data and the signature only proves origin: plain HTTP is only
        # for a receiver on this host (a test, a local demo).
        host = urllib.parse.urlsplit(self.url).hostname or ""
        if self.url.startswith("http://") and not _is_loopback(host):
            raise ValueError(f"webhook endpoint {self.id}: https only, unless on loopback")

    def wants(self, event_type: str) -> bool:
        return event_type in self.events


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoints(endpoints: list[Endpoint]) -> None:
    """Endpoint ids name dead-letter subjects and markers: they must be unique."""
    ids = [endpoint.id for endpoint in endpoints]
    if len(set(ids)) != len(ids):
        raise ValueError("webhook endpoint ids must be unique")


class WebhookEvent(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """What an endpoint receives as the POST body, and what `webhooks.events.*` carries. `id` is
    the same on every attempt and every replay: receivers deduplicate on it."""

    id: EventId
    type: EventType
    created: datetime
    data: dict[str, Any]


class WebhookDeadLetter(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """On `webhooks.deadletter.<endpoint_id>` when an endpoint failed on the last attempt."""

    endpoint_id: EndpointId
    event: WebhookEvent
    error: Annotated[str, msgspec.Meta(max_length=limits.notify_error_chars_max)]
    attempts: int
    failed_at: datetime
    # The event's sequence in WEBHOOKS (with the endpoint, the dead letter's Nats-Msg-Id).
    stream_seq: int


webhook_event_decoder: Final = msgspec.json.Decoder(WebhookEvent)
webhook_dead_letter_decoder: Final = msgspec.json.Decoder(WebhookDeadLetter)
encoder: Final = msgspec.json.Encoder()


def events_subject(event_id: str) -> str:
    return f"{EVENTS_PREFIX}.{event_id}"


def marker_key(endpoint_id: str, event_id: str) -> str:
    return f"{MARKER_PREFIX}:{endpoint_id}:{event_id}"


# --- the signature ---


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `Tessera-Signature` header value for `body` sent at `timestamp` (unix seconds)."""
    signed = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(
    header: str, body: bytes, secret: str, tolerance_s: float = 300.0, now: float | None = None
) -> int:
    """Check a `Tessera-Signature` header against the raw body; the signed timestamp, or
    SignatureError. `tolerance_s` bounds the age (and the clock skew) of an accepted delivery,
    so a captured request cannot be replayed later. Several `v1` values (a secret being
    rotated) pass if any matches."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("no t= timestamp or no v1= signature")
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > tolerance_s:
        raise SignatureError(f"timestamp outside the tolerance ({age:.0f} s old)")
    expected = sign(secret, body, timestamp).partition(",v1=")[2]
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureError("signature does not match")
    return timestamp


# --- replaying dead letters (tessera webhooks replay) ---


async def replay(
    js: JetStreamContext,
    redis: Redis,
    *,
    endpoint_id: str | None = None,
    limit: int = 100,
    dry_run: bool = False,
    out: TextIO = sys.stdout,
) -> list[WebhookDeadLetter]:
    """Send up to `limit` dead letters (of one endpoint, if given) back to the work queue, oldest
    first: clear the endpoint's `dead` marker, publish the event on
    `webhooks.replay.<endpoint_id>` (`Nats-Msg-Id` names the dead letter, so a second run
    publishes it once), then delete the dead letter. The ones replayed."""
    subject = f"{DEADLETTER_PREFIX}.{endpoint_id or '*'}"
    replayed: list[WebhookDeadLetter] = []
    seq = 1
    while len(replayed) < limit:
        try:
            stored = await js.get_msg(WEBHOOKS_DEADLETTER_STREAM, seq, subject=subject, next=True)
        except NotFoundError:
            break
        assert stored.seq is not None
        seq = stored.seq + 1
        try:
            letter = webhook_dead_letter_decoder.decode(stored.data or b"")
        except msgspec.DecodeError as error:
            print(f"seq {stored.seq}: not a dead letter, left in place: {error}", file=out)
            continue
        print(
            f"seq {stored.seq}: {letter.event.type} {letter.event.id} to {letter.endpoint_id}"
            f" ({letter.attempts} attempts): {letter.error}",
            file=out,
        )
        if not dry_run:
            await _replay_one(js, redis, letter, stored.seq)
        replayed.append(letter)
    return replayed


async def _replay_one(
    js: JetStreamContext, redis: Redis, letter: WebhookDeadLetter, seq: int
) -> None:
    key = marker_key(letter.endpoint_id, letter.event.id)
    # Only a `dead` marker: a `sent` one means it went out after all, and stays so.
    await redis.eval(
        "if redis.call('GET', KEYS[1]) == 'dead' then return redis.call('DEL', KEYS[1]) end"
        " return 0",
        1,
        key,
    )
    await js.publish(
        f"{REPLAY_PREFIX}.{letter.endpoint_id}",
        encoder.encode(letter.event),
        headers={"Nats-Msg-Id": f"replay.{letter.endpoint_id}.{letter.event.id}.{seq}"},
        stream=WEBHOOKS_STREAM,
    )
    await js.delete_msg(WEBHOOKS_DEADLETTER_STREAM, seq)
