"""The notifier's settings from the environment: defaults, bounds, errors naming the variable."""

from __future__ import annotations

import pytest

from notifier.settings import ENV_FIELDS, Settings, from_env, to_env

BASE = {"TESSERA_NATS_URL": "nats://127.0.0.1:4222", "TESSERA_REDIS_URL": "redis://127.0.0.1"}


def test_defaults() -> None:
    settings = from_env(BASE)
    assert (settings.smtp_host, settings.smtp_port) == ("127.0.0.1", 25)
    assert settings.sms_webhook_url == ""
    assert settings.fallback_domain == ""
    assert (settings.max_attempts, settings.backoff_s, settings.backoff_cap_s) == (10, 5.0, 600.0)
    assert settings.claim_ttl_s == 2 * settings.ack_wait_s


def test_values_from_strings() -> None:
    settings = from_env(
        {
            **BASE,
            "TESSERA_NOTIFY_SMTP_PORT": "1025",
            "TESSERA_NOTIFY_SMTP_STARTTLS": "true",
            "TESSERA_NOTIFY_BACKOFF_S": "0.1",
            "TESSERA_NOTIFY_FALLBACK_DOMAIN": "tessera.localhost",
            "TESSERA_NOTIFY_SMS_WEBHOOK_URL": "https://sms.example.com/send",
        }
    )
    assert settings.smtp_port == 1025
    assert settings.smtp_starttls is True
    assert settings.backoff_s == 0.1
    assert settings.fallback_domain == "tessera.localhost"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TESSERA_NOTIFY_SMTP_PORT", "70000"),
        ("TESSERA_NOTIFY_MAX_ATTEMPTS", "0"),
        ("TESSERA_NOTIFY_MAX_ATTEMPTS", "51"),
        ("TESSERA_NOTIFY_FROM", "not-an-address"),
        ("TESSERA_NOTIFY_FALLBACK_DOMAIN", "bad domain"),
        ("TESSERA_NOTIFY_SMS_WEBHOOK_URL", "ftp://x"),
        ("TESSERA_NOTIFY_CONCURRENCY", "100000"),
        ("TESSERA_NOTIFY_CONSUMER", "has.dot"),
    ],
)
def test_bad_values_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=variable):
        from_env({**BASE, variable: value})


def test_missing_servers_are_named() -> None:
    with pytest.raises(ValueError, match="TESSERA_NATS_URL"):
        from_env({"TESSERA_REDIS_URL": "redis://x"})


def test_secrets_never_appear_in_errors() -> None:
    with pytest.raises(ValueError) as caught:
        from_env({**BASE, "TESSERA_NOTIFY_SMTP_PASSWORD": "hunter2" * 100})
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"TESSERA_NOTIFY_BACKOFF_S": "10", "TESSERA_NOTIFY_BACKOFF_CAP_S": "5"}, "backoff_cap_s"),
        ({"TESSERA_NOTIFY_SEND_TIMEOUT_S": "30", "TESSERA_NOTIFY_ACK_WAIT_S": "60"}, "ack_wait_s"),
        ({"TESSERA_NOTIFY_SMTP_USERNAME": "user"}, "smtp_password"),
        (
            {
                "TESSERA_NOTIFY_SMTP_HOST": "smtp.example.com",
                "TESSERA_NOTIFY_SMTP_USERNAME": "user",
                "TESSERA_NOTIFY_SMTP_PASSWORD": "pw",
            },
            "STARTTLS",
        ),
    ],
)
def test_inconsistent_settings(change: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_env({**BASE, **change})


def test_a_password_crosses_the_network_only_under_starttls() -> None:
    login = {"TESSERA_NOTIFY_SMTP_USERNAME": "user", "TESSERA_NOTIFY_SMTP_PASSWORD": "pw"}
    remote = {**BASE, **login, "TESSERA_NOTIFY_SMTP_HOST": "smtp.example.com"}
    assert from_env({**remote, "TESSERA_NOTIFY_SMTP_STARTTLS": "true"}).smtp_starttls
    assert from_env({**BASE, **login, "TESSERA_NOTIFY_SMTP_HOST": "localhost"}).smtp_username


def test_to_env_round_trips() -> None:
    settings = Settings(
        nats_url="nats://x", redis_url="redis://y", smtp_starttls=True, backoff_s=0.5
    )
    env = to_env(settings)
    assert set(env) == set(ENV_FIELDS.values())
    assert from_env(env) == settings
