"""The cached GETs as a bare ASGI app in front of Litestar: seat maps (origin: the region's read
nodes) and event details (origin: the writer). A cache hit costs a regex, a local rate-limit check
and one dict lookup; bench/edge_bench.py measures it against the raw-Granian ceiling. Everything
else goes on to the Litestar app."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs

from edge.cache import CacheKey, Entry, MicroCache, Outcome
from edge.clientip import client_ip
from edge.errors import error_body
from edge.metrics import EdgeMetrics
from edge.origins import OriginUnavailable
from edge.ratelimit import RateLimiter, refusal
from edge.settings import RouteClass
from tessera.httpcache import choose_encoding, etag_matches
from tessera.venue import ID_PATTERN

ASGIApp = Any
EVENT_PATH: Final = re.compile(r"^/v1/events/([^/]+)$")
SEATMAP_PATH: Final = re.compile(r"^/v1/events/([^/]+)/seatmap$")
SECTION_PATH: Final = re.compile(r"^/v1/events/([^/]+)/sections/([^/]+)/seatmap$")
SECTION_ID: Final = re.compile(ID_PATTERN)
JSON_HEADERS: Final = ((b"content-type", b"application/json"),)


@dataclass(frozen=True, slots=True)
class Route:
    template: str
    cache: MicroCache
    takes_format: bool


class Refusal(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class CachedGets:
    def __init__(
        self,
        app: ASGIApp,
        *,
        seatmaps: MicroCache,
        events: MicroCache,
        limiter: RateLimiter,
        trusted: list[Any],
        metrics: EdgeMetrics,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.trusted = trusted
        self.metrics = metrics
        self.event_route = Route("/v1/events/{event_id}", events, takes_format=False)
        self.seatmap_route = Route("/v1/events/{event_id}/seatmap", seatmaps, takes_format=True)
        self.section_route = Route(
            "/v1/events/{event_id}/sections/{section_id}/seatmap", seatmaps, takes_format=True
        )

    def route_of(self, path: str) -> Route | None:
        match = SEATMAP_PATH.match(path) or EVENT_PATH.match(path)
        if match is not None:
            valid = is_uuid(match.group(1))
            route = self.seatmap_route if path.endswith("/seatmap") else self.event_route
        else:
            match = SECTION_PATH.match(path)
            if match is None:
                return None
            valid = is_uuid(match.group(1)) and SECTION_ID.match(match.group(2)) is not None
            route = self.section_route
        if not valid:
            raise Refusal(404, "not_found", "no such event or section", {})
        return route

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            route = self.route_of(scope["path"])
            if route is None:
                await self.app(scope, receive, send)
                return
            status = await self.serve(scope, send, route)
        except Refusal as refused:
            route_name = "cached"
            await respond_error(send, refused)
            status = refused.status
        else:
            route_name = route.template
        self.metrics.observe_request(
            route=route_name,
            method=scope["method"],
            status=status,
            duration_s=time.perf_counter() - started,
        )

    async def serve(self, scope: dict[str, Any], send: Any, route: Route) -> int:
        headers = dict(scope["headers"])
        fmt = "binary"
        if route.takes_format and scope.get("query_string"):
            fmt = parse_qs(scope["query_string"].decode("latin-1")).get("format", [fmt])[-1]
            if fmt not in ("binary", "json"):
                raise Refusal(422, "invalid_request", "format must be binary or json", {})
        client = scope.get("client")
        forwarded = headers.get(b"x-forwarded-for")
        ip = client_ip(
            client[0] if client else None,
            forwarded.decode("latin-1") if forwarded is not None else None,
            self.trusted,
        )
        decision = await self.limiter.check(RouteClass.reads, ip, None)
        if not decision.allowed:
            error = refusal(decision, RouteClass.reads)
            raise Refusal(error.status, error.code, error.message, error.headers)
        encoding = choose_encoding(headers.get(b"accept-encoding", b"").decode("latin-1"))
        path = scope["path"]
        key: CacheKey = (path, fmt, encoding)
        entry = route.cache.fresh(key)
        outcome: Outcome = "HIT"
        if entry is None:
            try:
                entry, outcome = await route.cache.get(
                    key, path + ("?format=json" if fmt == "json" else "")
                )
            except OriginUnavailable:
                self.metrics.cache_requests.labels("ERROR").inc()
                raise Refusal(
                    503,
                    "origin_unavailable",
                    "seat maps are unavailable; retry",
                    {"Retry-After": "1"},
                ) from None
        self.metrics.cache_requests.labels(outcome).inc()
        age = str(int(route.cache.clock() - entry.stored_at)).encode()
        extra = ((b"x-cache", outcome.encode()), (b"age", age))
        return await answer(scope, send, headers.get(b"if-none-match"), entry, extra)


async def answer(
    scope: dict[str, Any],
    send: Any,
    if_none_match: bytes | None,
    entry: Entry,
    extra: tuple[tuple[bytes, bytes], ...],
) -> int:
    if (
        if_none_match is not None
        and entry.status == 200
        and entry.base_etag is not None
        and etag_matches(if_none_match.decode("latin-1"), entry.base_etag)
    ):
        headers = [*entry.wire_headers_304, *extra]
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return 304
    headers = [*entry.wire_headers, *extra]
    await send({"type": "http.response.start", "status": entry.status, "headers": headers})
    body = b"" if scope["method"] == "HEAD" else entry.body
    await send({"type": "http.response.body", "body": body})
    return entry.status


def is_uuid(text: str) -> bool:
    """Canonical form only: `{…}` or upper-case spellings of one event would be separate keys."""
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


async def respond_error(send: Any, refused: Refusal) -> None:
    headers = [
        *JSON_HEADERS,
        *((k.lower().encode(), v.encode()) for k, v in refused.headers.items()),
    ]
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": error_body(refused.code, refused.message)})
