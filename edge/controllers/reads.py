"""Reads that are not cached: the seat-change stream (proxied unbuffered from a read node) and the
fan's friends at an event (per fan, so never shared in a cache)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.params import FromPath
from litestar.response import Stream

from edge.controllers.writes import parse_uuid
from edge.errors import JSON, EdgeError
from edge.fans import admit_rate, fan_of
from edge.origins import OriginPool, OriginUnavailable
from edge.passthrough import StreamProxy, error_response, forwarded_headers, wire
from edge.settings import RouteClass
from tessera import limits
from tessera.openapi import ANY_OBJECT, LAST_EVENT_ID, Answer, documented, seat_stream_answer


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
) -> Stream | Response[bytes]:
    event = parse_uuid(event_id, "event")
    ip = await admit_rate(request, RouteClass.reads, None)
    streams: StreamProxy = request.app.state.streams
    if streams.clients >= limits.edge_sse_clients_max:
        raise EdgeError(503, "unavailable", "too many stream clients; retry", {"Retry-After": "5"})
    headers = forwarded_headers(request.headers, ip)
    headers["accept"] = "text/event-stream"
    stream = await streams.open(f"/v1/events/{event}/seatmap/stream", wire(headers))
    if stream.status != 200:
        return await error_response(stream)
    return Stream(
        streams.relay(stream),
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
