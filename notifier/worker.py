"""The notifier's worker: a durable pull consumer on the work queue `ORDERS`.

Each delivery of a confirmation is one *attempt*. For every channel still due (email, and SMS
when the fan has a phone and a webhook is configured) the attempt claims the channel's marker
in Redis, sends, and records the outcome (notifier/markers.py). Then:

- every channel done (sent, skipped as already done, dead-lettered): ack, and the work queue
  deletes the message;
- a channel failed transiently and attempts remain: NAK with the backoff delay
  (notifier/backoff.py); the server redelivers it then, and the next attempt sends only what is
  still due;
- a channel failed permanently, or transiently on the last attempt: its dead letter goes to
  `orders.deadletter.<event_id>` (stream ORDERS_DEADLETTER) with the error, the channel is
  marked dead, and it is never tried again by this message.

The attempt number is the server's delivery count, so it survives restarts of the notifier.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Final

import httpx
import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from redis.asyncio import Redis

from notifier import backoff, messages
from notifier.channels import DeliveryError, EmailSender, SmsSender
from notifier.connect import connect_until_up
from notifier.markers import Claim, Markers
from notifier.metrics import NotifierMetrics
from notifier.settings import Settings
from tessera import contracts, limits
from tessera.contracts import Channel, OrderConfirmation
from tessera.jetstream import DefinitionError, ensure_jetstream, load_definitions

log = logging.getLogger("notifier.worker")

NOTIFY_STREAMS: Final = (contracts.ORDERS_STREAM, contracts.ORDERS_DEADLETTER_STREAM)
# Start-up waits this long between tries while NATS or the streams are not there yet.
_STARTUP_RETRY_S: Final = 1.0
# After a failed fetch (connection lost, consumer gone), before the consumer is bound again.
_REBIND_AFTER_S: Final = 1.0
# Redis calls: a notifier that cannot reach Redis cannot check its markers, so it sends nothing
# and retries the message later; a short timeout turns an outage into retries quickly.
_REDIS_TIMEOUT_S: Final = 2.0
# Undecodable confirmations are dead-lettered as if of this event (they name no event id).
MALFORMED_EVENT: Final = "malformed"
HEADER_NOTIFY_ERROR: Final = "Tessera-Notify-Error"

_encoder: Final = msgspec.json.Encoder()


def plan_channels(
    confirmation: OrderConfirmation, settings: Settings, headers: Mapping[str, str] | None
) -> list[tuple[Channel, str]]:
    """Which channels this delivery is for, and each one's recipient. A replayed dead letter
    names its channels in `Tessera-Notify-Channels`; otherwise both, where possible."""
    wanted: set[str] = set(contracts.CHANNELS)
    only = (headers or {}).get(contracts.HEADER_NOTIFY_CHANNELS)
    if only is not None:
        wanted &= {part.strip() for part in only.split(",")}
    plan: list[tuple[Channel, str]] = []
    email = messages.email_recipient(confirmation, settings.fallback_domain)
    if "email" in wanted and email is not None:
        plan.append(("email", email))
    if "sms" in wanted and confirmation.phone is not None and settings.sms_webhook_url:
        plan.append(("sms", confirmation.phone))
    return plan


def _header_safe(text: str) -> str:
    """A header value: one line, bounded."""
    return " ".join(text.split())[: limits.notify_error_chars_max]


class Worker:
    def __init__(self, settings: Settings, metrics: NotifierMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.nc: NatsClient | None = None
        self.js: JetStreamContext | None = None
        self.redis = Redis.from_url(
            settings.redis_url,
            socket_timeout=_REDIS_TIMEOUT_S,
            socket_connect_timeout=_REDIS_TIMEOUT_S,
        )
        self.markers = Markers(self.redis, claim_ttl_s=settings.claim_ttl_s)
        self.http = httpx.AsyncClient(
            follow_redirects=False,
            limits=httpx.Limits(max_connections=settings.concurrency),
        )
        self.email = EmailSender(settings)
        self.sms = SmsSender(settings, self.http)
        self.inflight: set[asyncio.Task[None]] = set()
        self.ready = False

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    # --- lifecycle ---

    async def run(self) -> None:
        """Connect (retrying until NATS and the streams are there), then consume until
        cancelled."""
        js = await self._connect()
        while True:
            sub = await self._bind(js)
            self.ready = True
            try:
                await self._consume(sub)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("consumer failed; binding it again", exc_info=True)
            finally:
                self.ready = False
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            await asyncio.sleep(_REBIND_AFTER_S)

    async def stop(self) -> None:
        """After `run` was cancelled: let sends in progress finish briefly, then close."""
        self.ready = False
        if self.inflight:
            _, pending = await asyncio.wait(self.inflight, timeout=limits.notify_drain_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.http.aclose()
        await self.redis.aclose()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()

    async def _connect(self) -> JetStreamContext:
        if self.nc is None:
            self.nc = await connect_until_up(self.settings.nats_url, _STARTUP_RETRY_S)
        self.js = self.nc.jetstream()
        return self.js

    async def _bind(self, js: JetStreamContext) -> JetStreamContext.PullSubscription:
        while True:
            try:
                await self._ensure_streams(js)
                await js.add_consumer(contracts.ORDERS_STREAM, self._consumer_config())
                return await js.pull_subscribe_bind(
                    durable=self.settings.consumer, stream=contracts.ORDERS_STREAM
                )
            except Exception as error:
                log.warning("ORDERS consumer not ready (%s); retrying", error)
                await asyncio.sleep(_STARTUP_RETRY_S)

    async def _ensure_streams(self, js: JetStreamContext) -> None:
        """Create ORDERS and its dead letters if the writer has not yet (whichever starts first
        creates them), but never change existing ones: the writer owns their settings, and two
        processes updating one stream from different views would undo each other. Installed
        without the source tree's nats/ folder, wait for the writer's."""
        try:
            definitions = load_definitions(replicas=self.settings.jetstream_replicas)
        except DefinitionError:
            definitions = []
        for definition in definitions:
            if definition.stream_name not in NOTIFY_STREAMS:
                continue
            try:
                await js.stream_info(definition.stream_name)
            except NotFoundError:
                await ensure_jetstream(js, [definition])
        for name in NOTIFY_STREAMS:
            await js.stream_info(name)

    def _consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.settings.consumer,
            description="The notifier: order confirmations by email and SMS.",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.settings.ack_wait_s,
            # The notifier counts attempts itself and dead-letters after the last one; a server
            # limit would instead leave an exhausted message in the queue, unacknowledged.
            max_deliver=-1,
            max_ack_pending=limits.notify_ack_pending_max,
            filter_subject=f"{contracts.ORDER_CONFIRMED_PREFIX}.*",
        )

    async def _consume(self, sub: JetStreamContext.PullSubscription) -> None:
        """Fetch only as many messages as there are free slots: the rest wait in the stream,
        where they cost nothing and another notifier process may take them."""
        while True:
            free = self.settings.concurrency - len(self.inflight)
            if free <= 0:
                await asyncio.wait(self.inflight, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                batch = await sub.fetch(free, timeout=limits.notify_fetch_timeout_s)
            except TimeoutError:  # nothing to do (nats-py raises its own or asyncio's)
                continue
            for msg in batch:
                task = asyncio.create_task(self.handle(msg))
                self.inflight.add(task)
                task.add_done_callback(self.inflight.discard)

    # --- one delivery ---

    async def handle(self, msg: Msg) -> None:
        """One attempt at one confirmation; never raises (an unexpected failure is a retry)."""
        self.metrics.in_flight.inc()
        try:
            await self._attempt(msg)
        except Exception:
            log.exception("confirmation attempt failed unexpectedly; retrying it later")
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.delay_s(msg.metadata.num_delivered))
        finally:
            self.metrics.in_flight.dec()

    def delay_s(self, attempt: int) -> float:
        s = self.settings
        return backoff.retry_delay_s(
            max(1, attempt), base_s=s.backoff_s, cap_s=s.backoff_cap_s, jitter=s.backoff_jitter
        )

    async def _attempt(self, msg: Msg) -> None:
        meta = msg.metadata
        attempt, seq = meta.num_delivered, meta.sequence.stream
        try:
            confirmation = contracts.order_confirmation_decoder.decode(msg.data)
        except msgspec.DecodeError as error:
            await self._dead_letter_malformed(msg, seq, str(error))
            await msg.ack()
            return
        plan = plan_channels(confirmation, self.settings, msg.headers)
        if not plan:
            self.metrics.no_channel.inc()
            await msg.ack()
            return
        outcomes = await asyncio.gather(
            *(self.deliver(confirmation, ch, to, attempt, seq) for ch, to in plan),
            return_exceptions=True,
        )
        failed: list[str] = []
        for (channel, _), outcome in zip(plan, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                # Redis or NATS failed around the send: nothing is known to be done, retry.
                log.warning(
                    "order %s: %s attempt failed", confirmation.order_id, channel, exc_info=outcome
                )
                failed.append(f"{channel}: {type(outcome).__name__}: {outcome}")
            elif outcome is not None:
                failed.append(outcome)
        if not failed:
            await msg.ack()
            return
        delay = self.delay_s(attempt)
        log.info(
            "order %s: attempt %d failed (%s); next in %.2f s",
            confirmation.order_id,
            attempt,
            "; ".join(failed),
            delay,
        )
        await msg.nak(delay=delay)

    async def deliver(
        self, confirmation: OrderConfirmation, channel: Channel, to: str, attempt: int, seq: int
    ) -> str | None:
        """Send on one channel unless its marker says it is done: None when the channel is
        finished (sent, already done, dead-lettered), else the error that calls for a retry."""
        order_id = str(confirmation.order_id)
        token = uuid.uuid4().hex
        claim = await self.markers.claim(order_id, channel, token)
        if claim in (Claim.SENT, Claim.DEAD):
            self.metrics.duplicates_skipped.labels(channel).inc()
            return None
        if claim is Claim.BUSY:
            return f"{channel}: another attempt is sending it"
        try:
            await self.send(confirmation, channel, to)
        except DeliveryError as error:
            if not error.permanent and attempt < self.settings.max_attempts:
                await self.markers.release(order_id, channel, token)
                self.metrics.retried.labels(channel).inc()
                return f"{channel}: {error}"
            try:
                await self.dead_letter(confirmation, channel, error, attempt, seq)
            except BaseException:
                await self.markers.release(order_id, channel, token)
                raise
            await self.markers.finish(order_id, channel, Claim.DEAD)
            return None
        self.metrics.sent.labels(channel).inc()
        await self._mark_sent(order_id, channel)
        return None

    async def _mark_sent(self, order_id: str, channel: Channel) -> None:
        """The send is done: a failure to record it must not turn into a retry. The claim is
        left in place, so a redelivery backs off until it expires (docs: the window)."""
        try:
            await self.markers.finish(order_id, channel, Claim.SENT)
        except Exception:
            log.exception("order %s: %s sent but its marker was not written", order_id, channel)

    async def send(self, confirmation: OrderConfirmation, channel: Channel, to: str) -> None:
        started = time.perf_counter()
        timeout_s = self.settings.attempt_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                if channel == "email":
                    await self.email.send(self._email(confirmation, to))
                else:
                    await self.sms.send(confirmation, to)
        except TimeoutError as error:
            raise DeliveryError(f"no answer within {timeout_s:g} s", permanent=False) from error
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.send_duration_s.labels(channel).observe(elapsed)

    def _email(self, confirmation: OrderConfirmation, to: str) -> EmailMessage:
        s = self.settings
        try:
            return messages.build_email(
                confirmation, to, sender=s.from_address, sender_name=s.from_name
            )
        except ValueError as error:  # a header the email package refuses: never sendable
            raise DeliveryError(f"cannot build the email: {error}", permanent=True) from error

    # --- dead letters ---

    async def dead_letter(
        self,
        confirmation: OrderConfirmation,
        channel: Channel,
        error: DeliveryError,
        attempt: int,
        seq: int,
    ) -> None:
        assert self.js is not None
        letter = contracts.DeadLetter(
            confirmation=confirmation,
            channel=channel,
            error=str(error),
            permanent=error.permanent,
            attempts=attempt,
            failed_at=datetime.now(UTC),
            stream_seq=seq,
        )
        headers = {
            # The same attempt dead-lettering twice (a crash before the marker) is one letter.
            "Nats-Msg-Id": f"dead.{confirmation.order_id}.{channel}.{seq}",
            contracts.HEADER_EVENT: str(confirmation.event_id),
            contracts.HEADER_ORDER: str(confirmation.order_id),
            contracts.HEADER_NOTIFY_CHANNEL: channel,
            HEADER_NOTIFY_ERROR: _header_safe(str(error)),
        }
        await self.js.publish(
            contracts.order_deadletter_subject(confirmation.event_id),
            _encoder.encode(letter),
            headers=headers,
            stream=contracts.ORDERS_DEADLETTER_STREAM,
        )
        self.metrics.dead_lettered.labels(channel).inc()
        kind = "permanent failure" if error.permanent else f"attempts used up ({attempt})"
        log.warning(
            "order %s: %s dead-lettered, %s: %s", confirmation.order_id, channel, kind, error
        )

    async def _dead_letter_malformed(self, msg: Msg, seq: int, error: str) -> None:
        """A payload that is no confirmation: kept as it came, with the reason in a header."""
        assert self.js is not None
        headers = {
            "Nats-Msg-Id": f"dead.{MALFORMED_EVENT}.{seq}",
            HEADER_NOTIFY_ERROR: _header_safe(f"not an OrderConfirmation: {error}"),
        }
        await self.js.publish(
            f"{contracts.ORDER_DEADLETTER_PREFIX}.{MALFORMED_EVENT}",
            msg.data,
            headers=headers,
            stream=contracts.ORDERS_DEADLETTER_STREAM,
        )
        self.metrics.dead_lettered.labels("unknown").inc()
        log.warning("ORDERS message %d is not a confirmation; dead-lettered: %s", seq, error)
