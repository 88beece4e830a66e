"""Choosing the payment provider from the environment: the sandbox only outside production,
Stripe only with an API key, and every refusal naming the variable to change."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from writer_support import writer_env

from global_writer.payments import SandboxProvider, build_provider
from global_writer.settings import Settings, from_env
from global_writer.stripe_provider import StripeProvider
from tessera.tickets import new_signing_ring

BASE_ENV = {
    "TESSERA_DATABASE_URL": "postgresql://db",
    "TESSERA_REDIS_URL": "redis://cache",
    "TESSERA_NATS_URL": "nats://hub",
    "TESSERA_ADMIN_KEY": "a" * 32,
    "TESSERA_JWT_SECRET": "j" * 32,
}
STRIPE_ENV = {"TESSERA_PAYMENT_PROVIDER": "stripe", "TESSERA_STRIPE_API_KEY": "sk_test_123"}
# Production refuses the HS256 development secret (tests/unit/tessera/test_identity.py), so the
# production cases verify fans' tokens with an identity provider's keys instead.
JWKS_URL = "https://id.example.com/.well-known/jwks.json"
# Without the development secret the writer needs real ticket keys (docs/tickets.md).
TICKET_KEYS = new_signing_ring("test")


def env(production: str = "false", **extra: str) -> dict[str, str]:
    if production.lower() in {"true", "1"}:
        base = {k: v for k, v in BASE_ENV.items() if k != "TESSERA_JWT_SECRET"}
        return {
            **base,
            "TESSERA_JWKS_URL": JWKS_URL,
            "TESSERA_TICKET_SIGNING_KEYS": TICKET_KEYS,
            "TESSERA_PRODUCTION": production,
            **extra,
        }
    return {**BASE_ENV, "TESSERA_PRODUCTION": production, **extra}


def settings(**overrides: Any) -> Settings:
    identity: dict[str, Any] = (
        {"jwks_url": JWKS_URL, "ticket_signing_keys": TICKET_KEYS}
        if overrides.get("production")
        else {"jwt_secret": "j" * 32}
    )
    return Settings(
        database_url="postgresql://db",
        redis_url="redis://cache",
        nats_url="nats://hub",
        admin_key="a" * 32,
        **identity,
        **overrides,
    )


def test_the_default_is_the_sandbox_outside_production() -> None:
    configured = from_env(BASE_ENV)
    assert (configured.payment_provider, configured.production) == ("sandbox", False)
    assert (configured.stripe_api_key, configured.stripe_api_base) == ("", "")
    provider = build_provider(msgspec.structs.replace(configured, payment_slow_s=0.25))
    assert isinstance(provider, SandboxProvider)
    assert provider.slow_delay_s == 0.25


@pytest.mark.parametrize("provider", [{}, {"TESSERA_PAYMENT_PROVIDER": "sandbox"}])
@pytest.mark.parametrize("production", ["true", "TRUE", "1"])
def test_the_sandbox_is_refused_in_production(provider: dict[str, str], production: str) -> None:
    with pytest.raises(ValueError, match=r"^TESSERA_PAYMENT_PROVIDER: .*TESSERA_PRODUCTION"):
        from_env(env(production, **provider))


def test_the_production_rule_holds_however_settings_are_made() -> None:
    with pytest.raises(ValueError, match="TESSERA_PAYMENT_PROVIDER"):
        settings(production=True)
    with pytest.raises(ValueError, match="TESSERA_PAYMENT_PROVIDER"):
        msgspec.structs.replace(settings(), jwt_secret="", jwks_url=JWKS_URL, production=True)


def test_build_provider_refuses_the_sandbox_in_production_even_past_validation() -> None:
    sneaked = settings()
    msgspec.structs.force_setattr(sneaked, "production", True)
    with pytest.raises(ValueError, match="TESSERA_PAYMENT_PROVIDER"):
        build_provider(sneaked)


@pytest.mark.parametrize("key", [{}, {"TESSERA_STRIPE_API_KEY": ""}])
@pytest.mark.parametrize("production", ["false", "true"])
def test_stripe_without_an_api_key_is_refused(key: dict[str, str], production: str) -> None:
    stripe = env(production, TESSERA_PAYMENT_PROVIDER="stripe")
    with pytest.raises(ValueError, match=r"^TESSERA_STRIPE_API_KEY: required"):
        from_env({**stripe, **key})
    with pytest.raises(ValueError, match="TESSERA_STRIPE_API_KEY"):
        settings(payment_provider="stripe")


def test_stripe_with_a_key_is_accepted_in_production() -> None:
    configured = from_env(
        env(
            "true",
            **STRIPE_ENV,
            TESSERA_STRIPE_API_BASE="http://127.0.0.1:8420",
            TESSERA_STRIPE_WEBHOOK_SECRET="whsec_abc",
        )
    )
    assert (configured.payment_provider, configured.production) == ("stripe", True)
    assert configured.stripe_api_base == "http://127.0.0.1:8420"
    assert configured.stripe_webhook_secret == "whsec_abc"
    provider = build_provider(configured)
    assert isinstance(provider, StripeProvider)
    assert provider.name == "stripe"
    asyncio.run(provider.aclose())


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TESSERA_PAYMENT_PROVIDER", "paypal"),
        ("TESSERA_PAYMENT_PROVIDER", "Stripe"),
        ("TESSERA_PRODUCTION", "yes"),
        ("TESSERA_STRIPE_API_KEY", "k" * 257),
        ("TESSERA_STRIPE_WEBHOOK_SECRET", "w" * 257),
        ("TESSERA_STRIPE_API_BASE", "h" * 2_049),
    ],
)
def test_an_invalid_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"^{variable}: "):
        from_env({**BASE_ENV, **STRIPE_ENV, variable: value})


def test_the_writer_environment_round_trips_the_payment_settings() -> None:
    """`writer_env` (how tests start writer processes) skips empty strings: an unset API base
    must stay unset, not become the string "None"."""
    for configured in (
        settings(),
        settings(payment_provider="stripe", stripe_api_key="sk_test_1", production=True),
    ):
        assert from_env(writer_env(configured)) == configured.with_writer_id()
    assert "TESSERA_STRIPE_API_BASE" not in writer_env(settings())


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"api_key": ""}, "TESSERA_STRIPE_API_KEY"),
        ({"timeout_s": 0.0}, "timeout_s"),
        ({"connect_timeout_s": float("nan")}, "connect_timeout_s"),
        ({"network_retries": -1}, "network_retries"),
    ],
)
def test_stripe_provider_arguments_are_checked(bad: dict[str, Any], named: str) -> None:
    arguments: dict[str, Any] = {"api_key": "sk_test_1", **bad}
    with pytest.raises(ValueError, match=named):
        StripeProvider(**arguments)
