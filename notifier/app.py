"""`create_app()`: the notifier's worker, started in the app's lifespan, behind `/healthz`,
`/readyz` (consumer bound, NATS connected) and `/metrics`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request

from notifier.metrics import NotifierMetrics
from notifier.settings import Settings, from_env
from notifier.worker import Worker
from tessera.observability import configure_logging
from tessera.requests import AccessLog
from tessera.web import exception_handlers, operations_routes


async def readiness(request: Request[Any, Any, Any]) -> Mapping[str, object]:
    """Ready when its consumer is bound and NATS connected."""
    worker: Worker = request.app.state.worker
    return {"consumer": worker.ready, "nats": worker.connected}


def create_app(settings: Settings | None = None) -> AccessLog:
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

    app = Litestar(
        # Logging is tessera.observability's JSON lines: Litestar would install its own format.
        logging_config=None,
        route_handlers=operations_routes(readiness),
        lifespan=[lifespan],
        exception_handlers=exception_handlers(),
        debug=False,
    )
    return AccessLog(app, "notifier")
