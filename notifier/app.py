"""`create_app()`: the notifier's worker, started in the app's lifespan, behind `/healthz`,
`/readyz` (consumer bound, NATS connected) and `/metrics`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get

from notifier.metrics import NotifierMetrics
from notifier.settings import Settings, from_env
from notifier.worker import Worker
from tessera.observability import configure_logging, render

JSON = "application/json"


@get("/healthz", include_in_schema=False)
async def healthz() -> Response[bytes]:
    return Response(b'{"status":"ok"}', media_type=JSON)


@get("/readyz", include_in_schema=False)
async def readyz(request: Request[Any, Any, Any]) -> Response[bytes]:
    worker: Worker = request.app.state.worker
    checks = {"consumer": worker.ready, "nats": worker.connected}
    ready = all(checks.values())
    body = msgspec.json.encode({"status": "ready" if ready else "not_ready", "checks": checks})
    return Response(body, status_code=200 if ready else 503, media_type=JSON)


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    body, content_type = render(request.app.state.metrics.registry)
    return Response(body, media_type=content_type)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or from_env()
    configure_logging("notifier")
    # httpx logs every request's URL at INFO: a webhook URL may carry a credential.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    metrics = NotifierMetrics()
    worker = Worker(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.worker = worker
        app.state.metrics = metrics
        # Not awaited here: the HTTP port answers (/readyz 503) while the worker waits for
        # NATS and the streams, so a supervisor sees a live process that is not ready yet.
        task = asyncio.create_task(worker.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await worker.stop()

    return Litestar(
        route_handlers=[healthz, readyz, metrics_endpoint], lifespan=[lifespan], debug=False
    )
