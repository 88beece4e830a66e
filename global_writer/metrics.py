"""Request metrics middleware and the `/metrics` endpoint."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, Response, get
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from tessera.observability import Metrics, render


def metrics_middleware(app: ASGIApp) -> ASGIApp:
    """Time every HTTP request by route template (never the raw path: bounded label values)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await app(scope, receive, capture)
        finally:
            metrics: Metrics | None = getattr(scope["app"].state, "metrics", None)
            if metrics is not None:
                route = str(scope.get("path_template") or "unmatched")
                metrics.observe_request(
                    route=route,
                    method=str(scope.get("method", "GET")),
                    status=status,
                    duration_s=time.perf_counter() - started,
                )

    return middleware


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    metrics: Metrics = request.app.state.metrics
    body, content_type = render(metrics.registry)
    return Response(body, media_type=content_type)
