"""The one web layer every tier shares: the error base and its single mapping to HTTP, the
operations endpoints (`/healthz`, `/readyz`, `/metrics`), and the settings loader.

**Errors.** Every refusal a tier answers is an `ApiError` (or a tier's subclass) with a status,
a machine-readable `code`, a message safe to return, optional details and headers. It becomes
`{"error": {"code", "message", ...details}}` as `application/json` (docs/api.md says why this
envelope and not RFC 9457's `application/problem+json`), here and in the bare-ASGI fast paths
alike (`error_body`, `asgi_error`). Litestar's own exceptions (unknown route, wrong method, a
body too large) map to the same codes; anything unexpected is a 500 `internal_error`, logged,
unless a tier says otherwise (the writer answers an unreachable database with a 503). A 401
carries `WWW-Authenticate` (RFC 9110 §15.5.2): the fan's Bearer scheme (RFC 6750) or the
admin key's.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from typing import Any, ClassVar, Final, TypeVar

import msgspec
from litestar import Request, Response, get
from litestar.exceptions import HTTPException
from litestar.handlers import HTTPRouteHandler
from litestar.response import Stream
from litestar.types import ExceptionHandlersMap

from tessera.media import JSON, JSON_BYTES, SEATMAP
from tessera.observability import Metrics, render

__all__ = [
    "JSON",
    "JSON_BYTES",
    "SEATMAP",
    "ApiError",
    "asgi_error",
    "challenge",
    "error_body",
    "error_response",
    "exception_handlers",
    "kind",
    "load_settings",
    "operations_routes",
]

log = logging.getLogger("tessera.web")

# RFC 6750 §3: the challenge a fan's request without a usable bearer token gets.
BEARER_CHALLENGE: Final = 'Bearer realm="tessera"'
ADMIN_CHALLENGE: Final = 'AdminKey realm="tessera-admin", header="X-Admin-Key"'
_ENCODER: Final = msgspec.json.Encoder()
# Litestar's own refusals, in our codes (400 is a body Litestar could not take: 422 here).
_HTTP_CODES: Final = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """A refusal the caller should see. Subclasses set `status` and `code` as class attributes
    (`kind`), or pass them to the constructor."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = dict(headers or {})
        if status is not None:
            self.status = status  # type: ignore[misc]  # an instance may differ from its class
        if code is not None:
            self.code = code  # type: ignore[misc]
        if self.status == 401 and "WWW-Authenticate" not in self.headers:
            self.headers["WWW-Authenticate"] = challenge(self.details.get("reason"))

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.details}}


E = TypeVar("E", bound=ApiError)


def kind(status: int, code: str, base: type[E]) -> type[E]:
    """A named subclass of `base` for one (status, code): `NotFound = kind(404, "not_found", …)`."""
    name = code.title().replace("_", "")
    return type(name, (base,), {"status": status, "code": code})


def challenge(reason: object) -> str:
    """The WWW-Authenticate value of a 401 (`reason`: tessera.auth's code, when there is one)."""
    if reason == "admin_key_invalid":
        return ADMIN_CHALLENGE
    if reason in ("token_invalid", "token_expired"):
        return f'{BEARER_CHALLENGE}, error="invalid_token"'
    return BEARER_CHALLENGE


def error_body(code: str, message: str, **details: Any) -> bytes:
    return _ENCODER.encode({"error": {"code": code, "message": message, **details}})


def error_response(error: ApiError) -> Response[bytes]:
    return Response(
        _ENCODER.encode(error.body()),
        status_code=error.status,
        media_type=JSON,
        headers=error.headers,
    )


async def asgi_error(send: Any, error: ApiError) -> int:
    """The same answer from a bare-ASGI fast path; returns the status."""
    headers = [(b"content-type", JSON_BYTES)]
    headers += [(k.lower().encode(), v.encode("latin-1")) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": _ENCODER.encode(error.body())})
    return error.status


def handle_api_error(_: Request[Any, Any, Any], error: ApiError) -> Response[bytes]:
    return error_response(error)


def handle_http_exception(_: Request[Any, Any, Any], error: HTTPException) -> Response[bytes]:
    status = 422 if error.status_code == 400 else error.status_code
    code = "internal_error" if status >= 500 else _HTTP_CODES.get(status, "invalid_request")
    return error_response(ApiError(str(error.detail), status=status, code=code))


Unexpected = Callable[[Request[Any, Any, Any], Exception], Response[bytes] | None]


def exception_handlers(unexpected: Unexpected | None = None) -> ExceptionHandlersMap:
    """Litestar's `exception_handlers` for a tier: ours, Litestar's, and the rest (`unexpected`
    may answer some exceptions itself; whatever it leaves is a logged 500)."""

    def handle_unexpected(request: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
        if unexpected is not None:
            answered = unexpected(request, error)
            if answered is not None:
                return answered
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
        message = "internal error; the request may be retried with the same Idempotency-Key"
        return error_response(ApiError(message, status=500, code="internal_error"))

    return {
        ApiError: handle_api_error,
        HTTPException: handle_http_exception,
        Exception: handle_unexpected,
    }


# --- operations endpoints ---

Checks = Callable[[Request[Any, Any, Any]], Awaitable[Mapping[str, object]]]


def operations_routes(
    checks: Checks, before_scrape: Callable[[Request[Any, Any, Any]], None] | None = None
) -> list[HTTPRouteHandler]:
    """`/healthz` (the process answers), `/readyz` (200 when every check of `checks` is true,
    else 503; the checks and any extra figures they return are the body) and `/metrics`
    (Prometheus text from `app.state.metrics`, after `before_scrape`)."""

    @get("/healthz", include_in_schema=False)
    async def healthz() -> Response[bytes]:
        return Response(b'{"status":"ok"}', media_type=JSON)

    @get("/readyz", include_in_schema=False)
    async def readyz(request: Request[Any, Any, Any]) -> Response[bytes]:
        found = await checks(request)
        passed = {name: value for name, value in found.items() if isinstance(value, bool)}
        ready = all(passed.values())
        figures = {name: value for name, value in found.items() if name not in passed}
        body = {"status": "ready" if ready else "not_ready", "checks": passed, **figures}
        return Response(_ENCODER.encode(body), status_code=200 if ready else 503, media_type=JSON)

    @get("/metrics", include_in_schema=False, sync_to_thread=False)
    def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
        if before_scrape is not None:
            before_scrape(request)
        registry: Metrics = request.app.state.metrics
        body, content_type = render(registry.registry)
        return Response(body, media_type=content_type)

    return [healthz, readyz, metrics]


# --- settings ---

S = TypeVar("S", bound=msgspec.Struct)
# msgspec names the field as `$.field` ("Expected `int` … - at `$.port`") or, for a missing
# one, in backticks ("Object missing required field `port`"): the path first.
_FIELD_PATH: Final = re.compile(r"\$\.(\w+)")
_FIELD_NAMED: Final = re.compile(r"field `(\w+)`")


def load_settings(
    kind_: type[S],
    env_fields: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
    *,
    list_fields: Iterable[str] = (),
    json_fields: Iterable[str] = (),
) -> S:
    """A tier's settings from the environment (`TESSERA_*`): `env_fields` maps each field to its
    variable; list fields are comma-separated, JSON fields are JSON documents. A missing or
    invalid value raises ValueError naming the variable, never its value (some are secrets);
    a rule across fields (a `__post_init__` ValueError) is passed on as it is worded."""
    env = os.environ if environ is None else environ
    lists, documents = frozenset(list_fields), frozenset(json_fields)
    raw: dict[str, object] = {}
    for field, variable in env_fields.items():
        if variable not in env:
            continue
        value = env[variable]
        if field in lists:
            raw[field] = [part.strip() for part in value.split(",") if part.strip()]
        elif field in documents:
            try:
                raw[field] = msgspec.json.decode(value)
            except msgspec.DecodeError:
                raise ValueError(f"{variable}: not a JSON document") from None
        else:
            raw[field] = value
    try:
        return msgspec.convert(raw, kind_, strict=False)
    except msgspec.ValidationError as error:
        message = str(error)
        if message.startswith("TESSERA_"):  # a rule across fields names its own variables
            raise ValueError(message) from None
        named = _FIELD_PATH.search(message) or _FIELD_NAMED.search(message)
        field = named[1] if named else ""
        variable = env_fields.get(field, ", ".join(env_fields.values()))
        raise ValueError(f"{variable}: {message}") from None


class ClosingStream(Stream):
    """A stream response that ends its generator, and calls `on_close`, however the response
    ends. Litestar cancels a stream whose client went away but leaves the generator suspended
    where it was (at a `yield`, or never started), so its `finally` would wait for the garbage
    collector and an open-stream count (the edge's, the read node's) would drift."""

    def __init__(
        self,
        content: AsyncGenerator[bytes, None],
        *,
        on_close: Callable[[], None],
        **options: Any,
    ) -> None:
        super().__init__(content, **options)
        self.generator = content
        self.on_close = on_close

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        inner = super().to_asgi_response(*args, **kwargs)

        async def respond(scope: Any, receive: Any, send: Any) -> None:
            try:
                await inner(scope, receive, send)
            finally:
                self.on_close()
                await self.generator.aclose()

        return respond
