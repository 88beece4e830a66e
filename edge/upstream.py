"""A lean keep-alive HTTP/1.1 client for the edge's traffic upstream (writes to the global
writer, cache misses and `/readyz` to the read nodes; edge/streaming.py does the SSE relay's),
with a bounded queue in front of its connections that sheds load.

Why our own client. The house rule prefers a well-kept library; aiohttp was measured for this
(bench/edge_forward.py, its "clients" table: a bare-ASGI forwarder under Granian in front of a
stub writer answering after 2 ms; CPU of the forwarder per forwarded request, 8 s per level,
2026-12, two shared cores):

    writes in flight                     64       512      2,000
    httpcore's pool (the edge's before)  2.37 ms  4.04 ms  no answer in 38 s   uvloop
                                         3.51 ms  3.66 ms  3.69 ms             asyncio
    aiohttp ClientSession, limit=256     0.148    0.173    0.241               uvloop
                                         0.193    0.204    0.239               asyncio
    this client                          0.071    0.067    0.083               uvloop
                                         0.099    0.084    0.094               asyncio

The edge's budget for a whole forwarded write is 0.15 ms of CPU; aiohttp alone, in a forwarder
doing nothing else, spends more, so the measurement overrides the rule. This client's cost per
request is flat in concurrency by construction: an idle connection is a list pop, a waiting
request a deque append, nothing walks the pool, and timeouts are one sweep per pool rather than
a timer per request.

Requests go out byte for byte: header names and values are bytes (a fan's header bytes outside
ASCII reach the writer as sent), and the answer comes back as status, header pairs (names
lower-cased) and body. One request at a time per connection; a connection whose exchange did
not end cleanly (timeout, cancellation, malformed answer) is closed, never reused.

**Shedding.** While every connection is busy a request waits in a FIFO queue. Before it joins,
the wait is estimated as (requests queued + 1) x the recent mean time a request holds a
connection / connections; over `queue_wait_s_max` it is refused at once (`Shed`), and so is
any request once `in_flight_max` are in flight. A queued request still waiting after
`queue_wait_s_max` (the estimate was wrong: the writer slowed down) is refused then. A refused
request never reached the writer, so retrying it is always safe.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Final, Literal, cast
from urllib.parse import urlsplit

# Deadlines are checked this many times per timeout: a request gets at most an eighth more.
SWEEPS_PER_TIMEOUT: Final = 8
# The weight of the newest forward in the mean forward time: about the last 20 forwards count,
# so the estimate follows a writer that slows down within a few milliseconds of traffic.
MEAN_WEIGHT: Final = 0.05
_NO_BODY_STATUSES: Final = frozenset({204, 304})
# The headers that frame an answer; one dict lookup per header line instead of three compares.
_FRAMING: Final = {b"content-length": 0, b"transfer-encoding": 1, b"connection": 2}

ShedReason = Literal["queue_wait", "in_flight"]
Header = tuple[bytes, bytes]


class UpstreamError(Exception):
    """No usable answer: the connection was refused, lost or sent something malformed."""


class UpstreamTimeout(UpstreamError):
    """No complete answer (or no connection) within the timeout."""


class Shed(Exception):
    """Refused before it was sent: the queue for a connection is too long."""

    REASONS: ClassVar[tuple[ShedReason, ...]] = ("queue_wait", "in_flight")

    def __init__(self, reason: ShedReason, wait_s: float) -> None:
        super().__init__(f"writes queued too long ({reason})")
        self.reason: ShedReason = reason
        self.wait_s = wait_s


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: list[Header]  # names lower case, in the order received
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


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
    """The request's bytes; header values go out as given (the fan's bytes, unchanged)."""
    parts = [method, b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    if body or method in (b"POST", b"PUT", b"PATCH"):
        parts += (b"content-length: ", str(len(body)).encode(), b"\r\n")
    parts += (b"\r\n", body)
    return b"".join(parts)


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one exchange at a time."""

    def __init__(self, body_bytes_max: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.head: Head | None = None
        self.waiter: asyncio.Future[Answer] | None = None
        self.usable = True
        self.body_bytes_max = body_bytes_max
        self.deadline = 0.0  # of the exchange under way (the pool's sweep enforces it)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        head = self.head
        if head is not None and head.length is None and not head.chunked:
            waiter.set_result(Answer(head.status, head.headers, bytes(self.buffer[head.start :])))
        else:
            waiter.set_exception(UpstreamError(f"connection lost: {exc!r}"))

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
            waiter.set_exception(UpstreamError(f"malformed answer: {error}"))
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
        elif head.length is None:  # until the writer closes the connection
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
        if head.close:
            self.fail()
        return Answer(head.status, head.headers, body)

    async def exchange(self, data: bytes, deadline: float) -> Answer:
        if not self.usable or self.transport is None:
            raise UpstreamError("connection closed")
        waiter: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.waiter = waiter
        self.deadline = deadline
        self.transport.write(data)
        try:
            return await waiter
        finally:
            self.waiter = None

    def fail(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.close()


class UpstreamPool:
    """Keep-alive connections to one server (`http://host:port`), at most `connections_max`,
    and the shedding queue in front of them (module docstring).

    Timeouts cost no timer per request: a request records its deadline, and one sweep every
    `timeout_s / SWEEPS_PER_TIMEOUT` fails the exchanges past theirs (so a request gets between
    `timeout_s` and an eighth more). The queue, first in first out, has one timer, for its
    oldest request's deadline."""

    def __init__(
        self,
        base_url: str,
        *,
        connections_max: int,
        connect_timeout_s: float,
        timeout_s: float,
        queue_wait_s_max: float,
        in_flight_max: int,
        body_bytes_max: int,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"an upstream must be http://host[:port], not {base_url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.host_header = parts.netloc.encode("latin-1")
        self.connections_max = connections_max
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self.queue_wait_s_max = queue_wait_s_max
        self.in_flight_max = in_flight_max
        self.body_bytes_max = body_bytes_max
        self.idle: list[_Connection] = []
        self.busy: set[_Connection] = set()
        self.waiters: deque[tuple[float, asyncio.Future[_Connection]]] = deque()
        self.queue_timer: asyncio.TimerHandle | None = None
        self.sweeper: asyncio.TimerHandle | None = None
        self.open = 0  # connections open or being opened
        self.queued = 0  # requests waiting for a connection
        self.in_flight = 0  # requests between `request` and their answer (queued included)
        self.mean_s = 0.0  # recent mean time a request holds a connection
        self.tasks: set[asyncio.Task[None]] = set()

    def estimated_wait_s(self) -> float:
        """How long a request joining the queue now would wait for a connection."""
        return (self.queued + 1) * self.mean_s / self.connections_max

    def check(self) -> None:
        """`Shed` if a request sent now would be refused: cheap, for refusing before any other
        work is spent on a request."""
        if self.in_flight >= self.in_flight_max:
            raise Shed("in_flight", self.estimated_wait_s())
        if self.open >= self.connections_max and not self.idle:
            wait_s = self.estimated_wait_s()
            if wait_s > self.queue_wait_s_max:
                raise Shed("queue_wait", wait_s)

    async def request(
        self, method: bytes, target: bytes, headers: Sequence[Header], body: bytes = b""
    ) -> Answer:
        """Send one request, return its answer. `UpstreamTimeout`, `UpstreamError` (never
        sent, or no answer), `Shed` (never sent)."""
        self.check()
        self.in_flight += 1
        try:
            connection = await self.acquire()
            loop = asyncio.get_running_loop()
            started = loop.time()
            self.busy.add(connection)
            if self.sweeper is None:
                self.sweeper = loop.call_later(self.timeout_s / SWEEPS_PER_TIMEOUT, self.sweep)
            try:
                data = encode_request(method, target, self.host_header, headers, body)
                return await connection.exchange(data, started + self.timeout_s)
            except BaseException:
                connection.fail()
                raise
            finally:
                self.busy.discard(connection)
                self.mean_s += MEAN_WEIGHT * (loop.time() - started - self.mean_s)
                self.release(connection)
        finally:
            self.in_flight -= 1

    def sweep(self) -> None:
        """Fail the exchanges past their deadline; again later while any is under way."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for connection in [c for c in self.busy if c.deadline <= now]:
            waiter = connection.waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(UpstreamTimeout("no answer in time"))
            connection.fail()
        self.sweeper = None
        if self.busy:
            self.sweeper = loop.call_later(self.timeout_s / SWEEPS_PER_TIMEOUT, self.sweep)

    async def acquire(self) -> _Connection:
        while self.idle:
            connection = self.idle.pop()
            if connection.usable:
                return connection
            self.open -= 1  # closed by the server while idle
        if self.open < self.connections_max:
            return await self.connect()
        return await self.wait_for_connection()

    async def wait_for_connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_Connection] = loop.create_future()
        deadline = loop.time() + self.queue_wait_s_max
        self.waiters.append((deadline, waiter))
        self.queued += 1
        if self.queue_timer is None:
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
                waiter.set_exception(Shed("queue_wait", self.queue_wait_s_max))
        if waiters:
            self.queue_timer = loop.call_at(waiters[0][0], self.expire)

    async def connect(self) -> _Connection:
        self.open += 1
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self.body_bytes_max), self.host, self.port
                )
        except TimeoutError:
            self.open -= 1
            raise UpstreamTimeout("no connection in time") from None
        except OSError as error:
            self.open -= 1
            raise UpstreamError(f"cannot connect: {error}") from None
        except BaseException:
            self.open -= 1
            raise
        return connection

    def release(self, connection: _Connection) -> None:
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

    def next_waiter(self) -> asyncio.Future[_Connection] | None:
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
        except UpstreamError as error:
            waiter = self.next_waiter()
            if waiter is not None:
                waiter.set_exception(error)
            return
        self.release(connection)

    async def close(self) -> None:
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
