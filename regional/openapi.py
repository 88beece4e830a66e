"""The read node's OpenAPI document: what the bare-ASGI fast path (regional/fastpath.py) serves,
declared by handlers it shadows, and the shapes of the Litestar-served answers.

The fast path answers every `GET`/`HEAD` of the two seat-map paths before Litestar routes
anything; the handlers here are reached only by paths it does not take (a trailing slash), which
name no seat map."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec
from litestar import Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter

from tessera.openapi import seat_map

Format = Annotated[
    Literal["binary", "json"],
    QueryParameter(name="format", description="`binary` (docs/seatmap-format.md) or `json`"),
]


class FriendSeats(msgspec.Struct):
    user_id: str
    seats: list[str]


class FriendsAnswer(msgspec.Struct):
    """`GET /v1/events/{event_id}/friends` (regional/friends.py)."""

    event_id: str
    friends: list[FriendSeats]


@get(
    "/v1/events/{event_id:str}/seatmap",
    summary="The event's seat map: every section, with its version",
    operation_class=seat_map("The seat map, encoded per Accept-Encoding"),
)
async def event_seatmap(event_id: FromPath[str], fmt: Format = "binary") -> Response[bytes]:
    raise NotFoundException("no such seat map")


@get(
    "/v1/events/{event_id:str}/sections/{section_id:str}/seatmap",
    summary="One section's seat map, with its version",
    operation_class=seat_map("The section map, encoded per Accept-Encoding"),
)
async def section_seatmap(
    event_id: FromPath[str], section_id: FromPath[str], fmt: Format = "binary"
) -> Response[bytes]:
    raise NotFoundException("no such seat map")


ROUTE_HANDLERS: Final[list[Any]] = [event_seatmap, section_seatmap]
