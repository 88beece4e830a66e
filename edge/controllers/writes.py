"""Holds, orders and the fan's own records, passed through to the global writer after the rate
limits and, for an event whose waiting room is on, the admission check.

Every write that needs an admission check names its event in its path (holds, extend, release,
orders), so the check needs no lookup. The four hot writes are answered by the bare-ASGI fast
path (edge/fastwrites.py) before Litestar routes anything; their handlers here document them and
answer the spellings the fast path does not take (a trailing slash), with the same steps."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request, Response, delete, get, post, put
from litestar.params import FromPath

from edge.controllers import read_body
from edge.errors import EdgeError
from edge.fans import admit_rate, fan_of
from edge.passthrough import WriterProxy, forwarded_headers, wire
from edge.settings import RouteClass
from edge.waiting_room import ADMISSION_HEADER, WaitingRoom
from tessera import auth
from tessera.media import JSON
from tessera.openapi import (
    ADMISSION_TOKEN,
    ANY_OBJECT,
    IDEMPOTENCY_KEY,
    Answer,
    documented,
)

# The writer's answers and bodies pass through unchanged; the writer's own OpenAPI document
# (docs/api.md) has their shapes.
WRITER_ANSWER = Answer("The writer's answer, unchanged", {JSON: ANY_OBJECT})
WRITER_BODY = dict[str, Any]
GUARDED = (IDEMPOTENCY_KEY, ADMISSION_TOKEN)


def parse_uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise EdgeError(404, "not_found", f"no {what} {value[:64]!r}") from None


async def guarded_write(
    request: Request[Any, Any, Any],
    route_class: RouteClass,
    path: str,
    *,
    event_id: uuid.UUID | None = None,
) -> Response[bytes]:
    proxy: WriterProxy = request.app.state.writer
    proxy.check()
    user_id = fan_of(request)
    ip = await admit_rate(request, route_class, user_id)
    body = await read_body(request) if request.method in ("POST", "PUT") else b""
    if event_id is not None:
        room: WaitingRoom = request.app.state.room
        await room.check_admission(event_id, user_id, request.headers.get(ADMISSION_HEADER))
    headers = wire(forwarded_headers(request.headers, ip))
    return await proxy.forward(request.method, path, headers, body)


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
    "/v1/events/{event_id:str}/holds/{hold_id:str}/extend",
    summary="Extend a hold once (passed to the writer)",
    operation_class=documented({200: WRITER_ANSWER}, headers=GUARDED),
)
async def extend_hold(
    request: Request[Any, Any, Any], event_id: FromPath[str], hold_id: FromPath[str]
) -> Response[bytes]:
    event, hold = parse_uuid(event_id, "event"), parse_uuid(hold_id, "hold")
    path = f"/v1/events/{event}/holds/{hold}/extend"
    return await guarded_write(request, RouteClass.holds, path, event_id=event)


@delete(
    "/v1/events/{event_id:str}/holds/{hold_id:str}",
    status_code=200,
    summary="Release a hold (passed on)",
    operation_class=documented(
        {204: Answer("Released (the writer's answer)")}, headers=[ADMISSION_TOKEN]
    ),
)
async def release_hold(
    request: Request[Any, Any, Any], event_id: FromPath[str], hold_id: FromPath[str]
) -> Response[bytes]:
    event, hold = parse_uuid(event_id, "event"), parse_uuid(hold_id, "hold")
    path = f"/v1/events/{event}/holds/{hold}"
    return await guarded_write(request, RouteClass.holds, path, event_id=event)


@post(
    "/v1/events/{event_id:str}/orders",
    summary="Buy a hold (passed to the writer)",
    operation_class=documented({201: WRITER_ANSWER}, body=WRITER_BODY, headers=GUARDED),
)
async def create_order(request: Request[Any, Any, Any], event_id: FromPath[str]) -> Response[bytes]:
    event = parse_uuid(event_id, "event")
    return await guarded_write(
        request, RouteClass.orders, f"/v1/events/{event}/orders", event_id=event
    )


async def fan_read(request: Request[Any, Any, Any], path: str) -> Response[bytes]:
    user_id = fan_of(request)
    ip = await admit_rate(request, RouteClass.reads, user_id)
    proxy: WriterProxy = request.app.state.writer
    return await proxy.forward("GET", path, wire(forwarded_headers(request.headers, ip)))


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
