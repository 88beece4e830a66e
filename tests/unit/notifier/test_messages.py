"""What the fan receives, where it goes, and which channels a delivery is for."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from notifier import ics, messages
from notifier.settings import Settings
from notifier.worker import plan_channels
from tessera import contracts

ORDER = uuid.UUID("5d0c6f0e-9a4b-4f1e-8f6f-2a1b3c4d5e6f")


def confirmation(**overrides: Any) -> contracts.OrderConfirmation:
    values: dict[str, Any] = {
        "order_id": ORDER,
        "event_id": uuid.uuid4(),
        "event_name": "Tour night",
        "user_id": "alice",
        "seats": ["101:A:1", "101:A:2"],
        "amount": 12_345,
        "currency": "EUR",
        "confirmed_at": datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
        **overrides,
    }
    return contracts.OrderConfirmation(**values)


def settings(**overrides: Any) -> Settings:
    return Settings(nats_url="nats://x", redis_url="redis://x", **overrides)


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [(12_345, "EUR", "123.45 EUR"), (5, "USD", "0.05 USD"), (500, "JPY", "500 JPY"),
     (1_234, "KWD", "1.234 KWD"), (0, "GBP", "0.00 GBP")],
)  # fmt: skip
def test_amounts_in_major_units(amount: int, currency: str, text: str) -> None:
    assert messages.format_amount(amount, currency) == text


def test_email_goes_to_the_fan_else_the_fallback_else_nowhere() -> None:
    assert (
        messages.email_recipient(confirmation(email="a@example.com"), "demo.io") == "a@example.com"
    )
    assert (
        messages.email_recipient(confirmation(), "tessera.localhost") == "alice@tessera.localhost"
    )
    assert messages.email_recipient(confirmation(), "") is None


def test_email_headers_and_body() -> None:
    email = messages.build_email(
        confirmation(), "alice@example.com", sender="tickets@tessera.io", sender_name="Tessera"
    )
    assert email["To"] == "alice@example.com"
    assert email["From"] == "Tessera <tickets@tessera.io>"
    assert email["Subject"] == "Your tickets for Tour night"
    assert email["Message-ID"] == f"<order-{ORDER}@tessera.io>"
    assert email["X-Tessera-Order"] == str(ORDER)
    body = email.get_content()
    assert "101:A:1" in body and "101:A:2" in body
    assert "123.45 EUR" in body


def test_every_attempt_has_the_same_message_id() -> None:
    first = messages.build_email(confirmation(), "a@x.io", sender="t@x.io", sender_name="")
    again = messages.build_email(confirmation(), "a@x.io", sender="t@x.io", sender_name="")
    assert first["Message-ID"] == again["Message-ID"]


def test_an_event_name_cannot_inject_headers() -> None:
    email = messages.build_email(
        confirmation(event_name="Night\r\nBcc: all@x.io"), "a@x.io", sender="t@x.io", sender_name=""
    )
    assert email["Subject"] == "Your tickets for Night Bcc: all@x.io"
    assert email["Bcc"] is None


def test_sms_payload() -> None:
    many = confirmation(seats=[f"101:A:{n}" for n in range(1, 8)])
    payload = messages.sms_payload(many, "+447700900123")
    assert payload["to"] == "+447700900123"
    assert payload["order_id"] == str(ORDER)
    assert "101:A:1, 101:A:2, 101:A:3, 101:A:4 +3 more" in payload["text"]
    assert "123.45 EUR" in payload["text"]
    assert messages.idempotency_key(many) == f"order-{ORDER}-sms"


def test_channels_planned() -> None:
    full = confirmation(email="a@example.com", phone="+447700900123")
    hook = settings(sms_webhook_url="http://127.0.0.1:9/sms")
    assert plan_channels(full, hook, None) == [("email", "a@example.com"), ("sms", "+447700900123")]
    # No webhook configured: no SMS, whatever the fan gave.
    assert plan_channels(full, settings(), None) == [("email", "a@example.com")]
    # No contact: the fallback address, when there is one.
    assert plan_channels(confirmation(), hook, None) == []
    assert plan_channels(confirmation(), settings(fallback_domain="demo.io"), None) == [
        ("email", "alice@demo.io")
    ]
    # A replayed dead letter names the channels still due.
    only_sms = {contracts.HEADER_NOTIFY_CHANNELS: "sms"}
    assert plan_channels(full, hook, only_sms) == [("sms", "+447700900123")]
    assert plan_channels(full, hook, {contracts.HEADER_NOTIFY_CHANNELS: "fax"}) == []


@pytest.mark.parametrize(
    "change",
    [
        {"email": "not an address"},
        {"email": "a@example.com\n"},
        {"email": "a@localhost"},
        {"phone": "07700900123"},
        {"phone": "+44 7700 900123"},
        {"currency": "eur"},
        {"seats": []},
        {"amount": -1},
        {"surprise": 1},
    ],
)
def test_confirmations_are_decoded_strictly(change: dict[str, Any]) -> None:
    document = msgspec.to_builtins(confirmation(email="a@example.com", phone="+447700900123"))
    with pytest.raises(msgspec.ValidationError):
        contracts.order_confirmation_decoder.decode(msgspec.json.encode({**document, **change}))


def test_confirmation_round_trip() -> None:
    message = confirmation(email="a@example.com", phone="+447700900123")
    assert contracts.order_confirmation_decoder.decode(msgspec.json.encode(message)) == message


# --- tickets in the email (notifier/ticket_parts.py, notifier/ics.py) ---


def test_an_email_with_tickets_is_text_html_inline_qr_codes_and_a_calendar_file() -> None:
    tickets = [
        contracts.TicketCopy(ticket_id=uuid.uuid4(), seat=seat, token=f"T1.TOKEN{n}.SIG")
        for n, seat in enumerate(["101:A:1", "101:A:2"])
    ]
    message = messages.build_email(
        confirmation(
            tickets=tickets,
            venue_name="Arena; North, <Hall>",
            onsale_at=datetime(2026, 11, 1, 9, 0, tzinfo=UTC),
        ),
        "alice@example.com",
        sender="tickets@tessera.test",
        sender_name="Tessera",
    )
    assert message.get_content_type() == "multipart/mixed"
    parts = [part.get_content_type() for part in message.walk()]
    assert parts == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
        "image/png",
        "text/calendar",
    ]
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None
    markup = html_part.get_content()
    assert "Arena; North, &lt;Hall&gt;" in markup  # escaped, never markup
    for ticket in tickets:
        assert f'src="cid:ticket-{ticket.ticket_id}@tessera.test"' in markup
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None
    assert all(ticket.token in plain.get_content() for ticket in tickets)
    calendar = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    body = calendar.get_content()
    assert "\r\nLOCATION:Arena\\; North\\, <Hall>\r\n" in body
    assert "\r\nDTSTART:20261101T090000Z\r\n" in body
    assert f"\r\nUID:order-{ORDER}@tessera.test\r\n" in body
    assert all(len(line.encode()) <= 75 for line in body.split("\r\n"))
    assert ics.escape("a\\b;c,d\ne\x00") == "a\\\\b\\;c\\,d\\ne"


def test_an_email_without_tickets_stays_plain_text() -> None:
    message = messages.build_email(
        confirmation(), "alice@example.com", sender="t@x.io", sender_name=""
    )
    assert message.get_content_type() == "text/plain"
