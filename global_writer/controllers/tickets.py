"""Tickets (docs/tickets.md): the published verification keys, the door's scan, and a fan's own
tickets with their QR codes."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Final, Literal

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery

from global_writer import errors
from global_writer import tickets as door
from global_writer.controllers.common import body_of, parse_id, user_of, writer_of
from global_writer.schemas import encoder
from tessera import limits
from tessera import tickets as tk
from tessera.media import JSON
from tessera.openapi import BINARY_SCHEMA, Answer, Header, documented

GATE_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9 ._:-]*$"
SVG: Final = "image/svg+xml"
PNG: Final = "image/png"
JWKS_MEDIA: Final = "application/jwk-set+json"


class ScanRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """What a gate sends: the QR code's text, the event it admits to, its own name, and
    optionally an id for this scan, so the scanner's retry of it is answered `admitted` again."""

    token: Annotated[str, msgspec.Meta(min_length=1, max_length=limits.ticket_token_chars_max)]
    event_id: uuid.UUID
    gate: Annotated[
        str, msgspec.Meta(min_length=1, max_length=limits.door_gate_chars_max, pattern=GATE_PATTERN)
    ]
    scan_id: uuid.UUID | None = None


_scan_decoder: Final = msgspec.json.Decoder(ScanRequest)

STAFF_KEY: Final = Header(
    "X-Staff-Key", "A door staff credential (TESSERA_DOOR_STAFF_KEYS)", required=True
)


class TicketsController(Controller):
    path = "/v1"
    tags = ["tickets"]

    @get(
        "/tickets/keys",
        summary="The ticket verification keys, a JWK set (Ed25519), for offline scanners",
        operation_class=documented({200: Answer("The published keys", {JWKS_MEDIA: tk.Jwks})}),
    )
    async def keys(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        jwks = writer_of(request).ticket_ring.keys.to_jwks()
        return Response(
            tk.jwks_encoder.encode(jwks),
            media_type=JWKS_MEDIA,
            headers={"Cache-Control": f"public, max-age={limits.ticket_keys_max_age_s}"},
        )

    @post(
        "/tickets/scan",
        status_code=200,
        summary="Admit a ticket at the door, exactly once (X-Staff-Key)",
        operation_class=documented(
            {200: Answer.json("Admitted", door.Admitted)}, body=ScanRequest, headers=[STAFF_KEY]
        ),
    )
    async def scan(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        writer = writer_of(request)
        staff = door.staff_name(request.headers.get(door.STAFF_KEY_HEADER), writer.door_staff)
        raw = await body_of(request, limits.door_scan_body_bytes_max)
        try:
            body = _scan_decoder.decode(raw)
        except msgspec.ValidationError as error:
            raise errors.InvalidRequest(str(error)) from None
        except msgspec.DecodeError as error:
            raise errors.MalformedJson(f"request body is not valid JSON: {error}") from None
        result = await door.scan(
            writer.conns.autocommit_engine,
            writer.ticket_ring.keys,
            token=body.token,
            event_id=body.event_id,
            gate=body.gate,
            staff=staff,
            scan_id=body.scan_id or uuid.uuid4(),
        )
        return Response(encoder.encode(result), media_type=JSON)

    @get(
        "/me/orders/{order_id:str}/tickets",
        summary="My order's tickets, one per seat, with their tokens (owner only)",
        operation_class=documented({200: Answer.json("The tickets", door.OrderTickets)}),
    )
    async def order_tickets(
        self, request: Request[Any, Any, Any], order_id: FromPath[str]
    ) -> Response[bytes]:
        user_id = user_of(request)
        found = await door.order_tickets(
            writer_of(request).conns.engine, user_id, parse_id(order_id, "order")
        )
        return Response(
            encoder.encode(found), media_type=JSON, headers={"Cache-Control": "private, no-store"}
        )

    @get(
        "/me/orders/{order_id:str}/tickets/{ticket_id:str}/qr",
        summary="One of my tickets as a QR code (SVG, or PNG with ?format=png)",
        operation_class=documented(
            {200: Answer("The QR code", {SVG: BINARY_SCHEMA, PNG: BINARY_SCHEMA})}
        ),
    )
    async def ticket_qr(
        self,
        request: Request[Any, Any, Any],
        order_id: FromPath[str],
        ticket_id: FromPath[str],
        format: FromQuery[Literal["svg", "png"]] = "svg",
    ) -> Response[bytes]:
        user_id = user_of(request)
        wanted = parse_id(ticket_id, "ticket")
        found = await door.order_tickets(
            writer_of(request).conns.engine, user_id, parse_id(order_id, "order")
        )
        ticket = next((t for t in found.tickets if t.ticket_id == wanted), None)
        if ticket is None:
            raise errors.NotFound("no such ticket")
        if format == "png":
            return Response(tk.qr_png(ticket.token), media_type=PNG, headers=_PRIVATE)
        return Response(tk.qr_svg(ticket.token), media_type=SVG, headers=_PRIVATE)


_PRIVATE: Final = {"Cache-Control": "private, no-store"}
