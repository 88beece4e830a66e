"""One HTTP/1.1 request whose answer's body is passed on as it arrives (the SSE relay), on a
connection of its own that is closed afterwards: a stream lives for minutes, so pooling its
connection would save nothing. Same wire rules as edge/upstream.py (header bytes as given, the
answer's headers as received).

The body comes out in the pieces the origin sent (a chunk of a chunked answer, or whatever one
read returned), never gathered: an SSE event reaches the fan as soon as it reaches the edge. If
the fan reads slower than the origin writes, reading from the origin pauses once
`limits.edge_stream_chunks_buffered_max` pieces wait, so a slow fan costs the edge that much
memory at most."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Final, cast

from edge.upstream import Head, Header, UpstreamError, UpstreamTimeout, encode_request, parse_head
from tessera import limits

# A paused origin connection is read again once the fan has taken half of what waited.
RESUME_AT: Final = limits.edge_stream_chunks_buffered_max // 2


class _StreamProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.head: Head | None = None
        self.head_waiter: asyncio.Future[Head] = asyncio.get_running_loop().create_future()
        self.pieces: deque[bytes] = deque()
        self.remaining: int | None = None  # Content-Length still to come
        self.finished = False
        self.error: UpstreamError | None = None
        self.wakeup: asyncio.Future[None] | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head_waiter.done():
            self.head_waiter.set_exception(UpstreamError(f"connection lost: {exc!r}"))
        elif not self.finished:
            head = self.head
            until_close = head is not None and head.length is None and not head.chunked
            if not until_close:
                self.error = UpstreamError("the stream ended mid-answer")
            self.finished = True
        self.wake()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            self.consume()
        except ValueError as error:
            self.error = UpstreamError(f"malformed answer: {error}")
            if not self.head_waiter.done():
                self.head_waiter.set_exception(self.error)
            self.finished = True
            self.close()
        self.wake()
        if len(self.pieces) >= limits.edge_stream_chunks_buffered_max and self.transport:
            self.transport.pause_reading()
            self.paused = True

    def consume(self) -> None:
        buffer = self.buffer
        if self.head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > limits.edge_writer_answer_bytes_max:
                    raise ValueError("the answer's head is too large")
                return
            self.head = parse_head(bytes(buffer[:end]), 0)
            del buffer[: end + 4]
            self.remaining = self.head.length
            self.head_waiter.set_result(self.head)
        if self.finished:
            return
        if self.head.chunked:
            self.dechunk()
        elif self.remaining is None:  # until the origin closes the connection
            if buffer:
                self.pieces.append(bytes(buffer))
                buffer.clear()
        else:
            piece = bytes(buffer[: self.remaining])
            del buffer[: self.remaining]
            self.remaining -= len(piece)
            if piece:
                self.pieces.append(piece)
            self.finished = self.remaining == 0

    def dechunk(self) -> None:
        buffer = self.buffer
        while True:
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                if len(buffer) > limits.edge_writer_answer_bytes_max:
                    raise ValueError("a chunk size line that does not end")
                return
            size = int(bytes(buffer[:line_end]).split(b";")[0], 16)
            if size < 0:
                raise ValueError("a negative chunk size")
            if size == 0:
                self.finished = True  # trailers, if any, are not wanted
                return
            if len(buffer) < line_end + 2 + size + 2:
                return
            start = line_end + 2
            self.pieces.append(bytes(buffer[start : start + size]))
            del buffer[: start + size + 2]

    def wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Stream:
    """An answer being received: its status and headers, then its body piece by piece."""

    def __init__(self, protocol: _StreamProtocol, head: Head) -> None:
        self.protocol = protocol
        self.status = head.status
        self.headers = head.headers

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    async def pieces(self, idle_s: float) -> AsyncIterator[bytes]:
        """The body as it arrives; `UpstreamTimeout` after `idle_s` without a byte,
        `UpstreamError` if the origin goes away mid-answer."""
        protocol = self.protocol
        loop = asyncio.get_running_loop()
        while True:
            if protocol.pieces:
                piece = protocol.pieces.popleft()
                if protocol.paused and len(protocol.pieces) <= RESUME_AT and protocol.transport:
                    protocol.paused = False
                    protocol.transport.resume_reading()
                yield piece
                continue
            if protocol.finished:
                if protocol.error is not None:
                    raise protocol.error
                return
            protocol.wakeup = loop.create_future()
            try:
                async with asyncio.timeout(idle_s):
                    await protocol.wakeup
            except TimeoutError:
                raise UpstreamTimeout("the stream went silent") from None

    async def read(self, bytes_max: int, timeout_s: float) -> bytes:
        """The whole body (an error answer, not a stream), at most `bytes_max`."""
        body = bytearray()
        async with asyncio.timeout(timeout_s):
            async for piece in self.pieces(timeout_s):
                body += piece
                if len(body) > bytes_max:
                    raise UpstreamError("the answer is too large")
        return bytes(body)

    def close(self) -> None:
        self.protocol.close()


async def open_stream(
    host: str,
    port: int,
    host_header: bytes,
    target: bytes,
    headers: Sequence[Header],
    *,
    timeout_s: float,
) -> Stream:
    """`GET target` on a new connection; returns once the answer's head is in (`timeout_s` to
    connect and as much again for the head). `UpstreamError`/`UpstreamTimeout` otherwise."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            transport, protocol = await loop.create_connection(_StreamProtocol, host, port)
    except TimeoutError:
        raise UpstreamTimeout("no connection in time") from None
    except OSError as error:
        raise UpstreamError(f"cannot connect: {error}") from None
    try:
        transport.write(encode_request(b"GET", target, host_header, headers, b""))
        async with asyncio.timeout(timeout_s):
            head = await protocol.head_waiter
    except TimeoutError:
        protocol.close()
        raise UpstreamTimeout("no answer in time") from None
    except BaseException:
        protocol.close()
        raise
    return Stream(protocol, head)
