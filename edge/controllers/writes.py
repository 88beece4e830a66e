"""Holds, orders and the fan's own records, passed through to the global writer after the rate
limits and, for an event whose waiting room is on, the admission check.

Orders, extensions and releases name a hold, not an event: the edge remembers which event each
hold it passed belongs to (Redis, shared by the region's edges) and asks the writer otherwise.
When neither knows, the request goes on unchecked: the writer refuses a hold that does not exist,
and a hold that does was admission-checked when it was made."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import msgspec
import redis.asyncio as aioredis
from litestar import Request, Response, delete, get, post, put
from litestar.params import FromPath

from edge.controllers import read_body
from edge.errors import EdgeError
from edge.fans import admit_rate, fan_of
from edge.passthrough import WriterProxy, forwarded_headers
from edge.settings import RouteClass
from edge.waiting_room import ADMISSION_HEADER, WaitingRoom
from tessera import auth, limits
from tessera.openapi import (
    ADMISSION_TOKEN,
    ANY_OBJECT,
    IDEMPOTENCY_KEY,
    JSON,
    Answer,
    documented,
)

HOLD_EVENT_KEY = "tessera:edge:hold:{}"
# The writer's answers and bodies pass through unchanged; the writer's own OpenAPI document
# (docs/api.md) has their shapes.
WRITER_ANSWER = Answer("The writer's answer, unchanged", {JSON: ANY_OBJECT})
WRITER_BODY = dict[str, Any]
GUARDED = (IDEMPOTENCY_KEY, ADMISSION_TOKEN)


class HoldCreated(msgspec.Struct):
    hold_id: uuid.UUID
    event_id: uuid.UUID


class OrderBody(msgspec.Struct):
    hold_id: uuid.UUID


hold_created_decoder = msgspec.json.Decoder(HoldCreated)
order_body_decoder = msgspec.json.Decoder(OrderBody)


def parse_uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise EdgeError(404, "not_found", f"no {what} {value[:64]!r}") from None


async def event_of_hold(request: Request[Any, Any, Any], hold_id: uuid.UUID) -> uuid.UUID | None:
    redis: aioredis.Redis = request.app.state.redis
    with contextlib.suppress(aioredis.RedisError, OSError, ValueError):
        known = await redis.get(HOLD_EVENT_KEY.format(hold_id))
        if known is not None:
            return uuid.UUID(known.decode() if isinstance(known, bytes) else known)
    proxy: WriterProxy = request.app.state.writer
    headers = forwarded_headers(request.headers, "edge")
    response = await proxy.send("GET", f"/v1/holds/{hold_id}", headers)
    if response.status_code != 200:
        return None
    with contextlib.suppress(msgspec.DecodeError):
        return hold_created_decoder.decode(response.content).event_id
    return None


async def remember_hold(request: Request[Any, Any, Any], body: bytes) -> None:
    with contextlib.suppress(msgspec.DecodeError):
        created = hold_created_decoder.decode(body)
        redis: aioredis.Redis = request.app.state.redis
        with contextlib.suppress(aioredis.RedisError, OSError):
            await redis.set(
                HOLD_EVENT_KEY.format(created.hold_id),
                str(created.event_id),
                ex=limits.edge_hold_event_ttl_s,
            )


async def guarded_write(
    request: Request[Any, Any, Any],
    route_class: RouteClass,
    path: str,
    *,
    event_id: uuid.UUID | None = None,
    hold_id: uuid.UUID | None = None,
) -> Response[bytes]:
    user_id = fan_of(request)
    ip = await admit_rate(request, route_class, user_id)
    body = await read_body(request) if request.method in ("POST", "PUT") else b""
    if hold_id is None and route_class is RouteClass.orders:
        with contextlib.suppress(msgspec.DecodeError):
            hold_id = order_body_decoder.decode(body).hold_id
    room: WaitingRoom = request.app.state.room
    if event_id is None and hold_id is not None:
        event_id = await event_of_hold(request, hold_id)
    if event_id is not None:
        await room.check_admission(event_id, user_id, request.headers.get(ADMISSION_HEADER))
    proxy: WriterProxy = request.app.state.writer
    response = await proxy.forward(
        request.method, path, forwarded_headers(request.headers, ip), body
    )
    if response.status_code == 201 and path.endswith("/holds"):
        await remember_hold(request, response.content)
    return response


@post(
    "/v1/events/{event_id:str}/holds",
    summary="Hold seats (passed to the writer)",
    operation_class=documented({201: WRITER_ANSWER}, body=WRITER_BODY, headers=GUARDED),
)
async def create_hold(request: Request[Any, Any, Any], event_id: FromPath[str]) -> Response[bytes]:
    event = parse_uuid(event_id, "event")
    return await guarded_write(
        request, RouteClass.holds, f"/v1/events/{event}/holds", event_id=event
    )


@post(
    "/v1/holds/{hold_id:str}/extend",
    summary="Extend a hold once (passed to the writer)",
    operation_class=documented({200: WRITER_ANSWER}, headers=GUARDED),
)
async def extend_hold(request: Request[Any, Any, Any], hold_id: FromPath[str]) -> Response[bytes]:
    hold = parse_uuid(hold_id, "hold")
    return await guarded_write(request, RouteClass.holds, f"/v1/holds/{hold}/extend", hold_id=hold)


@delete(
    "/v1/holds/{hold_id:str}",
    status_code=200,
    summary="Release a hold (passed on)",
    operation_class=documented(
        {204: Answer("Released (the writer's answer)")}, headers=[ADMISSION_TOKEN]
    ),
)
async def release_hold(request: Request[Any, Any, Any], hold_id: FromPath[str]) -> Response[bytes]:
    hold = parse_uuid(hold_id, "hold")
    return await guarded_write(request, RouteClass.holds, f"/v1/holds/{hold}", hold_id=hold)


@post(
    "/v1/orders",
    summary="Buy a hold (passed to the writer)",
    operation_class=documented({201: WRITER_ANSWER}, body=WRITER_BODY, headers=GUARDED),
)
async def create_order(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await guarded_write(request, RouteClass.orders, "/v1/orders")


async def fan_read(request: Request[Any, Any, Any], path: str) -> Response[bytes]:
    user_id = fan_of(request)
    ip = await admit_rate(request, RouteClass.reads, user_id)
    proxy: WriterProxy = request.app.state.writer
    return await proxy.forward("GET", path, forwarded_headers(request.headers, ip))


@get(
    "/v1/holds/{hold_id:str}",
    summary="A hold (owner; from the writer)",
    operation_class=documented({200: WRITER_ANSWER}),
)
async def get_hold(request: Request[Any, Any, Any], hold_id: FromPath[str]) -> Response[bytes]:
    return await fan_read(request, f"/v1/holds/{parse_uuid(hold_id, 'hold')}")


@get(
    "/v1/orders/{order_id:str}",
    summary="An order (owner; from the writer)",
    operation_class=documented({200: WRITER_ANSWER}),
)
async def get_order(request: Request[Any, Any, Any], order_id: FromPath[str]) -> Response[bytes]:
    return await fan_read(request, f"/v1/orders/{parse_uuid(order_id, 'order')}")


@get(
    "/v1/me",
    summary="My sharing choice and friends (from the writer)",
    operation_class=documented({200: WRITER_ANSWER}),
)
async def get_me(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await fan_read(request, "/v1/me")


@put(
    "/v1/me/sharing",
    summary="Share my purchases with my friends (passed on)",
    operation_class=documented({200: WRITER_ANSWER}, body=WRITER_BODY),
)
async def put_sharing(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await guarded_write(request, RouteClass.holds, "/v1/me/sharing")


@put(
    "/v1/me/contact",
    summary="Where order confirmations go (passed on)",
    operation_class=documented({200: WRITER_ANSWER}, body=WRITER_BODY),
)
async def put_contact(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await guarded_write(request, RouteClass.holds, "/v1/me/contact")


@put(
    "/v1/me/friends/{friend_id:str}",
    summary="Add a friend (passed on)",
    operation_class=documented({200: WRITER_ANSWER}),
)
async def put_friend(request: Request[Any, Any, Any], friend_id: FromPath[str]) -> Response[bytes]:
    return await guarded_write(
        request, RouteClass.holds, f"/v1/me/friends/{friend_path(friend_id)}"
    )


@delete(
    "/v1/me/friends/{friend_id:str}",
    status_code=200,
    summary="Remove a friend (passed on)",
    operation_class=documented({200: WRITER_ANSWER}),
)
async def delete_friend(
    request: Request[Any, Any, Any], friend_id: FromPath[str]
) -> Response[bytes]:
    return await guarded_write(
        request, RouteClass.holds, f"/v1/me/friends/{friend_path(friend_id)}"
    )


def friend_path(friend_id: str) -> str:
    if not auth.is_user_id(friend_id):
        raise EdgeError(404, "not_found", "no such user")
    return friend_id


ROUTE_HANDLERS: list[Any] = [
    create_hold,
    extend_hold,
    release_hold,
    create_order,
    get_hold,
    get_order,
    get_me,
    put_sharing,
    put_contact,
    put_friend,
    delete_friend,
]
