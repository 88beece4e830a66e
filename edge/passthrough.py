"""Passing requests on: writes to the global writer (edge/upstream.py: bounded timeouts, a queue
that sheds, the writer's answer back unchanged) and SSE streams from a read node (edge/streaming.py:
chunk by chunk, never buffered).

Header values travel as bytes. Litestar decodes a request's header bytes as latin-1, so they are
encoded back as latin-1 (`wire`) and the tier gets exactly the fan's bytes: an `Idempotency-Key:
é` reaches the writer, which answers it, rather than failing in the edge."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Final

from litestar import Response

from edge.errors import JSON, EdgeError
from edge.metrics import EdgeMetrics
from edge.origins import OriginPool
from edge.streaming import Stream, open_stream
from edge.upstream import Answer, Header, Shed, UpstreamError, UpstreamPool, UpstreamTimeout
from tessera import contracts, limits
from tessera.requests import current_request_id

# Request headers a tier needs from the fan; everything else stays at the edge.
FORWARDED_REQUEST_HEADERS: Final = (
    "authorization",
    "idempotency-key",
    "content-type",
    "accept",
    "last-event-id",
    # W3C Trace Context: the tier behind takes the same trace id (tessera/requests.py).
    "traceparent",
)
FORWARDED_WIRE_HEADERS: Final = frozenset(name.encode() for name in FORWARDED_REQUEST_HEADERS)
# Hop-by-hop or recomputed: never copied from an upstream answer.
DROPPED_RESPONSE_HEADERS: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"content-length",
        b"content-encoding",
        b"date",
        b"server",
        # The edge answers with its own (the same id: it sent it; tessera/requests.py).
        b"x-request-id",
    }
)
RESULTS: Final = ("1xx", "2xx", "3xx", "4xx", "5xx", "timeout", "unreachable")


def forwarded_headers(headers: Mapping[str, str], client_ip: str) -> dict[str, str]:
    """The fan's headers a tier needs (latin-1 text, as Litestar decoded them), and the client
    address in X-Forwarded-For."""
    kept = {name: headers[name] for name in FORWARDED_REQUEST_HEADERS if name in headers}
    kept["x-forwarded-for"] = client_ip
    kept["x-request-id"] = current_request_id()  # the tier behind logs under the same id
    return kept


def wire(headers: Mapping[str, str]) -> list[Header]:
    """Headers as the bytes they came as (module docstring)."""
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


def passed_back(answer: Answer) -> list[Header]:
    """The upstream answer's headers a fan gets (hop-by-hop ones dropped)."""
    return [(k, v) for k, v in answer.headers if k not in DROPPED_RESPONSE_HEADERS]


def overloaded() -> EdgeError:
    return EdgeError(
        503,
        "overloaded",
        "too many writes are waiting for the writer; retry with the same Idempotency-Key",
        {"Retry-After": "1"},
    )


class WriterProxy:
    """The global writer behind one pool of keep-alive connections (at most
    `limits.edge_writer_connections_max`); refusals are EdgeErrors: 503 `overloaded` (shed
    before sending), 504 `writer_timeout`, 502 `writer_unavailable`."""

    def __init__(self, writer_url: str, metrics: EdgeMetrics, credential: str = "") -> None:
        self.pool = UpstreamPool(
            writer_url,
            connections_max=limits.edge_writer_connections_max,
            connect_timeout_s=limits.edge_writer_connect_timeout_s,
            timeout_s=limits.edge_writer_timeout_s,
            queue_wait_s_max=limits.edge_write_queue_wait_s_max,
            in_flight_max=limits.edge_writes_in_flight_max,
            body_bytes_max=limits.edge_writer_answer_bytes_max,
        )
        self.metrics = metrics
        # Sent with every request, so the writer knows it comes from an edge (it refuses fans'
        # writes without it when it has one: global_writer/fastpath.py). Never a fan's copy: the
        # fan's headers that go on are a fixed list (FORWARDED_REQUEST_HEADERS) without it.
        first = credential.split(",", maxsplit=1)[0]
        self.credential: Header | None = (
            (contracts.HEADER_EDGE_CREDENTIAL.lower().encode(), first.encode()) if first else None
        )
        # Counted in plain integers per write (a Prometheus update costs a lock and a lookup),
        # moved into the registry when it is scraped (`flush_metrics`).
        self.results = dict.fromkeys(RESULTS, 0)
        self.sheds = {reason: metrics.writes_shed.labels(reason) for reason in Shed.REASONS}

    async def close(self) -> None:
        await self.pool.close()

    def check(self) -> None:
        """503 `overloaded` now if this write would be shed anyway: refused before any other
        work is spent on it."""
        try:
            self.pool.check()
        except Shed as shed:
            self.sheds[shed.reason].inc()
            raise overloaded() from None

    async def send(
        self, method: bytes, path: bytes, headers: Sequence[Header], body: bytes = b""
    ) -> Answer:
        if self.credential is not None:
            headers = [*headers, self.credential]
        try:
            answer = await self.pool.request(method, path, headers, body)
        except Shed as shed:
            self.sheds[shed.reason].inc()
            raise overloaded() from None
        except UpstreamTimeout:
            self.results["timeout"] += 1
            raise EdgeError(
                504,
                "writer_timeout",
                "the writer did not answer in time; retry with the same Idempotency-Key",
                {"Retry-After": "1"},
            ) from None
        except UpstreamError:
            self.results["unreachable"] += 1
            raise EdgeError(
                502, "writer_unavailable", "the writer is unreachable; retry", {"Retry-After": "1"}
            ) from None
        self.results[RESULTS[min(max(answer.status // 100, 1), 5) - 1]] += 1
        return answer

    def flush_metrics(self) -> None:
        for result, count in self.results.items():
            if count:
                self.metrics.writer_requests.labels(result).inc(count)
                self.results[result] = 0

    async def forward(
        self, method: str, path: str, headers: Sequence[Header], body: bytes = b""
    ) -> Response[bytes]:
        """The writer's answer, status, body and headers, as the fan's (Litestar handlers)."""
        answer = await self.send(method.encode(), path.encode(), headers, body)
        content_type = answer.header(b"content-type")
        return Response(
            answer.body,
            status_code=answer.status,
            headers={
                name.decode("latin-1"): value.decode("latin-1")
                for name, value in passed_back(answer)
            },
            media_type=content_type.decode("latin-1") if content_type else None,
        )


class StreamLease:
    """One admitted stream's place in the counts, and its origin connection once open; released
    once, on whichever way the stream ends (refused by the origin, failed, finished, or the fan
    gone)."""

    __slots__ = ("address", "proxy", "released", "stream", "user_id")

    def __init__(self, proxy: StreamProxy, address: str, user_id: str | None) -> None:
        self.proxy, self.address, self.user_id = proxy, address, user_id
        self.stream: Stream | None = None
        self.released = False

    def release(self) -> None:
        if self.stream is not None:
            self.stream.close()
        if not self.released:
            self.released = True
            self.proxy.released(self)


class StreamProxy:
    """SSE from the first read node that accepts the stream, with the streams open through this
    process counted exactly: in all, per address block and per fan (docs/api.md, "Streams")."""

    def __init__(self, pool: OriginPool, metrics: EdgeMetrics) -> None:
        self.pool = pool
        self.metrics = metrics
        self.clients = 0
        self.per_address: dict[str, int] = {}
        self.per_fan: dict[str, int] = {}

    def admit(self, address: str, user_id: str | None) -> StreamLease:
        """A place for one more stream from `address` (an address block: the rate limiter's
        key) and fan, or 503 (this process is full) / 429 `too_many_streams` (this client is)."""
        if self.clients >= limits.edge_sse_clients_max:
            self.metrics.sse_refused.labels("edge").inc()
            raise EdgeError(
                503, "unavailable", "too many stream clients; retry", {"Retry-After": "5"}
            )
        if self.per_address.get(address, 0) >= limits.edge_sse_streams_per_address_max:
            self.metrics.sse_refused.labels("address").inc()
            raise too_many_streams("from this IP address")
        if user_id is not None and self.per_fan.get(user_id, 0) >= (
            limits.edge_sse_streams_per_fan_max
        ):
            self.metrics.sse_refused.labels("fan").inc()
            raise too_many_streams("for this account")
        self.clients += 1
        self.per_address[address] = self.per_address.get(address, 0) + 1
        if user_id is not None:
            self.per_fan[user_id] = self.per_fan.get(user_id, 0) + 1
        self.metrics.sse_clients.set(self.clients)
        return StreamLease(self, address, user_id)

    def released(self, lease: StreamLease) -> None:
        self.clients -= 1
        forget(self.per_address, lease.address)
        if lease.user_id is not None:
            forget(self.per_fan, lease.user_id)
        self.metrics.sse_clients.set(self.clients)

    async def close(self) -> None:
        """Streams own their connections, and end with their relay."""

    async def open(self, path: str, headers: Sequence[Header]) -> Stream:
        for origin in self.pool.ordered():
            upstream = origin.pool
            try:
                stream = await open_stream(
                    upstream.host,
                    upstream.port,
                    upstream.host_header,
                    path.encode("latin-1"),
                    headers,
                    timeout_s=limits.edge_origin_timeout_s,
                )
            except UpstreamError:
                self.pool.mark_down(origin)
                continue
            if stream.status < 500:
                return stream
            stream.close()
            self.pool.mark_down(origin)
        raise EdgeError(
            503, "origin_unavailable", "no read node answers; retry", {"Retry-After": "1"}
        )

    async def relay(self, stream: Stream) -> AsyncGenerator[bytes, None]:
        try:
            # A read node that goes away (or goes silent) ends the stream; EventSource
            # reconnects through us with Last-Event-ID and resumes from the node that answers.
            with contextlib.suppress(UpstreamError):
                async for piece in stream.pieces(limits.edge_sse_idle_s_max):
                    yield piece
        finally:
            stream.close()


def forget(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)  # zero counts are dropped: the dicts hold open streams only


def too_many_streams(where: str) -> EdgeError:
    message = f"too many open streams {where}; close one or retry later"
    return EdgeError(429, "too_many_streams", message, {"Retry-After": "5"})


async def error_response(stream: Stream) -> Response[bytes]:
    """A non-stream answer (404, 503 …) from the read node, passed on."""
    body = b""
    with contextlib.suppress(UpstreamError, TimeoutError):
        body = await stream.read(limits.edge_writer_answer_bytes_max, limits.edge_origin_timeout_s)
    stream.close()
    content_type = stream.header(b"content-type")
    return Response(
        body,
        status_code=stream.status,
        media_type=content_type.decode("latin-1") if content_type else JSON,
    )
