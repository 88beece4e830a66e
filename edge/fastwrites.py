"""The hot writes as a bare ASGI app in front of Litestar, as edge/fastpath.py is for the cached
GETs: `POST /v1/events/{e}/holds`, `POST /v1/events/{e}/orders`,
`POST /v1/events/{e}/holds/{h}/extend` and `DELETE /v1/events/{e}/holds/{h}`.

Litestar's routing, request object and response cost a forwarded hold more CPU than the
edge's whole budget for one (bench/edge_forward.py; docs/edge.md, "Writes"), so these four take
the same steps, in the same order and with the same answers, as the Litestar handlers in
edge/controllers/writes.py (which document the routes, and answer the spellings this layer does
not take, such as a trailing slash):

1. ids that are not UUIDs: 404 `not_found`;
2. a full writer queue: 503 `overloaded` at once (edge/upstream.py), before any other work;
3. the bearer token: 401 `unauthorized` (verified tokens remembered: edge/fans.py);
4. the route class's rate budgets: 429 `rate_limited`;
5. the body, read whole: 413 past `limits.fan_request_body_bytes_max`, 415 if not JSON;
6. the event's waiting room: 403 `admission_required` without a valid admission token;
7. to the writer, and its answer back unchanged (503/504/502 when it cannot be had).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any, Final

from edge.clientip import client_ip
from edge.controllers import check_body
from edge.errors import EdgeError
from edge.fans import VerifiedTokens
from edge.metrics import EdgeMetrics
from edge.passthrough import FORWARDED_WIRE_HEADERS, WriterProxy, passed_back
from edge.ratelimit import RateLimiter, refusal
from edge.settings import RouteClass
from edge.waiting_room import ADMISSION_HEADER, WaitingRoom
from tessera import limits
from tessera.requests import current_request_id
from tessera.web import asgi_error

ASGIApp = Any
WRITE_PATH: Final = re.compile(r"^/v1/events/([^/]+)/(holds|orders)(?:/([^/]+)(/extend)?)?$")
JSON_HEADER: Final = (b"content-type", b"application/json")
ADMISSION_WIRE: Final = ADMISSION_HEADER.lower().encode()
# (the route's template, for the latency series; its rate-budget class)
Route = tuple[str, RouteClass]
HOLDS: Final[Route] = ("/v1/events/{event_id}/holds", RouteClass.holds)
ORDERS: Final[Route] = ("/v1/events/{event_id}/orders", RouteClass.orders)
EXTEND: Final[Route] = ("/v1/events/{event_id}/holds/{hold_id}/extend", RouteClass.holds)
RELEASE: Final[Route] = ("/v1/events/{event_id}/holds/{hold_id}", RouteClass.holds)
# (the route, the event, the path the writer is sent)
Target = tuple[Route, uuid.UUID, bytes]
METHODS: Final = {"POST": b"POST", "DELETE": b"DELETE"}


class Disconnected(Exception):
    """The fan went away while sending the body: nobody to answer."""


class FastWrites:
    def __init__(
        self,
        app: ASGIApp,
        *,
        writer: WriterProxy,
        limiter: RateLimiter,
        room: WaitingRoom,
        tokens: VerifiedTokens,
        trusted: list[Any],
        metrics: EdgeMetrics,
    ) -> None:
        self.app = app
        self.writer = writer
        self.limiter = limiter
        self.room = room
        self.tokens = tokens
        self.trusted = trusted
        self.metrics = metrics
        self.local = {
            route_class: limiter.config.budget(route_class).store == "local"
            for route_class in (RouteClass.holds, RouteClass.orders)
        }
        self.latency: dict[tuple[str, str, int], Any] = {}
        # Validated paths without a hold id, per method (bounded: paths come from requests).
        self.known: dict[str, dict[str, Target]] = {"POST": {}, "DELETE": {}}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        method = scope.get("method")
        if scope["type"] != "http" or method not in ("POST", "DELETE"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        target = self.known[method].get(scope["path"])
        try:
            if target is None:
                target = self.target_of(method, scope["path"])
                if target is None:
                    await self.app(scope, receive, send)
                    return
            status = await self.write(scope, receive, send, target)
        except EdgeError as error:
            await send_error(send, error)
            status = error.status
        except Disconnected:
            status = 499  # nginx's "client closed request", for the latency series only
        template = target[0][0] if target is not None else "writes"  # a 404 before routing
        scope["path_template"] = template  # for the access log (tessera/requests.py)
        self.observe(template, method, status, time.perf_counter() - started)

    def target_of(self, method: str, path: str) -> Target | None:
        """The write `method path` names (None: not one of these four, for Litestar to answer),
        with its event and the path the writer is sent (ids canonical); 404 for ids that are
        not UUIDs. Paths without a hold id are remembered (a few per event)."""
        match = WRITE_PATH.match(path)
        if match is None:
            return None
        event, kind, hold, extend = match.groups()
        route = route_of(method, kind, hold, extend)
        if route is None:
            return None
        event_id = parse_uuid(event, "event")
        upstream = f"/v1/events/{event_id}/{kind}"
        if hold is not None:
            upstream += f"/{parse_uuid(hold, 'hold')}{extend or ''}"
        target = (route, event_id, upstream.encode())
        known = self.known[method]
        if hold is None and len(known) < limits.edge_known_paths_max:
            known[path] = target
        return target

    async def write(self, scope: dict[str, Any], receive: Any, send: Any, target: Target) -> int:
        (_, route_class), event_id, upstream = target
        self.writer.check()
        authorization = admission = forwarded = content_type = length = None
        headers = []
        for name, value in scope["headers"]:
            if name in FORWARDED_WIRE_HEADERS:
                headers.append((name, value))
                if name == b"authorization":
                    authorization = value
                elif name == b"content-type":
                    content_type = value
            elif name == ADMISSION_WIRE:
                admission = value
            elif name == b"x-forwarded-for":
                forwarded = value
            elif name == b"content-length":
                length = value
        headers.append((b"x-request-id", current_request_id().encode()))
        user_id = self.tokens.user_id(authorization)
        ip = self.client_of(scope, forwarded)
        await self.charge(route_class, ip, user_id)
        method = scope["method"]
        body = b""
        if method == "POST":
            body = await read_body(receive, latin1(content_type), length)
        await self.room.check_admission(event_id, user_id, latin1(admission))
        headers.append((b"x-forwarded-for", ip.encode()))
        answer = await self.writer.send(METHODS[method], upstream, headers, body)
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": passed_back(answer),
            }
        )
        await send({"type": "http.response.body", "body": answer.body})
        return answer.status

    async def charge(self, route_class: RouteClass, ip: str, user_id: str) -> None:
        if self.local[route_class]:
            decision = self.limiter.check_local(route_class, ip, user_id)
        else:
            decision = await self.limiter.check(route_class, ip, user_id)
        if not decision.allowed:
            raise refusal(decision, route_class)

    def client_of(self, scope: dict[str, Any], forwarded: bytes | None) -> str:
        client = scope.get("client")
        peer = client[0] if client else None
        if forwarded is None and peer is not None:
            return str(peer)  # no header to believe or not: the peer is the client
        return client_ip(peer, latin1(forwarded), self.trusted)

    def observe(self, template: str, method: str, status: int, seconds: float) -> None:
        histogram = self.latency.get((template, method, status))
        if histogram is None:
            histogram = self.metrics.request_latency_s.labels(
                route=template, method=method, status=str(status)
            )
            self.latency[(template, method, status)] = histogram
        histogram.observe(seconds)


def route_of(method: str, kind: str, hold: str | None, extend: str | None) -> Route | None:
    """The write a method and a WRITE_PATH match name, or None (Litestar answers: 404/405)."""
    if kind == "orders":
        return ORDERS if method == "POST" and hold is None else None
    if hold is None:
        return HOLDS if method == "POST" else None
    if extend is not None:
        return EXTEND if method == "POST" else None
    return RELEASE if method == "DELETE" else None


def parse_uuid(text: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise EdgeError(404, "not_found", f"no {what} {text[:64]!r}") from None


def latin1(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


async def read_body(receive: Any, content_type: str | None, length: bytes | None) -> bytes:
    """The whole body, read before refusing it (the fan sees the 413, not a reset); past
    `limits.request_body_bytes_max` reading stops (as Litestar's limit does). Once
    Content-Length bytes are in, the server's closing empty message is not waited for (Granian
    sends the body, then an empty `more_body: false`: a call saved per write)."""
    kept: list[bytes] = []
    size = 0
    expected = int(length) if length is not None and length.isdigit() else -1
    while size != expected:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= limits.fan_request_body_bytes_max:
            kept.append(chunk)
        if not message.get("more_body") or size > limits.request_body_bytes_max:
            break
    body = b"".join(kept) if len(kept) != 1 else kept[0]
    check_body(size, body, content_type)
    return body


async def send_error(send: Any, error: EdgeError) -> None:
    await asgi_error(send, error)
