"""The edge's one error base, mapped to HTTP in one handler: `{"error": {"code", "message"}}`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

JSON = "application/json"


class EdgeError(Exception):
    """A refusal the fan (or operator) should see: `status`, a machine-readable `code`, a message
    safe to return, and optional headers (`Retry-After` on 429/503)."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})


def error_body(code: str, message: str) -> bytes:
    return msgspec.json.encode({"error": {"code": code, "message": message}})


def handle_edge_error(_: Request[Any, Any, Any], error: EdgeError) -> Response[bytes]:
    return Response(
        error_body(error.code, error.message),
        status_code=error.status,
        media_type=JSON,
        headers=error.headers,
    )


def handle_http_exception(_: Request[Any, Any, Any], error: HTTPException) -> Response[bytes]:
    status = 422 if error.status_code == 400 else error.status_code
    code = {
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        415: "unsupported_media_type",
    }.get(status, "invalid_request")
    return Response(error_body(code, str(error.detail)), status_code=status, media_type=JSON)
