"""Reads that are not cached: the seat-change stream (proxied unbuffered from a read node) and the
fan's friends at an event (per fan, so never shared in a cache)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.params import FromPath

from edge.controllers.writes import parse_uuid
from edge.errors import JSON, EdgeError
from edge.fans import admit_rate, fan_of, optional_fan
from edge.negative import NegativeCache
from edge.origins import OriginPool, OriginUnavailable
from edge.passthrough import (
    StreamProxy,
    error_response,
    forwarded_headers,
    wire,
)
from edge.ratelimit import address_budget_key
from edge.settings import RouteClass
from tessera.openapi import ANY_OBJECT, LAST_EVENT_ID, Answer, documented, seat_stream_answer
from tessera.web import ClosingStream


@get(
    "/v1/events/{event_id:str}/seatmap/stream",
    summary="Seat changes as Server-Sent Events",
    operation_class=documented(
        {200: seat_stream_answer("A snapshot, then deltas (from a read node)")},
        headers=[LAST_EVENT_ID],
    ),
)
async def seatmap_stream(
    request: Request[Any, Any, Any], event_id: FromPath[str]
) -> ClosingStream | Response[bytes]:
    event = parse_uuid(event_id, "event")
    user_id = optional_fan(request)
    ip = await admit_rate(request, RouteClass.reads, user_id)
    negative: NegativeCache = request.app.state.parts.negative
    if negative.known_missing(f"/v1/events/{event}/seatmap"):  # edge/negative.py
        raise EdgeError(404, "not_found", "no such event")
    streams: StreamProxy = request.app.state.streams
    lease = streams.admit(address_budget_key(ip), user_id)
    headers = forwarded_headers(request.headers, ip)
    headers["accept"] = "text/event-stream"
    try:
        lease.stream = await streams.open(f"/v1/events/{event}/seatmap/stream", wire(headers))
    finally:
        if lease.stream is None:  # no read node answered (or the fan left meanwhile)
            lease.release()
    if lease.stream.status != 200:
        lease.release()
        if lease.stream.status == 404:
            negative.remember(f"/v1/events/{event}/seatmap")
        return await error_response(lease.stream)
    return ClosingStream(
        streams.relay(lease.stream),
        on_close=lease.release,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@get(
    "/v1/events/{event_id:str}/friends",
    summary="Friends who bought seats and share them",
    operation_class=documented(
        {200: Answer("Friends and their seats (from a read node)", {JSON: ANY_OBJECT})}
    ),
)
async def friends(request: Request[Any, Any, Any], event_id: FromPath[str]) -> Response[bytes]:
    event = parse_uuid(event_id, "event")
    user_id = fan_of(request)
    ip = await admit_rate(request, RouteClass.reads, user_id)
    pool: OriginPool = request.app.state.origins
    headers = forwarded_headers(request.headers, ip)
    headers["accept-encoding"] = "identity"
    try:
        answer = await pool.get(f"/v1/events/{event}/friends", headers)
    except OriginUnavailable:
        raise EdgeError(
            503, "origin_unavailable", "no read node answers; retry", {"Retry-After": "1"}
        ) from None
    return Response(
        answer.body,
        status_code=answer.status,
        media_type=answer.header("content-type") or JSON,
        headers={"Cache-Control": "private, no-store"},
    )


ROUTE_HANDLERS: list[Any] = [seatmap_stream, friends]
