"""Metrics and structured logs, shared by every service (docs/architecture.md §6).

Metrics: each app builds its own `Metrics` on its own `CollectorRegistry`, never prometheus_client's
global one, so several apps (and tests) can live in one process; `/metrics` answers with
`render(metrics.registry)`. Label values must come from a closed set (route templates, reason
codes), never from raw request data: each distinct value is a new time series held forever.

Logs: `configure_logging` writes one JSON object per line. Values under secret-looking keys
(authorization, token, secret, password, admin_key, payment_token, …) are replaced by
`[REDACTED]` at any depth of the extra fields, and anything shaped like a JWT is redacted wherever
it appears, the message included: secrets come from the environment and never appear in logs.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from itertools import islice
from typing import Final, TextIO, TypeAlias

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from tessera import limits
from tessera.requests import current_request_id

# --- metrics ---

# Request latency: the fast path is well under 5 ms; past 10 s something is broken anyway.
REQUEST_LATENCY_BUCKETS_S: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# Requests per group-commit batch: powers of two, past any configured batch cap.
BATCH_SIZE_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
BATCH_COMMIT_BUCKETS_S: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
# Hold expiry lag (deadline to release): the target is under a second.
EXPIRY_LAG_BUCKETS_S: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

# Methods outside this set are labelled OTHER: a client must not mint time series at will.
HTTP_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """The Prometheus metrics of a service: request latency for every tier, plus the global
    writer's. Other tiers register theirs on `registry` too."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        on = self.registry
        self.request_latency_s = Histogram(
            "tessera_http_request_duration_seconds",
            "HTTP request latency, by route template, method and status code.",
            ("route", "method", "status"),
            buckets=REQUEST_LATENCY_BUCKETS_S,
            registry=on,
        )
        self.holds_committed = Counter(
            "tessera_holds_committed", "Holds committed to the database.", registry=on
        )
        self.holds_rejected = Counter(
            "tessera_holds_rejected",
            "Hold requests refused, by reason code (seats taken, user cap, ...).",
            ("reason",),
            registry=on,
        )
        self.orders = Counter("tessera_orders", "Orders committed (checkouts).", registry=on)
        self.claim_conflicts = Counter(
            "tessera_claim_conflicts",
            "Seats lost to a concurrent claim: the INSERT ... ON CONFLICT said no.",
            registry=on,
        )
        self.batch_size = Histogram(
            "tessera_batch_requests",
            "Requests committed per group-commit transaction.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=on,
        )
        self.batch_commit_latency_s = Histogram(
            "tessera_batch_commit_duration_seconds",
            "Time to commit one group-commit transaction, retries included.",
            buckets=BATCH_COMMIT_BUCKETS_S,
            registry=on,
        )
        self.outbox_unpublished = Gauge(
            "tessera_outbox_unpublished",
            "Outbox rows committed but not yet published to JetStream.",
            registry=on,
        )
        self.expiry_lag_s = Histogram(
            "tessera_hold_expiry_lag_seconds",
            "Delay from a hold's expiry to its release.",
            buckets=EXPIRY_LAG_BUCKETS_S,
            registry=on,
        )
        self.requests_shed = Counter(
            "tessera_requests_shed",
            "Requests refused at once (503 overloaded) because they would have waited too long.",
            registry=on,
        )
        self.payments_settled = Counter(
            "tessera_payments_settled",
            "Payments the settler moved on, by the state reached (captured, voided, ...).",
            ("status",),
            registry=on,
        )
        self.payments_unsettled_oldest_s = Gauge(
            "tessera_payments_unsettled_oldest_seconds",
            "Age of the oldest payment still to be captured, voided or refunded.",
            registry=on,
        )

    def observe_request(self, *, route: str, method: str, status: int, duration_s: float) -> None:
        """Record one request. `route` is the route template (`/v1/events/{event}/holds`), or a
        fixed word such as `unmatched` for 404s: never the raw path."""
        upper = method.upper()
        self.request_latency_s.labels(
            route=route, method=upper if upper in HTTP_METHODS else "OTHER", status=str(status)
        ).observe(duration_s)


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The registry in the Prometheus text format, and the content type to serve it with."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


# --- logs ---

REDACTED: Final = "[REDACTED]"
# Keys whose values are secrets, matched case-insensitively at the end of the key with `-` read
# as `_` (so `payment_token`, `X-Admin-Key`, `refresh_token`, `jwt_secret` all match, while
# `authorization_id` does not).
SENSITIVE_KEY_SUFFIXES: Final = (
    "authorization",
    "token",
    "secret",
    "password",
    "passwd",
    "admin_key",
    "api_key",
    "private_key",
    "cookie",
)
# A JWT's header is base64url JSON, so it starts with `eyJ` (`{"`): caught even in free text.
_JWT: Final = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS: Final = frozenset(
    [*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime", "taskName"]
)
_CORE_KEYS: Final = ("ts", "level", "service", "logger", "message")

Json: TypeAlias = bool | int | float | str | list["Json"] | dict[str, "Json"] | None


def is_sensitive(key: str) -> bool:
    return key.lower().replace("-", "_").endswith(SENSITIVE_KEY_SUFFIXES)


def _clip(text: str, *, keep_tail: bool = False) -> str:
    """Redact JWTs, then cut to the bound (tracebacks keep their end, where the error is)."""
    text = _JWT.sub(REDACTED, text)
    limit = limits.log_field_chars_max
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    return f"[+{cut} chars]…{text[-limit:]}" if keep_tail else f"{text[:limit]}…[+{cut} chars]"


def _fields(value: object) -> Mapping[object, object] | None:
    """Structs and dataclasses as mappings, so their secret fields are redacted by name too."""
    if isinstance(value, msgspec.Struct):
        return {name: getattr(value, name) for name in value.__struct_fields__}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return value
    return None


def redact(value: object, depth: int = 0) -> Json:
    """`value` as bounded JSON data with every secret replaced by `[REDACTED]`."""
    if value is None or isinstance(value, bool | int | float | str | bytes | bytearray):
        return _redact_scalar(value)
    if depth >= limits.log_field_depth_max:
        return f"<{type(value).__name__} nested too deep>"
    fields = _fields(value)
    if fields is not None:
        return _redact_mapping(fields, depth)
    if isinstance(value, list | tuple | set | frozenset):
        return _redact_items(value, depth)
    try:
        return _clip(str(value))
    except Exception:  # a broken __str__ must not lose the log line
        return f"<unprintable {type(value).__name__}>"


def _redact_scalar(value: bool | float | str | bytes | bytearray | None) -> Json:
    if isinstance(value, str):
        return _clip(value)
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"  # raw bytes may be anything, a key included
    return value


def _redact_mapping(fields: Mapping[object, object], depth: int) -> dict[str, Json]:
    items_max = limits.log_field_items_max
    out: dict[str, Json] = {}
    for index, (key, item) in enumerate(fields.items()):
        if index == items_max:
            out["…"] = f"+{len(fields) - items_max} items"
            break
        name = str(key)
        out[name] = REDACTED if is_sensitive(name) else redact(item, depth + 1)
    return out


def _redact_items(
    values: list[object] | tuple[object, ...] | set[object] | frozenset[object], depth: int
) -> list[Json]:
    items_max = limits.log_field_items_max
    listed: list[Json] = [redact(item, depth + 1) for item in islice(values, items_max)]
    if len(values) > items_max:
        listed.append(f"…+{len(values) - items_max} items")
    return listed


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, service, logger, message, then the extra fields
    (renamed `extra_<key>` when they collide with those five)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")
        entry: dict[str, Json] = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": _clip(record.getMessage()),
        }
        request_id = current_request_id()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key in _RECORD_ATTRS:
                continue
            name = f"extra_{key}" if key in _CORE_KEYS else key
            entry[name] = REDACTED if is_sensitive(key) else redact(value, 1)
        if record.exc_info:
            entry["exc"] = _clip(self.formatException(record.exc_info), keep_tail=True)
        if record.stack_info:
            entry["stack"] = _clip(self.formatStack(record.stack_info), keep_tail=True)
        return msgspec.json.encode(entry).decode()


class _JsonHandler(logging.StreamHandler[TextIO]):
    """Marks the handler `configure_logging` installed, so calling it again replaces only that."""


def configure_logging(service: str, level: str = "INFO", *, stream: TextIO | None = None) -> None:
    """Send every log record of this process, as JSON lines, to `stream` (default stderr).

    Idempotent: a second call replaces the handler the first installed and leaves any other
    handler (a test harness's, say) alone.
    """
    if not service:
        raise ValueError("service must be named")
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _JsonHandler)]:
        root.removeHandler(handler)
    handler = _JsonHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter(service))
    root.addHandler(handler)
    root.setLevel(numeric)
