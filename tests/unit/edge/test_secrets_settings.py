"""The edge's and the writer's secret settings stop the process at start, naming the variable and
never the value, when they are malformed (docs/edge.md, "Secrets")."""

from __future__ import annotations

import msgspec
import pytest

from edge.settings import OriginSecrets, from_env
from global_writer.settings import from_env as writer_from_env

BASE = {
    "TESSERA_ORIGIN_URLS": "http://127.0.0.1:9",
    "TESSERA_WRITER_URL": "http://127.0.0.1:9",
    "TESSERA_REDIS_URL": "redis://127.0.0.1:9",
    "TESSERA_ADMIN_KEY": "a" * 32,
    "TESSERA_ADMISSION_SECRET": "s" * 32,
    "TESSERA_JWT_SECRET": "j" * 32,
}
GOOD = "g" * 64


def test_the_origin_secrets_values_are_the_non_empty_ones() -> None:
    settings = from_env(
        {**BASE, "TESSERA_EDGE_ORIGIN_SECRETS": f'{{"previous": "", "current": "{GOOD}"}}'}
    )
    assert isinstance(settings.origin_secrets, OriginSecrets)
    assert settings.origin_secrets.accepted() == (GOOD.encode(),)
    assert settings.origin_header == "X-Origin-Secret"
    assert from_env(BASE).origin_secrets is msgspec.UNSET


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("not json", "not a JSON document"),
        ('{"previous": "", "current": "", "next": ""}', "all empty"),
        ('{"current": "short"}', "regex"),
        (f'{{"current": "{"!" * 40}"}}', "regex"),
        (f'{{"current": "{GOOD}", "later": "{GOOD}"}}', "unknown field"),
        (f'["{GOOD}"]', "Expected `object`"),
        ("null", "Expected `object`"),
    ],
)
def test_a_bad_origin_secret_stops_the_edge_naming_the_variable(value: str, said: str) -> None:
    with pytest.raises(ValueError, match="TESSERA_EDGE_ORIGIN_SECRETS") as raised:
        from_env({**BASE, "TESSERA_EDGE_ORIGIN_SECRETS": value})
    assert said in str(raised.value)
    assert "short" not in str(raised.value) and "!!!!" not in str(raised.value)


@pytest.mark.parametrize(
    "value",
    ["short", "c" * 31, "c" * 40 + " " + "c", ",".join(["c" * 40] * 4), "c" * 40 + ","],
)
def test_a_bad_edge_writer_credential_stops_either_tier(value: str) -> None:
    with pytest.raises(ValueError, match="TESSERA_EDGE_WRITER_CREDENTIAL"):
        from_env({**BASE, "TESSERA_EDGE_WRITER_CREDENTIAL": value})
    writer = {
        "TESSERA_DATABASE_URL": "postgresql://x",
        "TESSERA_REDIS_URL": "redis://x",
        "TESSERA_NATS_URL": "nats://x",
        "TESSERA_ADMIN_KEY": "a" * 32,
        "TESSERA_JWT_SECRET": "j" * 32,
        "TESSERA_EDGE_WRITER_CREDENTIAL": value,
    }
    with pytest.raises(ValueError, match="TESSERA_EDGE_WRITER_CREDENTIAL"):
        writer_from_env(writer)


def test_the_internal_port_and_host() -> None:
    settings = from_env({**BASE, "TESSERA_EDGE_INTERNAL_PORT": "9100"})
    assert (settings.internal_port, settings.internal_host) == (9100, "127.0.0.1")
    with pytest.raises(ValueError, match="TESSERA_EDGE_INTERNAL_PORT"):
        from_env({**BASE, "TESSERA_EDGE_INTERNAL_PORT": "70000"})
