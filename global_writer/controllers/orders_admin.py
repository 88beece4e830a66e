"""`POST /v1/admin/orders/{order_id}/refund` (X-Admin-Key): an organiser refunds one order
(global_writer/refunds.py; docs/payments.md, refunds)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, post
from litestar.params import FromPath

from global_writer import errors, refunds
from global_writer.controllers.common import parse_id, writer_of
from global_writer.schemas import encoder
from tessera import auth
from tessera.media import JSON
from tessera.openapi import Answer, documented


class OrdersAdminController(Controller):
    path = "/v1/admin/orders"
    tags = ["admin"]

    @post(
        "/{order_id:str}/refund",
        status_code=200,
        summary="Refund an order: seats back on sale, money back through the provider",
        operation_class=documented({200: Answer.json("The order, refunded", refunds.OrderRecord)}),
    )
    async def refund(
        self, request: Request[Any, Any, Any], order_id: FromPath[str]
    ) -> Response[bytes]:
        writer = writer_of(request)
        try:
            auth.check_admin_key(request.headers.get("x-admin-key"), writer.settings.admin_key)
        except auth.AuthError as error:
            raise errors.Unauthorized(str(error), reason=error.code) from None
        order = await refunds.refund_order(
            writer.conns.engine, writer.flows.events, parse_id(order_id, "order")
        )
        return Response(encoder.encode(order), media_type=JSON)
