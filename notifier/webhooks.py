"""Integrators' webhooks (docs/webhooks.md): the dispatcher, run by the notifier process when
endpoints are configured (`TESSERA_WEBHOOK_ENDPOINTS`).

Two durable pull consumers, one attempt logic:

- *orders*, on the change feed `SEATS` (`orders.<event_id>`, an `OrderEvent` per committed
  order, filter `orders.*`): each is an `order.confirmed` event. SEATS keeps messages by limits,
  so this consumer takes nothing from the feed's other readers, and NAKs with a delay retry on
  it like on a work queue. ORDERS could not serve: a work queue allows one consumer per subject
  (the notifier's), and its confirmations carry the fans' contact details and ticket tokens,
  which integrators must not receive. Delivering from the feed, rather than republishing it,
  keeps the rule that only the writer publishes to the hub's streams (the notifier, dead
  letters only; tessera/resources/nats/server/permissions.json);
- *delivery*, on the work queue `WEBHOOKS`: events the writer's outbox wrote there
  (`event.sold_out`, `order.refunded`) and replayed dead
  letters (`webhooks.replay.<endpoint_id>`, for that endpoint only).

An attempt POSTs the event, signed (tessera/webhooks.py), to every subscribed endpoint at once.
Retries, backoff and attempt counting are the notifier's: a NAK with the delay of
notifier/backoff.py, the attempt being the server's delivery count. A 2xx marks the (endpoint,
event) `sent` in Redis so a retry for another endpoint skips it; on the last attempt each
endpoint still failing gets a dead letter on `webhooks.deadletter.<endpoint_id>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Final

import httpx
import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis

from notifier import backoff
from notifier.connect import connect_until_up
from tessera import contracts, limits
from tessera import webhooks as hooks
from tessera.jetstream import DefinitionError, ensure_jetstream, load_definitions
from tessera.web import load_settings

log = logging.getLogger("notifier.webhooks")

_STREAMS: Final = (hooks.WEBHOOKS_STREAM, hooks.WEBHOOKS_DEADLETTER_STREAM)
# The change feed (tessera/resources/nats/jetstream/SEATS.stream.json), created by the writer.
SEATS_STREAM: Final = "SEATS"
_RETRY_S: Final = 1.0
_REDIS_TIMEOUT_S: Final = 2.0
# Messages taken from a consumer at once; each is worked on concurrently.
_BATCH: Final = 16
_ACK_WAIT_MARGIN_S: Final = 5.0
MALFORMED: Final = "malformed"
_encoder: Final = msgspec.json.Encoder()

Seconds = Annotated[float, msgspec.Meta(gt=0, le=limits.notify_backoff_s_max)]
ConsumerName = Annotated[str, msgspec.Meta(pattern=r"\A[A-Za-z0-9_-]{1,32}\Z")]


class WebhookSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    nats_url: Annotated[str, msgspec.Meta(min_length=1, max_length=2_048)]
    redis_url: Annotated[str, msgspec.Meta(min_length=1, max_length=2_048)]
    # None configured: no dispatcher runs.
    endpoints: Annotated[
        list[hooks.Endpoint], msgspec.Meta(max_length=limits.webhook_endpoints_max)
    ] = []
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=limits.webhook_attempts_max)] = 10
    backoff_s: Seconds = 5.0
    backoff_cap_s: Seconds = 600.0
    backoff_jitter: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.2
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=limits.webhook_timeout_s_max)] = 10.0
    ack_wait_s: Annotated[float, msgspec.Meta(gt=0, le=limits.notify_ack_wait_s_max)] = 60.0
    consumer: ConsumerName = "webhooks"
    orders_consumer: ConsumerName = "webhooks-orders"
    jetstream_replicas: Annotated[int, msgspec.Meta(ge=1, le=limits.jetstream_replicas_max)] = 1

    def __post_init__(self) -> None:
        hooks.check_endpoints(self.endpoints)
        if self.backoff_cap_s < self.backoff_s:
            raise ValueError("webhook backoff_cap_s must be at least backoff_s")
        if self.ack_wait_s < self.timeout_s + _ACK_WAIT_MARGIN_S:
            # An attempt's POSTs run at once, each within timeout_s: a shorter AckWait would
            # redeliver an event still being sent.
            raise ValueError(
                f"webhook ack_wait_s must be at least timeout_s + {_ACK_WAIT_MARGIN_S:g}"
            )


ENV_FIELDS: Final = {
    "nats_url": "TESSERA_NATS_URL",
    "redis_url": "TESSERA_REDIS_URL",
    "endpoints": "TESSERA_WEBHOOK_ENDPOINTS",
    "max_attempts": "TESSERA_WEBHOOK_MAX_ATTEMPTS",
    "backoff_s": "TESSERA_WEBHOOK_BACKOFF_S",
    "backoff_cap_s": "TESSERA_WEBHOOK_BACKOFF_CAP_S",
    "backoff_jitter": "TESSERA_WEBHOOK_BACKOFF_JITTER",
    "timeout_s": "TESSERA_WEBHOOK_TIMEOUT_S",
    "ack_wait_s": "TESSERA_WEBHOOK_ACK_WAIT_S",
    "consumer": "TESSERA_WEBHOOK_CONSUMER",
    "orders_consumer": "TESSERA_WEBHOOK_ORDERS_CONSUMER",
    "jetstream_replicas": "TESSERA_JETSTREAM_REPLICAS",
}


def from_env(environ: dict[str, str] | None = None) -> WebhookSettings:
    """Never names a value in an error: the endpoints carry secrets."""
    return load_settings(WebhookSettings, ENV_FIELDS, environ, json_fields=("endpoints",))


def to_env(settings: WebhookSettings) -> dict[str, str]:
    env: dict[str, str] = {}
    for field, variable in ENV_FIELDS.items():
        value = getattr(settings, field)
        env[variable] = _encoder.encode(value).decode() if field == "endpoints" else str(value)
    return env


def order_confirmed(order: contracts.OrderEvent) -> hooks.WebhookEvent:
    """The `order.confirmed` event of a committed order: the same id and body every time."""
    return hooks.WebhookEvent(
        id=f"order.confirmed.{order.order_id}",
        type="order.confirmed",
        created=order.created_at,
        data={
            "order_id": str(order.order_id),
            "event_id": str(order.event_id),
            "user_id": order.user_id,
            "seats": list(order.seats),
            "confirmed_at": order.created_at.isoformat().replace("+00:00", "Z"),
        },
    )


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "tessera_webhooks_sent", "Webhook events accepted (2xx) by an endpoint.",
            registry=registry,
        )  # fmt: skip
        self.retried = Counter(
            "tessera_webhooks_retried",
            "Webhook attempts sent back for a retry (an endpoint failed, attempts remain).",
            registry=registry,
        )
        self.dead_lettered = Counter(
            "tessera_webhooks_dead_lettered",
            "Webhook deliveries dead-lettered after the last attempt (or malformed events).",
            registry=registry,
        )


class Dispatcher:
    def __init__(self, settings: WebhookSettings, metrics: WebhookMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.endpoints = {endpoint.id: endpoint for endpoint in settings.endpoints}
        self.redis = Redis.from_url(
            settings.redis_url,
            socket_timeout=_REDIS_TIMEOUT_S,
            socket_connect_timeout=_REDIS_TIMEOUT_S,
        )
        # Redirects are not followed: a moved endpoint is a configuration error, and following
        # one would send the signed body somewhere it was not configured to go.
        self.http = httpx.AsyncClient(follow_redirects=False, timeout=settings.timeout_s)
        self.nc: NatsClient | None = None
        self.js: JetStreamContext | None = None
        self.bound: set[str] = set()

    @property
    def ready(self) -> bool:
        return len(self.bound) == 2 and self.nc is not None and self.nc.is_connected

    async def run(self) -> None:
        js = await self._connect()
        await asyncio.gather(
            self._serve(js, SEATS_STREAM, self._orders_config(), self.orders),
            self._serve(js, hooks.WEBHOOKS_STREAM, self._delivery_config(), self.deliver),
        )

    async def stop(self) -> None:
        await self.http.aclose()
        await self.redis.aclose()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()

    async def _connect(self) -> JetStreamContext:
        if self.nc is None:
            self.nc = await connect_until_up(self.settings.nats_url, _RETRY_S)
        self.js = self.nc.jetstream()
        return self.js

    async def _ensure_streams(self, js: JetStreamContext) -> None:
        """Create WEBHOOKS and its dead letters if missing, never change them (the writer's
        start-up owns their settings, as for ORDERS); SEATS is the writer's to create."""
        try:
            definitions = load_definitions(replicas=self.settings.jetstream_replicas)
        except DefinitionError:
            definitions = []
        for definition in definitions:
            if definition.stream_name in _STREAMS:
                try:
                    await js.stream_info(definition.stream_name)
                except NotFoundError:
                    await ensure_jetstream(js, [definition])

    async def _serve(
        self,
        js: JetStreamContext,
        stream: str,
        config: ConsumerConfig,
        handle: Callable[[Msg], Awaitable[None]],
    ) -> None:
        """Bind the consumer (retrying until its stream is there), then work its messages, a
        batch at a time; bind again after a failure."""
        assert config.durable_name is not None
        while True:
            try:
                await self._ensure_streams(js)
                await js.add_consumer(stream, config)
                sub = await js.pull_subscribe_bind(durable=config.durable_name, stream=stream)
            except Exception as error:
                log.warning("%s consumer not ready (%s); retrying", stream, error)
                await asyncio.sleep(_RETRY_S)
                continue
            self.bound.add(stream)
            try:
                while True:
                    try:
                        batch = await sub.fetch(_BATCH, timeout=limits.notify_fetch_timeout_s)
                    except TimeoutError:
                        continue
                    await asyncio.gather(*(self._guarded(handle, msg) for msg in batch))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("%s consumer failed; binding it again", stream, exc_info=True)
            finally:
                self.bound.discard(stream)
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            await asyncio.sleep(_RETRY_S)

    async def _guarded(self, handle: Callable[[Msg], Awaitable[None]], msg: Msg) -> None:
        """One message; an unexpected failure (Redis, NATS) is a retry after the backoff."""
        try:
            await handle(msg)
        except Exception:
            log.exception("webhook message failed unexpectedly; retrying it later")
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.delay_s(msg.metadata.num_delivered))

    def delay_s(self, attempt: int) -> float:
        s = self.settings
        return backoff.retry_delay_s(
            max(1, attempt), base_s=s.backoff_s, cap_s=s.backoff_cap_s, jitter=s.backoff_jitter
        )

    def _orders_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.settings.orders_consumer,
            description="Webhooks: order.confirmed from the change feed's order events.",
            # Orders from the moment webhooks are first configured: the feed keeps 7 days, which
            # integrators must not receive as a burst of old events.
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.settings.ack_wait_s,
            max_deliver=-1,
            max_ack_pending=limits.notify_ack_pending_max,
            filter_subject=f"{contracts.ORDERS_SUBJECT_PREFIX}.*",
        )

    def _delivery_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.settings.consumer,
            description="Webhooks: signed POSTs to integrators' endpoints.",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.settings.ack_wait_s,
            # Attempts are counted here (dead letter after the last), as the notifier does.
            max_deliver=-1,
            max_ack_pending=limits.notify_ack_pending_max,
        )

    # --- the two sources ---

    async def orders(self, msg: Msg) -> None:
        """An order event of the change feed: `order.confirmed`, delivered from here (retried
        by NAKs on this consumer), so the notifier publishes nothing on any feed."""
        try:
            order = contracts.order_event_decoder.decode(msg.data)
        except msgspec.DecodeError as error:
            # Not ours to judge: the feed's other readers decide what an order event is.
            log.warning("orders message is not an OrderEvent, no webhook: %s", error)
            await msg.ack()
            return
        targets = [e for e in self.endpoints.values() if e.wants("order.confirmed")]
        await self.attempt(msg, order_confirmed(order), targets)

    def targets(self, subject: str, event: hooks.WebhookEvent) -> list[hooks.Endpoint]:
        if subject.startswith(hooks.REPLAY_PREFIX + "."):
            endpoint = self.endpoints.get(subject.rpartition(".")[2])
            if endpoint is None:
                # Its endpoint was removed from the settings since: nobody to send it to.
                log.warning("replayed webhook %s names no configured endpoint; dropped", event.id)
                return []
            return [endpoint]
        return [e for e in self.endpoints.values() if e.wants(event.type)]

    async def deliver(self, msg: Msg) -> None:
        """An event of the work queue WEBHOOKS (`event.sold_out`, `order.refunded`, replays)."""
        try:
            event = hooks.webhook_event_decoder.decode(msg.data)
        except msgspec.DecodeError as error:
            seq = msg.metadata.sequence.stream
            await self._dead_letter_raw(msg, seq, f"not a WebhookEvent: {error}")
            await msg.ack()
            return
        await self.attempt(msg, event, self.targets(msg.subject, event))

    # --- one attempt ---

    async def attempt(
        self, msg: Msg, event: hooks.WebhookEvent, targets: list[hooks.Endpoint]
    ) -> None:
        """POST to every target at once; ack when all are done, else NAK with the backoff, or on
        the last attempt dead-letter each endpoint still failing and ack."""
        meta = msg.metadata
        attempt, seq = meta.num_delivered, meta.sequence.stream
        body = _encoder.encode(event)
        errors = await asyncio.gather(*(self.post(endpoint, event, body) for endpoint in targets))
        failed = [(e, why) for e, why in zip(targets, errors, strict=True) if why]
        if not failed:
            await msg.ack()
            return
        if attempt < self.settings.max_attempts:
            self.metrics.retried.inc()
            delay = self.delay_s(attempt)
            log.info("webhook %s: attempt %d failed; next in %.2f s", event.id, attempt, delay)
            await msg.nak(delay=delay)
            return
        for endpoint, why in failed:
            await self._dead_letter(endpoint, event, why, attempt, seq)
        await msg.ack()

    async def post(self, endpoint: hooks.Endpoint, event: hooks.WebhookEvent, body: bytes) -> str:
        """POST the event unless this endpoint already has it: "" when done, else the error."""
        key = hooks.marker_key(endpoint.id, event.id)
        if await self.redis.get(key) in (b"sent", b"dead"):
            return ""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Tessera-Webhooks/1",
            hooks.HEADER_EVENT_ID: event.id,
            hooks.HEADER_EVENT_TYPE: event.type,
            hooks.HEADER_SIGNATURE: hooks.sign(endpoint.secret, body, int(time.time())),
        }
        try:
            response = await self.http.post(endpoint.url, content=body, headers=headers)
        except httpx.HTTPError as error:
            return _one_line(f"{type(error).__name__}: {error}")
        if not response.is_success:
            return _one_line(f"HTTP {response.status_code}: {response.text[:200]}")
        self.metrics.sent.inc()
        await self.redis.set(key, "sent", ex=limits.notify_marker_ttl_s)
        return ""

    async def _dead_letter(
        self,
        endpoint: hooks.Endpoint,
        event: hooks.WebhookEvent,
        error: str,
        attempt: int,
        seq: int,
    ) -> None:
        assert self.js is not None
        letter = hooks.WebhookDeadLetter(
            endpoint_id=endpoint.id,
            event=event,
            error=error[: limits.notify_error_chars_max],
            attempts=attempt,
            failed_at=datetime.now(UTC),
            stream_seq=seq,
        )
        await self.js.publish(
            f"{hooks.DEADLETTER_PREFIX}.{endpoint.id}",
            _encoder.encode(letter),
            headers={
                # The same attempt dead-lettering twice (a crash before the ack) is one letter.
                "Nats-Msg-Id": f"dead.{endpoint.id}.{event.id}.{seq}",
                hooks.HEADER_EVENT_ID: event.id,
                hooks.HEADER_WEBHOOK_ERROR: _one_line(error),
            },
            stream=hooks.WEBHOOKS_DEADLETTER_STREAM,
        )
        await self.redis.set(
            hooks.marker_key(endpoint.id, event.id), "dead", ex=limits.notify_marker_ttl_s
        )
        self.metrics.dead_lettered.inc()
        log.warning(
            "webhook %s to %s dead-lettered after %d attempts", event.id, endpoint.id, attempt
        )

    async def _dead_letter_raw(self, msg: Msg, seq: int, error: str) -> None:
        assert self.js is not None
        await self.js.publish(
            f"{hooks.DEADLETTER_PREFIX}.{MALFORMED}",
            msg.data,
            headers={
                "Nats-Msg-Id": f"dead.{MALFORMED}.{seq}",
                hooks.HEADER_WEBHOOK_ERROR: _one_line(error),
            },
            stream=hooks.WEBHOOKS_DEADLETTER_STREAM,
        )
        self.metrics.dead_lettered.inc()
        log.warning("WEBHOOKS message %d dead-lettered: %s", seq, error)


def _one_line(text: str) -> str:
    return " ".join(text.split())[: limits.notify_error_chars_max]
