"""`create_app()`: the global writer as a Litestar app (serve it with Granian, see README)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.openapi import OpenAPIConfig

from global_writer import errors
from global_writer.controllers.admin import AdminController
from global_writer.controllers.events import EventsController
from global_writer.controllers.events_admin import EventsAdminController
from global_writer.controllers.health import readiness
from global_writer.controllers.holds import HoldsController
from global_writer.controllers.me import MeController
from global_writer.controllers.me_orders import MeOrdersController
from global_writer.controllers.orders import OrdersController
from global_writer.controllers.orders_admin import OrdersAdminController
from global_writer.controllers.payments_admin import PaymentsAdminController
from global_writer.controllers.stripe_webhook import StripeWebhookController
from global_writer.controllers.tickets import TicketsController
from global_writer.fastpath import HotWrites
from global_writer.metrics import metrics_middleware
from global_writer.payments import PaymentProvider
from global_writer.service import Writer
from global_writer.settings import Settings, from_env
from tessera import limits
from tessera.observability import configure_logging
from tessera.requests import AccessLog
from tessera.web import exception_handlers, operations_routes


def create_app(
    settings: Settings | None = None, payments: PaymentProvider | None = None
) -> AccessLog:
    """The writer: the hot writes (global_writer/fastpath.py) in front of the Litestar app, all
    of it behind the access log (tessera/requests.py)."""
    writer = Writer(settings or from_env(), payments)
    configure_logging("global_writer")

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.writer = writer
        app.state.metrics = writer.metrics
        await writer.start()
        try:
            yield
        finally:
            await writer.stop()

    app = Litestar(
        # Logging is tessera.observability's JSON lines: Litestar would install its own format.
        logging_config=None,
        route_handlers=[
            AdminController,
            EventsController,
            EventsAdminController,
            HoldsController,
            OrdersController,
            PaymentsAdminController,
            MeController,
            MeOrdersController,
            OrdersAdminController,
            TicketsController,
            # Stripe's webhook exists only where Stripe is the provider (docs/payments.md).
            *([StripeWebhookController] if writer.settings.payment_provider == "stripe" else []),
            *operations_routes(readiness),
        ],
        middleware=[metrics_middleware],
        lifespan=[lifespan],
        exception_handlers=exception_handlers(errors.answer_unexpected),
        request_max_body_size=limits.request_body_bytes_max,
        openapi_config=OpenAPIConfig(
            title="Tessera global writer", version="0.1.0", path="/schema"
        ),
        debug=False,
    )
    return AccessLog(HotWrites(app, writer), "global_writer")
