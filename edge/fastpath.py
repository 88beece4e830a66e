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
from edge.errors import EdgeError, error_body
from edge.fans import VerifiedTokens
from edge.metrics import EdgeMetrics
from edge.negative import NegativeCache
from edge.origins import OriginUnavailable
from edge.ratelimit import RateLimiter, refusal
from edge.settings import RouteClass
from tessera import limits
from tessera.httpcache import choose_encoding, etag_matches
from tessera.venue import ID_PATTERN

ASGIApp = Any
EVENT_PATH: Final = re.compile(r"^/v1/events/([^/]+)$")
SEATMAP_PATH: Final = re.compile(r"^/v1/events/([^/]+)/seatmap$")
SECTION_PATH: Final = re.compile(r"^/v1/events/([^/]+)/sections/([^/]+)/seatmap$")
SECTION_ID: Final = re.compile(ID_PATTERN)
JSON_HEADERS: Final = ((b"content-type", b"application/json"),)
NEGATIVE_HEADERS: Final = {"X-Cache": "NEGATIVE", "Cache-Control": "no-store"}
NOT_FOUND: Final = {
    "/v1/events/{event_id}": "no such event",
    "/v1/events/{event_id}/seatmap": "no such event",
    "/v1/events/{event_id}/sections/{section_id}/seatmap": "no such event or section",
}


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
        negative: NegativeCache | None = None,
        tokens: VerifiedTokens | None = None,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.negative = negative or NegativeCache()
        self.tokens = tokens
        self.trusted = trusted
        self.metrics = metrics
        self.event_route = Route("/v1/events/{event_id}", events, takes_format=False)
        self.seatmap_route = Route("/v1/events/{event_id}/seatmap", seatmaps, takes_format=True)
        self.section_route = Route(
            "/v1/events/{event_id}/sections/{section_id}/seatmap", seatmaps, takes_format=True
        )
        # Memos for the hot path, each bounded: validated paths, Accept-Encoding answers, and
        # resolved latency series.
        self.known: dict[str, Route] = {}
        self.encodings: dict[bytes, str] = {}
        self.latency: dict[tuple[str, str, int], Any] = {}
        self.outcomes: dict[str, int] = dict.fromkeys(
            ("HIT", "MISS", "STALE", "ERROR", "NEGATIVE"), 0
        )
        self.reads_local = limiter.config.budget(RouteClass.reads).store == "local"

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
        path = scope["path"]
        try:
            route = self.known.get(path)
            if route is None:
                route = self.route_of(path)
                if route is None:
                    await self.app(scope, receive, send)
                    return
                if len(self.known) < limits.edge_known_paths_max:
                    self.known[path] = route
            status = await self.serve(scope, send, route)
        except Refusal as refused:
            route_name = "cached"
            await respond_error(send, refused)
            status = refused.status
        else:
            route_name = route.template
        scope["path_template"] = route_name  # for the access log (tessera/requests.py)
        histogram = self.latency.get((route_name, scope["method"], status))
        if histogram is None:
            histogram = self.metrics.request_latency_s.labels(
                route=route_name, method=scope["method"], status=str(status)
            )
            self.latency[(route_name, scope["method"], status)] = histogram
        histogram.observe(time.perf_counter() - started)

    def client_of(self, scope: dict[str, Any], forwarded: bytes | None) -> str:
        client = scope.get("client")
        peer = client[0] if client else None
        if forwarded is None and peer is not None:
            return str(peer)  # no header to believe or not: the peer is the client
        return client_ip(peer, forwarded.decode("latin-1") if forwarded else None, self.trusted)

    def encoding_of(self, accept_encoding: bytes) -> str:
        encoding = self.encodings.get(accept_encoding)
        if encoding is None:
            encoding = choose_encoding(accept_encoding.decode("latin-1"))
            if len(self.encodings) < limits.edge_known_encodings_max:
                self.encodings[accept_encoding] = encoding
        return encoding

    async def serve(self, scope: dict[str, Any], send: Any, route: Route) -> int:
        accept_encoding = b""
        if_none_match = forwarded = authorization = None
        for name, value in scope["headers"]:
            if name == b"accept-encoding":
                accept_encoding = value
            elif name == b"if-none-match":
                if_none_match = value
            elif name == b"x-forwarded-for":
                forwarded = value
            elif name == b"authorization":
                authorization = value
        fmt = "binary"
        if route.takes_format and scope.get("query_string"):
            fmt = parse_qs(scope["query_string"].decode("latin-1")).get("format", [fmt])[-1]
            if fmt not in ("binary", "json"):
                raise Refusal(422, "invalid_request", "format must be binary or json", {})
        ip = self.client_of(scope, forwarded)
        # Reads need no token; one that is sent must verify (401 otherwise, charged to nobody),
        # and moves the request from the anonymous budget to the fan's (edge/ratelimit.charges).
        user_id = None if authorization is None else self.fan_of(authorization)
        if self.reads_local:
            decision = self.limiter.check_local(RouteClass.reads, ip, user_id)
        else:
            decision = await self.limiter.check(RouteClass.reads, ip, user_id)
        if not decision.allowed:
            error = refusal(decision, RouteClass.reads)
            raise Refusal(error.status, error.code, error.message, error.headers)
        path = scope["path"]
        key: CacheKey = (path, fmt, self.encoding_of(accept_encoding))
        entry = route.cache.fresh(key)
        outcome: Outcome = "HIT"
        if entry is None:
            entry, outcome = await self.fetch(route, key, fmt)
        self.outcomes[outcome] += 1
        age = str(int(route.cache.clock() - entry.stored_at)).encode()
        extra = ((b"x-cache", outcome.encode()), (b"age", age))
        return await answer(scope, send, if_none_match, entry, extra)

    async def fetch(self, route: Route, key: CacheKey, fmt: str) -> tuple[Entry, Outcome]:
        """A miss: a path remembered as unknown is answered here; otherwise the cache asks its
        origin once, and a 404 it brings back is remembered."""
        path = key[0]
        if self.negative.known_missing(path):
            self.outcomes["NEGATIVE"] += 1
            raise Refusal(404, "not_found", NOT_FOUND[route.template], NEGATIVE_HEADERS)
        try:
            entry, outcome = await route.cache.get(
                key, path + ("?format=json" if fmt == "json" else "")
            )
        except OriginUnavailable:
            self.outcomes["ERROR"] += 1
            raise Refusal(
                503, "origin_unavailable", "seat maps are unavailable; retry", {"Retry-After": "1"}
            ) from None
        if entry.status == 404:
            self.negative.remember(path)
        return entry, outcome

    def fan_of(self, authorization: bytes) -> str:
        if self.tokens is None:
            raise Refusal(401, "unauthorized", "tokens are not accepted here", {})
        try:
            return self.tokens.user_id(authorization)
        except EdgeError as error:
            raise Refusal(error.status, error.code, error.message, error.headers) from None

    def flush_metrics(self) -> None:
        """Counted in plain integers on the hot path (a Prometheus update per hit cost about as
        much as the hit); moved into the registry when it is scraped."""
        for outcome, count in self.outcomes.items():
            if count:
                self.metrics.cache_requests.labels(outcome).inc(count)
                self.outcomes[outcome] = 0
        negative = self.negative
        self.metrics.negative_entries.set(len(negative))
        for result in ("stored", "evicted"):
            count = getattr(negative, result)
            if count:
                self.metrics.unknown_ids.labels(result).inc(count)
                setattr(negative, result, 0)


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
