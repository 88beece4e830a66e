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
from notifier.webhooks import Dispatcher, WebhookMetrics, WebhookSettings
from notifier.webhooks import from_env as webhooks_from_env
from notifier.worker import Worker
from tessera.observability import configure_logging
from tessera.requests import AccessLog
from tessera.web import exception_handlers, operations_routes


async def readiness(request: Request[Any, Any, Any]) -> Mapping[str, object]:
    """Ready when its consumer is bound and NATS connected."""
    worker: Worker = request.app.state.worker
    checks = {"consumer": worker.ready, "nats": worker.connected}
    dispatcher: Dispatcher | None = request.app.state.webhooks
    if dispatcher is not None:
        checks["webhooks"] = dispatcher.ready
    return checks


def create_app(
    settings: Settings | None = None, webhook_settings: WebhookSettings | None = None
) -> AccessLog:
    settings = settings or from_env()
    webhook_settings = webhook_settings or webhooks_from_env()
    configure_logging("notifier")
    # httpx logs every request's URL at INFO: a webhook URL may carry a credential.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    metrics = NotifierMetrics()
    worker = Worker(settings, metrics)
    # Integrators' webhooks (docs/webhooks.md): only when endpoints are configured.
    dispatcher = None
    if webhook_settings.endpoints:
        dispatcher = Dispatcher(webhook_settings, WebhookMetrics(metrics.registry))

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.worker = worker
        app.state.metrics = metrics
        app.state.webhooks = dispatcher
        # Not awaited here: the HTTP port answers (/readyz 503) while the worker waits for
        # NATS and the streams, so a supervisor sees a live process that is not ready yet.
        task = asyncio.create_task(worker.run())
        hooks = asyncio.create_task(dispatcher.run()) if dispatcher is not None else None
        try:
            yield
        finally:
            for running in (task, hooks):
                if running is not None:
                    running.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await running
            await worker.stop()
            if dispatcher is not None:
                await dispatcher.stop()

    app = Litestar(
        # Logging is tessera.observability's JSON lines: Litestar would install its own format.
        logging_config=None,
        route_handlers=operations_routes(readiness),
        lifespan=[lifespan],
        exception_handlers=exception_handlers(),
        debug=False,
    )
    return AccessLog(app, "notifier")
