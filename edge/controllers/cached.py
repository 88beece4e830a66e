"""The cached GETs in the OpenAPI document: the bare-ASGI fast path (edge/fastpath.py) answers
every `GET`/`HEAD` of these paths before Litestar routes anything, so the handlers here only
declare them; they are reached only by paths it does not take (a trailing slash), which name
nothing cached."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from litestar import Response, get
from litestar.params import FromPath, QueryParameter

from edge.errors import EdgeError
from tessera.openapi import Answer, EventDocument, documented, seat_map

Format = Annotated[
    Literal["binary", "json"],
    QueryParameter(name="format", description="`binary` (docs/seatmap-format.md) or `json`"),
]


def not_cached() -> EdgeError:
    return EdgeError(404, "not_found", "no such event or section")


@get(
    "/v1/events/{event_id:str}",
    summary="The event, its sections, rows, seat ids and price tiers (cached from the writer)",
    operation_class=documented({200: Answer.json("The event", EventDocument)}),
)
async def event_details(event_id: FromPath[str]) -> Response[bytes]:
    raise not_cached()


@get(
    "/v1/events/{event_id:str}/seatmap",
    summary="The event's seat map (cached from the read nodes)",
    operation_class=seat_map("The seat map, encoded per Accept-Encoding"),
)
async def event_seatmap(event_id: FromPath[str], fmt: Format = "binary") -> Response[bytes]:
    raise not_cached()


@get(
    "/v1/events/{event_id:str}/sections/{section_id:str}/seatmap",
    summary="One section's seat map (cached from the read nodes)",
    operation_class=seat_map("The section map, encoded per Accept-Encoding"),
)
async def section_seatmap(
    event_id: FromPath[str], section_id: FromPath[str], fmt: Format = "binary"
) -> Response[bytes]:
    raise not_cached()


ROUTE_HANDLERS: Final[list[Any]] = [event_details, event_seatmap, section_seatmap]
