from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, post
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
from global_writer.schemas import CreateHold, HoldView, decode, encoder
from tessera.openapi import IDEMPOTENCY_KEY, Answer, documented

HOLD_ANSWER = Answer.json("The hold", HoldView)


class HoldsController(Controller):
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
        return reply(await writer_of(request).hold(user_id, event, body, idem))

    @get(
        "/holds/{hold_id:str}",
        summary="A hold (owner only)",
        operation_class=documented({200: HOLD_ANSWER}),
    )
    async def get_hold(
        self, request: Request[Any, Any, Any], hold_id: FromPath[str]
    ) -> Response[bytes]:
        user_id = user_of(request)
        view = await writer_of(request).get_hold(user_id, parse_id(hold_id, "hold"))
        return Response(encoder.encode(view), media_type=JSON)

    @post(
        "/holds/{hold_id:str}/extend",
        summary="Extend a hold once (Idempotency-Key)",
        operation_class=documented({200: HOLD_ANSWER}, headers=[IDEMPOTENCY_KEY]),
    )
    async def extend(
        self, request: Request[Any, Any, Any], hold_id: FromPath[str]
    ) -> Response[bytes]:
        user_id = user_of(request)
        hold = parse_id(hold_id, "hold")
        raw = await body_of(request)
        idem = idem_of(request, user_id, raw)
        return reply(await writer_of(request).extend(user_id, hold, idem))

    @delete(
        "/holds/{hold_id:str}",
        status_code=200,
        summary="Release a hold now (204)",
        operation_class=documented({204: Answer("Released (or already ended unsold)")}),
    )
    async def release(
        self, request: Request[Any, Any, Any], hold_id: FromPath[str]
    ) -> Response[bytes]:
        user_id = user_of(request)
        return reply(await writer_of(request).release(user_id, parse_id(hold_id, "hold")))
