"""What each of the edge's ports serves: the public port's guard (the CDN's origin secret, and no
operator routes when there is an internal port), and the internal listener.

**The origin secret** (`TESSERA_EDGE_ORIGIN_SECRETS`). CloudFront adds `origin_header`
(X-Origin-Secret) with the secret's current value to every request it sends an edge
(terraform/modules/edge_cdn); the load balancer forwards only requests carrying an accepted value,
and the edge checks again, here, before any other work: a request that reached the edge some
other way (a misrouted listener rule, a peer inside the VPC) is refused 403
`origin_secret_required`. Every non-empty value of previous, current and next is accepted, so a
rotation never refuses the CDN. The load balancer's and the container's health checks send no
such header, so `/healthz` and `/readyz` need none (they disclose nothing but "up" and "ready").

**The internal port** (`TESSERA_EDGE_INTERNAL_PORT`). `/metrics` and the admin API
(`/v1/admin/...`) are served only there, behind an internal load balancer, and the public port
answers them 404 as if they did not exist. Granian serves one address per server, so the port is
a second, small HTTP server run by this process's lifespan (aiohttp's low-level server, already a
dependency), handing each request to the same ASGI app with `INTERNAL_SCOPE_KEY` set in its scope.
The same app, not a second process, because `/metrics` must be this process's registry and the
admin calls this process's parts. A client cannot forge the marker: it is a scope key, and the
public server (Granian) builds its scopes from the wire. The edge runs one Granian worker per
process (tessera/serving.py), so one process binds the port; were there ever more, the second
would fail to start (no SO_REUSEPORT) rather than scrape one worker's metrics at random.
Operator requests are rare, so the listener's per-request cost (an aiohttp request, the body
streamed through) does not matter; nothing on the public port pays for it but one dict lookup.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from typing import Any, Final

from aiohttp import web

from edge.errors import EdgeError
from tessera import limits
from tessera.web import asgi_error

ASGIApp = Any
# Set in a request's scope by the internal listener only.
INTERNAL_SCOPE_KEY: Final = "tessera.internal"
HEALTH_PATHS: Final = frozenset({"/healthz", "/readyz"})


def operator_path(path: str) -> bool:
    """`/metrics` or the admin API, as Litestar routes them (repeated slashes folded, a
    trailing slash ignored)."""
    if "//" in path:
        path = re.sub("/+", "/", path)
    path = path.rstrip("/")
    return path in {"/metrics", "/v1/admin"} or path.startswith("/v1/admin/")


def not_found() -> EdgeError:
    return EdgeError(404, "not_found", "no such route")


class PortGuard:
    """The edge's outermost ASGI layer (module docstring). `accepted`: the origin secret's values
    (empty: not checked); `internal`: operator routes live on the internal port."""

    def __init__(
        self, app: ASGIApp, *, header: str, accepted: tuple[bytes, ...], internal: bool
    ) -> None:
        self.app = app
        self.header = header.lower().encode()
        self.accepted = accepted
        self.internal = internal
        # The wrapped app's state, for whoever holds this app where they expect Litestar's.
        self.state: Any = getattr(app, "state", None)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if INTERNAL_SCOPE_KEY in scope:
            # The internal port serves the operator routes and health, nothing a fan uses.
            if operator_path(path) or path in HEALTH_PATHS:
                await self.app(scope, receive, send)
            else:
                await asgi_error(send, not_found())
            return
        if self.accepted and path not in HEALTH_PATHS and not self.from_cdn(scope["headers"]):
            await asgi_error(
                send,
                EdgeError(
                    403,
                    "origin_secret_required",
                    "requests reach the edge through the CDN only",
                ),
            )
            return
        if self.internal and operator_path(path):
            await asgi_error(send, not_found())
            return
        await self.app(scope, receive, send)

    def from_cdn(self, headers: list[tuple[bytes, bytes]]) -> bool:
        for name, value in headers:
            if name == self.header:
                # Every value compared, each in constant time: the answer's timing says nothing
                # about which value, or how much of one, matched.
                matched = False
                for accepted in self.accepted:
                    matched |= hmac.compare_digest(value, accepted)
                return matched
        return False


class InternalListener:
    """A small HTTP/1.1 server on the internal port, handing every request to `app` with
    `INTERNAL_SCOPE_KEY` set (module docstring)."""

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.runner: web.ServerRunner | None = None

    async def start(self) -> None:
        # No access log of aiohttp's: the app's own (tessera/requests.py) logs these requests.
        server = web.Server(self.handle, access_log=None)
        runner = web.ServerRunner(server, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port, reuse_port=False).start()
        except BaseException:
            await runner.cleanup()
            raise
        self.runner = runner

    async def close(self) -> None:
        if self.runner is not None:
            runner, self.runner = self.runner, None
            await runner.cleanup()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        exchange = _Exchange(request)
        try:
            await self.app(exchange.scope(), exchange.receive, exchange.send)
        finally:
            exchange.finished.set()
        if exchange.response is None:  # the app answered nothing: as a server would
            return web.Response(status=500)
        return exchange.response


class _Exchange:
    """One request's ASGI side: its scope, its body as `http.request` messages, and the answer
    written back through aiohttp as the app sends it."""

    def __init__(self, request: web.BaseRequest) -> None:
        self.request = request
        self.response: web.StreamResponse | None = None
        self.received = 0
        self.body_done = False
        self.finished = asyncio.Event()

    def scope(self) -> dict[str, Any]:
        request = self.request
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport else None
        local = transport.get_extra_info("sockname") if transport else None
        version = request.version
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": f"{version.major}.{version.minor}",
            "method": request.method,
            "scheme": "http",
            "path": request.path,
            "raw_path": request.raw_path.split("?", 1)[0].encode("latin-1"),
            "query_string": request.query_string.encode("latin-1"),
            "root_path": "",
            "headers": [(name.lower(), value) for name, value in request.raw_headers],
            "client": tuple(peer[:2]) if peer else None,
            "server": tuple(local[:2]) if local else None,
            "state": {},
            INTERNAL_SCOPE_KEY: True,
        }

    async def receive(self) -> dict[str, Any]:
        if self.body_done:
            await self.finished.wait()  # as a server does: nothing more until the client goes
            return {"type": "http.disconnect"}
        chunk = await self.request.content.readany()
        self.received += len(chunk)
        if not chunk or self.received > limits.request_body_bytes_max:
            # Past the bound the app has refused it already (its own limit is the same one).
            self.body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            response = web.StreamResponse(status=message["status"])
            for name, value in message.get("headers", ()):
                response.headers.add(name.decode("latin-1"), value.decode("latin-1"))
            await response.prepare(self.request)
            self.response = response
        elif message["type"] == "http.response.body" and self.response is not None:
            await self.response.write(message.get("body", b""))
            if not message.get("more_body", False):
                await self.response.write_eof()
