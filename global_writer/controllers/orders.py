from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath

from global_writer.controllers.common import (
    JSON,
    body_of,
    idem_of,
    parse_id,
    reply,
    user_of,
    writer_of,
)
from global_writer.schemas import CreateOrder, OrderView, decode, encoder
from tessera.openapi import IDEMPOTENCY_KEY, Answer, documented

ORDER_ANSWER = Answer.json("The order", OrderView)


class OrdersController(Controller):
    path = "/v1/orders"
    tags = ["orders"]

    @post(
        "/",
        summary="Buy a hold (Bearer, Idempotency-Key, payment token)",
        operation_class=documented(
            {201: ORDER_ANSWER}, body=CreateOrder, headers=[IDEMPOTENCY_KEY]
        ),
    )
    async def create_order(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        user_id = user_of(request)
        raw = await body_of(request)
        body = decode(CreateOrder, raw)
        idem = idem_of(request, user_id, raw)
        writer = writer_of(request)
        return reply(await writer.checkout(user_id, body.hold_id, body.payment_token, idem))

    @get(
        "/{order_id:str}",
        summary="An order (owner only)",
        operation_class=documented({200: ORDER_ANSWER}),
    )
    async def get_order(
        self, request: Request[Any, Any, Any], order_id: FromPath[str]
    ) -> Response[bytes]:
        user_id = user_of(request)
        view = await writer_of(request).get_order(user_id, parse_id(order_id, "order"))
        return Response(encoder.encode(view), media_type=JSON)
