"""Which failures are permanent (dead-letter now) and which are retried."""

from __future__ import annotations

import smtplib
import socket

import pytest

from notifier.channels import DeliveryError, classify_http_status, classify_smtp_error


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (smtplib.SMTPRecipientsRefused({"a@x.io": (550, b"5.1.1 no such user")}), True),
        (smtplib.SMTPRecipientsRefused({"a@x.io": (451, b"4.3.0 try later")}), False),
        (smtplib.SMTPRecipientsRefused({"a@x.io": (550, b"no"), "b@x.io": (452, b"full")}), False),
        (smtplib.SMTPSenderRefused(553, b"5.1.8 bad sender", "t@x.io"), True),
        (smtplib.SMTPDataError(554, b"5.6.0 rejected"), True),
        (smtplib.SMTPDataError(421, b"4.4.2 timeout"), False),
        (smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"), True),
        (smtplib.SMTPConnectError(554, b"no service here"), False),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), False),
        (smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."), True),
        (ConnectionRefusedError(111, "Connection refused"), False),
        (TimeoutError("timed out"), False),
        (socket.gaierror(-2, "Name or service not known"), False),
        (RuntimeError("something else"), False),
    ],
)
def test_smtp_failures(error: BaseException, permanent: bool) -> None:
    classified = classify_smtp_error(error)
    assert isinstance(classified, DeliveryError)
    assert classified.permanent is permanent


def test_smtp_errors_quote_the_server() -> None:
    error = classify_smtp_error(smtplib.SMTPRecipientsRefused({"a@x.io": (550, b"no such user")}))
    assert "a@x.io: 550 no such user" in str(error)


@pytest.mark.parametrize(
    ("status", "permanent"),
    [(400, True), (401, True), (404, True), (422, True), (301, True), (408, False),
     (425, False), (429, False), (500, False), (502, False), (503, False)],
)  # fmt: skip
def test_webhook_answers(status: int, permanent: bool) -> None:
    failure = classify_http_status(status, "body")
    assert failure is not None
    assert failure.permanent is permanent
    assert f"answered {status}: body" in str(failure)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_webhook_success(status: int) -> None:
    assert classify_http_status(status, "") is None


def test_error_messages_are_bounded() -> None:
    assert len(str(DeliveryError("x" * 100_000, permanent=True))) == 1_024
