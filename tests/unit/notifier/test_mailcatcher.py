"""The mail catcher's store (its SMTP and HTTP sides run in tests/integration/test_notifier.py
and test_mailcatcher_process)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from notifier import messages
from notifier.mailcatcher import Mailbox
from tessera import contracts


def sample_email() -> bytes:
    confirmation = contracts.OrderConfirmation(
        order_id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        event_name="Tour night",
        user_id="alice",
        seats=["101:A:1"],
        amount=12_345,
        currency="EUR",
        confirmed_at=datetime.now(UTC),
    )
    email = messages.build_email(confirmation, "a@x.io", sender="t@x.io", sender_name="T")
    return email.as_bytes()


def test_keeps_what_arrives_and_filters_by_recipient(tmp_path: Path) -> None:
    mailbox = Mailbox(eml_dir=tmp_path / "eml")
    raw = sample_email()
    caught = mailbox.add("t@x.io", ["alice@example.com"], raw)
    mailbox.add("t@x.io", ["bob@example.com"], raw)
    assert caught.id == 1
    assert caught.subject == "Your tickets for Tour night"
    assert caught.message_id.startswith("<order-")
    assert "123.45 EUR" in caught.text
    assert [m.id for m in mailbox.messages(to="bob@example.com")] == [2]
    assert mailbox.raw(1) == raw
    assert mailbox.raw(3) is None
    assert sorted(p.name for p in (tmp_path / "eml").iterdir()) == ["000001.eml", "000002.eml"]
    mailbox.clear()
    assert mailbox.messages() == []


def test_oldest_go_first_past_the_bound() -> None:
    mailbox = Mailbox(max_messages=2)
    for _ in range(3):
        mailbox.add("t@x.io", ["a@x.io"], sample_email())
    assert [m.id for m in mailbox.messages()] == [2, 3]
