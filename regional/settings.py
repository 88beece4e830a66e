"""The regional node's configuration, from the environment (`TESSERA_*`)."""

from __future__ import annotations

import os
from typing import Annotated

import msgspec

Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2_048)]
StreamName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class Settings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    nats_url: Url
    writer_url: Url
    jwt_secret: Annotated[str, msgspec.Meta(min_length=32, max_length=512)]
    region: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")] = "local"
    # The region's mirrors; in the writer's own region these are the hub's streams themselves.
    seats_stream: StreamName = "SEATS"
    kv_stream: StreamName = "KV_seatmap"


ENV_FIELDS = {
    "nats_url": "TESSERA_NATS_URL",
    "writer_url": "TESSERA_WRITER_URL",
    "jwt_secret": "TESSERA_JWT_SECRET",
    "region": "TESSERA_REGION",
    "seats_stream": "TESSERA_SEATS_STREAM",
    "kv_stream": "TESSERA_KV_STREAM",
}


def from_env(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    raw = {field: env[var] for field, var in ENV_FIELDS.items() if var in env}
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as error:
        raise ValueError(f"regional settings ({', '.join(ENV_FIELDS.values())}): {error}") from None
