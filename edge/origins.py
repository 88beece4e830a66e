"""The origins behind the edge: a region's read nodes (or the writer, for event details), tried in
order with failover. An origin that fails (connection error, timeout, 5xx) is skipped for
`limits.edge_origin_cooldown_s` while another answers; when every origin is cooling down they are
all tried anyway, because refusing without asking is worse than a slow failure."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import httpx

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


@dataclass(slots=True)
class Origin:
    base_url: str
    down_until: float = 0.0


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
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(limits.edge_origin_timeout_s),
            limits=httpx.Limits(
                max_connections=limits.edge_origin_connections_max,
                max_keepalive_connections=limits.edge_origin_connections_max,
            ),
            follow_redirects=False,
        )

    async def close(self) -> None:
        await self.client.aclose()

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
        compressed): it is replayed to fans with the origin's Content-Encoding."""
        failure = "no origin configured"
        for origin in self.ordered():
            try:
                answer = await self._get(origin, path_and_query, headers)
            except (httpx.HTTPError, OriginUnavailable) as error:
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

    async def _get(
        self, origin: Origin, path_and_query: str, headers: Mapping[str, str]
    ) -> OriginAnswer:
        request = self.client.build_request(
            "GET", origin.base_url + path_and_query, headers=headers
        )
        response = await self.client.send(request, stream=True)
        try:
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > limits.edge_cache_body_bytes_max:
                    raise OriginUnavailable("answer too large")
        finally:
            await response.aclose()
        kept = tuple(
            (name, response.headers[name]) for name in KEPT_HEADERS if name in response.headers
        )
        return OriginAnswer(response.status_code, kept, bytes(body))

    def pick(self) -> Origin:
        """The origin a long-lived stream should go to first."""
        return self.ordered()[0]

    def mark_down(self, origin: Origin) -> None:
        origin.down_until = self.clock() + limits.edge_origin_cooldown_s
