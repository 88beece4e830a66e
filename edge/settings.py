"""The edge's configuration, from the environment (`TESSERA_*`); docs/edge.md explains each knob.

Rate budgets come as one JSON document (`TESSERA_RATE_LIMITS`), validated here: a budget is a
sustained rate per second plus a burst, set per route class and per scope (client IP, fan, the
whole edge fleet); `null` switches a scope off.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Annotated, Literal

import msgspec

from tessera import contracts, limits
from tessera.identity import IDENTITY_ENV_FIELDS, IdentitySettings
from tessera.web import load_settings

Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2_048)]
Secret = Annotated[str, msgspec.Meta(min_length=32, max_length=512)]


class RouteClass(StrEnum):
    reads = "reads"  # seat maps, event details, SSE streams, queue status
    queue = "queue"  # joining a waiting room, asking for a challenge
    holds = "holds"  # creating, extending and releasing holds
    orders = "orders"  # checkout


class Rate(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """GCRA: `per_s` sustained, up to `burst` at once."""

    per_s: Annotated[float, msgspec.Meta(gt=0, le=limits.edge_rate_per_s_max)]
    burst: Annotated[int, msgspec.Meta(ge=1, le=limits.edge_rate_burst_max)] = 1


class Budget(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    ip: Rate | None = None
    user: Rate | None = None
    # Shared by every edge process that uses the same Redis (a region's fleet).
    fleet: Rate | None = None
    # Calls without a valid fan token: when either is set, they are charged to these instead of
    # `ip` and `fleet` (per address block, and for the fleet), so an anonymous flood spends its
    # own budgets and never the ones signed-in fans need (docs/api.md, "Anonymous budgets").
    anonymous_ip: Rate | None = None
    anonymous_fleet: Rate | None = None
    # "local": counted in this process only (no Redis round trip per request); "redis": shared.
    store: Literal["redis", "local"] = "redis"


def _default_budgets() -> dict[RouteClass, Budget]:
    return {
        # Reads are mostly cache hits: a Redis round trip each would cost more than the hit.
        # Per address, signed in or not: one page's polling and stream reconnects fit easily,
        # a scraper does not. Anonymous reads spend a smaller budget of their own, so a scraper
        # without a token cannot spend what the fans behind the same address need.
        RouteClass.reads: Budget(ip=Rate(50, 100), anonymous_ip=Rate(25, 50), store="local"),
        # Challenges are anonymous: a botnet asking for them must not push fans' joins into 429.
        RouteClass.queue: Budget(
            ip=Rate(5, 10),
            user=Rate(1, 5),
            fleet=Rate(5_000, 10_000),
            anonymous_ip=Rate(2, 5),
            anonymous_fleet=Rate(2_000, 4_000),
        ),
        # The fleet budgets are what the writer takes (BENCHMARKS.md): more would only queue.
        RouteClass.holds: Budget(ip=Rate(5, 10), user=Rate(2, 5), fleet=Rate(1_000, 1_000)),
        RouteClass.orders: Budget(ip=Rate(2, 5), user=Rate(1, 3), fleet=Rate(500, 500)),
    }


# The origin secret's values: the rotation makes 64 hex characters (edge_cdn), 32-128 letters or
# digits are accepted; an empty value is a slot not filled yet.
OriginValue = Annotated[str, msgspec.Meta(pattern=r"^([A-Za-z0-9]{32,128})?$")]
Credential = Annotated[
    str, msgspec.Meta(max_length=1_600, pattern=contracts.EDGE_CREDENTIAL_PATTERN)
]


class OriginSecrets(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """`TESSERA_EDGE_ORIGIN_SECRETS`: JSON `{"previous", "current", "next"}`; the CDN sends
    `current`, and all three are accepted so a rotation never refuses the CDN (edge_cdn)."""

    previous: OriginValue = ""
    current: OriginValue = ""
    next: OriginValue = ""

    def __post_init__(self) -> None:
        if not self.accepted():
            raise ValueError(
                "TESSERA_EDGE_ORIGIN_SECRETS: previous, current and next are all empty; "
                "leave the variable unset to check no origin secret"
            )

    def accepted(self) -> tuple[bytes, ...]:
        """The values a request may carry, empty slots left out."""
        return tuple(v.encode() for v in (self.previous, self.current, self.next) if v)


class RateLimits(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    budgets: dict[RouteClass, Budget] = msgspec.field(default_factory=_default_budgets)

    def budget(self, route_class: RouteClass) -> Budget:
        return self.budgets.get(route_class) or _default_budgets()[route_class]


class Settings(IdentitySettings, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # The region's read nodes, tried in order (failing ones are skipped for a while).
    origin_urls: Annotated[
        list[Url], msgspec.Meta(min_length=1, max_length=limits.edge_origins_max)
    ]
    writer_url: Url
    redis_url: Url
    admin_key: Secret
    # Signs queue tickets, admission tokens and challenges: the same for every edge of a deployment.
    admission_secret: Secret
    # Sent to the writer with every request forwarded to it (`X-Edge-Credential`, the first of
    # its comma-separated values); a writer that has one refuses fans' writes without it, so only
    # edges write for fans. Empty: none sent.
    edge_writer_credential: Credential = ""
    # The CDN's origin secret: set, every public request must carry `origin_header` with one of
    # its values (health checks excepted; edge/ports.py). Unset: not checked (local stacks); a
    # JSON null is refused rather than read as "off".
    origin_secrets: OriginSecrets | msgspec.UnsetType = msgspec.UNSET
    origin_header: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z][A-Za-z0-9-]{0,63}$")] = (
        "X-Origin-Secret"
    )
    # Set: /metrics and the admin API are served on this port only (edge/ports.py), bound to
    # `internal_host`, and the public port answers them 404.
    internal_port: Annotated[int, msgspec.Meta(ge=1, le=65_535)] | None = None
    internal_host: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] = "127.0.0.1"
    region: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")] = "local"
    # Peers whose X-Forwarded-For is believed (the load balancer, the CDN); loopback by default.
    trusted_proxies: Annotated[
        list[str], msgspec.Meta(max_length=limits.edge_trusted_proxies_max)
    ] = msgspec.field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    # None: each entry lives for the origin's max-age (clamped to edge_cache_ttl_s_min..max).
    cache_ttl_s: (
        Annotated[
            float, msgspec.Meta(ge=limits.edge_cache_ttl_s_min, le=limits.edge_cache_ttl_s_max)
        ]
        | None
    ) = None
    stale_s: Annotated[float, msgspec.Meta(ge=0, le=limits.edge_stale_s_max)] = 10.0
    admission_ttl_s: Annotated[
        int, msgspec.Meta(ge=limits.edge_admission_ttl_s_min, le=limits.edge_admission_ttl_s_max)
    ] = 900
    rate_limits: RateLimits = msgspec.field(default_factory=RateLimits)
    # POST /v1/dev/token mints a fan JWT for any user id: local stacks only (docs/web-page.md).
    dev_tokens: bool = False
    # Where the dev tokens come from: the local identity provider's `POST /token` (http://),
    # asked for each one; empty: signed here with the HS256 development secret.
    dev_token_url: Annotated[str, msgspec.Meta(pattern=r"^(http://[^\s]{1,2040})?$")] = ""

    def __post_init__(self) -> None:
        for network in self.trusted_proxies:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad entry
        self.identity.check(production=self.production)
        if self.dev_tokens and (self.production or not (self.jwt_secret or self.dev_token_url)):
            # It mints a token for any user id: a local stack's convenience, never a door.
            raise ValueError(
                "TESSERA_DEV_TOKENS: only with a local identity provider (TESSERA_DEV_TOKEN_URL) "
                "or the HS256 development secret (TESSERA_JWT_SECRET), and never when "
                "TESSERA_PRODUCTION is true"
            )


ENV_FIELDS = {
    **IDENTITY_ENV_FIELDS,
    "origin_urls": "TESSERA_ORIGIN_URLS",
    "writer_url": "TESSERA_WRITER_URL",
    "redis_url": "TESSERA_REDIS_URL",
    "admin_key": "TESSERA_ADMIN_KEY",
    "admission_secret": "TESSERA_ADMISSION_SECRET",
    "edge_writer_credential": "TESSERA_EDGE_WRITER_CREDENTIAL",
    "origin_secrets": "TESSERA_EDGE_ORIGIN_SECRETS",
    "origin_header": "TESSERA_EDGE_ORIGIN_HEADER",
    "internal_port": "TESSERA_EDGE_INTERNAL_PORT",
    "internal_host": "TESSERA_EDGE_INTERNAL_HOST",
    "region": "TESSERA_REGION",
    "trusted_proxies": "TESSERA_TRUSTED_PROXIES",
    "cache_ttl_s": "TESSERA_CACHE_TTL_S",
    "stale_s": "TESSERA_STALE_S",
    "admission_ttl_s": "TESSERA_ADMISSION_TTL_S",
    "rate_limits": "TESSERA_RATE_LIMITS",
    "dev_tokens": "TESSERA_DEV_TOKENS",
    "dev_token_url": "TESSERA_DEV_TOKEN_URL",
}
LIST_FIELDS = frozenset({"origin_urls", "trusted_proxies"})


def from_env(environ: dict[str, str] | None = None) -> Settings:
    """Settings from the environment; a missing or invalid value names its variable."""
    return load_settings(
        Settings,
        ENV_FIELDS,
        environ,
        list_fields=LIST_FIELDS,
        json_fields=("rate_limits", "origin_secrets"),
    )
