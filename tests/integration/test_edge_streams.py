"""Seat-change streams through an edge (issue 15, item 3), tried as a greedy client would: a cap
per fan and per address, and counts that come back to zero however clients leave (before the
answer, mid-stream, with a reset)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest
from edge_support import EdgeStack, token

from tessera import limits
from tessera_ops.processes import ServiceProcess

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def stack(edge_stack: EdgeStack) -> EdgeStack:
    return edge_stack


@pytest.fixture(scope="module")
def event(stack: EdgeStack) -> str:
    event_id = stack.create_event()
    stack.wait_seen(event_id)
    return event_id


@dataclass
class RawStream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    status: int
    head: bytes

    def close(self) -> None:
        self.writer.close()

    def reset(self) -> None:
        self.writer.transport.abort()


def request_bytes(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: edge", "Accept: text/event-stream"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def connect(edge: ServiceProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    url = urlsplit(edge.url)
    assert url.hostname is not None and url.port is not None
    return await asyncio.open_connection(url.hostname, url.port)


async def open_stream(edge: ServiceProcess, event: str, **headers: str) -> RawStream:
    reader, writer = await connect(edge)
    writer.write(request_bytes(f"/v1/events/{event}/seatmap/stream", headers))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    return RawStream(reader, writer, int(head.split()[1]), head)


def gauge(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in {url}/metrics")


async def wait_for_gauge(url: str, name: str, value: float, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (seen := gauge(url, name)) != value:
        assert time.monotonic() < deadline, f"{name} stays at {seen}, not {value}"
        await asyncio.sleep(0.1)


def bearer(user_id: str) -> str:
    return f"Bearer {token(user_id)}"


async def test_a_fan_gets_a_few_streams_and_one_more_once_one_closes(
    stack: EdgeStack, event: str
) -> None:
    edge = stack.start_edge("edge-streams-fan")
    cap = limits.edge_sse_streams_per_fan_max
    streams = [
        await open_stream(
            edge, event, Authorization=bearer("dee"), **{"X-Forwarded-For": f"10.5.0.{i}"}
        )
        for i in range(cap)
    ]
    assert [s.status for s in streams] == [200] * cap
    refused = await open_stream(
        edge, event, Authorization=bearer("dee"), **{"X-Forwarded-For": "10.5.1.1"}
    )
    assert refused.status == 429
    assert b"too_many_streams" in await refused.reader.read(4096)
    assert b"retry-after: 5" in refused.head.lower()
    other = await open_stream(edge, event, Authorization=bearer("eve"))  # another fan
    assert other.status == 200
    streams[0].close()
    await wait_for_gauge(edge.url, "tessera_edge_sse_clients", cap + 1 - 1)
    again = await open_stream(edge, event, Authorization=bearer("dee"))
    assert again.status == 200
    for stream in [*streams[1:], other, again, refused]:
        stream.close()
    await wait_for_gauge(edge.url, "tessera_edge_sse_clients", 0)
    metrics = httpx.get(f"{edge.url}/metrics").text
    assert 'tessera_edge_sse_refused_total{cap="fan"} 1.0' in metrics


async def test_an_address_gets_a_bounded_number_of_streams(stack: EdgeStack, event: str) -> None:
    edge = stack.start_edge("edge-streams-address")
    cap = limits.edge_sse_streams_per_address_max
    address = {"X-Forwarded-For": "10.4.0.1"}
    streams = [await open_stream(edge, event, **address) for _ in range(cap)]
    assert {s.status for s in streams} == {200}
    refused = await open_stream(edge, event, **address)
    assert refused.status == 429
    elsewhere = await open_stream(edge, event, **{"X-Forwarded-For": "10.4.0.2"})
    assert elsewhere.status == 200
    for stream in [*streams, refused, elsewhere]:
        stream.close()
    await wait_for_gauge(edge.url, "tessera_edge_sse_clients", 0)
    metrics = httpx.get(f"{edge.url}/metrics").text
    assert 'tessera_edge_sse_refused_total{cap="address"} 1.0' in metrics


async def test_counts_return_to_zero_however_clients_leave(stack: EdgeStack, event: str) -> None:
    edge = stack.start_edge("edge-streams-aborts")
    leavers: list[RawStream] = []
    # Gone before the answer: the request sent, the connection closed at once.
    for i in range(10):
        _, writer = await connect(edge)
        writer.write(
            request_bytes(f"/v1/events/{event}/seatmap/stream", {"X-Forwarded-For": f"10.3.0.{i}"})
        )
        await writer.drain()
        writer.transport.abort()
    # Gone mid-stream: after the head, after the first event, politely or with a reset.
    for i in range(20):
        stream = await open_stream(edge, event, **{"X-Forwarded-For": f"10.3.1.{i}"})
        assert stream.status == 200
        if i % 2:
            await asyncio.wait_for(stream.reader.readuntil(b"\n\n"), 10)  # retry: …
        leavers.append(stream)
    assert gauge(edge.url, "tessera_edge_sse_clients") == 20
    for i, stream in enumerate(leavers):
        if i % 3:
            stream.reset()
        else:
            stream.close()
    await wait_for_gauge(edge.url, "tessera_edge_sse_clients", 0)
    for regional in stack.regionals:  # the edge closed its side too: the read nodes count 0
        await wait_for_gauge(regional.url, "tessera_sse_clients", 0)


async def test_a_stream_for_an_unknown_event_is_refused_and_remembered(
    stack: EdgeStack,
) -> None:
    edge = stack.start_edge("edge-streams-unknown")
    unknown = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12"
    first = await open_stream(edge, unknown)
    assert first.status == 404
    first.close()
    second = await open_stream(edge, unknown)
    assert second.status == 404
    assert b"not_found" in await second.reader.read(4096)
    second.close()
    assert gauge(edge.url, "tessera_edge_sse_clients") == 0
