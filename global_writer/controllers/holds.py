from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromPath

from global_writer.controllers.common import (
    body_of,
    idem_of,
    parse_id,
    reply,
    user_of,
    writer_of,
)
from global_writer.schemas import CreateHold, HoldView, decode, encoder
from tessera.media import JSON
from tessera.openapi import IDEMPOTENCY_KEY, Answer, documented

HOLD_ANSWER = Answer.json("The hold", HoldView)


class Created(msgspec.Struct):
    hold_id: str


_created = msgspec.json.Decoder(Created)


def hold_location(body: bytes) -> str | None:
    """Where a created hold can be read: `/v1/holds/{id}`."""
    try:
        return f"/v1/holds/{_created.decode(body).hold_id}"
    except msgspec.DecodeError:
        return None


class HoldsController(Controller):
    """Holds are created, extended and released under their event's path: every write names its
    event, so whatever routes it (an edge, another writer) needs no lookup to find its owner."""

    path = "/v1"
    tags = ["holds"]

    @post(
        "/events/{event_id:str}/holds",
        summary="Hold seats (Bearer, Idempotency-Key)",
        operation_class=documented({201: HOLD_ANSWER}, body=CreateHold, headers=[IDEMPOTENCY_KEY]),
    )
    async def create_hold(
        self, request: Request[Any, Any, Any], event_id: FromPath[str]
    ) -> Response[bytes]:
        user_id = user_of(request)
        event = parse_id(event_id, "event")
        raw = await body_of(request)
        body = decode(CreateHold, raw)
        idem = idem_of(request, user_id, raw)
        result = await writer_of(request).flows.hold(user_id, event, body, idem)
        return reply(result, hold_location(result.body) if result.status == 201 else None)

    @get(
        "/holds/{hold_id:str}",
        summary="A hold (owner only)",
        operation_class=documented({200: HOLD_ANSWER}),
    )
    async def get_hold(
        self, request: Request[Any, Any, Any], hold_id: FromPath[str]
    ) -> Response[bytes]:
        user_id = user_of(request)
        view = await writer_of(request).flows.get_hold(user_id, parse_id(hold_id, "hold"))
        return Response(encoder.encode(view), media_type=JSON)

    @post(
        "/events/{event_id:str}/holds/{hold_id:str}/extend",
        summary="Extend a hold once (Idempotency-Key)",
        operation_class=documented({200: HOLD_ANSWER}, headers=[IDEMPOTENCY_KEY]),
    )
    async def extend(
        self, request: Request[Any, Any, Any], event_id: FromPath[str], hold_id: FromPath[str]
    ) -> Response[bytes]:
        user_id = user_of(request)
        event = parse_id(event_id, "event")
        hold = parse_id(hold_id, "hold")
        raw = await body_of(request)
        idem = idem_of(request, user_id, raw)
        return reply(await writer_of(request).flows.extend(user_id, event, hold, idem))

    @delete(
        "/events/{event_id:str}/holds/{hold_id:str}",
        status_code=200,
        summary="Release a hold now (204)",
        operation_class=documented({204: Answer("Released (or already ended unsold)")}),
    )
    async def release(
        self, request: Request[Any, Any, Any], event_id: FromPath[str], hold_id: FromPath[str]
    ) -> Response[bytes]:
        user_id = user_of(request)
        event = parse_id(event_id, "event")
        hold = parse_id(hold_id, "hold")
        return reply(await writer_of(request).flows.release(user_id, event, hold))
