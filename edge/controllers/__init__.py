"""The edge's own HTTP handlers: the waiting room's fan endpoints (`queue.py`) and its admin
endpoints (`admin.py`). Each module exports `ROUTE_HANDLERS` for the app to register.

Handlers read their dependencies from `request.app.state`: `room` (edge.waiting_room.WaitingRoom)
and `settings` (edge.settings.Settings); fan handlers first charge the request to its rate-limit
budgets (edge/fans.py: `limiter`, `trusted`), joining and challenges as `queue`, ticket polls as
`reads`. Bodies are decoded here, strictly, from the raw bytes
with one msgspec decoder per type: malformed JSON, wrong types, out-of-range values and unknown
fields are 422 `invalid_request`; a body over `limits.fan_request_body_bytes_max` is 413; a
non-JSON content type is 415. Event ids are UUIDs: anything else names no event, so it is a 404
`not_found`, like an unknown id (the writer's rule, docs/api.md).
"""

from __future__ import annotations

import uuid
from typing import Any, Final, TypeVar

import msgspec
from litestar import Request, Response

from edge.errors import EdgeError
from edge.settings import Settings
from edge.waiting_room import WaitingRoom
from tessera import auth, limits
from tessera.web import JSON, challenge

BODY_BYTES_MAX: Final = limits.fan_request_body_bytes_max
_ENCODER: Final = msgspec.json.Encoder()
_MESSAGE_CHARS_MAX: Final = 200

T = TypeVar("T")


def room_of(request: Request[Any, Any, Any]) -> WaitingRoom:
    room: WaitingRoom = request.app.state.room
    return room


def settings_of(request: Request[Any, Any, Any]) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def parse_event_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise EdgeError(404, "not_found", f"no event {value[:64]!r}") from None


def check_admin(request: Request[Any, Any, Any]) -> None:
    """`X-Admin-Key` (as the writer reads it), or 401 `unauthorized`."""
    try:
        auth.check_admin_key(request.headers.get("x-admin-key"), settings_of(request).admin_key)
    except auth.AuthError as error:
        raise EdgeError(
            401, "unauthorized", str(error), {"WWW-Authenticate": challenge(error.code)}
        ) from None


async def read_body(request: Request[Any, Any, Any], bytes_max: int = BODY_BYTES_MAX) -> bytes:
    body = await request.body()  # read before refusing: the client sees the 413, not a reset
    check_body(len(body), body, request.headers.get("content-type"), bytes_max)
    return body


def check_body(
    size: int, body: bytes, content_type: str | None, bytes_max: int = BODY_BYTES_MAX
) -> None:
    """413 for a body of `size` bytes over `bytes_max`; 415 for a body that is not JSON (the
    write fast path, edge/fastwrites.py, applies the same rules)."""
    if size > bytes_max:
        raise EdgeError(413, "payload_too_large", f"body over {bytes_max} bytes")
    if body.strip():
        kind = (content_type or JSON).split(";")[0].strip().lower()
        if kind not in (JSON, "") and not kind.endswith("+json"):
            raise EdgeError(415, "unsupported_media_type", f"send {JSON}, not {kind[:64]}")


def decode(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as error:  # ValidationError included
        raise EdgeError(422, "invalid_request", str(error)[:_MESSAGE_CHARS_MAX]) from None


def json_response(value: object, status: int = 200) -> Response[bytes]:
    return Response(_ENCODER.encode(value), status_code=status, media_type=JSON)
