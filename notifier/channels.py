"""Sending: email over SMTP (the standard library's smtplib, in a thread) and SMS through an HTTP
webhook (httpx), each failure classified as permanent (dead-letter it now) or transient (retry
with backoff).

Permanent: an SMTP 5xx reply (the server refused the sender, the recipient or the message), a
webhook 4xx other than 408 / 425 / 429 (it refused this request as it is), or a 3xx (a webhook
URL that moved is a configuration error; following redirects with a POST is unsafe).
Transient: everything else: connection refused or lost, timeouts, TLS errors, SMTP 4xx, webhook
5xx, 408, 425 and 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import socket
import ssl
from email.message import EmailMessage
from typing import Final

import httpx

from notifier import messages
from notifier.settings import Settings
from tessera import limits
from tessera.contracts import OrderConfirmation

# Webhook answers that mean "try again later" although they are 4xx.
_RETRYABLE_4XX: Final = frozenset({408, 425, 429})


class DeliveryError(Exception):
    """A send failed; `permanent` says whether trying again could help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message[: limits.notify_error_chars_max])
        self.permanent = permanent


def classify_smtp_error(error: BaseException) -> DeliveryError:
    """An smtplib or socket failure as a DeliveryError."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        replies = "; ".join(
            f"{rcpt}: {code} {_text(reply)}" for rcpt, (code, reply) in error.recipients.items()
        )
        permanent = bool(codes) and all(500 <= code < 600 for code in codes)
        return DeliveryError(f"SMTP refused the recipient: {replies}", permanent=permanent)
    if isinstance(error, smtplib.SMTPConnectError):
        # The greeting was not 220: a server starting, overloaded or shutting down.
        return DeliveryError(
            f"SMTP greeting {error.smtp_code}: {_text(error.smtp_error)}", permanent=False
        )
    if isinstance(error, smtplib.SMTPResponseException):
        code = error.smtp_code
        return DeliveryError(f"SMTP {code} {_text(error.smtp_error)}", permanent=500 <= code < 600)
    if isinstance(error, smtplib.SMTPNotSupportedError):
        # STARTTLS (or AUTH) configured but not offered: only an operator can fix it.
        return DeliveryError(f"SMTP server does not support: {error}", permanent=True)
    if isinstance(error, smtplib.SMTPException | OSError):
        return DeliveryError(f"SMTP unreachable: {type(error).__name__}: {error}", permanent=False)
    return DeliveryError(f"SMTP send failed: {type(error).__name__}: {error}", permanent=False)


def classify_http_status(status: int, body: str) -> DeliveryError | None:
    """None for a 2xx, else the failure the webhook's answer means."""
    if 200 <= status < 300:
        return None
    permanent = 300 <= status < 500 and status not in _RETRYABLE_4XX
    return DeliveryError(f"SMS webhook answered {status}: {body}", permanent=permanent)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


class EmailSender:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # EHLO names this host. smtplib's default, socket.getfqdn(), asks DNS and can take
        # seconds where no resolver answers; the host name is enough for an SMTP submission.
        self.local_hostname = socket.gethostname() or "localhost"

    async def send(self, message: EmailMessage) -> None:
        try:
            await asyncio.to_thread(self._send, message)
        except DeliveryError:
            raise
        except Exception as error:  # anything from the thread: classified, never lost
            raise classify_smtp_error(error) from error

    def _send(self, message: EmailMessage) -> None:
        s = self.settings
        smtp = smtplib.SMTP(timeout=s.send_timeout_s, local_hostname=self.local_hostname)
        try:
            smtp.connect(s.smtp_host, s.smtp_port)
            if s.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password)
            smtp.send_message(message)
        except Exception as error:
            raise classify_smtp_error(error) from error
        finally:
            # Once the message is accepted a failing goodbye changes nothing: it must not turn
            # a delivered message into a retry (smtplib's context manager would raise).
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
            smtp.close()


class SmsSender:
    """POSTs the SMS as JSON to the webhook with an `Idempotency-Key` that is the same for every
    attempt, so a provider that honours it folds a second copy."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.client = client

    async def send(self, confirmation: OrderConfirmation, phone: str) -> None:
        headers = {"Idempotency-Key": messages.idempotency_key(confirmation)}
        if self.settings.sms_webhook_token:
            headers["Authorization"] = f"Bearer {self.settings.sms_webhook_token}"
        try:
            async with self.client.stream(
                "POST",
                self.settings.sms_webhook_url,
                json=messages.sms_payload(confirmation, phone),
                headers=headers,
                timeout=self.settings.send_timeout_s,
            ) as response:
                body = await _read_at_most(response, limits.notify_webhook_body_bytes_max)
        except httpx.HTTPError as error:
            raise DeliveryError(
                f"SMS webhook unreachable: {type(error).__name__}: {error}", permanent=False
            ) from error
        failure = classify_http_status(response.status_code, body)
        if failure is not None:
            raise failure


async def _read_at_most(response: httpx.Response, bytes_max: int) -> str:
    """The start of the body, for an error message; never the whole of a huge one."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= bytes_max:
            break
    return b"".join(chunks)[:bytes_max].decode("utf-8", "replace")
