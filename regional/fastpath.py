"""The hot path as a bare ASGI app: `GET /v1/events/{id}/seatmap` and
`GET /v1/events/{id}/sections/{section}/seatmap` answered straight from the per-version cache,
without the framework's routing, parsing and response machinery (bench/read_path.py measures
what that saves). Everything else goes on to the Litestar app."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any, Final
from urllib.parse import parse_qs

from regional.feed import Feed
from regional.metrics import RegionalMetrics
from regional.state import Payload
from tessera.httpcache import choose_encoding, etag_matches
from tessera.observability import Metrics
from tessera.web import JSON_BYTES, error_body

EVENT_PATH: Final = re.compile(r"^/v1/events/([^/]+)/seatmap$")
SECTION_PATH: Final = re.compile(r"^/v1/events/([^/]+)/sections/([^/]+)/seatmap$")
CACHE_CONTROL: Final = b"public, max-age=1, stale-while-revalidate=5"

ASGIApp = Any


async def send(send_fn: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send_fn({"type": "http.response.start", "status": status, "headers": headers})
    await send_fn({"type": "http.response.body", "body": body})


async def error(send_fn: Any, status: int, code: str, message: str) -> None:
    await send(send_fn, status, [(b"content-type", JSON_BYTES)], error_body(code, message))


def fast_seatmaps(app: ASGIApp, feed: Feed, metrics: RegionalMetrics | Metrics) -> ASGIApp:
    async def asgi(scope: dict[str, Any], receive: Any, send_fn: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await app(scope, receive, send_fn)
            return
        path = scope["path"]
        event_match = EVENT_PATH.match(path)
        section_match = None if event_match else SECTION_PATH.match(path)
        if event_match is None and section_match is None:
            await app(scope, receive, send_fn)
            return
        started = time.perf_counter()
        status = await serve(scope, send_fn, feed, event_match, section_match)
        route = (
            "/v1/events/{event_id}/seatmap"
            if event_match
            else ("/v1/events/{event_id}/sections/{section_id}/seatmap")
        )
        scope["path_template"] = route  # for the access log (tessera/requests.py)
        metrics.observe_request(
            route=route,
            method=scope["method"],
            status=status,
            duration_s=time.perf_counter() - started,
        )

    return asgi


async def serve(
    scope: dict[str, Any],
    send_fn: Any,
    feed: Feed,
    event_match: re.Match[str] | None,
    section_match: re.Match[str] | None,
) -> int:
    match = event_match or section_match
    assert match is not None
    try:
        view = feed.events.get(uuid.UUID(match.group(1)))
    except ValueError:
        view = None
    if view is None:
        await error(send_fn, 404, "not_found", "no such event")
        return 404
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    fmt = query.get("format", ["binary"])[-1]
    if fmt not in ("binary", "json"):
        await error(send_fn, 422, "invalid_request", "format must be binary or json")
        return 422
    as_json = fmt == "json"
    if section_match is not None:
        position = view.positions.get(section_match.group(2))
        if position is None:
            await error(send_fn, 404, "not_found", "no such section in this event")
            return 404
        payload = view.section_payload(position, as_json)
    else:
        payload = view.event_payload(as_json)
    return await respond(scope, send_fn, payload)


async def respond(scope: dict[str, Any], send_fn: Any, payload: Payload) -> int:
    headers = dict(scope["headers"])
    encoding = choose_encoding(headers.get(b"accept-encoding", b"").decode("latin-1"))
    body = payload.encoded(encoding)
    if body is payload.body:
        encoding = "identity"
    etag = payload.etag if encoding == "identity" else payload.etag[:-1] + f'-{encoding}"'
    common = [
        (b"etag", etag.encode()),
        (b"cache-control", CACHE_CONTROL),
        (b"vary", b"Accept-Encoding"),
    ]
    if_none_match = headers.get(b"if-none-match")
    if if_none_match is not None and etag_matches(if_none_match.decode("latin-1"), payload.etag):
        await send(send_fn, 304, common, b"")
        return 304
    response_headers = [
        (b"content-type", payload.media_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *common,
    ]
    if encoding != "identity":
        response_headers.append((b"content-encoding", encoding.encode()))
    await send(send_fn, 200, response_headers, b"" if scope["method"] == "HEAD" else body)
    return 200
