"""The edge's HTTP/1.1 client (edge/upstream.py, edge/streaming.py) against a scripted server on
loopback: bytes on the wire, keep-alive, chunked bodies, timeouts, and the shedding queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from edge.streaming import open_stream
from edge.upstream import (
    Shed,
    UpstreamError,
    UpstreamPool,
    UpstreamTimeout,
    dechunk,
    parse_head,
)

pytestmark = pytest.mark.anyio

Handler = Callable[[bytes], Awaitable[bytes | None]]  # request head -> answer (None: hang up)
OK = b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


class Server:
    """Answers each request head with `handler`'s bytes; records heads and connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.heads: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        head += await reader.readexactly(int(line.split(b":")[1]))
                self.heads.append(head)
                answer = await self.handler(head)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        writer.close()
        self.handlers.discard(task)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.handlers):
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[Server]]]:
    servers: list[Server] = []

    async def start(handler: Handler) -> Server:
        server = Server(handler)
        server.server = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


def pool(url: str, **overrides: float) -> UpstreamPool:
    settings = {
        "connections_max": 4,
        "connect_timeout_s": 1.0,
        "timeout_s": 2.0,
        "queue_wait_s_max": 1.0,
        "in_flight_max": 100,
        "body_bytes_max": 1_000,
    }
    settings.update(overrides)
    return UpstreamPool(
        url,
        connections_max=int(settings["connections_max"]),
        connect_timeout_s=settings["connect_timeout_s"],
        timeout_s=settings["timeout_s"],
        queue_wait_s_max=settings["queue_wait_s_max"],
        in_flight_max=int(settings["in_flight_max"]),
        body_bytes_max=int(settings["body_bytes_max"]),
    )


def answer(body: bytes) -> Handler:
    async def handler(_head: bytes) -> bytes:
        return OK.replace(
            b"content-length: 2\r\n\r\n{}", f"content-length: {len(body)}\r\n\r\n".encode() + body
        )

    return handler


def test_parse_head_and_dechunk() -> None:
    head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b \r\nConnection: close", 9)
    assert (head.status, head.length, head.chunked, head.close, head.start) == (
        200,
        5,
        False,
        True,
        9,
    )
    assert head.headers == [(b"content-length", b"5"), (b"x-a", b"b"), (b"connection", b"close")]
    assert parse_head(b"HTTP/1.1 204 No Content", 0).length == 0
    assert parse_head(b"HTTP/1.0 200 OK", 0).close
    for bad in (
        b"SSH-2.0",
        b"HTTP/1.1 200 OK\r\nno colon",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1",
    ):
        with pytest.raises(ValueError):
            parse_head(bad, 0)
    chunked = bytearray(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\nNEXT")
    assert dechunk(chunked, 0) == (b"abcde", len(chunked) - 4)
    assert dechunk(bytearray(b"3\r\nab"), 0) is None


async def test_header_bytes_go_out_unchanged_and_connections_are_kept(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    server = await serve(answer(b'{"ok":true}'))
    upstream = pool(server.url)
    try:
        for key in (b"\xe9", b"plain"):
            got = await upstream.request(b"POST", b"/v1/x", [(b"idempotency-key", key)], b'{"a":1}')
            assert (got.status, got.body) == (201, b'{"ok":true}')
            assert got.header(b"content-type") == b"application/json"
        assert b"\r\nidempotency-key: \xe9\r\n" in server.heads[0]
        assert server.heads[0].startswith(b"POST /v1/x HTTP/1.1\r\nhost: 127.0.0.1:")
        assert server.heads[0].endswith(b'content-length: 7\r\n\r\n{"a":1}')
        assert server.connections == 1  # kept alive
    finally:
        await upstream.close()


async def test_chunked_answers_and_connection_close(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    async def chunked(_head: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n" + (
            b"2\r\nhi\r\n0\r\n\r\n"
        )

    server = await serve(chunked)
    upstream = pool(server.url)
    try:
        for _ in range(2):
            got = await upstream.request(b"GET", b"/", ())
            assert (got.status, got.body) == (200, b"hi")
        assert server.connections == 2  # `connection: close` is honoured
    finally:
        await upstream.close()


async def test_timeouts_refusals_and_oversized_answers(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    async def silent(_head: bytes) -> bytes:
        await asyncio.sleep(5)
        return OK

    upstream = pool((await serve(silent)).url, timeout_s=0.2)
    try:
        with pytest.raises(UpstreamTimeout):
            await asyncio.wait_for(upstream.request(b"GET", b"/", ()), 2)
    finally:
        await upstream.close()
    big = pool((await serve(answer(b"x" * 2_000))).url)
    try:
        with pytest.raises(UpstreamError, match="too large"):
            await big.request(b"GET", b"/", ())
    finally:
        await big.close()
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    closed = pool(f"http://127.0.0.1:{port}")
    with pytest.raises(UpstreamError) as refused:
        await closed.request(b"GET", b"/", ())
    assert not isinstance(refused.value, UpstreamTimeout)
    await closed.close()


async def test_the_queue_sheds_past_its_bound(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    """Two connections, a mean of 0.2 s per request, a 0.25 s bound: a request that would wait
    past the bound is refused at once; the accepted ones all get answers (the server takes
    0.1 s, so the queued ones are served well within the bound)."""

    async def slow(_head: bytes) -> bytes:
        await asyncio.sleep(0.1)
        return OK

    upstream = pool((await serve(slow)).url, connections_max=2, queue_wait_s_max=0.25)
    try:
        await asyncio.gather(*(upstream.request(b"GET", b"/", ()) for _ in range(2)))
        assert upstream.mean_s > 0.0
        upstream.mean_s = 0.2  # as if it had learnt it over many requests
        loop = asyncio.get_running_loop()

        async def timed() -> tuple[str, float]:
            started = loop.time()
            try:
                await upstream.request(b"GET", b"/", ())
            except Shed as shed:
                return shed.reason, loop.time() - started
            return "ok", loop.time() - started

        results = await asyncio.gather(*(timed() for _ in range(10)))
        outcomes = [outcome for outcome, _ in results]
        # 2 on connections; the queue admits waits up to 0.25 s: (k + 1) x 0.2 / 2 -> 2 queued.
        assert outcomes.count("ok") == 4, results
        assert outcomes.count("queue_wait") == 6, results
        assert max(seconds for outcome, seconds in results if outcome != "ok") < 0.1
        assert upstream.in_flight == upstream.queued == 0
    finally:
        await upstream.close()


async def test_a_queued_request_is_refused_when_its_wait_passes_the_bound(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    """The estimate knows nothing yet (mean 0): the queue's own deadline refuses the request."""

    async def slow(_head: bytes) -> bytes:
        await asyncio.sleep(1.0)
        return OK

    upstream = pool((await serve(slow)).url, connections_max=1, queue_wait_s_max=0.2)
    try:
        first = asyncio.ensure_future(upstream.request(b"GET", b"/", ()))
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(Shed):
            await upstream.request(b"GET", b"/", ())
        assert 0.15 < loop.time() - started < 0.5
        assert (await first).status == 201
    finally:
        await upstream.close()


async def test_the_in_flight_cap(serve: Callable[[Handler], Awaitable[Server]]) -> None:
    async def slow(_head: bytes) -> bytes:
        await asyncio.sleep(0.2)
        return OK

    upstream = pool((await serve(slow)).url, in_flight_max=3)
    try:
        results = await asyncio.gather(
            *(upstream.request(b"GET", b"/", ()) for _ in range(5)), return_exceptions=True
        )
        sheds = [r for r in results if isinstance(r, Shed)]
        assert len(sheds) == 2 and {s.reason for s in sheds} == {"in_flight"}
    finally:
        await upstream.close()


async def test_a_stream_arrives_piece_by_piece_then_goes_silent() -> None:
    """Each chunk reaches the reader before the origin sends the next (nothing is gathered);
    a silent stream ends with UpstreamTimeout after idle_s."""
    next_piece, done = asyncio.Event(), asyncio.Event()
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n"
        )
        await next_piece.wait()
        writer.write(b"9\r\ndata: 2\n\n\r\n")
        await done.wait()  # silent until the test is over
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stream = await open_stream(
        "127.0.0.1", port, b"x", b"/s", [(b"last-event-id", b"\xff")], timeout_s=1.0
    )
    try:
        assert stream.status == 200
        assert stream.header(b"content-type") == b"text/event-stream"
        assert b"\r\nlast-event-id: \xff\r\n" in heads[0]
        pieces = stream.pieces(idle_s=0.3)
        assert await anext(pieces) == b"data: 1\n\n"
        next_piece.set()
        assert await anext(pieces) == b"data: 2\n\n"
        with pytest.raises(UpstreamTimeout):
            await anext(pieces)
    finally:
        stream.close()
        done.set()
        server.close()
        await server.wait_closed()


async def test_a_whole_error_answer_is_read_from_a_stream(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    server = await serve(answer(b'{"error":{}}'))
    port = int(server.url.rsplit(":", 1)[1])
    stream = await open_stream("127.0.0.1", port, b"x", b"/s", (), timeout_s=1.0)
    try:
        assert (stream.status, await stream.read(100, 1.0)) == (201, b'{"error":{}}')
    finally:
        stream.close()
