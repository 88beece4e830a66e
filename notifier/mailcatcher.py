"""A local mail catcher for the demo stack and the tests: a real SMTP server (aiosmtpd) that
accepts every message and keeps it in memory (optionally also as `.eml` files), served over HTTP:

- `GET /` a page listing the caught emails, newest first;
- `GET /messages` them as JSON (`?to=<address>` filters by recipient);
- `GET /messages/{id}/raw` one as it arrived (`message/rfc822`);
- `DELETE /messages` forgets them all;
- `GET /healthz`, `GET /readyz` (the SMTP port is listening).

`python -m notifier.mailcatcher --smtp-port 1025 --http-port 8025 [--host H] [--eml-dir DIR]`
(`--port` is `--http-port`; the options default to `TESSERA_MAILCATCHER_SMTP_HOST`, `_SMTP_PORT`
and `_EML_DIR`, so `tessera_ops.processes.start_service` can start it). It
never relays anything anywhere. Duplicates are kept, not folded: each has the same Message-ID,
which is how a test or a person sees one.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import email
import email.policy
import html
import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Final

import msgspec
from aiosmtpd.smtp import SMTP, Envelope, Session
from granian import Granian
from granian.constants import Interfaces
from litestar import Litestar, Request, Response, delete, get

from tessera import limits
from tessera.media import JSON

ENV_SMTP_HOST: Final = "TESSERA_MAILCATCHER_SMTP_HOST"
ENV_SMTP_PORT: Final = "TESSERA_MAILCATCHER_SMTP_PORT"
ENV_EML_DIR: Final = "TESSERA_MAILCATCHER_EML_DIR"
DEFAULT_SMTP_PORT: Final = 1025
DEFAULT_HTTP_PORT: Final = 8025


class CaughtMessage(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    received_at: datetime
    mail_from: str
    rcpt_tos: list[str]
    to: str
    subject: str
    message_id: str
    text: str
    size: int


@dataclass(frozen=True)
class _Stored:
    summary: CaughtMessage
    raw: bytes


def _plain_text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    if body is None:
        return ""
    content = body.get_content()
    return content.replace("\r\n", "\n") if isinstance(content, str) else ""


class Mailbox:
    """The caught messages, oldest dropped past `max_messages`. Thread-safe: tests run the SMTP
    server in aiosmtpd's own thread and read from theirs."""

    def __init__(
        self, *, max_messages: int = limits.mailcatcher_messages_max, eml_dir: Path | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._messages: collections.deque[_Stored] = collections.deque(maxlen=max_messages)
        self._next_id = 1
        self.eml_dir = eml_dir
        if eml_dir is not None:
            eml_dir.mkdir(parents=True, exist_ok=True)

    def add(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> CaughtMessage:
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)  # what policy.default builds
        with self._lock:
            number, self._next_id = self._next_id, self._next_id + 1
            summary = CaughtMessage(
                id=number,
                received_at=datetime.now(UTC),
                mail_from=mail_from,
                rcpt_tos=list(rcpt_tos),
                to=str(parsed.get("To", "")),
                subject=str(parsed.get("Subject", "")),
                message_id=str(parsed.get("Message-ID", "")),
                text=_plain_text(parsed),
                size=len(raw),
            )
            self._messages.append(_Stored(summary, raw))
        if self.eml_dir is not None:
            (self.eml_dir / f"{number:06d}.eml").write_bytes(raw)
        return summary

    def messages(self, to: str | None = None) -> list[CaughtMessage]:
        with self._lock:
            caught = [stored.summary for stored in self._messages]
        if to is not None:
            caught = [m for m in caught if to in m.rcpt_tos]
        return caught

    def raw(self, number: int) -> bytes | None:
        with self._lock:
            return next((s.raw for s in self._messages if s.summary.id == number), None)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()


class CatcherHandler:
    """The aiosmtpd handler: accepts and stores. `refuse_rcpt`, when set (an SMTP reply such as
    `"550 5.1.1 no such mailbox"` or `"451 4.3.0 try later"`), refuses every recipient
    instead: how the tests make a server fail permanently or transiently."""

    def __init__(self, mailbox: Mailbox, *, refuse_rcpt: str | None = None) -> None:
        self.mailbox = mailbox
        self.refuse_rcpt = refuse_rcpt
        self.rcpt_attempts = 0

    async def handle_RCPT(  # noqa: N802 - aiosmtpd calls its hooks by these names
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        self.rcpt_attempts += 1
        if self.refuse_rcpt is not None:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or b""
        mail_from = envelope.mail_from or ""
        self.mailbox.add(mail_from, list(envelope.rcpt_tos), raw)
        return "250 Message accepted for delivery"


def smtp_factory(handler: CatcherHandler) -> SMTP:
    return SMTP(
        handler,
        hostname="mailcatcher.tessera.localhost",
        data_size_limit=limits.mailcatcher_message_bytes_max,
    )


# --- HTTP ---


@get("/messages", sync_to_thread=False)
def list_messages(request: Request[Any, Any, Any]) -> Response[bytes]:
    mailbox: Mailbox = request.app.state.mailbox
    caught = mailbox.messages(request.query_params.get("to"))
    return Response(msgspec.json.encode({"messages": caught}), media_type=JSON)


@get("/messages/{number:int}/raw", sync_to_thread=False)
def raw_message(request: Request[Any, Any, Any], number: int) -> Response[bytes]:
    raw = request.app.state.mailbox.raw(number)
    if raw is None:
        body = b'{"error":{"code":"not_found","message":"no such message"}}'
        return Response(body, status_code=404, media_type=JSON)
    return Response(raw, media_type="message/rfc822")


@delete("/messages", status_code=204, sync_to_thread=False)
def clear_messages(request: Request[Any, Any, Any]) -> None:
    request.app.state.mailbox.clear()


@get("/", sync_to_thread=False)
def page(request: Request[Any, Any, Any]) -> Response[str]:
    """What the demo shows: every caught email, newest first, as text."""
    mailbox: Mailbox = request.app.state.mailbox
    items = "".join(
        f"<article><h2>{html.escape(m.subject)}</h2><p>To {html.escape(m.to)} · "
        f"{m.received_at:%H:%M:%S} · {html.escape(m.message_id)}</p>"
        f"<pre>{html.escape(m.text)}</pre></article>"
        for m in reversed(mailbox.messages())
    )
    body = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Tessera mail catcher</title>"
        "<meta http-equiv='refresh' content='3'></head><body style='font-family:sans-serif'>"
        f"<h1>Caught emails</h1>{items or '<p>None yet.</p>'}</body></html>"
    )
    return Response(body, media_type="text/html")


@get("/healthz", sync_to_thread=False)
def healthz() -> Response[bytes]:
    return Response(b'{"status":"ok"}', media_type=JSON)


@get("/readyz", sync_to_thread=False)
def readyz(request: Request[Any, Any, Any]) -> Response[bytes]:
    server: asyncio.Server | None = getattr(request.app.state, "smtp_server", None)
    ready = server is not None and server.is_serving()
    body = b'{"status":"ready"}' if ready else b'{"status":"not_ready"}'
    return Response(body, status_code=200 if ready else 503, media_type=JSON)


def create_app() -> Litestar:
    """The catcher, its SMTP server started in the app's lifespan (one event loop for both),
    configured by `TESSERA_MAILCATCHER_*` (set by `main`)."""
    host = os.environ.get(ENV_SMTP_HOST, "127.0.0.1")
    port = int(os.environ.get(ENV_SMTP_PORT, str(DEFAULT_SMTP_PORT)))
    eml_dir = os.environ.get(ENV_EML_DIR)
    mailbox = Mailbox(eml_dir=Path(eml_dir) if eml_dir else None)
    handler = CatcherHandler(mailbox)
    # aiosmtpd logs every SMTP command at INFO; the HTTP side shows what arrived.
    logging.getLogger("mail.log").setLevel(logging.WARNING)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: smtp_factory(handler), host, port)
        app.state.mailbox = mailbox
        app.state.smtp_server = server
        try:
            yield
        finally:
            server.close()
            await server.wait_closed()

    return Litestar(
        route_handlers=[list_messages, raw_message, clear_messages, page, healthz, readyz],
        lifespan=[lifespan],
        debug=False,
    )


def main(argv: list[str] | None = None) -> None:
    # Defaults from the environment too, so `start_service("notifier.mailcatcher", workdir,
    # {"TESSERA_MAILCATCHER_SMTP_PORT": ...})`, which passes only `--port`, chooses the SMTP port.
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m notifier.mailcatcher")
    parser.add_argument("--host", default=env.get(ENV_SMTP_HOST, "127.0.0.1"))
    parser.add_argument(
        "--smtp-port", type=int, default=int(env.get(ENV_SMTP_PORT, DEFAULT_SMTP_PORT))
    )
    parser.add_argument("--http-port", "--port", type=int, default=DEFAULT_HTTP_PORT)
    parser.add_argument(
        "--eml-dir", type=Path, default=env.get(ENV_EML_DIR), help="also write DIR/<n>.eml"
    )
    args = parser.parse_args(argv)
    # Granian builds the app in its worker process, which inherits this environment.
    os.environ[ENV_SMTP_HOST] = args.host
    os.environ[ENV_SMTP_PORT] = str(args.smtp_port)
    if args.eml_dir is not None:
        os.environ[ENV_EML_DIR] = str(Path(args.eml_dir).resolve())
    Granian(
        "notifier.mailcatcher:create_app",
        address=args.host,
        port=args.http_port,
        interface=Interfaces.ASGI,
        workers=1,
        factory=True,
        log_access=False,
    ).serve()


if __name__ == "__main__":
    main()
