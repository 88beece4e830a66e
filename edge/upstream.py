"""The edge's client upstream (writes to the global writer, cache misses and `/readyz` to the
read nodes; edge/streaming.py does the SSE relay's): the house's keep-alive HTTP/1.1 client
(tessera/http1.py: connections, request encoding, answers, timeouts) with a bounded queue in
front of its connections that sheds load.

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
doing nothing else, spends more, so the measurement overrides the rule. The client's cost per
request is flat in concurrency by construction (tessera/http1.py says how). Requests go out byte
for byte (a fan's header bytes outside ASCII reach the writer as sent). A request is never sent
twice here: the pool does not resend on a connection the writer closed.

**Shedding.** While every connection is busy a request waits in a FIFO queue. Before it joins,
the wait is estimated as (requests queued + 1) x the recent mean time a request holds a
connection / connections; over `queue_wait_s_max` it is refused at once (`Shed`), and so is
any request once `in_flight_max` are in flight. A queued request still waiting after
`queue_wait_s_max` (the estimate was wrong: the writer slowed down) is refused then. A refused
request never reached the writer, so retrying it is always safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

from tessera.http1 import (
    Answer,
    Head,
    Header,
    HttpError,
    HttpTimeout,
    Pool,
    dechunk,
    encode_request,
    parse_head,
)

__all__ = [
    "Answer",
    "Head",
    "Header",
    "Shed",
    "ShedReason",
    "UpstreamError",
    "UpstreamPool",
    "UpstreamTimeout",
    "dechunk",
    "encode_request",
    "parse_head",
]

ShedReason = Literal["queue_wait", "in_flight"]
# The edge's names for the client's errors (edge/streaming.py raises them too).
UpstreamError = HttpError
UpstreamTimeout = HttpTimeout


class Shed(Exception):
    """Refused before it was sent: the queue for a connection is too long."""

    REASONS: ClassVar[tuple[ShedReason, ...]] = ("queue_wait", "in_flight")

    def __init__(self, reason: ShedReason, wait_s: float) -> None:
        super().__init__(f"writes queued too long ({reason})")
        self.reason: ShedReason = reason
        self.wait_s = wait_s


class UpstreamPool(Pool):
    """Keep-alive connections to one server (`http://host:port`), at most `connections_max`,
    and the shedding queue in front of them (module docstring). The queue, first in first out,
    has one timer, for its oldest request's deadline."""

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
        super().__init__(
            base_url,
            connections_max=connections_max,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            queue_wait_s_max=queue_wait_s_max,
            body_bytes_max=body_bytes_max,
        )
        self.wait_s_max = queue_wait_s_max
        self.in_flight_max = in_flight_max
        self.in_flight = 0  # requests between `request` and their answer (queued included)

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
            if wait_s > self.wait_s_max:
                raise Shed("queue_wait", wait_s)

    async def request(
        self, method: bytes, target: bytes, headers: Sequence[Header] = (), body: bytes = b""
    ) -> Answer:
        """Send one request, return its answer. `UpstreamTimeout`, `UpstreamError` (never
        sent, or no answer), `Shed` (never sent)."""
        self.check()
        self.in_flight += 1
        try:
            return await super().request(method, target, headers, body)
        finally:
            self.in_flight -= 1

    def queue_refusal(self) -> Exception:
        return Shed("queue_wait", self.wait_s_max)
