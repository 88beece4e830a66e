"""`POST /v1/admin/payments/reconcile` (X-Admin-Key): the provider's open authorizations against
the database (global_writer/reconcile.py). `tessera payments reconcile` calls it: the writer holds
the provider's credentials, and the sandbox's authorizations live in the writer's memory."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, post

from global_writer import errors
from global_writer.controllers.common import body_of, writer_of
from global_writer.reconcile import ReportBody, report_body
from tessera import auth, limits
from tessera.media import JSON
from tessera.openapi import Answer, documented


class ReconcileRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # Authorizations younger than this are left alone (a checkout may still be running).
    older_than_s: Annotated[
        float,
        msgspec.Meta(ge=limits.reconcile_older_than_s_min, le=limits.reconcile_older_than_s_max),
    ] = limits.reconcile_older_than_s
    # False: report what would be done, change nothing.
    apply: bool = False


_decoder = msgspec.json.Decoder(ReconcileRequest)
_encoder = msgspec.json.Encoder()


class PaymentsAdminController(Controller):
    path = "/v1/admin/payments"
    tags = ["admin"]

    @post(
        "/reconcile",
        status_code=200,
        summary="Reconcile the payment provider's open authorizations (X-Admin-Key)",
        operation_class=documented(
            {200: Answer.json("What was found, and done with --apply", ReportBody)},
            body=ReconcileRequest,
            body_required=False,
        ),
    )
    async def reconcile(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        writer = writer_of(request)
        try:
            auth.check_admin_key(request.headers.get("x-admin-key"), writer.settings.admin_key)
        except auth.AuthError as error:
            raise errors.Unauthorized(str(error), reason=error.code) from None
        body = await body_of(request, limits.fan_request_body_bytes_max)
        try:
            wanted = _decoder.decode(body or b"{}")
        except msgspec.ValidationError as error:
            raise errors.InvalidRequest(str(error)) from None
        except msgspec.DecodeError as error:
            raise errors.MalformedJson(f"request body is not valid JSON: {error}") from None
        report = await writer.reconciler_for("manual").run(
            older_than_s=wanted.older_than_s, apply=wanted.apply
        )
        return Response(_encoder.encode(report_body(report)), status_code=200, media_type=JSON)
