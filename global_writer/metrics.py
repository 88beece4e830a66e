"""Request metrics middleware (the `/metrics` endpoint is tessera/web.py's), and the writer's
metrics that live outside `tessera.observability.Metrics`."""

from __future__ import annotations

import time

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter

from tessera.observability import Metrics


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


class ForwardingMetrics:
    """Writes this writer passed to the event's lease holder (global_writer/forwarding.py), by
    result: `answered` (the owner's answer relayed, whatever its status) or `failed` (the owner
    did not answer: 503 here). A steady `answered` rate means the load balancer spreads an
    event's writes over writers that do not own it; `failed` rises while an owner dies."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.forwarded = Counter(
            "tessera_writes_forwarded",
            "Requests forwarded to the writer holding the event's lease, by result.",
            ("result",),
            registry=registry,
        )


class PruningMetrics:
    """Rows the pruner deleted (global_writer/pruning.py), by table: a closed set of labels."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rows_pruned = Counter(
            "tessera_rows_pruned",
            "Rows deleted by the writer's pruner (expired idempotency keys, published outbox"
            " rows), by table.",
            ("table",),
            registry=registry,
        )


class ReconcileMetrics:
    """What reconciliation did (global_writer/reconcile.py), by where it ran (`scheduled`,
    `webhook`, `manual`) and finding: both closed sets of labels."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.findings = Counter(
            "tessera_payments_reconciled",
            "Provider authorizations reconciled against the database, by source and finding"
            " (voided_orphan, voided_again, woke_settler, mismatch, failed, …).",
            ("source", "finding"),
            registry=registry,
        )
        self.rounds = Counter(
            "tessera_reconcile_rounds",
            "Scheduled reconcile rounds, by result: ran, skipped (another writer holds the lease),"
            " failed (the provider or the database could not be asked).",
            ("result",),
            registry=registry,
        )
        self.webhooks = Counter(
            "tessera_stripe_webhooks",
            "Stripe webhook deliveries, by result: handled, ignored (an event type Tessera does"
            " not act on), refused (400: bad signature, stale, oversize, not an event), failed"
            " (503: Stripe delivers it again).",
            ("result",),
            registry=registry,
        )
