"""The writer's configuration, read once from the environment (`TESSERA_*`)."""

from __future__ import annotations

import os
import socket
from typing import Annotated

import msgspec

from tessera import limits

Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2_048)]
Name = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


class Settings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    database_url: Url
    redis_url: Url
    nats_url: Url
    admin_key: Annotated[str, msgspec.Meta(min_length=32, max_length=256)]
    jwt_secret: Annotated[str, msgspec.Meta(min_length=32, max_length=512)]
    region: Name = "local"
    writer_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] = ""
    batch_window_ms: Annotated[float, msgspec.Meta(ge=0, le=50)] = limits.batch_window_ms
    batch_requests_max: Annotated[int, msgspec.Meta(ge=1, le=4_096)] = limits.batch_requests_max
    payment_slow_s: Annotated[float, msgspec.Meta(ge=0, le=30)] = 2.0
    # Replicas of the hub's streams it creates at start-up: 3 on a clustered hub (the deployment
    # sets it from its NATS cluster size), 1 on a single server.
    jetstream_replicas: Annotated[int, msgspec.Meta(ge=1, le=limits.jetstream_replicas_max)] = 1
    # Test-only: the process SIGKILLs itself after a commit and before publishing it, so the fault
    # suite can prove the relay republishes what a crash left unsent.
    fault_crash_after_commit: bool = False

    def with_writer_id(self) -> Settings:
        """The lease owner name. Stable across restarts of the same slot (region + host), so a
        restarted writer takes its events back at once under a new fencing epoch instead of
        waiting out the dead process's lease; the epoch still fences any surviving zombie."""
        if self.writer_id:
            return self
        return msgspec.structs.replace(self, writer_id=f"{self.region}-{socket.gethostname()}")


ENV_FIELDS = {
    "database_url": "TESSERA_DATABASE_URL",
    "redis_url": "TESSERA_REDIS_URL",
    "nats_url": "TESSERA_NATS_URL",
    "admin_key": "TESSERA_ADMIN_KEY",
    "jwt_secret": "TESSERA_JWT_SECRET",
    "region": "TESSERA_REGION",
    "writer_id": "TESSERA_WRITER_ID",
    "batch_window_ms": "TESSERA_BATCH_WINDOW_MS",
    "batch_requests_max": "TESSERA_BATCH_REQUESTS_MAX",
    "payment_slow_s": "TESSERA_PAYMENT_SLOW_S",
    "jetstream_replicas": "TESSERA_JETSTREAM_REPLICAS",
    "fault_crash_after_commit": "TESSERA_FAULT_CRASH_AFTER_COMMIT",
}


def from_env(environ: dict[str, str] | None = None) -> Settings:
    """Settings from the environment; a missing or invalid value names its variable."""
    env = os.environ if environ is None else environ
    raw = {field: env[var] for field, var in ENV_FIELDS.items() if var in env}
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as error:
        field = str(error).rsplit("$.", 1)[-1].rstrip("`")
        variable = ENV_FIELDS.get(field, "TESSERA_*")
        raise ValueError(f"{variable}: {error}") from None
    return settings.with_writer_id()
