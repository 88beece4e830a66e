"""The origins behind the edge: a region's read nodes (or the writer, for event details), tried in
order with failover, each on its own keep-alive pool (edge/upstream.py). An origin that fails
(connection error, timeout, 5xx) is skipped for `limits.edge_origin_cooldown_s` while another
answers; when every origin is cooling down they are all tried anyway, because refusing without
asking is worse than a slow failure."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from edge.upstream import Header, Shed, UpstreamError, UpstreamPool
from tessera import limits

# Headers of an origin answer the edge keeps and replays to fans.
KEPT_HEADERS = ("content-type", "content-encoding", "etag", "cache-control", "vary")


class OriginUnavailable(Exception):
    """Every origin failed; the message names the last failure."""


@dataclass(frozen=True, slots=True)
class OriginAnswer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


def origin_pool(base_url: str) -> UpstreamPool:
    """Connections to one origin. Its queue is bounded by the origin timeout (a cache miss that
    waits longer is answered from the next origin, or stale): the per-fan reads that go through
    it (friends) are few next to the writes."""
    return UpstreamPool(
        base_url,
        connections_max=limits.edge_origin_connections_max,
        connect_timeout_s=limits.edge_origin_timeout_s,
        timeout_s=limits.edge_origin_timeout_s,
        queue_wait_s_max=limits.edge_origin_timeout_s,
        in_flight_max=limits.edge_writes_in_flight_max,
        body_bytes_max=limits.edge_cache_body_bytes_max,
    )


@dataclass(slots=True)
class Origin:
    base_url: str
    down_until: float = 0.0
    pool: UpstreamPool = field(init=False)

    def __post_init__(self) -> None:
        self.pool = origin_pool(self.base_url)


class OriginPool:
    def __init__(
        self,
        base_urls: Sequence[str],
        *,
        on_result: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert 0 < len(base_urls) <= limits.edge_origins_max
        self.origins = [Origin(url.rstrip("/")) for url in base_urls]
        self.on_result = on_result or (lambda _result: None)
        self.clock = clock

    async def close(self) -> None:
        for origin in self.origins:
            await origin.pool.close()

    def ordered(self) -> list[Origin]:
        now = self.clock()
        healthy = [origin for origin in self.origins if origin.down_until <= now]
        cooling = sorted(
            (origin for origin in self.origins if origin.down_until > now),
            key=lambda origin: origin.down_until,
        )
        return healthy + cooling

    async def get(self, path_and_query: str, headers: Mapping[str, str]) -> OriginAnswer:
        """GET from the first origin that answers below 500. The body is kept as sent (still
        compressed): it is replayed to fans with the origin's Content-Encoding. Header values
        are the fan's (or the cache's) latin-1 text, sent as the bytes they came as."""
        wire = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        failure = "no origin configured"
        for origin in self.ordered():
            try:
                answer = await self._get(origin, path_and_query, wire)
            except Shed:
                failure = f"{origin.base_url}: too many requests queued"
                continue  # this edge is busy, not the origin: no cool-down
            except UpstreamError as error:
                failure = f"{origin.base_url}: {type(error).__name__}"
            else:
                if answer.status < 500:
                    origin.down_until = 0.0
                    self.on_result("not_modified" if answer.status == 304 else "ok")
                    return answer
                failure = f"{origin.base_url}: HTTP {answer.status}"
            origin.down_until = self.clock() + limits.edge_origin_cooldown_s
            self.on_result("error")
        raise OriginUnavailable(failure)

    @staticmethod
    async def _get(origin: Origin, path_and_query: str, headers: Sequence[Header]) -> OriginAnswer:
        answer = await origin.pool.request(b"GET", path_and_query.encode("latin-1"), headers)
        kept = tuple(
            (name, value.decode("latin-1"))
            for name in KEPT_HEADERS
            if (value := answer.header(name.encode())) is not None
        )
        return OriginAnswer(answer.status, kept, answer.body)

    async def ready(self) -> bool:
        """Whether one of the origins answers its /readyz with 200."""
        for origin in self.ordered():
            try:
                answer = await origin.pool.request(b"GET", b"/readyz", ())
            except (UpstreamError, Shed):
                continue
            if answer.status == 200:
                return True
        return False

    def pick(self) -> Origin:
        """The origin a long-lived stream should go to first."""
        return self.ordered()[0]

    def mark_down(self, origin: Origin) -> None:
        origin.down_until = self.clock() + limits.edge_origin_cooldown_s
