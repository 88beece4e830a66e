from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.params import FromPath

from global_writer.controllers.common import parse_id, writer_of
from tessera.media import JSON, SEATMAP
from tessera.openapi import BINARY_SCHEMA, Answer, EventDocument, documented


class EventsController(Controller):
    path = "/v1/events"
    tags = ["events"]

    @get(
        "/{event_id:str}",
        summary="The event, its sections, rows, seat ids and price tiers",
        operation_class=documented({200: Answer.json("The event", EventDocument)}),
    )
    async def get_event(
        self, request: Request[Any, Any, Any], event_id: FromPath[str]
    ) -> Response[bytes]:
        handle = await writer_of(request).flows.event(parse_id(event_id, "event"))
        return Response(handle.runtime.document(), media_type=JSON)

    @get(
        "/{event_id:str}/sections/{section_id:str}/snapshot",
        summary="Binary section map and version, for readers that must resync",
        operation_class=documented(
            {200: Answer("The section map (docs/seatmap-format.md)", {SEATMAP: BINARY_SCHEMA})}
        ),
    )
    async def snapshot(
        self, request: Request[Any, Any, Any], event_id: FromPath[str], section_id: FromPath[str]
    ) -> Response[bytes]:
        data = await writer_of(request).flows.snapshot(parse_id(event_id, "event"), section_id)
        return Response(data, media_type=SEATMAP, headers={"Cache-Control": "no-store"})
