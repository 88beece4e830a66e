"""The house's keep-alive HTTP/1.1 client, on asyncio protocols: the edge's client upstream
(edge/upstream.py adds its shedding queue on top), the operator tooling's (`tessera onsale`, the
audit) and the benchmarks' load generators all use this one.

Why our own client. The house rule prefers a well-kept library; it was measured on the edge's
hot path (bench/edge_forward.py; figures in edge/upstream.py): aiohttp spends about twice this
client's CPU per request, httpx's pool thirty times as much and does not finish at 2,000 in
flight; for the simulator, httpx spent 2.3 ms of CPU per GET where this client spends 0.07 ms
(docs/onsale.md). A client that loads a server must cost much less than the server.

What it does, and no more: `http://` only (the local stack, or services behind a TLS-terminating
proxy), one request at a time per connection, `Content-Length`, chunked and read-until-close
bodies, no redirects, no cookies. Requests go out byte for byte: header names and values are
bytes (a fan's bytes outside ASCII reach the server as sent); answers come back as status,
header pairs (names lower-cased, in the order received) and body. A connection whose exchange
did not end cleanly (timeout, cancellation, malformed answer) is closed, never reused.

`Pool` costs the same per request at any concurrency, by construction: an idle connection is a
list pop, a request waiting for one a deque append, nothing walks the pool, and timeouts are one
sweep per pool every `timeout_s / SWEEPS_PER_TIMEOUT` rather than a timer per request (so a
request gets between `timeout_s` and an eighth more).

uvloop runs every loop here; its transports are not `asyncio.Transport` subclasses, though
they have its methods: they are cast, never checked with isinstance.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, cast
from urllib.parse import urlsplit

# Deadlines are checked this many times per timeout: a request gets at most an eighth more.
SWEEPS_PER_TIMEOUT: Final = 8
# The weight of the newest exchange in the mean exchange time: about the last 20 count, so the
# mean follows a server that slows down within a few milliseconds of traffic.
MEAN_WEIGHT: Final = 0.05
# The largest answer accepted unless a pool says otherwise (a whole stadium's JSON seat map is
# a few megabytes).
BODY_BYTES_MAX: Final = 64 * 1024 * 1024
_NO_BODY_STATUSES: Final = frozenset({204, 304})
# The headers that frame an answer; one dict lookup per header line instead of three compares.
_FRAMING: Final = {b"content-length": 0, b"transfer-encoding": 1, b"connection": 2}
_WITH_BODY: Final = frozenset({b"POST", b"PUT", b"PATCH"})

Header = tuple[bytes, bytes]


class HttpError(Exception):
    """No usable answer: the connection was refused, lost or sent something malformed."""


class HttpTimeout(HttpError):
    """No complete answer (or no connection, or no free connection) within the timeout."""


class StaleConnection(HttpError):
    """A kept-alive connection that had answered before was closed by the server before any
    byte of this answer came: most likely it closed the idle connection as the request left."""


@dataclass(slots=True)
class Answer:
    status: int
    headers: list[Header]  # names lower case, in the order received
    body: bytes
    # From the moment the request had a connection to its answer's last byte: the server's
    # time and the network's, without the wait for a free connection (set by `Pool`).
    elapsed_s: float = 0.0

    def header(self, name: bytes) -> bytes | None:
        """The first value of header `name` (lower case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def text(self, name: bytes) -> str | None:
        """`header(name)` as text (latin-1, as HTTP/1.1 defines header octets)."""
        value = self.header(name)
        return None if value is None else value.decode("latin-1")


@dataclass(slots=True)
class Head:
    status: int
    headers: list[Header]
    length: int | None  # None: chunked, or read until the connection closes
    chunked: bool
    close: bool
    start: int  # where the body starts in the buffer


def parse_head(head: bytes, start: int) -> Head:
    """A response head (status line and headers, without the blank line); ValueError if it is
    not HTTP/1.x."""
    lines = head.split(b"\r\n")
    status_line = lines[0]
    if not status_line.startswith(b"HTTP/1.") or len(status_line) < 12:
        raise ValueError("not an HTTP/1.x status line")
    status = int(status_line[9:12])
    close = status_line[5:8] == b"1.0"
    length: int | None = None
    chunked = False
    headers: list[Header] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            raise ValueError("a header line without a colon")
        name = name.strip().lower()
        value = value.strip()
        headers.append((name, value))
        framing = _FRAMING.get(name)
        if framing is None:
            continue
        if framing == 0:
            length = int(value)
            if length < 0:
                raise ValueError("a negative Content-Length")
        elif framing == 1:
            chunked = b"chunked" in value.lower()
        else:
            close = b"close" in value.lower()
    if chunked:
        length = None
    elif status in _NO_BODY_STATUSES or status < 200:
        length = 0
    return Head(status, headers, length, chunked, close, start)


def dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked body starting at `start`: (body, end offset), or None while incomplete."""
    body = bytearray()
    at = start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
        at = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", at - 2)
            return None if trailer_end < 0 else (bytes(body), trailer_end + 4)
        if len(buffer) < at + size + 2:
            return None
        body += buffer[at : at + size]
        at += size + 2


def encode_request(
    method: bytes, target: bytes, host: bytes, headers: Sequence[Header], body: bytes
) -> bytes:
    """The request's bytes; header values go out as given (the caller's bytes, unchanged)."""
    parts = [method, b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    if body or method in _WITH_BODY:
        parts += (b"content-length: ", str(len(body)).encode(), b"\r\n")
    parts += (b"\r\n", body)
    return b"".join(parts)


def header_pairs(headers: Mapping[str, str] | None) -> list[Header]:
    """Headers given as text, as the wire's bytes (latin-1)."""
    if not headers:
        return []
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


def request_bytes(
    method: str, url: str, headers: Mapping[str, str] | None = None, body: bytes = b""
) -> bytes:
    """One whole request for `url`, headers as text: for load generators that send the same
    bytes many times (`Pool.send`)."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return encode_request(
        method.encode("latin-1"),
        (target or "/").encode("latin-1"),
        parts.netloc.encode("latin-1"),
        header_pairs(headers),
        body,
    )


class Connection(asyncio.Protocol):
    """One keep-alive connection, one exchange at a time."""

    def __init__(self, body_bytes_max: int = BODY_BYTES_MAX) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.head: Head | None = None
        self.waiter: asyncio.Future[Answer] | None = None
        self.usable = True
        self.body_bytes_max = body_bytes_max
        self.deadline = 0.0  # of the exchange under way (a pool's sweep enforces it)
        self.answers = 0  # answers read so far

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        head = self.head
        if head is not None and head.length is None and not head.chunked:
            waiter.set_result(Answer(head.status, head.headers, bytes(self.buffer[head.start :])))
        elif head is None and not self.buffer and self.answers:
            waiter.set_exception(StaleConnection(f"closed by the server: {exc!r}"))
        else:
            waiter.set_exception(HttpError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            self.fail()  # bytes nobody asked for: the connection is out of step
            return
        try:
            answer = self.parse()
        except ValueError as error:
            self.fail()
            waiter.set_exception(HttpError(f"malformed answer: {error}"))
            return
        if answer is not None:
            waiter.set_result(answer)

    def parse(self) -> Answer | None:
        buffer = self.buffer
        head = self.head
        if head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > self.body_bytes_max:
                    raise ValueError("the answer's head is too large")
                return None
            head = self.head = parse_head(bytes(buffer[:end]), end + 4)
        if head.chunked:
            found = dechunk(buffer, head.start)
            if found is None:
                if len(buffer) - head.start > self.body_bytes_max:
                    raise ValueError("the answer is too large")
                return None
            body, stop = found
        elif head.length is None:  # until the server closes the connection
            if len(buffer) - head.start > self.body_bytes_max:
                raise ValueError("the answer is too large")
            return None
        else:
            if head.length > self.body_bytes_max:
                raise ValueError("the answer is too large")
            stop = head.start + head.length
            if len(buffer) < stop:
                return None
            body = bytes(buffer[head.start : stop])
        del buffer[:stop]
        self.head = None
        self.answers += 1
        if head.close:
            self.fail()
        return Answer(head.status, head.headers, body)

    async def exchange(self, data: bytes, deadline: float = math.inf) -> Answer:
        """Send `data` (a whole request), return its answer. Without a pool nothing enforces
        `deadline`: wrap the call in `asyncio.timeout`."""
        if not self.usable or self.transport is None:
            raise HttpError("connection closed")
        waiter: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.waiter = waiter
        self.deadline = deadline
        self.transport.write(data)
        try:
            return await waiter
        finally:
            self.waiter = None

    def fail(self) -> None:
        """Close it; it is never used again."""
        self.usable = False
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Keep-alive connections to one server (`http://host:port`), at most `connections_max`.

    A request takes an idle connection, else opens one while fewer than `connections_max` are
    open, else waits in a FIFO queue for the next one released (at most `queue_wait_s_max`, when
    given: then `queue_refusal()`, a timeout unless a subclass says otherwise). `timeout_s`
    bounds an exchange, `connect_timeout_s` (default `timeout_s`) the connecting.
    `resend_stale`: a request whose kept-alive connection the server had closed
    (`StaleConnection`) is sent once more on another; only for callers whose requests are safe
    to repeat (reads, writes with an Idempotency-Key)."""

    def __init__(
        self,
        base_url: str,
        *,
        connections_max: int,
        timeout_s: float,
        connect_timeout_s: float | None = None,
        queue_wait_s_max: float | None = None,
        body_bytes_max: int = BODY_BYTES_MAX,
        resend_stale: bool = False,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http://host[:port] URLs are supported, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.host, self.port = parts.hostname, parts.port or 80
        self.host_header = parts.netloc.encode("latin-1")
        self.connections_max = connections_max
        self.timeout_s = timeout_s
        self.connect_timeout_s = timeout_s if connect_timeout_s is None else connect_timeout_s
        self.queue_wait_s_max = queue_wait_s_max
        self.body_bytes_max = body_bytes_max
        self.resend_stale = resend_stale
        self.idle: list[Connection] = []
        self.busy: set[Connection] = set()
        self.waiters: deque[tuple[float, asyncio.Future[Connection]]] = deque()
        self.queue_timer: asyncio.TimerHandle | None = None
        self.sweeper: asyncio.TimerHandle | None = None
        self.open = 0  # connections open or being opened
        self.opened = 0  # connections opened so far
        self.queued = 0  # requests waiting for a connection
        self.mean_s = 0.0  # recent mean time a request holds a connection
        self.tasks: set[asyncio.Task[None]] = set()

    async def request(
        self, method: bytes, target: bytes, headers: Sequence[Header] = (), body: bytes = b""
    ) -> Answer:
        """Send one request, return its answer: `HttpTimeout`, `HttpError` otherwise."""
        return await self.send(encode_request(method, target, self.host_header, headers, body))

    async def send(self, data: bytes) -> Answer:
        """Send one whole request (`encode_request`, `request_bytes`), return its answer."""
        try:
            return await self.exchange(await self.acquire(), data)
        except StaleConnection:
            if not self.resend_stale:
                raise
        return await self.exchange(await self.acquire(), data)

    async def exchange(self, connection: Connection, data: bytes) -> Answer:
        """One exchange on an acquired connection, which is released afterwards."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.busy.add(connection)
        if self.sweeper is None:
            self.sweeper = loop.call_later(self.timeout_s / SWEEPS_PER_TIMEOUT, self.sweep)
        try:
            answer = await connection.exchange(data, started + self.timeout_s)
        except BaseException:
            connection.fail()
            raise
        finally:
            self.busy.discard(connection)
            elapsed = loop.time() - started
            self.mean_s += MEAN_WEIGHT * (elapsed - self.mean_s)
            self.release(connection)
        answer.elapsed_s = elapsed
        return answer

    def sweep(self) -> None:
        """Fail the exchanges past their deadline; again later while any is under way."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for connection in [c for c in self.busy if c.deadline <= now]:
            waiter = connection.waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(HttpTimeout("no answer in time"))
            connection.fail()
        self.sweeper = None
        if self.busy:
            self.sweeper = loop.call_later(self.timeout_s / SWEEPS_PER_TIMEOUT, self.sweep)

    async def acquire(self) -> Connection:
        while self.idle:
            connection = self.idle.pop()
            if connection.usable:
                return connection
            self.open -= 1  # closed by the server while idle
        if self.open < self.connections_max:
            return await self.connect()
        return await self.wait_for_connection()

    async def wait_for_connection(self) -> Connection:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Connection] = loop.create_future()
        bound = self.queue_wait_s_max
        deadline = math.inf if bound is None else loop.time() + bound
        self.waiters.append((deadline, waiter))
        self.queued += 1
        if self.queue_timer is None and bound is not None:
            self.queue_timer = loop.call_at(deadline, self.expire)
        try:
            return await waiter
        except asyncio.CancelledError:
            # Handed a connection just as the caller went away: give it to the next one.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release(waiter.result())
            raise
        finally:
            self.queued -= 1

    def queue_refusal(self) -> Exception:
        """What a request that waited `queue_wait_s_max` for a connection fails with."""
        return HttpTimeout("no free connection in time")

    def expire(self) -> None:
        """Refuse the queued requests past their deadline (the oldest first); the timer then
        waits for the next one's."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.queue_timer = None
        waiters = self.waiters
        while waiters and (waiters[0][0] <= now or waiters[0][1].done()):
            _, waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_exception(self.queue_refusal())
        if waiters and waiters[0][0] < math.inf:
            self.queue_timer = loop.call_at(waiters[0][0], self.expire)

    async def connect(self) -> Connection:
        self.open += 1
        self.opened += 1
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, connection = await loop.create_connection(
                    lambda: Connection(self.body_bytes_max), self.host, self.port
                )
        except TimeoutError:
            self.open -= 1
            raise HttpTimeout("no connection in time") from None
        except OSError as error:
            self.open -= 1
            raise HttpError(f"cannot connect: {error}") from None
        except BaseException:
            self.open -= 1
            raise
        return connection

    async def warm_up(self, count: int) -> None:
        """Open connections until `count` are idle (a load generator's, before the clock)."""
        opened = await asyncio.gather(*(self.connect() for _ in range(count - len(self.idle))))
        self.idle.extend(opened)

    def release(self, connection: Connection) -> None:
        if not connection.usable:
            self.open -= 1
            if self.waiters:  # a waiter would otherwise wait for a connection never released
                task = asyncio.get_running_loop().create_task(self.replace())
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            return
        waiter = self.next_waiter()
        if waiter is None:
            self.idle.append(connection)
        else:
            waiter.set_result(connection)

    def next_waiter(self) -> asyncio.Future[Connection] | None:
        while self.waiters:
            _, waiter = self.waiters.popleft()
            if not waiter.done():
                return waiter
        return None

    async def replace(self) -> None:
        """A new connection for the first waiter, after one was closed; a failure to connect
        goes to that waiter."""
        try:
            connection = await self.connect()
        except HttpError as error:
            waiter = self.next_waiter()
            if waiter is not None:
                waiter.set_exception(error)
            return
        self.release(connection)

    async def close(self) -> None:
        """Close the idle connections and stop the timers (busy ones close as they finish)."""
        for timer in (self.queue_timer, self.sweeper):
            if timer is not None:
                timer.cancel()
        self.queue_timer = self.sweeper = None
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        idle, self.idle = self.idle, []
        for connection in idle:
            connection.fail()
        self.open -= len(idle)
        # Let the transports finish closing before the caller's loop may go away.
        await asyncio.sleep(0)


async def fetch(
    url: str,
    headers: Sequence[Header] = (),
    *,
    method: bytes = b"GET",
    body: bytes = b"",
    timeout_s: float = 30.0,
) -> Answer:
    """One request on a connection of its own, closed afterwards (setup, probes, checks)."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    pool = Pool(url, connections_max=1, timeout_s=timeout_s)
    try:
        return await pool.request(
            method, (target or "/").encode("latin-1"), [(b"connection", b"close"), *headers], body
        )
    finally:
        await pool.close()
