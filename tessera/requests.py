"""Following a request: every request a tier serves gets an id, and one structured access-log
line when it ends.

The id is the W3C `traceparent`'s trace id when the request carries one (a CDN or a client that
traces), else a well-formed `X-Request-Id`, else a new one. It is the answer's `X-Request-Id`,
the `request_id` of the access line and of every log record written while the request runs (a
context variable: `current_request_id`), and it goes on with the request: the edge sends it to
the writer, the writer carries it into its batch logs and the outbox messages a request causes
(docs/operations.md, "Following a request").

The access line is JSON, like every log line (tessera/observability.py): method, route template
(never the raw path: a queue ticket in a path is a credential), status, duration, request id.
Lines are buffered and written a few times a second rather than one `write` per request, so
logging every cache hit costs the edge microseconds, not a syscall each.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final, TextIO, cast

import msgspec
from litestar.types import Message, Receive, Scope, Send

from tessera import limits

REQUEST_ID_HEADER: Final = b"x-request-id"
TRACEPARENT_HEADER: Final = b"traceparent"
# W3C Trace Context: version-traceid-parentid-flags; an all-zero trace id is invalid.
_TRACEPARENT: Final = re.compile(rb"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._:-]{1,%d}" % limits.request_id_chars_max)
_ZERO_TRACE: Final = b"0" * 32

_current: ContextVar[str] = ContextVar("tessera_request_id", default="")


def current_request_id() -> str:
    """The id of the request this code runs for ("" outside any request)."""
    return _current.get()


def request_id_of(headers: list[tuple[bytes, bytes]] | Any) -> str:
    """The request's id, from its ASGI header pairs (module docstring)."""
    given = None
    for name, value in headers:
        if name == TRACEPARENT_HEADER:
            found = _TRACEPARENT.fullmatch(value.strip().lower())
            if found is not None and found[1] != _ZERO_TRACE:
                return found[1].decode()
        elif name == REQUEST_ID_HEADER and _REQUEST_ID.fullmatch(value):
            given = value.decode()
    return given or uuid.uuid4().hex


class AccessLog:
    """The ASGI middleware every tier's app is wrapped in (outermost: fast paths included)."""

    def __init__(self, app: Any, service: str, stream: TextIO | None = None) -> None:
        self.app = app
        self.service = service
        self.stream = stream
        self.lines: list[bytes] = []
        self.flush_scheduled = False
        # The wrapped app's state, for whoever holds this app where they expect Litestar's.
        self.state: Any = getattr(app, "state", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        plain = cast("dict[str, Any]", scope)
        if plain["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.serve(plain, receive, send)

    async def serve(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        request_id = request_id_of(scope["headers"])
        token = _current.set(request_id)
        wire_id = request_id.encode()
        status = 0
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, wire_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _current.reset(token)
            self.record(scope, status, time.perf_counter() - started, request_id)

    def record(self, scope: dict[str, Any], status: int, seconds: float, request_id: str) -> None:
        line = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": "INFO",
            "service": self.service,
            "logger": "access",
            "message": "request",
            "method": scope.get("method", ""),
            "route": scope.get("path_template") or "unmatched",
            "status": status or 499,  # no answer started: the client went away (nginx's 499)
            "duration_ms": round(seconds * 1000, 3),
            "request_id": request_id,
        }
        self.lines.append(msgspec.json.encode(line))
        if len(self.lines) >= limits.access_log_lines_buffered_max:
            self.flush()
        elif not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_later(limits.access_log_flush_s, self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        lines, self.lines = self.lines, []
        if lines:
            stream = self.stream or sys.stderr
            stream.write(b"\n".join(lines).decode() + "\n")
            stream.flush()
