"""The hot writes as a bare ASGI app in front of Litestar: `POST /v1/events/{e}/holds` and
`POST /v1/events/{e}/orders`. Under an onsale these are nearly every request the writer gets, and
Litestar's routing, middleware and response machinery cost about as much CPU as the work itself
(a profile under bench/onsale_vs_baselines.py put the framework at ~15% of the writer and the
handlers at ~15%). Everything else, and these routes' OpenAPI documentation, stays with Litestar
(global_writer/controllers/); both answer the same way, in the same error envelope.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

from litestar.types import Receive, Scope, Send

from global_writer import errors, idempotency
from global_writer.controllers.holds import hold_location
from global_writer.controllers.orders import order_location
from global_writer.db.retry import TransactionRetriesExhausted
from global_writer.ops import Idem, Reply
from global_writer.schemas import CreateHold, CreateOrder, decode
from global_writer.service import Writer
from tessera import auth, contracts, limits
from tessera.web import JSON_BYTES, ApiError, asgi_error

log = logging.getLogger("global_writer.fastpath")

ASGIApp = Any
HOLDS_TEMPLATE: Final = "/v1/events/{event_id}/holds"
ORDERS_TEMPLATE: Final = "/v1/events/{event_id}/orders"
JSON_TYPE: Final = JSON_BYTES
CREDENTIAL_HEADER: Final = contracts.HEADER_EDGE_CREDENTIAL.lower().encode()
# Methods that change nothing: every other method on an event's path is a fan's write.
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
EVENTS_PREFIX: Final = "/v1/events/"

Handler = Callable[[Writer, str, uuid.UUID, bytes, Idem], Awaitable[Reply]]


async def create_hold(
    writer: Writer, user_id: str, event_id: uuid.UUID, raw: bytes, idem: Idem
) -> Reply:
    return await writer.flows.hold(user_id, event_id, decode(CreateHold, raw), idem)


async def create_order(
    writer: Writer, user_id: str, event_id: uuid.UUID, raw: bytes, idem: Idem
) -> Reply:
    return await writer.flows.checkout(user_id, event_id, decode(CreateOrder, raw), idem)


ROUTES: Final[dict[str, tuple[str, Handler, Callable[[bytes], str | None]]]] = {
    "holds": (HOLDS_TEMPLATE, create_hold, hold_location),
    "orders": (ORDERS_TEMPLATE, create_order, order_location),
}


class HotWrites:
    def __init__(self, app: ASGIApp, writer: Writer) -> None:
        self.app = app
        self.writer = writer
        # The app's state, for whoever holds this app where they expect Litestar's (tests).
        self.state = app.state
        self.latency: dict[tuple[str, int], Any] = {}
        credential = writer.settings.edge_writer_credential
        self.credentials = tuple(value.encode() for value in credential.split(",") if value)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        plain_scope = cast("dict[str, Any]", scope)
        if plain_scope["type"] == "http":
            # Before anything else, forwarding included: a write without the edges' credential
            # is refused here, not relayed to the event's writer to be refused there.
            if self.credentials and not self.from_edge(plain_scope):
                await asgi_error(send, edge_credential_required())
                return
            # A request for an event another writer serves goes there (forwarding.py).
            if await self.writer.forwarding.maybe_forward(plain_scope, receive, send):
                return
        route = hot_route(cast("dict[str, Any]", scope))
        if route is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        template, handler, location = ROUTES[route[0]]
        scope["path_template"] = template  # for the access log (tessera/requests.py)
        plain = cast("dict[str, Any]", scope)
        try:
            status = await self.serve(plain, receive, send, route[1], handler, location)
        except ApiError as error:
            status = await asgi_error(send, error)
        except Exception as error:
            status = await self.unexpected(plain, send, error)
        histogram = self.latency.get((template, status))
        if histogram is None:
            histogram = self.writer.metrics.request_latency_s.labels(
                route=template, method="POST", status=str(status)
            )
            self.latency[(template, status)] = histogram
        histogram.observe(time.perf_counter() - started)

    def from_edge(self, scope: dict[str, Any]) -> bool:
        """False only for a fan's write (any unsafe method on an event's path: holds,
        extensions, releases, orders) without the edges' credential. Compared in constant time;
        reads, admin, health and the webhooks are not fans' writes. About a microsecond per
        write (one scan of its headers), nothing beside the write's batch commit."""
        if scope["method"] in SAFE_METHODS or not fan_write_path(scope["path"]):
            return True
        for name, value in scope["headers"]:
            if name == CREDENTIAL_HEADER:
                matched = False
                for accepted in self.credentials:  # each compared: no timing says which
                    matched |= hmac.compare_digest(value, accepted)
                return matched
        return False

    async def serve(  # noqa: PLR0917 (one request's parts, passed straight through)
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        event: str,
        handler: Handler,
        location: Callable[[bytes], str | None],
    ) -> int:
        authorization = key = content_type = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"idempotency-key":
                key = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value
        try:
            user_id = self.writer.tokens.user_id(authorization)
        except auth.AuthError as error:
            raise errors.Unauthorized(str(error), reason=error.code) from None
        event_id = parse_event(event)
        raw = await read_body(receive, content_type)
        idem = Idem(
            user_id,
            idempotency.parse_key(key),
            idempotency.fingerprint("POST", scope["path"], raw),
        )
        reply = await handler(self.writer, user_id, event_id, raw, idem)
        headers = [(b"content-type", JSON_TYPE)] if reply.body else []
        if reply.replayed:
            headers.append((b"idempotent-replayed", b"true"))
        if reply.status == 201:
            created = location(reply.body)
            if created is not None:
                headers.append((b"location", created.encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})
        return reply.status

    async def unexpected(self, scope: dict[str, Any], send: Any, error: Exception) -> int:
        """As the Litestar app answers (tessera/web.py, errors.answer_unexpected): a database that
        cannot be reached, or contention, is a 503 to retry; anything else a logged 500."""
        if isinstance(error, TransactionRetriesExhausted):
            message = "the database is busy; retry with the same Idempotency-Key"
            return await asgi_error(send, errors.Unavailable(message))
        if errors.database_unreachable(error):
            log.warning("POST %s: database unreachable: %r", scope["path"], error)
            message = "the database is unreachable; retry with the same Idempotency-Key"
            return await asgi_error(send, errors.Unavailable(message))
        log.exception("unhandled error on POST %s", scope["path"], exc_info=error)
        message = "internal error; the request may be retried with the same Idempotency-Key"
        return await asgi_error(send, ApiError(message, status=500, code="internal_error"))


def fan_write_path(path: str) -> bool:
    """Whether `path` is under `/v1/events/`, as Litestar routes it (it folds repeated slashes,
    so `/v1//events/...` reaches the same handlers)."""
    if path.startswith(EVENTS_PREFIX):
        return True
    return "//" in path and re.sub("/+", "/", path).startswith(EVENTS_PREFIX)


def edge_credential_required() -> ApiError:
    return errors.Forbidden(
        "fans' writes reach the writer through an edge only: "
        f"{contracts.HEADER_EDGE_CREDENTIAL} is missing or wrong",
        code="edge_credential_required",
    )


def hot_route(scope: dict[str, Any]) -> tuple[str, str] | None:
    """("holds" | "orders", the event id as sent) for a hot write, else None."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    parts = scope["path"].split("/")
    # ["", "v1", "events", event, "holds" | "orders"]
    if len(parts) != 5 or parts[1] != "v1" or parts[2] != "events" or parts[4] not in ROUTES:
        return None
    return parts[4], parts[3]


def parse_event(value: str) -> uuid.UUID:
    """Ids are UUIDs; anything else names nothing, so it is a 404 like an unknown id."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise errors.NotFound(f"no event {value[:64]!r}") from None


async def read_body(receive: Any, content_type: bytes | None) -> bytes:
    """The request body, whole, read before any refusal (a client refused while still sending
    sees a reset, not the answer); 413 past the fan body cap, 415 for a non-JSON type."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise errors.InvalidRequest("the client went away before sending its body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= limits.fan_request_body_bytes_max:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if size > limits.fan_request_body_bytes_max:
        raise errors.PayloadTooLarge(f"body over {limits.fan_request_body_bytes_max} bytes")
    if content_type is not None:
        media = content_type.split(b";")[0].strip().lower()
        if media not in (JSON_TYPE, b"") and not media.endswith(b"+json"):
            shown = media.decode("latin-1")[:64]
            raise errors.UnsupportedMediaType(f"send application/json, not {shown}")
    return b"".join(chunks)
