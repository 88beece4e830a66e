"""The notifier's configuration, read once from the environment (`TESSERA_*`); every variable
is listed in `ENV_FIELDS` and documented in docs/notifications.md."""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from tessera import contracts, limits
from tessera.web import load_settings

Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2_048)]
# Empty: no SMS channel.
WebhookUrl = Annotated[str, msgspec.Meta(max_length=2_048, pattern=r"\A(?:https?://\S+)?\Z")]
Host = Annotated[str, msgspec.Meta(min_length=1, max_length=253, pattern=r"\A[A-Za-z0-9.:_-]+\Z")]
Port = Annotated[int, msgspec.Meta(ge=1, le=65_535)]
Secret = Annotated[str, msgspec.Meta(max_length=512)]
# Empty: fans without an email address get none.
FallbackDomain = Annotated[
    str, msgspec.Meta(max_length=253, pattern=rf"(?:{contracts.DOMAIN_PATTERN})|\A\Z")
]
DisplayName = Annotated[str, msgspec.Meta(max_length=64, pattern=r"\A[^\r\n\"]*\Z")]
ConsumerName = Annotated[str, msgspec.Meta(pattern=r"\A[A-Za-z0-9_-]{1,32}\Z")]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=limits.notify_backoff_s_max)]

# Which field a msgspec error is about: `$.field` for a bad value, or a missing required one.
# The slack AckWait keeps above one attempt's sends (both channels run at once): Redis and the
# dead-letter publish also take their turn before the ack.
_ACK_WAIT_MARGIN_S: Final = 5.0
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "localhost"})


class Settings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    nats_url: Url
    redis_url: Url
    smtp_host: Host = "127.0.0.1"
    smtp_port: Port = 25
    smtp_starttls: bool = False
    smtp_username: Secret = ""
    smtp_password: Secret = ""
    from_address: contracts.Email = "tickets@tessera.localhost"
    from_name: DisplayName = "Tessera"
    sms_webhook_url: WebhookUrl = ""
    # Sent as `Authorization: Bearer <token>` to the webhook when set.
    sms_webhook_token: Secret = ""
    fallback_domain: FallbackDomain = ""
    # Deliveries of a confirmation before a channel still failing is dead-lettered.
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=limits.notify_attempts_max)] = 10
    # Retry n waits backoff_s * 2**(n-1), at most backoff_cap_s, less up to backoff_jitter of it.
    backoff_s: Seconds = 5.0
    backoff_cap_s: Seconds = 600.0
    backoff_jitter: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.2
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=limits.notify_concurrency_max)] = 16
    # Each socket operation of one SMTP conversation or webhook call.
    send_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=limits.notify_send_timeout_s_max)] = 10.0
    ack_wait_s: Annotated[float, msgspec.Meta(gt=0, le=limits.notify_ack_wait_s_max)] = 60.0
    consumer: ConsumerName = "notifier"
    # Replicas of ORDERS / ORDERS_DEADLETTER if the notifier creates them before the writer does:
    # the writer's own variable, so both create the same streams.
    jetstream_replicas: Annotated[int, msgspec.Meta(ge=1, le=limits.jetstream_replicas_max)] = 1

    def __post_init__(self) -> None:
        if self.backoff_cap_s < self.backoff_s:
            raise ValueError("backoff_cap_s must be at least backoff_s")
        if self.ack_wait_s < 2 * self.send_timeout_s + _ACK_WAIT_MARGIN_S:
            # The attempt's sends are awaited for at most twice the socket timeout; a shorter
            # AckWait would let the server redeliver a message that is still being sent.
            raise ValueError(
                f"ack_wait_s must be at least 2 * send_timeout_s + {_ACK_WAIT_MARGIN_S:g}"
            )
        if bool(self.smtp_username) != bool(self.smtp_password):
            raise ValueError("smtp_username and smtp_password go together")
        if self.smtp_username and not self.smtp_starttls and self.smtp_host not in _LOOPBACK:
            # smtplib sends AUTH over whatever the connection is: without STARTTLS the password
            # crosses the network in the clear.
            raise ValueError(
                "smtp_username: a password is sent only over STARTTLS"
                " (TESSERA_NOTIFY_SMTP_STARTTLS=true), or to a relay on this host"
            )

    @property
    def attempt_timeout_s(self) -> float:
        """How long one attempt waits for a channel's send before calling it failed."""
        return 2 * self.send_timeout_s

    @property
    def claim_ttl_s(self) -> float:
        """How long a "sending" claim lives: past any redelivery of an attempt in progress."""
        return 2 * self.ack_wait_s


ENV_FIELDS: Final = {
    "nats_url": "TESSERA_NATS_URL",
    "redis_url": "TESSERA_REDIS_URL",
    "smtp_host": "TESSERA_NOTIFY_SMTP_HOST",
    "smtp_port": "TESSERA_NOTIFY_SMTP_PORT",
    "smtp_starttls": "TESSERA_NOTIFY_SMTP_STARTTLS",
    "smtp_username": "TESSERA_NOTIFY_SMTP_USERNAME",
    "smtp_password": "TESSERA_NOTIFY_SMTP_PASSWORD",
    "from_address": "TESSERA_NOTIFY_FROM",
    "from_name": "TESSERA_NOTIFY_FROM_NAME",
    "sms_webhook_url": "TESSERA_NOTIFY_SMS_WEBHOOK_URL",
    "sms_webhook_token": "TESSERA_NOTIFY_SMS_WEBHOOK_TOKEN",
    "fallback_domain": "TESSERA_NOTIFY_FALLBACK_DOMAIN",
    "max_attempts": "TESSERA_NOTIFY_MAX_ATTEMPTS",
    "backoff_s": "TESSERA_NOTIFY_BACKOFF_S",
    "backoff_cap_s": "TESSERA_NOTIFY_BACKOFF_CAP_S",
    "backoff_jitter": "TESSERA_NOTIFY_BACKOFF_JITTER",
    "concurrency": "TESSERA_NOTIFY_CONCURRENCY",
    "send_timeout_s": "TESSERA_NOTIFY_SEND_TIMEOUT_S",
    "ack_wait_s": "TESSERA_NOTIFY_ACK_WAIT_S",
    "consumer": "TESSERA_NOTIFY_CONSUMER",
    "jetstream_replicas": "TESSERA_JETSTREAM_REPLICAS",
}


def from_env(environ: dict[str, str] | None = None) -> Settings:
    """Settings from the environment; a missing or invalid value names its variable (never
    its value: some are secrets)."""
    return load_settings(Settings, ENV_FIELDS, environ)


def to_env(settings: Settings) -> dict[str, str]:
    """The `TESSERA_*` environment that configures a notifier process with these settings."""
    env: dict[str, str] = {}
    for field, variable in ENV_FIELDS.items():
        value = getattr(settings, field)
        env[variable] = str(value).lower() if isinstance(value, bool) else str(value)
    return env
