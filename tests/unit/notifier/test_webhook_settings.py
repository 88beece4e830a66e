"""The webhook dispatcher's settings: endpoints as JSON, bounds, errors naming the variable and
never the secret."""

from __future__ import annotations

import json

import pytest

from notifier.webhooks import from_env, to_env
from tessera import limits

BASE = {"TESSERA_NATS_URL": "nats://127.0.0.1:4222", "TESSERA_REDIS_URL": "redis://127.0.0.1"}
SECRET = "whsec_0123456789abcdef0123456789abcdef"


def endpoint(i: int = 0, **overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "id": f"crm{i}",
        "url": "https://hooks.example.com/tessera",
        "secret": SECRET,
        "events": ["order.confirmed", "event.sold_out"],
    }
    return {**values, **overrides}


def test_defaults_have_no_endpoints() -> None:
    settings = from_env(BASE)
    assert settings.endpoints == []
    assert (settings.max_attempts, settings.backoff_s, settings.timeout_s) == (10, 5.0, 10.0)


def test_endpoints_from_json_and_back() -> None:
    env = {**BASE, "TESSERA_WEBHOOK_ENDPOINTS": json.dumps([endpoint()])}
    settings = from_env(env)
    assert [e.id for e in settings.endpoints] == ["crm0"]
    assert settings.endpoints[0].wants("event.sold_out")
    assert not settings.endpoints[0].wants("order.refunded")
    assert from_env(to_env(settings)) == settings


@pytest.mark.parametrize(
    "endpoints",
    [
        "not json",
        json.dumps([endpoint(url="http://hooks.example.com/")]),
        json.dumps([endpoint(secret="short")]),
        json.dumps([endpoint(events=["order.shipped"])]),
        json.dumps([endpoint(i) for i in range(limits.webhook_endpoints_max + 1)]),
    ],
)
def test_bad_endpoints_name_the_variable_not_the_secret(endpoints: str) -> None:
    with pytest.raises(ValueError, match="TESSERA_WEBHOOK_ENDPOINTS") as error:
        from_env({**BASE, "TESSERA_WEBHOOK_ENDPOINTS": endpoints})
    assert SECRET not in str(error.value)


def test_duplicate_endpoint_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        from_env({**BASE, "TESSERA_WEBHOOK_ENDPOINTS": json.dumps([endpoint(), endpoint()])})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TESSERA_WEBHOOK_MAX_ATTEMPTS", "0"),
        ("TESSERA_WEBHOOK_MAX_ATTEMPTS", str(limits.webhook_attempts_max + 1)),
        ("TESSERA_WEBHOOK_TIMEOUT_S", str(limits.webhook_timeout_s_max + 1)),
        ("TESSERA_WEBHOOK_BACKOFF_S", "-1"),
        ("TESSERA_WEBHOOK_CONSUMER", "has.dot"),
    ],
)
def test_bad_values_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=variable):
        from_env({**BASE, variable: value})


def test_ack_wait_must_cover_a_post() -> None:
    with pytest.raises(ValueError, match="ack_wait_s"):
        from_env({**BASE, "TESSERA_WEBHOOK_TIMEOUT_S": "20", "TESSERA_WEBHOOK_ACK_WAIT_S": "21"})
