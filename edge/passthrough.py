"""Passing requests on: writes to the global writer (bounded timeouts, the writer's answer back
unchanged) and SSE streams from a read node (chunk by chunk, never buffered)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, MutableMapping

import httpx
from litestar import Response

from edge.errors import JSON, EdgeError
from edge.metrics import EdgeMetrics
from edge.origins import OriginPool
from tessera import limits

# Request headers a tier needs from the fan; everything else stays at the edge.
FORWARDED_REQUEST_HEADERS = (
    "authorization",
    "idempotency-key",
    "content-type",
    "accept",
    "last-event-id",
)
# Hop-by-hop or recomputed: never copied from an upstream answer.
DROPPED_RESPONSE_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "date",
        "server",
    }
)


def forwarded_headers(headers: Mapping[str, str], client_ip: str) -> MutableMapping[str, str]:
    """The fan's headers a tier needs, byte for byte: Litestar decodes header bytes as latin-1, so
    they are encoded back as latin-1 (httpx's default, ASCII, raised on any other byte: a 500 for
    an `Idempotency-Key: é`; the tier now gets the bytes and answers them)."""
    kept = httpx.Headers(encoding="latin-1")
    for name in FORWARDED_REQUEST_HEADERS:
        if name in headers:
            kept[name] = headers[name]
    kept["x-forwarded-for"] = client_ip
    return kept


class WriterProxy:
    def __init__(self, writer_url: str, metrics: EdgeMetrics) -> None:
        self.metrics = metrics
        self.client = httpx.AsyncClient(
            base_url=writer_url.rstrip("/"),
            timeout=httpx.Timeout(
                limits.edge_writer_timeout_s, connect=limits.edge_writer_connect_timeout_s
            ),
            limits=httpx.Limits(
                max_connections=limits.edge_writer_connections_max,
                max_keepalive_connections=limits.edge_writer_connections_max,
            ),
            follow_redirects=False,
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def send(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes = b""
    ) -> httpx.Response:
        try:
            response = await self.client.request(method, path, headers=headers, content=body)
        except httpx.TimeoutException:
            self.metrics.writer_requests.labels("timeout").inc()
            raise EdgeError(
                504,
                "writer_timeout",
                "the writer did not answer in time; retry with the same Idempotency-Key",
                {"Retry-After": "1"},
            ) from None
        except httpx.HTTPError:
            self.metrics.writer_requests.labels("unreachable").inc()
            raise EdgeError(
                502, "writer_unavailable", "the writer is unreachable; retry", {"Retry-After": "1"}
            ) from None
        self.metrics.writer_requests.labels(f"{response.status_code // 100}xx").inc()
        return response

    async def forward(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes = b""
    ) -> Response[bytes]:
        """The writer's answer, status, body and headers, as the fan's."""
        response = await self.send(method, path, headers, body)
        return Response(
            response.content,
            status_code=response.status_code,
            headers={
                name: value
                for name, value in response.headers.items()
                if name.lower() not in DROPPED_RESPONSE_HEADERS
            },
            media_type=response.headers.get("content-type"),
        )


class StreamProxy:
    """SSE from the first read node that accepts the stream."""

    def __init__(self, pool: OriginPool, metrics: EdgeMetrics) -> None:
        self.pool = pool
        self.metrics = metrics
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(limits.edge_origin_timeout_s, read=limits.edge_sse_idle_s_max),
            limits=httpx.Limits(max_connections=limits.edge_sse_clients_max),
        )
        self.clients = 0

    async def close(self) -> None:
        await self.client.aclose()

    async def open(self, path: str, headers: Mapping[str, str]) -> httpx.Response:
        for origin in self.pool.ordered():
            request = self.client.build_request("GET", origin.base_url + path, headers=headers)
            try:
                response = await self.client.send(request, stream=True)
            except httpx.HTTPError:
                self.pool.mark_down(origin)
                continue
            if response.status_code < 500:
                return response
            await response.aclose()
            self.pool.mark_down(origin)
        raise EdgeError(
            503, "origin_unavailable", "no read node answers; retry", {"Retry-After": "1"}
        )

    async def relay(self, response: httpx.Response) -> AsyncIterator[bytes]:
        self.clients += 1
        self.metrics.sse_clients.set(self.clients)
        try:
            # A read node that goes away ends the stream; EventSource reconnects through us
            # with Last-Event-ID and resumes from the node that answers then.
            with contextlib.suppress(httpx.HTTPError):
                async for chunk in response.aiter_raw():
                    yield chunk
        finally:
            self.clients -= 1
            self.metrics.sse_clients.set(self.clients)
            await response.aclose()


async def error_response(response: httpx.Response) -> Response[bytes]:
    """A non-stream answer (404, 503 …) from the read node, passed on."""
    body = await response.aread()
    await response.aclose()
    return Response(
        body,
        status_code=response.status_code,
        media_type=response.headers.get("content-type", JSON),
    )
