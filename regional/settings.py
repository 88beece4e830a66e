"""The regional node's configuration, from the environment (`TESSERA_*`)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from tessera.identity import IDENTITY_ENV_FIELDS, IdentitySettings
from tessera.web import load_settings

Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2_048)]
StreamName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class Settings(IdentitySettings, forbid_unknown_fields=True, frozen=True, kw_only=True):
    nats_url: Url
    writer_url: Url
    region: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")] = "local"
    # The region's mirrors; in the writer's own region these are the hub's streams themselves.
    seats_stream: StreamName = "SEATS"
    kv_stream: StreamName = "KV_seatmap"

    def __post_init__(self) -> None:
        self.identity.check(production=self.production)


ENV_FIELDS = {
    **IDENTITY_ENV_FIELDS,
    "nats_url": "TESSERA_NATS_URL",
    "writer_url": "TESSERA_WRITER_URL",
    "region": "TESSERA_REGION",
    "seats_stream": "TESSERA_SEATS_STREAM",
    "kv_stream": "TESSERA_KV_STREAM",
}


def from_env(environ: dict[str, str] | None = None) -> Settings:
    """Settings from the environment; a missing or invalid value names its variable."""
    return load_settings(Settings, ENV_FIELDS, environ)
