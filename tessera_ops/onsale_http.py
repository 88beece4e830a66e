"""A small keep-alive HTTP/1.1 client on asyncio protocols, for `tessera onsale`.

Thousands of simulated fans share two CPU cores with the whole local stack, so the client must
cost little per request: measured on the 2-vCPU development machine against an edge's cached
seat map (5,000 GETs, 32 in flight), httpx spent 2.3 ms of CPU per request where this client
spends 0.07-0.08 ms (docs/onsale.md). It does what the simulator needs and nothing more: one
request at a time per connection, `Content-Length` and chunked bodies, no redirects, no cookies,
no TLS (`http://` only: the local stack, or services behind a TLS-terminating proxy).

    pool = HttpPool("http://127.0.0.1:8300", size=64, timeout_s=15)
    answer = await pool.request("GET", "/v1/events/…/seatmap", {"If-None-Match": etag})
    answer.status, answer.header("etag"), answer.body
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, cast
from urllib.parse import urlsplit

from tessera import limits

_NO_BODY_STATUSES: Final = frozenset({204, 304})


class HttpError(Exception):
    """The request got no HTTP answer: refused, reset, timed out or garbled."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    # Header names in lower case; a repeated header keeps its last value.
    headers: dict[str, str]
    body: bytes
    # From the moment the request had a connection to its last byte: the server's time plus
    # the network's, without the wait for a free connection of the pool.
    elapsed_s: float = 0.0

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0]
    if not status_line.startswith("HTTP/1.") or len(status_line) < 12:
        raise ValueError(f"not an HTTP/1.x status line: {status_line[:40]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line[9:12]), headers


def _chunked_body(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked body from `start`: (body, offset after it), or None while incomplete."""
    body = bytearray()
    at = start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
        at = line_end + 2
        if size == 0:
            trailers_end = buffer.find(b"\r\n\r\n", at - 2)
            return None if trailers_end < 0 else (bytes(body), trailers_end + 4)
        if len(buffer) < at + size + 2:
            return None
        body += buffer[at : at + size]
        at += size + 2


class _Connection(asyncio.Protocol):
    """One connection, one request at a time; `usable` turns False once it cannot be reused."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Answer] | None = None
        self.method = "GET"
        self.usable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they have its methods.
        self.transport = cast("asyncio.Transport", transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HttpError(f"connection lost: {exc or 'closed by peer'}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > limits.onsale_response_bytes_max:
            self._fail("response too large")
        elif self.waiter is not None and not self.waiter.done():
            try:
                self._parse()
            except (ValueError, IndexError) as exc:
                self._fail(f"bad response: {exc}")

    def _fail(self, message: str) -> None:
        self.close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HttpError(message))

    def _parse(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        status, headers = _parse_head(bytes(self.buffer[:end]))
        start = end + 4
        if status in _NO_BODY_STATUSES or status < 200 or self.method == "HEAD":
            body, stop = b"", start
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            found = _chunked_body(self.buffer, start)
            if found is None:
                return
            body, stop = found
        else:
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < start + length:
                return
            body, stop = bytes(self.buffer[start : start + length]), start + length
        del self.buffer[:stop]
        if headers.get("connection", "").lower() == "close":
            self.close()
        assert self.waiter is not None
        self.waiter.set_result(Answer(status, headers, body))

    async def exchange(self, method: str, data: bytes) -> Answer:
        if not self.usable or self.transport is None:
            raise HttpError("connection closed")
        self.method = method
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter

    def close(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.close()


class HttpPool:
    """Keep-alive connections to one `http://host:port` origin, at most `size` open at once;
    requests beyond that wait for a connection (the pool bounds the load one client can put on a
    server and the file descriptors it uses)."""

    def __init__(self, base_url: str, *, size: int, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http://host:port URLs are supported, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.netloc = parts.netloc
        self.timeout_s = timeout_s
        self._idle: deque[_Connection] = deque()
        self._slots = asyncio.Semaphore(size)
        self._open: set[_Connection] = set()

    def _encode(
        self, method: str, path: str, headers: Mapping[str, str] | None, body: bytes | None
    ) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.netloc}"]
        if headers:
            lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body or b'')}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(_Connection, self.host, self.port)
        self._open.add(connection)
        return connection

    async def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Answer:
        """Send one request and return its answer; `HttpError` when none came within the
        timeout. A request on a reused connection that the server had closed while it sat idle
        is sent once more on a new connection (every state-changing request of the simulator
        carries an Idempotency-Key, so a repeat is safe)."""
        data = self._encode(method, path, headers, body)
        async with self._slots:
            started = time.perf_counter()
            for attempt in range(2):
                reused = bool(self._idle)
                connection = self._idle.pop() if reused else None
                try:
                    async with asyncio.timeout(self.timeout_s):
                        if connection is None or not connection.usable:
                            connection = await self._connect()
                            reused = False
                        answer = await connection.exchange(method, data)
                except (OSError, TimeoutError, HttpError) as exc:
                    if connection is not None:
                        connection.close()
                        self._open.discard(connection)
                    if attempt == 0 and reused and not isinstance(exc, TimeoutError):
                        continue
                    why = "timed out" if isinstance(exc, TimeoutError) else str(exc)
                    raise HttpError(f"{method} {self.base_url}{path}: {why}") from exc
                if connection.usable:
                    self._idle.append(connection)
                else:
                    self._open.discard(connection)
                return dataclasses.replace(answer, elapsed_s=time.perf_counter() - started)
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()
        # Let the transports finish closing before the loop goes away.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)
