"""The regional node's Prometheus metrics (beside the shared request-latency histogram)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from tessera.observability import Metrics

APPLY_LAG_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class RegionalMetrics(Metrics):
    def __init__(self) -> None:
        super().__init__()
        on = self.registry
        self.apply_lag_s = Histogram(
            "tessera_feed_apply_lag_seconds",
            "From the writer's commit to this node applying the delta.",
            buckets=APPLY_LAG_BUCKETS_S,
            registry=on,
        )
        self.resyncs = Counter(
            "tessera_feed_resyncs", "Section resyncs from a snapshot.", registry=on
        )
        self.malformed = Counter(
            "tessera_feed_malformed", "Malformed messages skipped.", registry=on
        )
        self.duplicates = Counter(
            "tessera_feed_duplicates", "Deltas skipped as already applied.", registry=on
        )
        self.consumer_restarts = Counter(
            "tessera_feed_consumer_restarts", "Consumers re-created by the watchdog.", registry=on
        )
        self.mirror_lag = Gauge(
            "tessera_mirror_lag_messages",
            "Messages the region's SEATS mirror is behind the hub (0 when not a mirror).",
            registry=on,
        )
        self.mirror_idle_s = Gauge(
            "tessera_mirror_idle_seconds",
            "Since the mirror last heard from the hub: a cut-off region keeps serving, this grows.",
            registry=on,
        )
        self.sse_clients = Gauge("tessera_sse_clients", "Connected SSE clients.", registry=on)
        self.sse_dropped = Counter(
            "tessera_sse_dropped", "SSE clients dropped for falling behind.", registry=on
        )
