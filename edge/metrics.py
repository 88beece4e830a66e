"""The edge's Prometheus metrics (beside the shared request-latency histogram). Labels come from
closed sets: route classes, cache outcomes, limit scopes, refusal codes."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from tessera.observability import Metrics


class EdgeMetrics(Metrics):
    def __init__(self) -> None:
        super().__init__()
        on = self.registry
        self.cache_requests = Counter(
            "tessera_edge_cache_requests",
            "Cacheable GETs by outcome: HIT, MISS (this request fetched), STALE, ERROR (503).",
            ("outcome",),
            registry=on,
        )
        self.origin_requests = Counter(
            "tessera_edge_origin_requests",
            "Requests sent to the region's read nodes, by result (ok, not_modified, error).",
            ("result",),
            registry=on,
        )
        self.cache_entries = Gauge(
            "tessera_edge_cache_entries", "Entries in the micro-cache.", registry=on
        )
        self.rate_limited = Counter(
            "tessera_edge_rate_limited",
            "Requests refused with 429, by route class and the budget that refused them.",
            ("route_class", "scope"),
            registry=on,
        )
        self.rate_limit_fallbacks = Counter(
            "tessera_edge_rate_limit_local_fallbacks",
            "Rate-limit decisions taken by the in-process limiter because Redis was unreachable.",
            registry=on,
        )
        self.admission_refused = Counter(
            "tessera_edge_admission_refused",
            "Writes refused by the waiting room, by reason code.",
            ("reason",),
            registry=on,
        )
        self.queue_joins = Counter(
            "tessera_edge_queue_joins", "Waiting-room tickets issued.", registry=on
        )
        self.writer_requests = Counter(
            "tessera_edge_writer_requests",
            "Writes passed to the global writer, by result (status class or error).",
            ("result",),
            registry=on,
        )
        self.writes_shed = Counter(
            "tessera_edge_writes_shed",
            "Writes refused with 503 overloaded before reaching the writer, by reason: queue_wait "
            "(the wait for a writer connection would pass its bound), in_flight (the cap).",
            ("reason",),
            registry=on,
        )
        self.sse_clients = Gauge(
            "tessera_edge_sse_clients", "SSE streams being proxied.", registry=on
        )
        self.sse_refused = Counter(
            "tessera_edge_sse_refused",
            "Streams refused before reaching a read node, by the cap that refused them: fan, "
            "address (per client) or edge (the process's total).",
            ("cap",),
            registry=on,
        )
        self.negative_entries = Gauge(
            "tessera_edge_negative_cache_entries",
            "Paths remembered as 404 (unknown ids), bounded by limits.edge_negative_entries_max.",
            registry=on,
        )
        self.unknown_ids = Counter(
            "tessera_edge_unknown_ids",
            "Unknown ids: 404s stored in the negative cache, entries evicted by its bound, and "
            "writer_spared (event details refused on a read node's 404, the writer not asked). "
            'Answers from it are tessera_edge_cache_requests{outcome="NEGATIVE"}.',
            ("result",),
            registry=on,
        )
