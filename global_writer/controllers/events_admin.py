"""`POST /v1/admin/events/{event_id}/{pause,resume,close,cancel}` (X-Admin-Key): the organiser
runs an event's sales (global_writer/event_admin.py); `GET .../report`: its sales report, JSON
or CSV (global_writer/reports.py)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.params import FromPath

from global_writer import errors, reports
from global_writer.controllers.common import body_of, parse_id, writer_of
from global_writer.event_admin import (
    Action,
    Cancellation,
    EventStatus,
    cancel_event,
    change_status,
)
from global_writer.event_update import UpdateEvent, decode_update, update_event
from global_writer.schemas import encoder
from tessera import auth
from tessera.media import JSON
from tessera.openapi import Answer, EventDocument, documented

STATUS_ANSWER = Answer.json("The event's status now", EventStatus)
CSV = "text/csv"


class EventsAdminController(Controller):
    path = "/v1/admin/events/{event_id:str}"
    tags = ["admin"]

    @patch(
        "/",
        status_code=200,
        summary="Change the event before its onsale (name, onsale time, limits, prices)",
        operation_class=documented(
            {200: Answer.json("The event's document, changed", EventDocument)}, body=UpdateEvent
        ),
    )
    async def update(
        self, request: Request[Any, Any, Any], event_id: FromPath[str]
    ) -> Response[bytes]:
        writer = writer_of(request)
        check_admin(request)
        event = parse_id(event_id, "event")
        body = decode_update(await body_of(request))
        return Response(await update_event(writer, event, body), media_type=JSON)

    @post(
        "/pause",
        status_code=200,
        summary="Pause sales: no new holds until resumed",
        operation_class=documented({200: STATUS_ANSWER}),
    )
    async def pause(
        self, request: Request[Any, Any, Any], event_id: FromPath[str]
    ) -> Response[bytes]:
        return await apply(request, event_id, "pause")

    @post(
        "/resume",
        status_code=200,
        summary="Resume paused sales",
        operation_class=documented({200: STATUS_ANSWER}),
    )
    async def resume(
        self, request: Request[Any, Any, Any], event_id: FromPath[str]
    ) -> Response[bytes]:
        return await apply(request, event_id, "resume")

    @post(
        "/close",
        status_code=200,
        summary="Close sales for good: no holds, no checkouts",
        operation_class=documented({200: STATUS_ANSWER}),
    )
    async def close(
        self, request: Request[Any, Any, Any], event_id: FromPath[str]
    ) -> Response[bytes]:
        return await apply(request, event_id, "close")

    @post(
        "/cancel",
        status_code=200,
        summary="Cancel the event: every order refunded, every hold released (final)",
        operation_class=documented({200: Answer.json("What the cancellation did", Cancellation)}),
    )
    async def cancel(
        self, request: Request[Any, Any, Any], event_id: FromPath[str]
    ) -> Response[bytes]:
        writer = writer_of(request)
        check_admin(request)
        done = await cancel_event(
            writer.conns.engine, writer.flows.events, parse_id(event_id, "event")
        )
        return Response(encoder.encode(done), media_type=JSON)

    @get(
        "/report",
        summary="Sales report: per section and tier, revenue, refunds, holds (?format=csv)",
        operation_class=documented({200: Answer.json("The sales report", reports.SalesReport)}),
    )
    async def report(
        self, request: Request[Any, Any, Any], event_id: FromPath[str]
    ) -> Response[bytes]:
        writer = writer_of(request)
        check_admin(request)
        wanted = request.query_params.get("format")
        if wanted not in (None, "json", "csv"):
            raise errors.InvalidRequest("format must be json or csv")
        as_csv = wanted == "csv" or (
            wanted is None and CSV in request.headers.get("accept", "").lower()
        )
        report = await reports.sales_report(writer.conns.engine, parse_id(event_id, "event"))
        headers = {"Cache-Control": "no-store"}
        if as_csv:
            body = reports.report_csv(report).encode()
            return Response(body, media_type=f"{CSV}; charset=utf-8", headers=headers)
        return Response(encoder.encode(report), media_type=JSON, headers=headers)


def check_admin(request: Request[Any, Any, Any]) -> None:
    try:
        auth.check_admin_key(
            request.headers.get("x-admin-key"), writer_of(request).settings.admin_key
        )
    except auth.AuthError as error:
        raise errors.Unauthorized(str(error), reason=error.code) from None


async def apply(request: Request[Any, Any, Any], event_id: str, action: Action) -> Response[bytes]:
    writer = writer_of(request)
    check_admin(request)
    status = await change_status(
        writer.conns.engine, writer.flows.events, parse_id(event_id, "event"), action
    )
    return Response(encoder.encode(status), media_type=JSON)
