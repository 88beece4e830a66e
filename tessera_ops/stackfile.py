"""`<data-dir>/stack.json`: what `tessera up` started, for scripts (`tessera onsale`, `tessera
audit`, `tessera down`, `tessera status`, the tests). Written once everything is ready, rewritten
(atomically: a temporary file renamed over it) whenever a supervised process dies or comes back,
removed by a clean stop.

Every URL by service and region, the admin key, the demo event, and — this is a local,
development stack — the secrets its services were started with, and where the local identity
provider's key ring is, so dev tools can mint fans' tokens (`fan_minter`). So the file is written
readable by its owner only (0600). `services` is the live part: each process's pid, start time,
restarts and state.

`ServiceStatus` is what `tessera status --json` prints, a list of them (docs/operations.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Final, Literal

import msgspec

from tessera import auth, limits
from tessera_ops.identity_provider import KeyRing

STACK_FILE: Final = "stack.json"
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2_048)]
# running: its process runs (ready or not); restarting: it died and waits for, or is in, a
# restart; failed: it kept dying and `tessera up` gave up on it (restarts_max within the window).
ServiceStateName = Literal["running", "restarting", "failed"]


class Region(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    name: str
    nats_url: Url
    regional_url: Url
    edge_url: Url
    # The seat-map web page of the demo event, through this region's edge.
    page_url: Url
    # The region whose writer owns the events (and whose NATS is the hub).
    home: bool


class Mail(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    smtp_host: str
    smtp_port: int
    # Where the caught mail can be read (a web page or an API of the local mail catcher).
    inbox_url: Url | None = None


class ServiceState(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One process `tessera up` started and supervises, as it is now."""

    name: str
    # "server" (PostgreSQL, Redis, NATS: probed by their protocol) or "service" (our own tiers
    # and the mail catcher: probed by GET /readyz).
    kind: Literal["server", "service"]
    region: str | None = None
    # Where it answers, without credentials: http://… for services, postgresql://, redis://,
    # nats://host:port for servers.
    url: Url
    log: str
    # None while it is down.
    pid: int | None = None
    # Unix time the running process was started (None while it is down).
    started_at_s: float | None = None
    # Successful restarts since `tessera up` started it.
    restarts: int = 0
    state: ServiceStateName = "running"


class ServiceStatus(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One line of `tessera status`: the recorded state and a readiness probe made just now."""

    name: str
    region: str | None
    pid: int | None
    uptime_s: float | None
    restarts: int
    state: ServiceStateName
    # Its /readyz answered 200 (services), or its server answered the protocol's probe.
    ready: bool
    url: str


class Stack(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    data_dir: str
    database_url: Url
    redis_url: Url
    writer_url: Url
    admin_key: str
    # The local identity provider (tessera_ops/identity_provider.py): its key ring's file (the
    # private keys: `fan_minter` signs with them) and its URL (JWKS, POST /token).
    identity_keys: str = ""
    idp_url: Url | None = None
    # The HS256 development secret, only for a stack whose tiers verify with it (test fixtures);
    # `tessera up` leaves it empty: its tiers verify against the identity provider's keys.
    jwt_secret: str = ""
    admission_secret: str
    event_id: str
    # The edges' admin key (waiting rooms), not the writer's `admin_key`; empty in a stack
    # described before the two were separated.
    edge_admin_key: str = ""
    regions: list[Region]
    # Process id of the `tessera up` supervisor (`tessera down` signals it).
    supervisor_pid: int
    # Every started process: name -> pid (for reports and for `tessera down` to verify).
    pids: dict[str, int] = msgspec.field(default_factory=dict)
    # Log file per service.
    logs: dict[str, str] = msgspec.field(default_factory=dict)
    metrics: dict[str, Url] = msgspec.field(default_factory=dict)
    mail: Mail | None = None
    notifier_url: Url | None = None
    # Every supervised process, in start order (kept current by `tessera up`).
    services: list[ServiceState] = msgspec.field(default_factory=list)

    def region(self, name: str | None = None) -> Region:
        """The named region, or the home region."""
        for region in self.regions:
            if (name is None and region.home) or region.name == name:
                return region
        raise KeyError(name or "home")


_decoder: Final = msgspec.json.Decoder(Stack)


def default_data_dir() -> Path:
    return Path(os.environ.get("TESSERA_DATA_DIR", ".tessera"))


def write_stack(stack: Stack) -> Path:
    """Write `<data_dir>/stack.json` so that a reader sees the old or the new file, never half
    of one: a temporary file beside it, renamed over it."""
    path = Path(stack.data_dir) / STACK_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # Owner-only from its creation (it holds secrets), whatever the umask; a leftover
        # temporary file of a crashed writer is replaced, not reused with its old mode.
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(msgspec.json.format(msgspec.json.encode(stack)))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


FanMinter = Callable[[str], str]


def fan_minter(stack: Stack, *, ttl_s: int = limits.jwt_default_ttl_s) -> FanMinter:
    """A function minting fans' tokens (user id -> JWT) the stack's tiers accept: signed with
    its identity provider's newest key when it has one (`tessera up`), else with its HS256
    development secret (test fixtures). The key file is read once, here. ValueError when the
    stack names neither; OSError or msgspec.DecodeError for an unreadable key file."""
    if stack.identity_keys:
        ring = KeyRing.load(Path(stack.identity_keys))
        return lambda user_id: ring.mint(user_id, ttl_s=ttl_s)
    if stack.jwt_secret:
        secret = stack.jwt_secret
        return lambda user_id: auth.mint_token(user_id, secret, ttl_s=ttl_s)
    raise ValueError("the stack names no identity provider keys and no HS256 secret")


def read_stack(data_dir: Path | None = None) -> Stack:
    """The running stack described in `data_dir` (default `$TESSERA_DATA_DIR` or `.tessera`);
    `FileNotFoundError` when none is running there."""
    path = (data_dir or default_data_dir()) / STACK_FILE
    return _decoder.decode(path.read_bytes())
