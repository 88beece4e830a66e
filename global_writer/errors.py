"""The writer's errors: the kernel's one error base (tessera/web.py `ApiError`, one mapping to
HTTP for every tier), one named kind per refusal, and what only the writer answers itself: a
database that cannot be reached, or contention retries that ran out, is a 503 to retry with the
same Idempotency-Key, never a 500."""

from __future__ import annotations

import logging
from typing import Any, Final

from litestar import Request, Response
from sqlalchemy import exc as sa_exc

from global_writer.db.retry import TransactionRetriesExhausted, sqlstate_of
from tessera.web import ApiError, error_response, kind

log = logging.getLogger("global_writer")


class WriterError(ApiError):
    """A refusal of the writer's (its kinds below)."""


def _kind(status: int, code: str) -> type[WriterError]:
    return kind(status, code, WriterError)


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
    message = "the database is unreachable; retry with the same Idempotency-Key"
    return error_response(Unavailable(message))


def answer_unexpected(request: Request[Any, Any, Any], error: Exception) -> Response[bytes] | None:
    """The writer's own answers to what no handler raised on purpose (tessera/web.py
    `exception_handlers`): None leaves it a logged 500."""
    if isinstance(error, TransactionRetriesExhausted):
        # Serialization retries ran out: nothing was written, the client may retry the same key.
        return error_response(
            Unavailable("the database is busy; retry with the same Idempotency-Key")
        )
    if database_unreachable(error):
        return database_unavailable(request, error)
    return None
