from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, post

from global_writer import errors
from global_writer.controllers.common import body_of, writer_of
from global_writer.schemas import CreateEvent, EventCreated, decode, encoder
from tessera import auth, limits
from tessera.media import JSON
from tessera.openapi import Answer, documented


class AdminController(Controller):
    path = "/v1/admin"
    tags = ["admin"]

    @post(
        "/events",
        status_code=201,
        summary="Create an event at a venue (X-Admin-Key)",
        operation_class=documented(
            {201: Answer.json("The event was created", EventCreated)}, body=CreateEvent
        ),
    )
    async def create_event(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        writer = writer_of(request)
        try:
            auth.check_admin_key(request.headers.get("x-admin-key"), writer.settings.admin_key)
        except auth.AuthError as error:
            raise errors.Unauthorized(str(error), reason=error.code) from None
        body = decode(CreateEvent, await body_of(request, limits.request_body_bytes_max))
        event_id = await writer.flows.create_event(body)
        return Response(
            encoder.encode(EventCreated(event_id)),
            status_code=201,
            media_type=JSON,
            headers={"Location": f"/v1/events/{event_id}"},
        )
