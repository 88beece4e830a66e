from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath

from global_writer.controllers.common import (
    body_of,
    idem_of,
    parse_id,
    reply,
    user_of,
    writer_of,
)
from global_writer.schemas import CreateOrder, OrderView, decode, encoder
from tessera.media import JSON
from tessera.openapi import IDEMPOTENCY_KEY, Answer, documented

ORDER_ANSWER = Answer.json("The order", OrderView)


class Created(msgspec.Struct):
    order_id: str


_created = msgspec.json.Decoder(Created)


def order_location(body: bytes) -> str | None:
    """Where a created order can be read: `/v1/orders/{id}`."""
    try:
        return f"/v1/orders/{_created.decode(body).order_id}"
    except msgspec.DecodeError:
        return None


class OrdersController(Controller):
    path = "/v1"
    tags = ["orders"]

    @post(
        "/events/{event_id:str}/orders",
        summary="Buy a hold of the event (Bearer, Idempotency-Key, payment token)",
        operation_class=documented(
            {201: ORDER_ANSWER}, body=CreateOrder, headers=[IDEMPOTENCY_KEY]
        ),
    )
    async def create_order(
        self, request: Request[Any, Any, Any], event_id: FromPath[str]
    ) -> Response[bytes]:
        user_id = user_of(request)
        event = parse_id(event_id, "event")
        raw = await body_of(request)
        body = decode(CreateOrder, raw)
        idem = idem_of(request, user_id, raw)
        result = await writer_of(request).flows.checkout(user_id, event, body, idem)
        return reply(result, order_location(result.body) if result.status == 201 else None)

    @get(
        "/orders/{order_id:str}",
        summary="An order (owner only)",
        operation_class=documented({200: ORDER_ANSWER}),
    )
    async def get_order(
        self, request: Request[Any, Any, Any], order_id: FromPath[str]
    ) -> Response[bytes]:
        user_id = user_of(request)
        view = await writer_of(request).flows.get_order(user_id, parse_id(order_id, "order"))
        return Response(encoder.encode(view), media_type=JSON)
