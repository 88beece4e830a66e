"""What every controller needs: the writer, the caller, the body, ids, replies."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request, Response

from global_writer import errors, idempotency
from global_writer.ops import Idem, Reply
from global_writer.service import Writer
from tessera import auth, limits
from tessera.web import JSON


def writer_of(request: Request[Any, Any, Any]) -> Writer:
    writer: Writer = request.app.state.writer
    return writer


def user_of(request: Request[Any, Any, Any]) -> str:
    try:
        return writer_of(request).tokens.user_id(request.headers.get("authorization"))
    except auth.AuthError as error:
        raise errors.Unauthorized(str(error), reason=error.code) from None


def parse_id(value: str, what: str) -> uuid.UUID:
    """Ids are UUIDs; anything else names nothing, so it is a 404 like an unknown id."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise errors.NotFound(f"no {what} {value[:64]!r}") from None


async def body_of(
    request: Request[Any, Any, Any], bytes_max: int = limits.fan_request_body_bytes_max
) -> bytes:
    content_type = request.headers.get("content-type", JSON).split(";")[0].strip().lower()
    if content_type not in (JSON, "") and not content_type.endswith("+json"):
        raise errors.UnsupportedMediaType(f"send {JSON}, not {content_type}")
    # The body is read before it is refused, so the client gets the 413 rather than a reset
    # (answering while it is still sending made clients see a broken connection).
    body = await request.body()
    if len(body) > bytes_max:
        raise errors.PayloadTooLarge(f"body over {bytes_max} bytes")
    return body


def idem_of(request: Request[Any, Any, Any], user_id: str, body: bytes) -> Idem:
    key = idempotency.parse_key(request.headers.get("idempotency-key"))
    fingerprint = idempotency.fingerprint(request.method, request.url.path, body)
    return Idem(user_id, key, fingerprint)


def reply(result: Reply, location: str | None = None) -> Response[bytes]:
    """The answer decided for the request; a 201 names what it created (`Location`)."""
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    if location is not None and result.status == 201:
        headers["Location"] = location
    media_type = JSON if result.body else None
    return Response(result.body, status_code=result.status, media_type=media_type, headers=headers)
