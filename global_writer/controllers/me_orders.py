"""`GET /v1/me/orders`: the fan's orders, newest first, a page at a time; `POST
/v1/me/orders/{order_id}/cancel`: the fan cancels one within the event's window
(global_writer/refunds.py)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath

from global_writer import refunds
from global_writer.controllers.common import parse_id, user_of, writer_of
from global_writer.schemas import encoder
from tessera.media import JSON
from tessera.openapi import Answer, documented


class MeOrdersController(Controller):
    path = "/v1/me/orders"
    tags = ["orders"]

    @get(
        "/",
        summary="My orders, newest first (?limit=, ?cursor= from the previous page)",
        operation_class=documented({200: Answer.json("A page of my orders", refunds.OrdersPage)}),
    )
    async def my_orders(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        user_id = user_of(request)
        size = refunds.page_size(request.query_params.get("limit"))
        cursor = request.query_params.get("cursor")
        after = refunds.decode_cursor(cursor) if cursor else None
        page = await refunds.my_orders(writer_of(request).conns.engine, user_id, size, after)
        return Response(
            encoder.encode(page), media_type=JSON, headers={"Cache-Control": "private, no-store"}
        )

    @post(
        "/{order_id:str}/cancel",
        status_code=200,
        summary="Cancel my order within the event's window: refunded, seats back on sale",
        operation_class=documented({200: Answer.json("The order, refunded", refunds.OrderRecord)}),
    )
    async def cancel(
        self, request: Request[Any, Any, Any], order_id: FromPath[str]
    ) -> Response[bytes]:
        user_id = user_of(request)
        writer = writer_of(request)
        order = await refunds.fan_cancel(
            writer.conns.engine, writer.flows.events, user_id, parse_id(order_id, "order")
        )
        return Response(encoder.encode(order), media_type=JSON)
