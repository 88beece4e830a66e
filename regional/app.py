"""`create_app()`: the regional read node. Seat maps are served by the bare-ASGI fast path
(regional/fastpath.py); the stream, friends, health and metrics by Litestar."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get
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
from tessera.identity import Verifier
from tessera.observability import configure_logging
from tessera.openapi import LAST_EVENT_ID, Answer, documented, seat_stream_answer
from tessera.requests import AccessLog
from tessera.web import JSON, ApiError, ClosingStream, exception_handlers, operations_routes


class ReaderError(ApiError):
    """A refusal of the read node's, on the kernel's one error base (tessera/web.py)."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message, status=status, code=code, **details)


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
    return ClosingStream(
        broadcaster.stream(client),
        on_close=lambda: broadcaster.remove(client),
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
    verifier: Verifier = request.app.state.verifier
    try:
        user_id = verifier.user_id(request.headers.get("authorization"))
    except auth.AuthError as error:
        raise ReaderError(401, "unauthorized", str(error), reason=error.code) from None
    index: FriendsIndex = request.app.state.friends
    body = {"event_id": event_id, "friends": index.friends_at(view.event_id, user_id)}
    return Response(msgspec.json.encode(body), media_type=JSON)


async def readiness(request: Request[Any, Any, Any]) -> Mapping[str, object]:
    """Ready only when caught up with the region's stream."""
    feed: Feed = request.app.state.feed
    return {
        "caught_up": feed.caught_up,
        "nats": feed.nc.is_connected,
        "events": len(feed.events),
        "seq": feed.seats_seq,
    }


def create_app(settings: Settings | None = None) -> Any:
    settings = settings or from_env()
    configure_logging("regional")
    metrics = RegionalMetrics()
    friends_index = FriendsIndex(metrics.registry)
    broadcaster = Broadcaster(metrics)
    feed = Feed(settings, friends_index, broadcaster, metrics)

    verifier = Verifier(settings.identity)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.feed = feed
        app.state.friends = friends_index
        app.state.broadcaster = broadcaster
        app.state.metrics = metrics
        app.state.verifier = verifier
        await verifier.refresh()  # the identity provider's keys before the first request
        await feed.start()
        tasks = [asyncio.create_task(broadcaster.run()), asyncio.create_task(verifier.keep_fresh())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await feed.stop()

    app = Litestar(
        # Logging is tessera.observability's JSON lines: Litestar would install its own format.
        logging_config=None,
        route_handlers=[
            *FAST_PATH_DOCS,
            seatmap_stream,
            friends,
            *operations_routes(readiness),
        ],
        lifespan=[lifespan],
        exception_handlers=exception_handlers(),
        openapi_config=OpenAPIConfig(
            title="Tessera regional read node", version="0.1.0", path="/schema"
        ),
    )
    return AccessLog(fast_seatmaps(app, feed, metrics), "regional")
