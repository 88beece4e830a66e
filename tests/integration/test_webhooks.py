"""Integrators' webhooks against real parts: a NATS JetStream server, Redis, and a real HTTP
receiver in a thread of the test that checks every signature as an integrator would.

The dispatcher runs in the test's event loop (notifier/webhooks.py), except in the last test,
where the notifier process (`python -m notifier`) runs it from its environment."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest
import writer_support
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from notifier.settings import Settings, to_env
from notifier.webhooks import Dispatcher, WebhookMetrics, WebhookSettings
from notifier.webhooks import to_env as webhook_env
from tessera import contracts, webhooks
from tessera.jetstream import ensure_jetstream, load_definitions
from tessera_ops import cli
from tessera_ops.processes import start_service, start_writer
from tessera_ops.servers import RunningServer

pytestmark = pytest.mark.anyio

SECRET = "whsec_test_0123456789abcdef0123456789"
OTHER_SECRET = "whsec_other_0123456789abcdef012345678"
FAST: dict[str, Any] = {"backoff_s": 0.1, "backoff_cap_s": 0.2, "backoff_jitter": 0.0}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    # What the receiver made of the signature: the signed timestamp, or the error.
    verified: int | str


@dataclass
class Receiver:
    """An integrator's endpoint: verifies each POST's signature with its path's secret, records
    it, and answers the next of `statuses` (200 once they run out)."""

    secrets: dict[str, str]
    statuses: dict[str, list[int]] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    verified: int | str = webhooks.verify(
                        self.headers.get(webhooks.HEADER_SIGNATURE, ""),
                        body,
                        receiver.secrets[self.path],
                        tolerance_s=300,
                    )
                except webhooks.SignatureError as error:
                    verified = str(error)
                with receiver.lock:
                    receiver.requests.append(
                        Received(self.path, dict(self.headers), body, verified)
                    )
                    queue = receiver.statuses.get(self.path, [])
                    status = queue.pop(0) if queue else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def received(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(secrets={"/a": SECRET, "/b": OTHER_SECRET})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def nc(fresh_nats: RunningServer) -> AsyncIterator[NatsClient]:
    client: NatsClient = await nats.connect(fresh_nats.url, connect_timeout=5)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def js(nc: NatsClient) -> JetStreamContext:
    context = nc.jetstream()
    await ensure_jetstream(context, load_definitions())
    return context


def endpoint(receiver: Receiver, path: str, events: list[str] | None = None) -> dict[str, object]:
    return {
        "id": path.strip("/"),
        "url": receiver.url(path),
        "secret": receiver.secrets[path],
        "events": events or list(webhooks.EVENT_TYPES),
    }


def settings_for(
    fresh_nats: RunningServer, redis_url: str, endpoints: list[dict[str, object]], **overrides: Any
) -> WebhookSettings:
    raw = {
        "nats_url": fresh_nats.url,
        "redis_url": redis_url,
        "endpoints": endpoints,
        "timeout_s": 2.0,
        "ack_wait_s": 10.0,
        **FAST,
        **overrides,
    }
    return msgspec.convert(raw, WebhookSettings)


@pytest.fixture
async def run_dispatcher() -> AsyncIterator[Callable[[WebhookSettings], Any]]:
    """Starts dispatchers in this event loop, ready (both consumers bound); stopped after."""
    running: list[tuple[Dispatcher, asyncio.Task[None]]] = []

    async def start(settings: WebhookSettings) -> Dispatcher:
        dispatcher = Dispatcher(settings, WebhookMetrics(CollectorRegistry()))
        running.append((dispatcher, asyncio.create_task(dispatcher.run())))
        await eventually(lambda: dispatcher.ready, what="dispatcher ready")
        return dispatcher

    yield start
    for dispatcher, task in running:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await dispatcher.stop()


async def eventually(check: Callable[[], bool], timeout_s: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what or check}")
        await asyncio.sleep(0.05)


async def queue_empty(js: JetStreamContext, stream: str = webhooks.WEBHOOKS_STREAM) -> None:
    deadline = time.monotonic() + 20
    while (await js.stream_info(stream)).state.messages:
        assert time.monotonic() < deadline, f"{stream} still holds messages"
        await asyncio.sleep(0.05)


def order_event(event_id: uuid.UUID | None = None) -> contracts.OrderEvent:
    return contracts.OrderEvent(
        order_id=uuid.uuid4(),
        event_id=event_id or uuid.uuid4(),
        user_id="carol",
        seats=["101:A:1", "101:A:2"],
        share_purchases=False,
        created_at=datetime.now(UTC),
    )


async def publish_order(js: JetStreamContext, order: contracts.OrderEvent, msg_id: str) -> None:
    """As the writer's outbox does: the order event on the change feed."""
    await js.publish(
        contracts.orders_subject(order.event_id),
        msgspec.json.encode(order),
        headers={"Nats-Msg-Id": msg_id},
    )


async def publish_event(js: JetStreamContext, event: webhooks.WebhookEvent) -> None:
    await js.publish(
        webhooks.events_subject(str(uuid.uuid4())),
        msgspec.json.encode(event),
        headers={"Nats-Msg-Id": event.id},
    )


def sold_out() -> webhooks.WebhookEvent:
    event_id = uuid.uuid4()
    return webhooks.WebhookEvent(
        id=f"event.sold_out.{event_id}",
        type="event.sold_out",
        created=datetime.now(UTC),
        data={"event_id": str(event_id)},
    )


async def dead_letters(js: JetStreamContext) -> list[webhooks.WebhookDeadLetter]:
    info = await js.stream_info(webhooks.WEBHOOKS_DEADLETTER_STREAM)
    letters = []
    if info.state.messages:
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            stored = await js.get_msg(webhooks.WEBHOOKS_DEADLETTER_STREAM, seq)
            letters.append(webhooks.webhook_dead_letter_decoder.decode(stored.data or b""))
    return letters


async def test_a_committed_order_is_posted_once_signed_to_subscribed_endpoints(
    fresh_nats: RunningServer,
    redis_url: str,
    js: JetStreamContext,
    receiver: Receiver,
    run_dispatcher: Callable[[WebhookSettings], Any],
) -> None:
    endpoints = [
        endpoint(receiver, "/a", ["order.confirmed"]),
        endpoint(receiver, "/b", ["event.sold_out"]),
    ]
    await run_dispatcher(settings_for(fresh_nats, redis_url, endpoints))
    order = order_event()
    await publish_order(js, order, f"order.{order.order_id}")
    # The relay republishing the same order after the feed's duplicate window: one webhook.
    await publish_order(js, order, f"order.{order.order_id}.again")
    await eventually(lambda: len(receiver.received("/a")) >= 1, what="the POST")
    await queue_empty(js)
    await asyncio.sleep(0.5)  # a second POST would have arrived by now
    [got] = receiver.received("/a")
    assert isinstance(got.verified, int), got.verified
    assert abs(got.verified - time.time()) < 60
    body = json.loads(got.body)
    assert body["id"] == f"order.confirmed.{order.order_id}"
    assert body["type"] == "order.confirmed"
    assert body["data"]["order_id"] == str(order.order_id)
    assert body["data"]["seats"] == ["101:A:1", "101:A:2"]
    assert got.headers[webhooks.HEADER_EVENT_ID] == body["id"]
    assert got.headers["Content-Type"] == "application/json"
    assert receiver.received("/b") == []  # not subscribed to order.confirmed


async def test_failures_are_retried_with_backoff_and_a_done_endpoint_is_not_sent_again(
    fresh_nats: RunningServer,
    redis_url: str,
    js: JetStreamContext,
    receiver: Receiver,
    run_dispatcher: Callable[[WebhookSettings], Any],
) -> None:
    receiver.statuses["/b"] = [500, 503, 429]
    endpoints = [endpoint(receiver, "/a"), endpoint(receiver, "/b")]
    await run_dispatcher(settings_for(fresh_nats, redis_url, endpoints, max_attempts=5))
    event = sold_out()
    await publish_event(js, event)
    await eventually(lambda: len(receiver.received("/b")) == 4, what="three failures, a success")
    await queue_empty(js)
    await asyncio.sleep(0.5)
    b = receiver.received("/b")
    assert len(b) == 4
    assert {r.headers[webhooks.HEADER_EVENT_ID] for r in b} == {event.id}
    assert all(isinstance(r.verified, int) for r in b)
    # /a answered 2xx on the first attempt: the retries for /b skipped it.
    assert len(receiver.received("/a")) == 1
    assert await dead_letters(js) == []
    redis = Redis.from_url(redis_url)
    try:
        assert await redis.get(webhooks.marker_key("b", event.id)) == b"sent"
    finally:
        await redis.aclose()


async def test_an_endpoint_failing_every_attempt_is_dead_lettered_and_replayed(
    *,
    fresh_nats: RunningServer,
    redis_url: str,
    js: JetStreamContext,
    receiver: Receiver,
    run_dispatcher: Callable[[WebhookSettings], Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    receiver.statuses["/a"] = [500, 500, 500]
    await run_dispatcher(
        settings_for(fresh_nats, redis_url, [endpoint(receiver, "/a")], max_attempts=3)
    )
    event = sold_out()
    await publish_event(js, event)
    await eventually(lambda: len(receiver.received("/a")) == 3, what="three attempts")
    await queue_empty(js)
    [letter] = await dead_letters(js)
    assert (letter.endpoint_id, letter.event, letter.attempts) == ("a", event, 3)
    assert "HTTP 500" in letter.error

    # The endpoint is fixed (it answers 200 now); the operator replays with the CLI.
    env = ["--nats-url", fresh_nats.url, "--redis-url", redis_url]
    code = await asyncio.to_thread(cli.main, ["webhooks", "replay", "--dry-run", *env])
    assert code == 0
    assert len(await dead_letters(js)) == 1  # a dry run changes nothing
    code = await asyncio.to_thread(cli.main, ["webhooks", "replay", *env])
    assert code == 0
    assert "replayed 1 dead letter(s)" in capsys.readouterr().out
    await eventually(lambda: len(receiver.received("/a")) == 4, what="the replayed POST")
    await queue_empty(js)
    assert await dead_letters(js) == []
    replayed = receiver.received("/a")[-1]
    assert isinstance(replayed.verified, int)
    assert json.loads(replayed.body)["id"] == event.id


async def test_the_replay_command_refuses_bad_usage() -> None:
    assert cli.main(["webhooks", "replay", "--nats-url", "nats://x", "--redis-url", ""]) == 2
    args = ["--nats-url", "nats://x", "--redis-url", "redis://x", "--endpoint", "a.b"]
    assert cli.main(["webhooks", "replay", *args]) == 2


async def test_the_notifier_process_runs_the_dispatcher_from_its_environment(
    fresh_nats: RunningServer,
    redis_url: str,
    js: JetStreamContext,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    notifier = Settings(nats_url=fresh_nats.url, redis_url=redis_url, smtp_port=1)
    hooks = settings_for(fresh_nats, redis_url, [endpoint(receiver, "/a")])
    service = start_service(
        "notifier", tmp_path / "notifier", {**to_env(notifier), **webhook_env(hooks)}
    )
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=5) as client:
            deadline = time.monotonic() + 30
            while (ready := await client.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, ready.text
                await asyncio.sleep(0.1)
            assert ready.json()["checks"]["webhooks"] is True
            order = order_event()
            await publish_order(js, order, f"order.{order.order_id}")
            await eventually(lambda: len(receiver.received("/a")) == 1, what="the POST")
            assert isinstance(receiver.received("/a")[0].verified, int)
            metrics = (await client.get("/metrics")).text
            assert "tessera_webhooks_sent_total 1.0" in metrics
    finally:
        service.stop()


# --- through a real writer: order.confirmed from its change feed, event.sold_out from its outbox

ROOM = {
    "name": "Room",
    "sections": [{"id": "S", "name": "Stalls", "rows": [{"id": "A", "seats": 4, "rank": 1}]}],
}


@pytest.fixture
async def writer_api(
    database_url: str, redis_url: str, fresh_nats: RunningServer, tmp_path: Path
) -> AsyncIterator[writer_support.WriterApi]:
    settings = writer_support.settings(database_url, redis_url, fresh_nats.url)
    service = start_writer(tmp_path / "writer", writer_support.writer_env(settings))
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=30.0) as client:
            yield writer_support.WriterApi(client, settings)
    finally:
        service.stop()


async def buy(api: writer_support.WriterApi, event_id: str, user: str) -> str:
    hold = await api.hold(event_id, user, {"best_available": {"quantity": 2}}, key=f"h-{user}")
    assert hold.status_code == 201, hold.text
    order = await api.order(user, hold.json()["hold_id"], "tok_approve", key=f"o-{user}")
    assert order.status_code == 201, order.text
    order_id: str = order.json()["order_id"]
    return order_id


async def test_orders_and_the_last_seat_sold_reach_integrators_from_the_writer(
    *,
    writer_api: writer_support.WriterApi,
    fresh_nats: RunningServer,
    redis_url: str,
    receiver: Receiver,
    run_dispatcher: Callable[[WebhookSettings], Any],
) -> None:
    event_id = await writer_api.create_event(venue=ROOM)
    await run_dispatcher(settings_for(fresh_nats, redis_url, [endpoint(receiver, "/a")]))
    # Bob holds the last two seats first: Alice's sale leaves none available, but two held
    # (they may come back), so it is not sold out yet.
    hold = await writer_api.hold(event_id, "bob", {"best_available": {"quantity": 2}}, "h-bob")
    assert hold.status_code == 201, hold.text
    first = await buy(writer_api, event_id, "alice")
    await eventually(lambda: len(receiver.received("/a")) == 1, what="the first order")
    await asyncio.sleep(0.5)
    assert len(receiver.received("/a")) == 1, "sold out announced while seats were held"
    order = await writer_api.order("bob", hold.json()["hold_id"], "tok_approve", key="o-bob")
    assert order.status_code == 201, order.text
    second = order.json()["order_id"]
    await eventually(lambda: len(receiver.received("/a")) == 3, what="second order, sold out")
    await asyncio.sleep(0.5)
    got = [json.loads(r.body) for r in receiver.received("/a")]
    assert all(isinstance(r.verified, int) for r in receiver.received("/a"))
    assert [g["type"] for g in got].count("event.sold_out") == 1
    orders = sorted(g["data"]["order_id"] for g in got if g["type"] == "order.confirmed")
    assert orders == sorted([first, second])
    [sold_out_event] = [g for g in got if g["type"] == "event.sold_out"]
    assert sold_out_event["id"] == f"event.sold_out.{event_id}"
    assert sold_out_event["data"]["event_id"] == event_id
