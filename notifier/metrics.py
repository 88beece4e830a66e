"""The notifier's Prometheus metrics (beside the shared request-latency histogram). Labels come
from closed sets: `channel` is `email` or `sms` (`unknown` for a message that did not decode)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

from tessera.observability import Metrics

SEND_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class NotifierMetrics(Metrics):
    def __init__(self) -> None:
        super().__init__()
        on = self.registry
        self.sent = Counter(
            "tessera_notifications_sent", "Notifications delivered, by channel.", ("channel",),
            registry=on,
        )  # fmt: skip
        self.retried = Counter(
            "tessera_notifications_retried",
            "Transient failures sent back for a retry with backoff, by channel.",
            ("channel",),
            registry=on,
        )
        self.dead_lettered = Counter(
            "tessera_notifications_dead_lettered",
            "Notifications dead-lettered (permanent failure or attempts used up), by channel.",
            ("channel",),
            registry=on,
        )
        self.duplicates_skipped = Counter(
            "tessera_notifications_duplicates_skipped",
            "Channels skipped on a redelivery because a marker says they were already done.",
            ("channel",),
            registry=on,
        )
        self.no_channel = Counter(
            "tessera_notifications_no_channel",
            "Confirmations acknowledged with nothing to send (no contact, no fallback).",
            registry=on,
        )
        self.send_duration_s = Histogram(
            "tessera_notification_send_duration_seconds",
            "One send attempt (SMTP conversation or webhook call), by channel.",
            ("channel",),
            buckets=SEND_BUCKETS_S,
            registry=on,
        )
        self.in_flight = Gauge(
            "tessera_notifications_in_flight", "Confirmations being worked on.", registry=on
        )
