"""The writer's configuration, read once from the environment (`TESSERA_*`)."""

from __future__ import annotations

import socket
from typing import Annotated, Literal

import msgspec

from global_writer import tickets
from tessera import contracts, limits
from tessera.identity import IDENTITY_ENV_FIELDS, IdentitySettings
from tessera.web import load_settings

Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2_048)]
Name = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


class Settings(IdentitySettings, forbid_unknown_fields=True, frozen=True, kw_only=True):
    database_url: Url
    redis_url: Url
    nats_url: Url
    admin_key: Annotated[str, msgspec.Meta(min_length=32, max_length=256)]
    region: Name = "local"
    writer_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] = ""
    batch_window_ms: Annotated[float, msgspec.Meta(ge=0, le=50)] = limits.batch_window_ms
    batch_requests_max: Annotated[int, msgspec.Meta(ge=1, le=4_096)] = limits.batch_requests_max
    payment_slow_s: Annotated[float, msgspec.Meta(ge=0, le=30)] = 2.0
    # Which payment provider checkout uses (docs/payments.md); `__post_init__` keeps the sandbox,
    # which takes no money, out of production.
    payment_provider: Literal["sandbox", "stripe"] = "sandbox"
    stripe_api_key: Annotated[str, msgspec.Meta(max_length=256)] = ""
    # A Stripe-compatible server instead of Stripe's own API (tests run localstripe); empty:
    # Stripe's own. Empty, not None, means unset, as for every optional string here.
    stripe_api_base: Annotated[str, msgspec.Meta(max_length=2_048)] = ""
    stripe_webhook_secret: Annotated[str, msgspec.Meta(max_length=256)] = ""
    # Replicas of the hub's streams it creates at start-up: 3 on a clustered hub (the deployment
    # sets it from its NATS cluster size), 1 on a single server.
    jetstream_replicas: Annotated[int, msgspec.Meta(ge=1, le=limits.jetstream_replicas_max)] = 1
    # Tickets (docs/tickets.md): the Ed25519 signing ring as JSON, `{"current": kid, "private":
    # {kid: base64url seed}, "public": {kid: base64url public key}}`; empty derives a fixed
    # development key from the HS256 secret, and is refused without one (global_writer/tickets.py).
    ticket_signing_keys: Annotated[str, msgspec.Meta(max_length=8_192)] = ""
    # Door staff credentials for POST /v1/tickets/scan, as JSON `{name: key}`; empty: no scanning.
    door_staff_keys: Annotated[str, msgspec.Meta(max_length=32_768)] = ""
    # The edges' credential (`X-Edge-Credential`; comma-separated values, any accepted, for a
    # rotation): set, fans' writes (holds, extensions, releases, orders) without it are refused
    # 403, so nobody but an edge can skip its rate budgets and waiting room
    # (global_writer/fastpath.py). Empty: not required (local development, tests).
    edge_writer_credential: Annotated[
        str, msgspec.Meta(max_length=1_600, pattern=contracts.EDGE_CREDENTIAL_PATTERN)
    ] = ""
    # Where the other writers reach this one (`http://host:port`; `{host}` is replaced by this
    # host's address), written into the leases it holds so a write for one of its events that
    # reaches another writer is forwarded here (global_writer/forwarding.py). Empty: not
    # forwarded to; the others answer such writes 503, as a single writer needs nothing more.
    writer_advertise_url: Annotated[
        str, msgspec.Meta(max_length=2_048, pattern=r"^(http://[^\s/]+/?)?$")
    ] = ""
    # Test-only: the process SIGKILLs itself after a commit and before publishing it, so the fault
    # suite can prove the relay republishes what a crash left unsent.
    fault_crash_after_commit: bool = False
    # Test-only: the same, after the first commit that sold seats (expiries of other events'
    # holds, committed meanwhile, do not count), so a case can crash with captures pending.
    fault_crash_after_sale: bool = False
    # Test-only: the process SIGKILLs itself after the payment provider authorized a checkout and
    # before its batch commits, so the fault suite can prove the orphan is voided automatically.
    fault_crash_after_authorize: bool = False
    # The scheduled reconcile (global_writer/reconcile.py `AutoReconciler`, docs/payments.md).
    reconcile_interval_s: Annotated[
        float,
        msgspec.Meta(
            ge=limits.reconcile_auto_interval_s_min, le=limits.reconcile_auto_interval_s_max
        ),
    ] = limits.reconcile_auto_interval_s
    reconcile_older_than_s: Annotated[
        float,
        msgspec.Meta(
            ge=limits.reconcile_auto_older_than_s_min, le=limits.reconcile_older_than_s_max
        ),
    ] = limits.reconcile_auto_older_than_s

    def __post_init__(self) -> None:
        # Rules across fields: each message names the variables to change, as a field error does.
        self.identity.check(production=self.production)
        if self.payment_provider == "sandbox" and self.production:
            raise ValueError(
                "TESSERA_PAYMENT_PROVIDER: the sandbox takes no money, so it is refused when "
                "TESSERA_PRODUCTION is true; set TESSERA_PAYMENT_PROVIDER=stripe"
            )
        if self.payment_provider == "stripe" and not self.stripe_api_key:
            raise ValueError(
                "TESSERA_STRIPE_API_KEY: required when TESSERA_PAYMENT_PROVIDER is stripe"
            )
        # The ticket keys and door credentials parse here, so a bad value stops the process at
        # start with a message naming its variable (never a key).
        tickets.SigningRing.parse(self.ticket_signing_keys, dev_secret=self.jwt_secret)
        tickets.staff_credentials(self.door_staff_keys)

    def with_writer_id(self) -> Settings:
        """The lease owner name. Stable across restarts of the same slot (region + host), so a
        restarted writer takes its events back at once under a new fencing epoch instead of
        waiting out the dead process's lease; the epoch still fences any surviving zombie."""
        if self.writer_id:
            return self
        return msgspec.structs.replace(self, writer_id=f"{self.region}-{socket.gethostname()}")


ENV_FIELDS = {
    **IDENTITY_ENV_FIELDS,
    "database_url": "TESSERA_DATABASE_URL",
    "redis_url": "TESSERA_REDIS_URL",
    "nats_url": "TESSERA_NATS_URL",
    "admin_key": "TESSERA_ADMIN_KEY",
    "region": "TESSERA_REGION",
    "writer_id": "TESSERA_WRITER_ID",
    "writer_advertise_url": "TESSERA_WRITER_ADVERTISE_URL",
    "edge_writer_credential": "TESSERA_EDGE_WRITER_CREDENTIAL",
    "batch_window_ms": "TESSERA_BATCH_WINDOW_MS",
    "batch_requests_max": "TESSERA_BATCH_REQUESTS_MAX",
    "payment_slow_s": "TESSERA_PAYMENT_SLOW_S",
    "payment_provider": "TESSERA_PAYMENT_PROVIDER",
    "stripe_api_key": "TESSERA_STRIPE_API_KEY",
    "stripe_api_base": "TESSERA_STRIPE_API_BASE",
    "stripe_webhook_secret": "TESSERA_STRIPE_WEBHOOK_SECRET",
    "jetstream_replicas": "TESSERA_JETSTREAM_REPLICAS",
    "ticket_signing_keys": "TESSERA_TICKET_SIGNING_KEYS",
    "door_staff_keys": "TESSERA_DOOR_STAFF_KEYS",
    "fault_crash_after_commit": "TESSERA_FAULT_CRASH_AFTER_COMMIT",
    "fault_crash_after_sale": "TESSERA_FAULT_CRASH_AFTER_SALE",
    "fault_crash_after_authorize": "TESSERA_FAULT_CRASH_AFTER_AUTHORIZE",
    "reconcile_interval_s": "TESSERA_RECONCILE_INTERVAL_S",
    "reconcile_older_than_s": "TESSERA_RECONCILE_OLDER_THAN_S",
}


def from_env(environ: dict[str, str] | None = None) -> Settings:
    """Settings from the environment; a missing or invalid value names its variable."""
    return load_settings(Settings, ENV_FIELDS, environ).with_writer_id()
