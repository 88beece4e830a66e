"""Prometheus metrics on per-app registries, and JSON logs that never show a secret."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tessera import limits
from tessera.auth import mint_token
from tessera.observability import (
    REDACTED,
    JsonFormatter,
    Metrics,
    configure_logging,
    is_sensitive,
    redact,
    render,
)

# --- metrics ---


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the rendered text, keyed by name and sorted labels."""
    text, _ = render(metrics.registry)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def test_two_apps_in_one_process_have_separate_registries() -> None:
    one, two = Metrics(), Metrics()  # the global registry would refuse the second
    one.orders.inc()
    assert samples(one)[("tessera_orders_total", ())] == 1
    assert samples(two)[("tessera_orders_total", ())] == 0


def test_a_given_registry_is_used() -> None:
    registry = CollectorRegistry()
    assert Metrics(registry).registry is registry


def test_render_answers_prometheus_text() -> None:
    body, content_type = render(Metrics().registry)
    assert content_type.startswith("text/plain; version=")
    assert b"# TYPE tessera_holds_committed_total counter" in body


def test_every_writer_metric_is_exposed() -> None:
    metrics = Metrics()
    metrics.observe_request(route="/v1/holds", method="POST", status=201, duration_s=0.003)
    metrics.holds_committed.inc(4)
    metrics.holds_rejected.labels(reason="seats_unavailable").inc()
    metrics.orders.inc()
    metrics.claim_conflicts.inc(2)
    metrics.batch_size.observe(17)
    metrics.batch_commit_latency_s.observe(0.004)
    metrics.outbox_unpublished.set(3)
    metrics.expiry_lag_s.observe(0.4)
    seen = samples(metrics)

    def value(name: str, **labels: str) -> float:
        return seen[(name, tuple(sorted(labels.items())))]

    request = {"method": "POST", "route": "/v1/holds", "status": "201"}
    assert value("tessera_http_request_duration_seconds_count", **request) == 1
    assert value("tessera_http_request_duration_seconds_bucket", **request, le="0.005") == 1
    assert value("tessera_http_request_duration_seconds_bucket", **request, le="0.001") == 0
    assert value("tessera_holds_committed_total") == 4
    assert value("tessera_holds_rejected_total", reason="seats_unavailable") == 1
    assert value("tessera_orders_total") == 1
    assert value("tessera_claim_conflicts_total") == 2
    assert value("tessera_batch_requests_bucket", le="32.0") == 1
    assert value("tessera_batch_requests_bucket", le="16.0") == 0
    assert value("tessera_batch_commit_duration_seconds_sum") == pytest.approx(0.004)
    assert value("tessera_outbox_unpublished") == 3
    assert value("tessera_hold_expiry_lag_seconds_count") == 1


def test_unknown_methods_share_one_label() -> None:
    metrics = Metrics()
    for method in ("get", "BREW", "X" * 100):
        metrics.observe_request(route="unmatched", method=method, status=404, duration_s=0.001)
    methods = {
        dict(labels)["method"]
        for (name, labels) in samples(metrics)
        if name == "tessera_http_request_duration_seconds_count"
    }
    assert methods == {"GET", "OTHER"}


# --- logs ---


@pytest.fixture
def log() -> Iterator[io.StringIO]:
    """Configure JSON logs into a buffer; restore the root logger afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("writer", "DEBUG", stream=stream)
    yield stream
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_is_one_json_line_with_the_core_fields(log: io.StringIO) -> None:
    logging.getLogger("tessera.test").info("hold %s committed", "h1", extra={"event_id": "e1"})
    (entry,) = lines(log)
    assert list(entry)[:5] == ["ts", "level", "service", "logger", "message"]
    assert entry["level"] == "INFO"
    assert entry["service"] == "writer"
    assert entry["logger"] == "tessera.test"
    assert entry["message"] == "hold h1 committed"
    assert entry["event_id"] == "e1"
    assert entry["ts"].endswith("Z")
    assert len(entry["ts"]) == len("2025-01-01T00:00:00.000Z")


def test_secret_keys_are_redacted_at_any_depth(log: io.StringIO) -> None:
    extra = {
        "token": "t0p",
        "payment_token": "tok_visa",
        "headers": {"Authorization": "Bearer abc", "X-Admin-Key": "adm", "accept": "*/*"},
        "attempts": [{"password": "pw", "user": "fan-1"}, ("jwt_secret", "not a key-value")],
        "authorization_id": "sandbox_auth_1",  # an id, not a credential
    }
    logging.getLogger("t").warning("checkout", extra=extra)
    (entry,) = lines(log)
    assert entry["token"] == entry["payment_token"] == REDACTED
    assert entry["headers"] == {"Authorization": REDACTED, "X-Admin-Key": REDACTED, "accept": "*/*"}
    assert entry["attempts"][0] == {"password": REDACTED, "user": "fan-1"}
    assert entry["authorization_id"] == "sandbox_auth_1"
    for secret in ("t0p", "tok_visa", "abc", "adm", "pw"):
        assert secret not in log.getvalue().replace("authorization_id", "")


@pytest.mark.parametrize(
    "key",
    [
        "authorization",
        "Authorization",
        "token",
        "access_token",
        "secret",
        "JWT_SECRET",
        "password",
        "admin_key",
        "x-admin-key",
        "payment_token",
        "paymentToken",
        "api_key",
        "set-cookie",
    ],
)
def test_sensitive_keys(key: str) -> None:
    assert is_sensitive(key)


@pytest.mark.parametrize("key", ["authorization_id", "user_id", "event", "tokens_left", "key"])
def test_ordinary_keys(key: str) -> None:
    assert not is_sensitive(key)


def test_jwts_are_redacted_even_in_free_text(log: io.StringIO) -> None:
    token = mint_token("fan-1", "x" * 32, now=1_700_000_000)
    logging.getLogger("t").info("got %s", f"Bearer {token}", extra={"note": [f"it was {token}"]})
    (entry,) = lines(log)
    assert entry["message"] == f"got Bearer {REDACTED}"
    assert entry["note"] == [f"it was {REDACTED}"]
    assert token.split(".")[2] not in log.getvalue()


def test_structs_and_dataclasses_are_redacted_by_field_name() -> None:
    class Checkout(msgspec.Struct):
        hold_id: str
        payment_token: str

    @dataclasses.dataclass
    class Login:
        user: str
        password: str

    assert redact(Checkout("h1", "tok_visa")) == {"hold_id": "h1", "payment_token": REDACTED}
    assert redact(Login("fan", "pw")) == {"user": "fan", "password": REDACTED}


def test_values_are_bounded() -> None:
    long = "a" * (limits.log_field_chars_max + 10)
    assert redact(long) == "a" * limits.log_field_chars_max + "…[+10 chars]"
    many = list(range(limits.log_field_items_max + 5))
    assert redact(many) == [*range(limits.log_field_items_max), "…+5 items"]
    wide = {str(n): n for n in range(limits.log_field_items_max + 1)}
    assert redact(wide)["…"] == "+1 items"  # type: ignore[index,call-overload]
    loop: list[object] = []
    loop.append(loop)
    nested = redact(loop)
    for _ in range(limits.log_field_depth_max - 1):
        assert isinstance(nested, list)
        nested = nested[0]
    assert nested == ["<list nested too deep>"]


def test_odd_values_become_text() -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError

    assert redact(b"\x00secret") == "<7 bytes>"
    assert redact(Broken()) == "<unprintable Broken>"
    assert redact({1: 2.5, None: True}) == {"1": 2.5, "None": True}
    assert redact({"a"}) == ["a"]


def test_colliding_extra_keys_do_not_replace_core_fields(log: io.StringIO) -> None:
    logging.getLogger("t").info("m", extra={"service": "spoof", "level": "nope"})
    (entry,) = lines(log)
    assert (entry["service"], entry["level"]) == ("writer", "INFO")
    assert (entry["extra_service"], entry["extra_level"]) == ("spoof", "nope")


def test_exceptions_keep_the_end_of_the_traceback(log: io.StringIO) -> None:
    try:
        raise ValueError("x" * limits.log_field_chars_max)
    except ValueError:
        logging.getLogger("t").exception("failed")
    (entry,) = lines(log)
    assert entry["level"] == "ERROR"
    assert entry["exc"].startswith("[+")
    assert entry["exc"].endswith("x" * 10)
    assert len(entry["exc"]) < limits.log_field_chars_max + 32


def test_configure_twice_keeps_one_handler_and_spares_others(log: io.StringIO) -> None:
    foreign = logging.NullHandler()
    root = logging.getLogger()
    root.addHandler(foreign)
    try:
        second = io.StringIO()
        configure_logging("regional", "WARNING", stream=second)
        logging.getLogger("t").info("dropped: below WARNING")
        logging.getLogger("t").warning("kept")
        assert log.getvalue() == ""  # the first handler was replaced
        assert [entry["message"] for entry in lines(second)] == ["kept"]
        assert lines(second)[0]["service"] == "regional"
        assert foreign in root.handlers
    finally:
        root.removeHandler(foreign)


@pytest.mark.parametrize(("service", "level"), [("writer", "LOUD"), ("", "INFO")])
def test_bad_configuration_is_refused(service: str, level: str) -> None:
    with pytest.raises(ValueError, match=r"level|service"):
        configure_logging(service, level)


def test_the_formatter_works_alone() -> None:
    record = logging.LogRecord("n", logging.DEBUG, __file__, 1, "plain", None, None)
    assert json.loads(JsonFormatter("edge").format(record))["level"] == "DEBUG"
