"""What the writer serves to fans, door staff and the payment provider beyond holds and orders,
passed through the edge: production's writer is on an internal load balancer, so without these
routes nobody on the internet could fetch a ticket, scan one at the door, or deliver a Stripe
webhook (docs/tickets.md, docs/payments.md).

The edge adds nothing but its rate budgets and the headers the writer needs; the writer checks
every credential itself (the fan's token, the door staff key, Stripe's signature), so an edge
holds none of those secrets."""

from __future__ import annotations

from typing import Any, Final, Literal
from urllib.parse import urlencode

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery

from edge.controllers import read_body
from edge.controllers.writes import (
    WRITER_ANSWER,
    WRITER_BODY,
    fan_read,
    guarded_write,
    parse_uuid,
)
from edge.fans import admit_rate
from edge.passthrough import WriterProxy, forwarded_headers, wire
from edge.settings import RouteClass
from tessera import limits
from tessera.openapi import BINARY_SCHEMA, Answer, Header, documented

STAFF_KEY: Final = Header("X-Staff-Key", "A door staff credential (checked by the writer)")
STRIPE_SIGNATURE: Final = Header("Stripe-Signature", "Stripe's signature (checked by the writer)")
QR_ANSWER: Final = Answer(
    "The QR code (the writer's answer)",
    {"image/svg+xml": BINARY_SCHEMA, "image/png": BINARY_SCHEMA},
)


async def pass_on(
    request: Request[Any, Any, Any],
    route_class: RouteClass,
    path: str,
    *extra: str,
    body_bytes_max: int = limits.fan_request_body_bytes_max,
) -> Response[bytes]:
    """An unauthenticated caller's request (its own credential, if any, is for the writer):
    charged to the class's anonymous budgets, then forwarded with the `extra` headers it sent."""
    ip = await admit_rate(request, route_class, None)
    body = await read_body(request, body_bytes_max) if request.method == "POST" else b""
    headers = forwarded_headers(request.headers, ip)
    for name in extra:
        if name in request.headers:
            headers[name] = request.headers[name]
    proxy: WriterProxy = request.app.state.writer
    return await proxy.forward(request.method, path, wire(headers), body)


@get(
    "/v1/tickets/keys",
    summary="The ticket verification keys, for offline scanners (from the writer)",
    operation_class=documented({200: WRITER_ANSWER}),
)
async def ticket_keys(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await pass_on(request, RouteClass.reads, "/v1/tickets/keys")


@post(
    "/v1/tickets/scan",
    status_code=200,
    summary="Admit a ticket at the door (passed to the writer)",
    operation_class=documented({200: WRITER_ANSWER}, body=WRITER_BODY, headers=[STAFF_KEY]),
)
async def scan_ticket(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await pass_on(request, RouteClass.orders, "/v1/tickets/scan", "x-staff-key")


@post(
    "/v1/payments/stripe/webhook",
    status_code=200,
    summary="Stripe's webhook (passed to the writer, body untouched)",
    operation_class=documented({200: WRITER_ANSWER}, body=WRITER_BODY, headers=[STRIPE_SIGNATURE]),
)
async def stripe_webhook(request: Request[Any, Any, Any]) -> Response[bytes]:
    # The signature covers the exact bytes: read_body hands them on unparsed.
    path = "/v1/payments/stripe/webhook"
    return await pass_on(
        request,
        RouteClass.orders,
        path,
        "stripe-signature",
        body_bytes_max=limits.payment_webhook_body_bytes_max,
    )


@get(
    "/v1/me/orders/{order_id:str}/tickets",
    summary="My order's tickets (owner; from the writer)",
    operation_class=documented({200: WRITER_ANSWER}),
)
async def order_tickets(
    request: Request[Any, Any, Any], order_id: FromPath[str]
) -> Response[bytes]:
    return await fan_read(request, f"/v1/me/orders/{parse_uuid(order_id, 'order')}/tickets")


@get(
    "/v1/me/orders/{order_id:str}/tickets/{ticket_id:str}/qr",
    summary="One of my tickets as a QR code (owner; from the writer)",
    operation_class=documented({200: QR_ANSWER}),
)
async def ticket_qr(
    request: Request[Any, Any, Any],
    order_id: FromPath[str],
    ticket_id: FromPath[str],
    format: FromQuery[Literal["svg", "png"]] = "svg",
) -> Response[bytes]:
    order, ticket = parse_uuid(order_id, "order"), parse_uuid(ticket_id, "ticket")
    path = f"/v1/me/orders/{order}/tickets/{ticket}/qr?format={format}"
    return await fan_read(request, path)


@get(
    "/v1/me/orders",
    summary="My orders, newest first (owner; from the writer)",
    operation_class=documented({200: WRITER_ANSWER}),
)
async def my_orders(
    request: Request[Any, Any, Any],
    limit: FromQuery[int | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Response[bytes]:
    # Only the two parameters the writer reads, re-encoded: nothing else of the fan's query
    # string reaches it. The writer checks their values (422).
    query = {"limit": limit, "cursor": cursor}
    encoded = urlencode({name: value for name, value in query.items() if value is not None})
    return await fan_read(request, f"/v1/me/orders{'?' + encoded if encoded else ''}")


@post(
    "/v1/me/orders/{order_id:str}/cancel",
    status_code=200,
    summary="Cancel my order within the event's window (passed to the writer)",
    operation_class=documented({200: WRITER_ANSWER}),
)
async def cancel_order(request: Request[Any, Any, Any], order_id: FromPath[str]) -> Response[bytes]:
    path = f"/v1/me/orders/{parse_uuid(order_id, 'order')}/cancel"
    return await guarded_write(request, RouteClass.orders, path)


ROUTE_HANDLERS = [
    ticket_keys,
    scan_ticket,
    stripe_webhook,
    order_tickets,
    ticket_qr,
    my_orders,
    cancel_order,
]
