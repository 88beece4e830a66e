"""`create_app()`: the regional read node. Seat maps are served by the bare-ASGI fast path
(regional/fastpath.py); the stream, friends, health and metrics by Litestar."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.params import FromPath
from litestar.response import Stream

from regional.fastpath import fast_seatmaps
from regional.feed import Feed
from regional.friends import FriendsIndex
from regional.metrics import RegionalMetrics
from regional.openapi import ROUTE_HANDLERS as FAST_PATH_DOCS
from regional.openapi import FriendsAnswer
from regional.settings import Settings, from_env
from regional.sse import Broadcaster
from regional.state import EventView
from tessera import auth, limits
from tessera.observability import configure_logging, render
from tessera.openapi import LAST_EVENT_ID, Answer, documented, seat_stream_answer

JSON = "application/json"


class ReaderError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_body(code: str, message: str) -> bytes:
    return msgspec.json.encode({"error": {"code": code, "message": message}})


def handle_reader_error(_: Request[Any, Any, Any], error: ReaderError) -> Response[bytes]:
    return Response(
        error_body(error.code, error.message), status_code=error.status, media_type=JSON
    )


def handle_http_exception(_: Request[Any, Any, Any], error: HTTPException) -> Response[bytes]:
    status = 422 if error.status_code == 400 else error.status_code
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "invalid_request")
    return Response(error_body(code, str(error.detail)), status_code=status, media_type=JSON)


def view_of(request: Request[Any, Any, Any], event_id: str) -> EventView:
    feed: Feed = request.app.state.feed
    try:
        view = feed.events.get(uuid.UUID(event_id))
    except ValueError:
        view = None
    if view is None:
        raise ReaderError(404, "not_found", "no such event")
    return view


@get(
    "/v1/events/{event_id:str}/seatmap/stream",
    summary="Seat changes as Server-Sent Events",
    operation_class=documented(
        {200: seat_stream_answer("A snapshot, then deltas")}, headers=[LAST_EVENT_ID]
    ),
)
async def seatmap_stream(request: Request[Any, Any, Any], event_id: FromPath[str]) -> Stream:
    view = view_of(request, event_id)
    broadcaster: Broadcaster = request.app.state.broadcaster
    if broadcaster.client_count >= limits.sse_clients_max:
        raise ReaderError(503, "unavailable", "too many stream clients; retry")
    client = broadcaster.add(view, request.headers.get("last-event-id"))
    return Stream(
        broadcaster.stream(client),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@get(
    "/v1/events/{event_id:str}/friends",
    summary="Friends who bought seats and share them",
    operation_class=documented({200: Answer.json("Friends and their seats", FriendsAnswer)}),
)
async def friends(request: Request[Any, Any, Any], event_id: FromPath[str]) -> Response[bytes]:
    view = view_of(request, event_id)
    settings: Settings = request.app.state.settings
    try:
        token = auth.bearer_token(request.headers.get("authorization"))
        user_id = auth.verify_token(token, settings.jwt_secret).user_id
    except auth.AuthError as error:
        raise ReaderError(401, "unauthorized", str(error)) from None
    index: FriendsIndex = request.app.state.friends
    body = {"event_id": event_id, "friends": index.friends_at(view.event_id, user_id)}
    return Response(msgspec.json.encode(body), media_type=JSON)


@get("/healthz", include_in_schema=False)
async def healthz() -> Response[bytes]:
    return Response(b'{"status":"ok"}', media_type=JSON)


@get("/readyz", include_in_schema=False)
async def readyz(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Ready only when caught up with the region's stream."""
    feed: Feed = request.app.state.feed
    ready = feed.caught_up and feed.nc.is_connected
    body = msgspec.json.encode(
        {
            "status": "ready" if ready else "not_ready",
            "events": len(feed.events),
            "seq": feed.seats_seq,
        }
    )
    return Response(body, status_code=200 if ready else 503, media_type=JSON)


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    body, content_type = render(request.app.state.metrics.registry)
    return Response(body, media_type=content_type)


def create_app(settings: Settings | None = None) -> Any:
    settings = settings or from_env()
    configure_logging("regional")
    metrics = RegionalMetrics()
    friends_index = FriendsIndex()
    broadcaster = Broadcaster(metrics)
    feed = Feed(settings, friends_index, broadcaster, metrics)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.feed = feed
        app.state.friends = friends_index
        app.state.broadcaster = broadcaster
        app.state.metrics = metrics
        await feed.start()
        ticker = asyncio.create_task(broadcaster.run())
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            await feed.stop()

    app = Litestar(
        route_handlers=[
            *FAST_PATH_DOCS,
            seatmap_stream,
            friends,
            healthz,
            readyz,
            metrics_endpoint,
        ],
        lifespan=[lifespan],
        exception_handlers={ReaderError: handle_reader_error, HTTPException: handle_http_exception},
        openapi_config=OpenAPIConfig(
            title="Tessera regional read node", version="0.1.0", path="/schema"
        ),
    )
    return fast_seatmaps(app, feed, metrics)
