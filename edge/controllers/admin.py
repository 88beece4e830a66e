"""The waiting room's admin endpoints (`X-Admin-Key`, as on the writer). Each answers 200 with
the room's settings and stats (`RoomView`); `GET`, `open` and `close` on an event without a room
are 404 `not_found` (a `PUT` creates it, every field optional, defaults in waiting_room.py).

- `PUT /v1/admin/events/{event_id}/waiting-room`: create or change the room;
- `GET /v1/admin/events/{event_id}/waiting-room`: settings and stats;
- `POST /v1/admin/events/{event_id}/waiting-room/open`: open the gate now (or resume);
- `POST /v1/admin/events/{event_id}/waiting-room/close`: freeze admission.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from litestar import Request, Response, get, post, put
from litestar.params import FromPath

from edge.controllers import (
    BODY_BYTES_MAX,
    check_admin,
    decode,
    json_response,
    parse_event_id,
    read_body,
    room_of,
)
from edge.waiting_room import RoomUpdate, RoomView
from tessera.openapi import Answer, documented

PATH: Final = "/v1/admin/events/{event_id:str}/waiting-room"
_UPDATE_DECODER: Final = msgspec.json.Decoder(RoomUpdate)
ROOM_ANSWER: Final = Answer.json("The room's settings and stats", RoomView)


@put(
    PATH,
    summary="Configure the event's waiting room (X-Admin-Key)",
    operation_class=documented({200: ROOM_ANSWER}, body=RoomUpdate),
    request_max_body_size=BODY_BYTES_MAX,
)
async def configure_room(
    request: Request[Any, Any, Any], event_id: FromPath[str]
) -> Response[bytes]:
    check_admin(request)
    event = parse_event_id(event_id)
    update = decode(_UPDATE_DECODER, await read_body(request))
    return json_response(await room_of(request).configure(event, update))


@get(
    PATH,
    summary="The event's waiting room: settings and stats (X-Admin-Key)",
    operation_class=documented({200: ROOM_ANSWER}),
)
async def view_room(request: Request[Any, Any, Any], event_id: FromPath[str]) -> Response[bytes]:
    check_admin(request)
    return json_response(await room_of(request).view(parse_event_id(event_id)))


@post(
    f"{PATH}/open",
    status_code=200,
    summary="Open the gate now (X-Admin-Key)",
    operation_class=documented({200: ROOM_ANSWER}),
    request_max_body_size=BODY_BYTES_MAX,
)
async def open_room(request: Request[Any, Any, Any], event_id: FromPath[str]) -> Response[bytes]:
    check_admin(request)
    return json_response(await room_of(request).open(parse_event_id(event_id)))


@post(
    f"{PATH}/close",
    status_code=200,
    summary="Freeze admission (X-Admin-Key)",
    operation_class=documented({200: ROOM_ANSWER}),
    request_max_body_size=BODY_BYTES_MAX,
)
async def close_room(request: Request[Any, Any, Any], event_id: FromPath[str]) -> Response[bytes]:
    check_admin(request)
    return json_response(await room_of(request).close(parse_event_id(event_id)))


ROUTE_HANDLERS: Final[list[Any]] = [configure_room, view_room, open_room, close_room]
