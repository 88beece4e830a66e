"""The writer's one error base, and the single place errors become HTTP responses:
`{"error": {"code": ..., "message": ..., ...details}}` with the matching status."""

from __future__ import annotations

import logging
from typing import Any, Final

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy import exc as sa_exc

from global_writer.db.retry import sqlstate_of

log = logging.getLogger("global_writer")


class WriterError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None, **details: Any):
        super().__init__(message)
        self.message = message
        self.details = details
        # Response headers the answer carries (Retry-After on a refusal under load).
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.details}}


def _kind(status: int, code: str) -> type[WriterError]:
    return type(code.title().replace("_", ""), (WriterError,), {"status": status, "code": code})


MalformedJson = _kind(400, "malformed_json")
IdempotencyKeyRequired = _kind(400, "idempotency_key_required")
InvalidRequest = _kind(422, "invalid_request")
InvalidSeat = _kind(422, "invalid_seat")
IdempotencyKeyMismatch = _kind(422, "idempotency_key_mismatch")
Unauthorized = _kind(401, "unauthorized")
PaymentDeclinedError = _kind(402, "payment_declined")
Forbidden = _kind(403, "forbidden")
LimitExceeded = _kind(403, "limit_exceeded")
NotOnSale = _kind(403, "not_on_sale")
NotFound = _kind(404, "not_found")
SeatsUnavailable = _kind(409, "seats_unavailable")
HoldNotActive = _kind(409, "hold_not_active")
HoldExpired = _kind(409, "hold_expired")
AlreadyExtended = _kind(409, "hold_already_extended")
IdempotencyKeyInFlight = _kind(409, "idempotency_key_in_flight")
PayloadTooLarge = _kind(413, "payload_too_large")
UnsupportedMediaType = _kind(415, "unsupported_media_type")
PaymentUnavailableError = _kind(502, "payment_provider_unavailable")
Unavailable = _kind(503, "unavailable")
# Refused at once because the event's queue would make the request wait past its bound.
Overloaded = _kind(503, "overloaded")

_encoder = msgspec.json.Encoder()


def encode_body(body: dict[str, Any]) -> bytes:
    return _encoder.encode(body)


def error_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response[bytes]:
    return Response(
        _encoder.encode(body), status_code=status, media_type="application/json", headers=headers
    )


def handle_writer_error(_: Request[Any, Any, Any], error: WriterError) -> Response[bytes]:
    return error_response(error.status, error.body(), error.headers)


def handle_http_exception(_: Request[Any, Any, Any], error: HTTPException) -> Response[bytes]:
    """Litestar's own 4xx (unknown route, wrong method, bad path parameter) in our shape."""
    status = error.status_code
    codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
    code = codes.get(status, "invalid_request" if status < 500 else "internal_error")
    if status == 400:
        status, code = 422, "invalid_request"
    return error_response(status, {"error": {"code": code, "message": str(error.detail)}})


def handle_contention(_: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
    """Serialization retries ran out: nothing was written, the client may retry the same key."""
    body = Unavailable("the database is busy; retry with the same Idempotency-Key").body()
    return error_response(503, body)


# SQLSTATE classes of a database that cannot be reached or is going away: connection exceptions
# (08…), and the server shutting down, crashed or still starting (57P01, 57P02, 57P03).
_UNREACHABLE_SQLSTATES: Final = ("08", "57P01", "57P02", "57P03")


def database_unreachable(error: BaseException) -> bool:
    """Whether `error` says the database (or another dependency) could not be reached, rather
    than that a statement was wrong: a refused or reset connection, a pool checkout timeout, a
    connection found dead, or one of the SQLSTATEs above."""
    if isinstance(error, OSError | sa_exc.TimeoutError):
        return True
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    state = sqlstate_of(error)
    return state is not None and state.startswith(_UNREACHABLE_SQLSTATES)


def database_unavailable(request: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
    """The database is down or restarting: nothing was answered from it, so this is a 503 the
    client retries with the same Idempotency-Key (an effect and its key commit together, so a
    retry replays whatever did commit)."""
    log.warning("%s %s: database unreachable: %r", request.method, request.url.path, error)
    body = Unavailable("the database is unreachable; retry with the same Idempotency-Key").body()
    return error_response(503, body)


def handle_unexpected(request: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
    if database_unreachable(error):
        return database_unavailable(request, error)
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    message = "internal error; the request may be retried with the same Idempotency-Key"
    body = {"error": {"code": "internal_error", "message": message}}
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, body)
