"""The notifier against real servers: a writer (PostgreSQL, Valkey) and its own NATS server per
test, an aiosmtpd SMTP server and an HTTP sink for the SMS webhook. Delivered once; redelivered
without a second send; SMTP down → retried with backoff, delivered when it returns; permanent
failures and the last attempt → dead letters, which replay once fixed."""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import json
import smtplib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import icalendar
import msgspec
import nats
import pytest
import writer_support
import zxingcpp
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from notifier_support import HttpSink, SmtpServer, metric
from PIL import Image
from redis.asyncio import Redis

from notifier.markers import Claim, Markers, key
from notifier.messages import build_email
from notifier.replay import replay
from notifier.settings import Settings, to_env
from tessera import contracts, tickets
from tessera.jetstream import ensure_jetstream, load_definitions
from tessera_ops.processes import ServiceProcess, start_service, start_writer
from tessera_ops.servers import RunningServer, free_port

pytestmark = pytest.mark.anyio

FALLBACK_DOMAIN = "tessera.localhost"
# Retries every 0.1, 0.2, 0.4, 0.4 … s: an outage of a second costs a handful of attempts.
FAST = {"backoff_s": 0.1, "backoff_cap_s": 0.4, "backoff_jitter": 0.0}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    server = HttpSink()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def start_notifier(
    fresh_nats: RunningServer, redis_url: str, smtp: SmtpServer, sink: HttpSink, tmp_path: Path
) -> Iterator[Callable[..., ServiceProcess]]:
    """Starts `python -m notifier` on the test's NATS, SMTP server and sink; stopped after."""
    started: list[ServiceProcess] = []

    def start(**overrides: Any) -> ServiceProcess:
        settings = Settings(
            nats_url=fresh_nats.url,
            redis_url=redis_url,
            smtp_port=smtp.port,
            sms_webhook_url=sink.url,
            fallback_domain=FALLBACK_DOMAIN,
            send_timeout_s=2.0,
            ack_wait_s=10.0,
            **{**FAST, **overrides},
        )
        service = start_service("notifier", tmp_path / "notifier", to_env(settings))
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


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


async def eventually(check: Callable[[], bool], timeout_s: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what or check}")
        await asyncio.sleep(0.05)


async def queue_drained(js: JetStreamContext) -> None:
    """Every confirmation acknowledged: the work queue is empty."""
    deadline = time.monotonic() + 15
    while (await js.stream_info(contracts.ORDERS_STREAM)).state.messages:
        assert time.monotonic() < deadline, "ORDERS still holds messages"
        await asyncio.sleep(0.05)


def confirmation(**overrides: Any) -> contracts.OrderConfirmation:
    values: dict[str, Any] = {
        "order_id": uuid.uuid4(),
        "event_id": uuid.uuid4(),
        "event_name": "Test night",
        "user_id": "carol",
        "seats": ["S:A:1", "S:A:2"],
        "amount": 9000,
        "currency": "EUR",
        "confirmed_at": datetime.now(UTC),
        "email": "carol@example.com",
        "phone": "+447700900123",
        **overrides,
    }
    return contracts.OrderConfirmation(**values)


async def publish(
    js: JetStreamContext, message: contracts.OrderConfirmation, msg_id: str | None = None
) -> None:
    await js.publish(
        contracts.order_confirmed_subject(message.event_id),
        msgspec.json.encode(message),
        headers={"Nats-Msg-Id": msg_id or contracts.order_confirmed_msg_id(message.order_id)},
    )


async def dead_letters(js: JetStreamContext) -> list[contracts.DeadLetter]:
    letters = []
    info = await js.stream_info(contracts.ORDERS_DEADLETTER_STREAM)
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if info.state.messages == 0:
            break
        stored = await js.get_msg(contracts.ORDERS_DEADLETTER_STREAM, seq)
        letters.append(contracts.dead_letter_decoder.decode(stored.data or b""))
    return letters


# --- through a real writer ---


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


async def buy(api: writer_support.WriterApi, event_id: str, user: str) -> dict[str, Any]:
    body = {"best_available": {"quantity": 2}}
    hold = await api.hold(event_id, user, body, key=f"hold-{user}")
    assert hold.status_code == 201, hold.text
    order = await api.order(user, hold.json()["hold_id"], "tok_approve", key=f"order-{user}")
    assert order.status_code == 201, order.text
    result: dict[str, Any] = order.json()
    return result


async def test_an_order_is_emailed_and_texted_once_even_when_redelivered(
    *,
    writer_api: writer_support.WriterApi,
    start_notifier: Callable[..., ServiceProcess],
    smtp: SmtpServer,
    sink: HttpSink,
    nc: NatsClient,
    js: JetStreamContext,
) -> None:
    api = writer_api
    contact = {"email": "alice@example.com", "phone": "+447700900001"}
    put = await api.client.put("/v1/me/contact", headers=api.headers("alice"), json=contact)
    assert put.status_code == 200, put.text
    me = (await api.client.get("/v1/me", headers=api.headers("alice"))).json()
    assert (me["email"], me["phone"]) == (contact["email"], contact["phone"])
    notifier = start_notifier()
    seen: list[bytes] = []

    async def keep(msg: Msg) -> None:
        seen.append(msg.data)

    sub = await nc.subscribe("orders.confirmed.*", cb=keep)

    event_id = await api.create_event()
    alice = await buy(api, event_id, "alice")
    bob = await buy(api, event_id, "bob")  # no contact: the fallback address, no SMS

    await eventually(lambda: len(smtp.mailbox.messages()) == 2, what="two emails")
    await eventually(lambda: len(sink.received()) == 1, what="one SMS")
    await queue_drained(js)
    by_to = {m.to: m for m in smtp.mailbox.messages()}
    email = by_to["alice@example.com"]
    assert email.subject == "Your tickets for Test night"
    assert email.message_id == f"<order-{alice['order_id']}@tessera.localhost>"
    assert all(seat in email.text for seat in alice["seats"])
    assert bob["order_id"] in by_to[f"bob@{FALLBACK_DOMAIN}"].text
    (sms,) = sink.received()
    assert sms.body["to"] == contact["phone"]
    assert sms.body["order_id"] == alice["order_id"]
    assert sms.headers["Idempotency-Key"] == f"order-{alice['order_id']}-sms"

    # The same confirmations delivered again (a relay republish past the duplicate window, a
    # redelivery after a lost ack): the markers say done, nothing is sent twice.
    await sub.unsubscribe()
    assert len(seen) == 2
    for n, payload in enumerate(seen):
        await js.publish(
            f"orders.confirmed.{event_id}", payload, headers={"Nats-Msg-Id": f"again-{n}"}
        )
    await queue_drained(js)
    skipped = "tessera_notifications_duplicates_skipped_total"
    await eventually(
        lambda: metric(notifier.url, skipped, channel="email") == 2,
        what="both emails skipped as duplicates",
    )
    assert len(smtp.mailbox.messages()) == 2
    assert len(sink.received()) == 1
    assert metric(notifier.url, "tessera_notifications_sent_total", channel="email") == 2
    assert metric(notifier.url, "tessera_notifications_sent_total", channel="sms") == 1
    assert (
        metric(notifier.url, "tessera_notifications_duplicates_skipped_total", channel="sms") == 1
    )


async def test_the_email_carries_each_ticket_as_a_qr_code_and_a_calendar_file(
    *,
    writer_api: writer_support.WriterApi,
    fresh_nats: RunningServer,
    redis_url: str,
    js: JetStreamContext,
    tmp_path: Path,
) -> None:
    """Through the real mail catcher process: multipart/alternative (text and HTML), one inline
    PNG QR code per ticket that decodes back to a token the published keys verify, and a
    `tickets.ics` that parses as a VEVENT for the order."""
    api = writer_api
    smtp_port = free_port()
    catcher = start_service(
        "notifier.mailcatcher",
        tmp_path / "catcher",
        {"TESSERA_MAILCATCHER_SMTP_PORT": str(smtp_port)},
    )
    settings = Settings(
        nats_url=fresh_nats.url,
        redis_url=redis_url,
        smtp_port=smtp_port,
        fallback_domain=FALLBACK_DOMAIN,
        send_timeout_s=2.0,
        ack_wait_s=10.0,
    )
    notifier = start_service("notifier", tmp_path / "notifier", to_env(settings))
    try:
        put = await api.client.put(
            "/v1/me/contact", headers=api.headers("frank"), json={"email": "frank@example.com"}
        )
        assert put.status_code == 200, put.text
        event_id = await api.create_event()
        order = await buy(api, event_id, "frank")
        downloaded = (
            await api.client.get(
                f"/v1/me/orders/{order['order_id']}/tickets", headers=api.headers("frank")
            )
        ).json()["tickets"]
        assert len(downloaded) == 2
        keys = tickets.KeySet.from_jwks((await api.client.get("/v1/tickets/keys")).content)

        def caught() -> list[dict[str, Any]]:
            answer = httpx.get(f"{catcher.url}/messages", params={"to": "frank@example.com"})
            found: list[dict[str, Any]] = answer.json()["messages"]
            return found

        await eventually(lambda: len(caught()) == 1, what="the email at the mail catcher")
        await queue_drained(js)
        (summary,) = caught()
        raw = httpx.get(f"{catcher.url}/messages/{summary['id']}/raw").content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        assert message.get_content_type() == "multipart/mixed"
        alternative = next(
            p for p in message.walk() if p.get_content_type() == "multipart/alternative"
        )
        kinds = [p.get_content_type() for p in alternative.iter_parts()]
        assert kinds == ["text/plain", "multipart/related"]
        text = message.get_body(preferencelist=("plain",))
        html_part = message.get_body(preferencelist=("html",))
        assert text is not None and html_part is not None
        plain, markup = text.get_content(), html_part.get_content()
        assert order["order_id"] in plain and order["order_id"] in markup
        images = [p for p in message.walk() if p.get_content_type() == "image/png"]
        assert len(images) == 2
        decoded = {}
        for image in images:
            cid = image["Content-ID"].strip("<>")
            assert f'src="cid:{cid}"' in markup
            token = zxingcpp.read_barcodes(Image.open(io.BytesIO(image.get_content())))[0].text
            claims = keys.verify(token)  # offline, with the published keys only
            assert claims.order_id == uuid.UUID(order["order_id"])
            assert cid == f"ticket-{claims.ticket_id}@tessera.localhost"
            assert token in plain  # the plain-text part carries each code as text
            decoded[str(claims.ticket_id)] = token
        assert decoded == {t["ticket_id"]: t["token"] for t in downloaded}

        (ics,) = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
        assert ics.get_filename() == "tickets.ics"
        assert ics.get_param("method") == "PUBLISH"
        body = ics.get_content()
        assert body.startswith("BEGIN:VCALENDAR")
        (vevent,) = icalendar.Calendar.from_ical(body).walk("VEVENT")
        assert str(vevent["UID"]) == f"order-{order['order_id']}@tessera.localhost"
        assert str(vevent["SUMMARY"]) == "Test night"
        assert str(vevent["LOCATION"]) == json.loads(writer_support.THEATRE.read_bytes())["name"]
        assert vevent.decoded("DTSTART") == datetime(2020, 1, 1, tzinfo=UTC)
        assert all(seat in str(vevent["DESCRIPTION"]) for seat in order["seats"])
    finally:
        notifier.stop()
        catcher.stop()


async def test_contact_details_are_validated(writer_api: writer_support.WriterApi) -> None:
    api = writer_api
    headers = api.headers("dave")
    for bad in (
        {"email": "not an address"},
        {"email": "dave@example.com\r\nBcc: x@example.com"},
        {"phone": "07700900001"},
        {"phone": "+1234567890123456"},
        {"email": "a" * 250 + "@example.com"},
        {"fax": "+447700900001"},
    ):
        response = await api.client.put("/v1/me/contact", headers=headers, json=bad)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["error"]["code"] == "invalid_request"
    cleared = await api.client.put("/v1/me/contact", headers=headers, json={"email": None})
    assert cleared.json()["email"] is None
    assert (await api.client.put("/v1/me/contact", json={})).status_code == 401


# --- failures (confirmations published directly) ---


async def test_smtp_down_is_retried_with_backoff_then_delivered(
    start_notifier: Callable[..., ServiceProcess], smtp: SmtpServer, js: JetStreamContext
) -> None:
    smtp.stop()
    notifier = start_notifier(max_attempts=50)
    message = confirmation(phone=None)
    await publish(js, message)

    def retried() -> float:
        return metric(notifier.url, "tessera_notifications_retried_total", channel="email")

    await eventually(lambda: retried() >= 3, what="three failed attempts")
    assert smtp.mailbox.messages() == []
    smtp.start()
    await eventually(lambda: len(smtp.mailbox.messages()) == 1, what="delivered after the outage")
    await queue_drained(js)
    (email,) = smtp.mailbox.messages()
    assert email.rcpt_tos == ["carol@example.com"]
    assert metric(notifier.url, "tessera_notifications_sent_total", channel="email") == 1
    assert await dead_letters(js) == []


async def test_permanent_failures_are_dead_lettered_at_once_then_replayed(
    start_notifier: Callable[..., ServiceProcess],
    smtp: SmtpServer,
    sink: HttpSink,
    js: JetStreamContext,
    redis_url: str,
) -> None:
    smtp.handler.refuse_rcpt = "550 5.1.1 no such mailbox"
    sink.status = 400
    notifier = start_notifier()
    message = confirmation()
    await publish(js, message)

    await queue_drained(js)
    letters = await dead_letters(js)
    assert {letter.channel for letter in letters} == {"email", "sms"}
    for letter in letters:
        assert letter.permanent
        assert letter.attempts == 1
        assert letter.confirmation == message
    errors = {letter.channel: letter.error for letter in letters}
    assert "550" in errors["email"]
    assert "400" in errors["sms"]
    await asyncio.sleep(0.6)  # several backoff periods: no attempt follows a permanent failure
    assert smtp.handler.rcpt_attempts == 1
    assert len(sink.received()) == 1
    for channel in ("email", "sms"):
        assert (
            metric(notifier.url, "tessera_notifications_dead_lettered_total", channel=channel) == 1
        )
        assert metric(notifier.url, "tessera_notifications_retried_total", channel=channel) == 0

    # Fixed: the replay sends each dead channel once more, and only once.
    smtp.handler.refuse_rcpt = None
    sink.status = 200
    redis = Redis.from_url(redis_url)
    try:
        markers = Markers(redis, claim_ttl_s=1.0)
        done = await replay(js, markers, out=io.StringIO())
        again = await replay(js, markers, out=io.StringIO())
    finally:
        await redis.aclose()
    assert len(done) == 2
    assert again == []
    await eventually(lambda: len(smtp.mailbox.messages()) == 1, what="the replayed email")
    await eventually(lambda: len(sink.received()) == 2, what="the replayed SMS")
    await queue_drained(js)
    assert await dead_letters(js) == []
    assert len(smtp.mailbox.messages()) == 1


async def test_the_last_transient_failure_is_dead_lettered(
    start_notifier: Callable[..., ServiceProcess],
    smtp: SmtpServer,
    sink: HttpSink,
    js: JetStreamContext,
) -> None:
    smtp.handler.refuse_rcpt = "451 4.3.0 try again later"
    sink.status = 503
    start_notifier(max_attempts=3)
    message = confirmation()
    await publish(js, message)

    await eventually(lambda: len(sink.received()) == 3, what="three SMS attempts")
    await queue_drained(js)
    letters = await dead_letters(js)
    assert sorted(letter.channel for letter in letters) == ["email", "sms"]
    assert all(not letter.permanent and letter.attempts == 3 for letter in letters)
    await asyncio.sleep(0.6)  # past the last backoff: no fourth attempt
    assert smtp.handler.rcpt_attempts == 3
    assert len(sink.received()) == 3


async def test_one_channel_failing_does_not_resend_the_other(
    start_notifier: Callable[..., ServiceProcess],
    smtp: SmtpServer,
    sink: HttpSink,
    js: JetStreamContext,
) -> None:
    """Email delivered at once, SMS failing transiently twice: the retries send only the SMS."""
    sink.status = 503
    notifier = start_notifier()
    await publish(js, confirmation())

    await eventually(lambda: len(sink.received()) >= 2, what="two SMS attempts")
    sink.status = 200
    await queue_drained(js)
    assert len(smtp.mailbox.messages()) == 1
    assert metric(notifier.url, "tessera_notifications_sent_total", channel="sms") == 1
    retried = metric(notifier.url, "tessera_notifications_retried_total", channel="sms")
    assert len(sink.received()) == retried + 1
    assert (
        metric(notifier.url, "tessera_notifications_duplicates_skipped_total", channel="email") >= 2
    )
    assert metric(notifier.url, "tessera_notifications_retried_total", channel="email") == 0


def test_mailcatcher_process(tmp_path: Path) -> None:
    """`python -m notifier.mailcatcher` as `tessera up` starts it: SMTP in, JSON and a page out."""
    smtp_port = free_port()
    catcher = start_service(
        "notifier.mailcatcher",
        tmp_path / "catcher",
        {
            "TESSERA_MAILCATCHER_SMTP_PORT": str(smtp_port),
            "TESSERA_MAILCATCHER_EML_DIR": str(tmp_path / "eml"),
        },
    )
    try:
        message = confirmation()
        email = build_email(message, "carol@example.com", sender="t@x.io", sender_name="Tessera")
        with smtplib.SMTP("127.0.0.1", smtp_port, local_hostname="localhost", timeout=5) as client:
            client.send_message(email)
        (caught,) = httpx.get(f"{catcher.url}/messages").json()["messages"]
        assert caught["to"] == "carol@example.com"
        assert caught["message_id"] == f"<order-{message.order_id}@x.io>"
        assert "Test night" in httpx.get(f"{catcher.url}/").text
        raw = httpx.get(f"{catcher.url}/messages/{caught['id']}/raw")
        assert raw.headers["content-type"].startswith("message/rfc822")
        assert (tmp_path / "eml" / "000001.eml").read_bytes() == raw.content
        assert httpx.delete(f"{catcher.url}/messages").status_code == 204
        assert httpx.get(f"{catcher.url}/messages").json() == {"messages": []}
    finally:
        catcher.stop()


async def test_markers_claim_release_and_finish(redis_url: str) -> None:
    """The sent markers on a real Valkey: one claimant at a time, release only by the owner."""
    redis = Redis.from_url(redis_url)
    markers = Markers(redis, claim_ttl_s=0.3)
    order = str(uuid.uuid4())
    try:
        assert await markers.claim(order, "email", "first") is Claim.CLAIMED
        assert await markers.claim(order, "email", "second") is Claim.BUSY
        assert await markers.claim(order, "sms", "second") is Claim.CLAIMED  # channels apart
        await markers.release(order, "email", "second")  # not its claim: no effect
        assert await markers.claim(order, "email", "third") is Claim.BUSY
        await markers.release(order, "email", "first")
        assert await markers.claim(order, "email", "third") is Claim.CLAIMED
        await markers.finish(order, "email", Claim.SENT)
        assert await markers.claim(order, "email", "fourth") is Claim.SENT
        assert not await markers.forget_dead(order, "email")  # sent stays sent
        assert await markers.claim(order, "email", "fourth") is Claim.SENT
        await asyncio.sleep(0.4)  # a crashed claimant's claim expires
        assert await markers.claim(order, "sms", "fifth") is Claim.CLAIMED
        await markers.finish(order, "sms", Claim.DEAD)
        assert await markers.claim(order, "sms", "sixth") is Claim.DEAD
        assert await markers.forget_dead(order, "sms")
        assert await markers.claim(order, "sms", "sixth") is Claim.CLAIMED
        ttl_ms = await redis.pttl(key(order, "email"))
        assert 7 * 86_400_000 < ttl_ms <= 8 * 86_400_000
    finally:
        await redis.aclose()
